// Package ntlmssp is the accepting side of NTLM ([MS-NLMP]) and of SPNEGO
// ([RFC 4178], [MS-SPNG]) carrying it, shared by the DCE/RPC and SMB
// servers: NTLMv2 verification against configured accounts, the exported
// session key, message signing and sealing, and the SPNEGO mechListMIC.
package ntlmssp

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rc4"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"

	"github.com/oiweiwei/go-msrpc/ssp/crypto"
	"github.com/oiweiwei/go-msrpc/ssp/ntlm"
)

// The accepting side of NTLM ([MS-NLMP] 3.2.5) is go-msrpc's
// ntlm.Authentifier: it builds the CHALLENGE, parses the AUTHENTICATE,
// checks the MIC, derives the session keys and signs and seals. Around it
// this file adds what a server exposed to the network needs:
//
//   - every token is checked before go-msrpc parses it (its parser indexes
//     the message by unchecked offsets and AV_PAIR lengths);
//   - the challenge response is verified here, as NTLMv2 only, against
//     the configured accounts with the domain the client sent
//     (ntlm.Verifier);
//   - go-msrpc compares a MIC even when the client sent none; a MIC is
//     required only when MsvAvFlags has 0x2 ([MS-NLMP] 3.1.5.1.2,
//     2.2.2.1), so without that flag the verifier supplies the value
//     go-msrpc is about to compute, which makes its comparison a no-op.

// NTLM errors; all but ErrProtocol are logon failures.
var (
	ErrProtocol      = errors.New("ntlm: malformed message")
	ErrNTLMv1        = errors.New("ntlm: NTLMv1 refused")
	ErrFlags         = errors.New("ntlm: negotiate flags unsupported for the required protection")
	ErrUnknownUser   = errors.New("ntlm: unknown account")
	ErrWrongPassword = errors.New("ntlm: wrong password")
	ErrAnonymous     = errors.New("ntlm: anonymous logon refused")
	ErrBadSignature  = errors.New("ntlm: bad message signature")
)

// NTLM message layout ([MS-NLMP] 2.2.1).
const (
	ntlmFlagUnicode  = 0x00000001
	ntlmFlagSign     = 0x00000010
	ntlmFlagSeal     = 0x00000020
	ntlmFlagDatagram = 0x00000040
	ntlmFlagESS      = 0x00080000
	ntlmFlagKeyExch  = 0x40000000

	avEOL       = 0
	avFlags     = 6
	avTimestamp = 7
	avFlagMIC   = 0x2

	ntlmMICOffset = 72

	// SignatureLen is the size of an NTLMSSP_MESSAGE_SIGNATURE ([MS-NLMP] 2.2.2.9).
	SignatureLen = 16
	ntlmv2Min    = 16 + 28 // NTProofStr + the fixed part of NTLMv2_CLIENT_CHALLENGE
)

var ntlmSignature = []byte("NTLMSSP\x00")

// Account is a logon the acceptor accepts. Name is "user" or
// "DOMAIN\user" (then the client's domain must match); NTHash is NTOWFv1
// of the password (NTHash).
type Account struct {
	Name   string
	NTHash [16]byte
}

// Config configures an Acceptor.
type Config struct {
	// Computer is the NetBIOS computer and domain name in the CHALLENGE.
	Computer string
	// Accounts are the logons accepted (NTLMv2 only).
	Accounts []Account
	// Lookup, if set, finds logons not in Accounts (such as the one-time
	// credentials of booting clients) by user name.
	Lookup func(user string) (Account, bool)
	// RefuseAnonymous refuses anonymous (null session) logons.
	RefuseAnonymous bool
	// RequireESS refuses a NEGOTIATE without extended session security
	// (needed to sign); RequireSeal one without SEAL.
	RequireESS, RequireSeal bool
	// NoTimestamp leaves MsvAvTimestamp out of the CHALLENGE, so that
	// clients send no MIC.
	NoTimestamp bool
}

// Acceptor runs one NTLM logon and then signs and seals messages. It is
// used by one goroutine at a time.
type Acceptor struct {
	ctx      context.Context
	auth     *ntlm.Authentifier
	cfg      *ntlm.Config
	accounts []Account
	more     func(user string) (Account, bool)
	noAnon   bool
	ess      bool
	seal     bool

	state     int // 0 want NEGOTIATE, 1 want AUTHENTICATE, 2 done
	negotiate []byte
	challenge []byte
	token     []byte // the AUTHENTICATE being verified
	micFlag   bool   // the AUTHENTICATE's MsvAvFlags has MIC_PROVIDED

	user      string // as the client sent it: DOMAIN\user
	account   string // the matched Account.Name
	anonymous bool
	done      bool
}

// NewAcceptor returns an acceptor for one logon.
func NewAcceptor(ctx context.Context, c Config) *Acceptor {
	cfg := ntlm.NewConfig() // RequestMIC: the CHALLENGE carries MsvAvTimestamp
	cfg.IsServer = true
	cfg.NetBIOSComputerName = c.Computer
	cfg.NetBIOSDomainName = c.Computer
	cfg.DNSComputerName = strings.ToLower(c.Computer)
	cfg.RequestMIC = !c.NoTimestamp
	n := &Acceptor{ctx: ctx, cfg: cfg, accounts: c.Accounts, more: c.Lookup, noAnon: c.RefuseAnonymous, ess: c.RequireESS, seal: c.RequireSeal}
	cfg.Verifier = n
	n.auth = &ntlm.Authentifier{Config: cfg}
	return n
}

// User is the account the client tried to log on as, as it sent it
// (DOMAIN\user); "" before the AUTHENTICATE.
func (n *Acceptor) User() string { return n.user }

// Account is the matched Account.Name once the logon succeeded ("" for
// an anonymous logon).
func (n *Acceptor) Account() string { return n.account }

// Anonymous reports whether the logon was an anonymous one.
func (n *Acceptor) Anonymous() bool { return n.anonymous }

// Examined reports whether an AUTHENTICATE was examined: a failure
// after that is a failed logon rather than a failed negotiation.
func (n *Acceptor) Examined() bool { return n.state >= 2 }

// Done reports whether the logon succeeded.
func (n *Acceptor) Done() bool { return n.done }

// SessionKey returns the exported session key ([MS-NLMP] 3.1.5.1.2) once
// the logon succeeded: what SMB2 derives its signing and encryption keys
// from ([MS-SMB2] 3.3.5.5.3).
func (n *Acceptor) SessionKey() []byte {
	if !n.done {
		return nil
	}
	return bytes.Clone(n.auth.SessionKey())
}

// Step consumes one token and returns the reply token; done is true once
// the AUTHENTICATE verified.
func (n *Acceptor) Step(tok []byte) (out []byte, done bool, err error) {
	switch n.state {
	case 0:
		flags, err := CheckNegotiate(tok)
		if err != nil {
			return nil, false, err
		}
		if err := n.checkFlags(flags); err != nil {
			return nil, false, err
		}
		n.negotiate = bytes.Clone(tok)
		ch, err := n.auth.Challenge(n.ctx, bytes.Clone(tok))
		if err != nil {
			return nil, false, fmt.Errorf("ntlm: challenge: %w", err)
		}
		n.challenge = bytes.Clone(ch)
		n.state = 1
		return ch, false, nil
	case 1:
		n.state = 2
		tok = withVersionAndMIC(tok)
		am, err := CheckAuthenticate(tok)
		if err != nil {
			return nil, false, err
		}
		n.user = am.user
		if am.domain != "" {
			n.user = am.domain + `\` + am.user
		}
		if am.flags&ntlmFlagDatagram != 0 {
			return nil, false, ErrFlags
		}
		n.micFlag = am.mic
		n.token = tok
		// The MIC check below is go-msrpc's; the verifier fills in the
		// MIC when the client was not required to send one.
		n.cfg.RequestMIC = false
		if err := n.auth.VerifyAuthenticate(n.ctx, bytes.Clone(tok)); err != nil {
			n.account, n.anonymous = "", false
			return nil, false, err
		}
		n.done = true
		return nil, true, nil
	}
	return nil, false, fmt.Errorf("%w: unexpected token", ErrProtocol)
}

// checkFlags refuses NEGOTIATE flags the configured protection cannot
// run with (Config.RequireESS, Config.RequireSeal) and datagram mode,
// which connection-oriented transports never use.
func (n *Acceptor) checkFlags(flags uint32) error {
	if flags&ntlmFlagDatagram != 0 {
		return ErrFlags
	}
	if n.ess && flags&ntlmFlagESS == 0 {
		return ErrFlags
	}
	if n.seal && flags&ntlmFlagSeal == 0 {
		return ErrFlags
	}
	return nil
}

// VerifyChallenge implements ntlm.Verifier: it verifies an NTLMv2
// response ([MS-NLMP] 3.3.2) against the configured accounts and returns
// the key exchange key.
func (n *Acceptor) VerifyChallenge(_ context.Context, sess *ntlm.SecurityParameters, _ ntlm.Credential, nonce []byte, am *ntlm.AuthenticateMessage) (*ntlm.ChallengeResponse, error) {
	nt := am.NTChallengeResponse
	var kek []byte
	switch {
	case am.UserName == "" && len(nt) == 0 && len(am.LMChallengeResponse) <= 1:
		// Anonymous ([MS-NLMP] 3.2.5.1.2): an empty NT response and
		// LmChallengeResponse Z(1). The session key is all zeros.
		if n.noAnon {
			return nil, ErrAnonymous
		}
		kek = make([]byte, 16)
		n.anonymous = true
	case len(nt) <= 24:
		return nil, ErrNTLMv1
	default:
		acct := n.lookup(am.UserName, am.DomainName)
		if acct == nil {
			return nil, ErrUnknownUser
		}
		ntowf := hmacMD5(acct.NTHash[:], utf16le(strings.ToUpper(am.UserName)+am.DomainName))
		proof := hmacMD5(ntowf, nonce, nt[16:])
		if !hmac.Equal(proof, nt[:16]) {
			return nil, ErrWrongPassword
		}
		kek = hmacMD5(ntowf, proof)
		n.account = acct.Name
	}
	if sess.KeyExchange && len(am.EncryptedRandomSessionKey) != 16 {
		n.account, n.anonymous = "", false
		return nil, fmt.Errorf("%w: encrypted session key of %d bytes", ErrProtocol, len(am.EncryptedRandomSessionKey))
	}
	if !n.micFlag {
		am.MIC = n.expectedMIC(sess, kek, am)
	}
	return &ntlm.ChallengeResponse{KeyExchangeKey: kek, SessionBaseKey: kek, IsAnonymous: n.anonymous}, nil
}

// expectedMIC computes the MIC the way go-msrpc's VerifyAuthenticate
// does: HMAC-MD5 of NEGOTIATE, CHALLENGE and AUTHENTICATE (bytes 72..88
// zeroed) under the exported session key ([MS-NLMP] 3.2.5.1.2).
func (n *Acceptor) expectedMIC(sess *ntlm.SecurityParameters, kek []byte, am *ntlm.AuthenticateMessage) []byte {
	exported := kek
	if sess.KeyExchange {
		exported = make([]byte, 16)
		c, _ := rc4.NewCipher(kek)
		c.XORKeyStream(exported, am.EncryptedRandomSessionKey)
	}
	auth := bytes.Clone(n.token)
	clear(auth[ntlmMICOffset:min(len(auth), ntlmMICOffset+16)])
	return hmacMD5(exported, n.negotiate, n.challenge, auth)
}

// lookup finds the account a logon names. Account names compare without
// case; a name written DOMAIN\user also requires that domain.
func (n *Acceptor) lookup(user, domain string) *Account {
	for i := range n.accounts {
		a := &n.accounts[i]
		name := a.Name
		if d, u, ok := strings.Cut(name, `\`); ok {
			if !strings.EqualFold(d, domain) {
				continue
			}
			name = u
		}
		if strings.EqualFold(name, user) {
			return a
		}
	}
	if n.more != nil {
		if a, ok := n.more(user); ok {
			return &a
		}
	}
	return nil
}

// Wrap signs (and with seal, encrypts body in place) an outgoing
// message whose signature goes to sig ([MS-NLMP] 3.4.3); the checksum
// covers hdr, body and trailer (for DCE/RPC: header, stub and
// sec_trailer, [MS-RPCE] 3.3.1.5.2.2).
func (n *Acceptor) Wrap(hdr, body, trailer, sig []byte, seal bool) error {
	chk, err := n.auth.MakeOutboundChecksum(n.ctx, [][]byte{hdr, body, trailer})
	if err != nil {
		return err
	}
	if seal {
		if err := n.auth.ApplyOutboundCipher(n.ctx, body); err != nil {
			return err
		}
	}
	s, err := n.auth.MakeOutboundSignature(n.ctx, chk)
	if err != nil {
		return err
	}
	if len(s) != len(sig) {
		return fmt.Errorf("ntlm: signature of %d bytes", len(s))
	}
	copy(sig, s)
	return nil
}

// Unwrap decrypts (with seal) body in place and verifies the signature
// of an incoming message.
func (n *Acceptor) Unwrap(hdr, body, trailer, sig []byte, seal bool) error {
	if seal {
		if err := n.auth.ApplyInboundCipher(n.ctx, body); err != nil {
			return err
		}
	}
	chk, err := n.auth.MakeInboundChecksum(n.ctx, [][]byte{hdr, body, trailer})
	if err != nil {
		return err
	}
	want, err := n.auth.MakeInboundSignature(n.ctx, chk)
	if err != nil {
		return err
	}
	if !hmac.Equal(want, sig) {
		return ErrBadSignature
	}
	return nil
}

// VerifyMIC checks a GSS_GetMIC token over data (SPNEGO mechListMIC).
func (n *Acceptor) VerifyMIC(data, sig []byte) error {
	return n.Unwrap(data, nil, nil, sig, false)
}

// MakeMIC returns a GSS_GetMIC token over data.
func (n *Acceptor) MakeMIC(data []byte) ([]byte, error) {
	sig := make([]byte, SignatureLen)
	if err := n.Wrap(data, nil, nil, sig, false); err != nil {
		return nil, err
	}
	return sig, nil
}

// ResetCiphers restarts the RC4 handles after a mechListMIC exchange
// (sequence numbers continue), as Windows and go-msrpc's SPNEGO do.
func (n *Acceptor) ResetCiphers() error {
	return n.auth.ResetSecurityService(n.ctx)
}

// CheckNegotiate checks a NEGOTIATE_MESSAGE ([MS-NLMP] 2.2.1.1) and
// returns its flags.
func CheckNegotiate(b []byte) (uint32, error) {
	if len(b) < 16 || !bytes.Equal(b[:8], ntlmSignature) || binary.LittleEndian.Uint32(b[8:]) != 1 {
		return 0, fmt.Errorf("%w: not a NEGOTIATE_MESSAGE", ErrProtocol)
	}
	flags := binary.LittleEndian.Uint32(b[12:])
	// Domain and workstation fields, when present, must lie inside.
	for off := 16; off+8 <= min(len(b), 32); off += 8 {
		if !fieldFits(b, off) {
			return 0, fmt.Errorf("%w: NEGOTIATE field at %d outside the message", ErrProtocol, off)
		}
	}
	return flags, nil
}

// AuthInfo is what CheckAuthenticate learned from an AUTHENTICATE.
type AuthInfo struct {
	flags        uint32
	user, domain string
	mic          bool // MsvAvFlags has MIC_PROVIDED
}

// CheckAuthenticate checks an AUTHENTICATE_MESSAGE ([MS-NLMP] 2.2.1.3)
// so that go-msrpc can parse it without indexing outside it: every
// payload field lies inside the message, an NTLMv2 response's AV_PAIRs
// are well formed up to MsvAvEOL, and the MIC, when flagged, is there.
func CheckAuthenticate(b []byte) (AuthInfo, error) {
	var a AuthInfo
	if len(b) < ntlmMICOffset || !bytes.Equal(b[:8], ntlmSignature) || binary.LittleEndian.Uint32(b[8:]) != 3 {
		return a, fmt.Errorf("%w: not an AUTHENTICATE_MESSAGE", ErrProtocol)
	}
	for off := 12; off <= 52; off += 8 {
		if !fieldFits(b, off) {
			return a, fmt.Errorf("%w: AUTHENTICATE field at %d outside the message", ErrProtocol, off)
		}
	}
	a.flags = binary.LittleEndian.Uint32(b[60:])
	a.domain = decodeNTLMString(field(b, 28), a.flags)
	a.user = decodeNTLMString(field(b, 36), a.flags)
	nt := field(b, 20)
	if len(nt) > 24 {
		if len(nt) < ntlmv2Min {
			return a, fmt.Errorf("%w: NTLMv2 response of %d bytes", ErrProtocol, len(nt))
		}
		avFlagsValue, err := checkAVPairs(nt[ntlmv2Min:])
		if err != nil {
			return a, err
		}
		a.mic = avFlagsValue&avFlagMIC != 0
		if a.mic && len(b) < ntlmMICOffset+16 {
			return a, fmt.Errorf("%w: MIC flagged but missing", ErrProtocol)
		}
	}
	return a, nil
}

// checkAVPairs walks an AV_PAIR list ([MS-NLMP] 2.2.2.1) up to MsvAvEOL,
// checking the sizes go-msrpc decodes without checking, and returns the
// MsvAvFlags value.
func checkAVPairs(b []byte) (uint32, error) {
	var flags uint32
	for {
		if len(b) < 4 {
			return 0, fmt.Errorf("%w: AV_PAIR list without MsvAvEOL", ErrProtocol)
		}
		id := binary.LittleEndian.Uint16(b)
		n := int(binary.LittleEndian.Uint16(b[2:]))
		if id == avEOL {
			return flags, nil
		}
		if 4+n > len(b) {
			return 0, fmt.Errorf("%w: AV_PAIR %d longer than the response", ErrProtocol, id)
		}
		v := b[4 : 4+n]
		switch id {
		case avFlags:
			if n != 4 {
				return 0, fmt.Errorf("%w: MsvAvFlags of %d bytes", ErrProtocol, n)
			}
			flags = binary.LittleEndian.Uint32(v)
		case avTimestamp:
			if n != 8 {
				return 0, fmt.Errorf("%w: MsvAvTimestamp of %d bytes", ErrProtocol, n)
			}
		}
		b = b[4+n:]
	}
}

// fieldFits reports whether the (len, maxlen, offset) field at off lies
// inside b.
func fieldFits(b []byte, off int) bool {
	if off+8 > len(b) {
		return false
	}
	n := uint64(binary.LittleEndian.Uint16(b[off:]))
	o := uint64(binary.LittleEndian.Uint32(b[off+4:]))
	return n == 0 || o+n <= uint64(len(b))
}

// field returns the payload of the checked field at off.
func field(b []byte, off int) []byte {
	n := int(binary.LittleEndian.Uint16(b[off:]))
	if n == 0 {
		return nil
	}
	o := int(binary.LittleEndian.Uint32(b[off+4:]))
	return b[o : o+n]
}

func decodeNTLMString(b []byte, flags uint32) string {
	if flags&ntlmFlagUnicode == 0 {
		return string(b)
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

func utf16le(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

func hmacMD5(key []byte, data ...[]byte) []byte {
	h := hmac.New(md5.New, key)
	for _, d := range data {
		h.Write(d)
	}
	return h.Sum(nil)
}

// NTHash returns the NT hash of a password for Account.NTHash: MD4 of
// its UTF-16LE encoding ([MS-NLMP] 3.3.1, NTOWFv1).
func NTHash(password string) [16]byte {
	var h [16]byte
	sum, err := crypto.MD4(utf16le(password))
	if err == nil {
		copy(h[:], sum)
	}
	return h
}

// withVersionAndMIC returns an AUTHENTICATE message laid out with the
// Version and MIC fields ([MS-NLMP] 2.2.1.3: payload from offset 88).
// Clients that negotiate no version (impacket) start the payload at 64 or
// 72; go-msrpc's parser insists on the full header, so such a message is
// rebuilt with a zero Version and MIC and the payload offsets moved. A
// message that short has no MIC, so nothing signed changes.
func withVersionAndMIC(tok []byte) []byte {
	const full = 88
	if len(tok) < 64 {
		return tok
	}
	lowest := len(tok)
	for _, at := range []int{12, 20, 28, 36, 44, 52} {
		l := int(binary.LittleEndian.Uint16(tok[at:]))
		off := int(binary.LittleEndian.Uint32(tok[at+4:]))
		if l > 0 && off < lowest {
			lowest = off
		}
	}
	if lowest >= full || lowest < 64 {
		return tok // already full, or malformed: the checks will say so
	}
	shift := full - lowest
	out := make([]byte, 0, len(tok)+shift)
	out = append(out, tok[:lowest]...)
	out = append(out, make([]byte, shift)...)
	out = append(out, tok[lowest:]...)
	for _, at := range []int{12, 20, 28, 36, 44, 52} {
		off := binary.LittleEndian.Uint32(out[at+4:])
		if off >= uint32(lowest) {
			binary.LittleEndian.PutUint32(out[at+4:], off+uint32(shift))
		}
	}
	return out
}
