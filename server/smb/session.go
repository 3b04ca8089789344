package smb

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	"github.com/netdeploy/netdeploy/server/ntlmssp"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// session is an SMB2 session ([MS-SMB2] 3.3.1.8).
type session struct {
	id      uint64
	valid   bool // authenticated
	auth    *ntlmssp.SPNEGO
	preauth [64]byte // Session.PreauthIntegrityHashValue (3.1.1)

	account string
	guest   bool // guest or anonymous: no keys

	signingRequired bool
	signer          signer
	encKey          aeadKey // server to client
	decKey          aeadKey // client to server
	nonce           uint64
	noncePrefix     [4]byte

	trees    map[uint32]*tree
	nextTree uint32
}

// signer computes SMB2 signatures ([MS-SMB2] 3.1.4.1) over a message
// whose signature field is zero.
type signer interface {
	sign(msg []byte) [16]byte
}

type hmacSigner struct{ h hash.Hash }

func (s *hmacSigner) sign(msg []byte) [16]byte {
	s.h.Reset()
	s.h.Write(msg)
	var out [16]byte
	copy(out[:], s.h.Sum(nil))
	return out
}

type cmacSigner struct{ c *cmac }

func (s cmacSigner) sign(msg []byte) [16]byte { return s.c.sum(msg) }

type gmacSigner struct{ g cipher.AEAD }

func (s gmacSigner) sign(msg []byte) [16]byte {
	var nonce [12]byte
	copy(nonce[:8], msg[24:32]) // MessageId
	flags := binary.LittleEndian.Uint32(msg[16:])
	if flags&flagResponse != 0 {
		nonce[8] |= 1
	}
	if binary.LittleEndian.Uint16(msg[12:]) == cmdCancel && flags&flagResponse == 0 {
		nonce[8] |= 2
	}
	var out [16]byte
	copy(out[:], s.g.Seal(nil, nonce[:], nil, msg))
	return out
}

// aeadKey encrypts or decrypts with the negotiated cipher.
type aeadKey interface {
	seal(nonce, aad, data []byte) [16]byte
	open(nonce, aad, data, tag []byte) error
	nonceLen() int
}

func (c *ccm) nonceLen() int { return ccmNonceLen }

type gcmKey struct{ g cipher.AEAD }

func (k gcmKey) nonceLen() int { return 12 }

func (k gcmKey) seal(nonce, aad, data []byte) [16]byte {
	out := k.g.Seal(data[:0], nonce, data, aad)
	var tag [16]byte
	copy(tag[:], out[len(data):])
	return tag
}

func (k gcmKey) open(nonce, aad, data, tag []byte) error {
	buf := make([]byte, 0, len(data)+16)
	buf = append(append(buf, data...), tag...)
	_, err := k.g.Open(data[:0], nonce, buf, aad)
	return err
}

// SESSION_SETUP ([MS-SMB2] 2.2.5, 2.2.6, 3.3.5.5).
const (
	sessFlagBinding = 0x01

	sessionFlagIsGuest = 0x0001
	sessionFlagIsNull  = 0x0002
)

// sessionSetup runs one leg of an SPNEGO/NTLM logon.
func (c *conn) sessionSetup(r *request, w *response) (Status, error) {
	b := r.body()
	if len(b) < 24 || binary.LittleEndian.Uint16(b) != 25 {
		return StatusInvalidParameter, nil
	}
	flags := b[2]
	secMode := b[3]
	bufOff := uint64(binary.LittleEndian.Uint16(b[12:]))
	bufLen := uint64(binary.LittleEndian.Uint16(b[14:]))
	token, ok := sub(r.msg, bufOff, bufLen)
	if !ok {
		return StatusInvalidParameter, nil
	}
	if flags&sessFlagBinding != 0 {
		return StatusRequestNotAccepted, nil // no multichannel
	}
	if c.srv.limiter.Blocked(c.ip) {
		// Too many failed logons from this address lately.
		return StatusLogonFailure, nil
	}
	var s *session
	if r.h.SessionID == 0 {
		if len(c.sessions) >= MaxSessions {
			return StatusInsufficientResources, nil
		}
		s = &session{id: c.srv.nextSess.Add(1), trees: map[uint32]*tree{}, preauth: c.preauth}
		s.auth = ntlmssp.NewSPNEGO(ntlmssp.NewAcceptor(context.Background(), ntlmssp.Config{
			Computer:        c.srv.name(),
			Accounts:        c.srv.Accounts,
			Lookup:          c.srv.AccountLookup,
			RefuseAnonymous: !c.srv.Guest,
		}))
		c.sessions[s.id] = s
	} else {
		s = c.sessions[r.h.SessionID]
		if s == nil {
			return StatusUserSessionDeleted, nil
		}
		if s.valid {
			// Reauthentication is not offered.
			return StatusRequestNotAccepted, nil
		}
	}
	w.sessionID = s.id
	if c.dialect == dialect311 {
		c.preauthUpdate(&s.preauth, r.msg)
	}
	out, done, err := s.auth.Step(token)
	if err != nil {
		acc := s.auth.NTLM()
		if c.srv.Guest && errors.Is(err, ntlmssp.ErrUnknownUser) {
			return c.sessionDone(r, w, s, secMode, ntlmssp.NegTokenResp(ntlmssp.NegAcceptCompleted, nil, nil, nil), true)
		}
		delete(c.sessions, s.id)
		who := acc.User()
		if who == "" {
			who = "(unknown)"
		}
		if acc.Examined() {
			c.log.Info("smb logon failed", "account", who, "err", err)
			c.event(tracker.Event{Event: tracker.KindError, Detail: "logon failed for " + who})
			if c.srv.limiter.Fail(c.ip) {
				c.log.Warn("smb logons refused for a while: too many failures", "block", c.srv.limiter.Block)
				c.event(tracker.Event{Event: tracker.KindError, Detail: "logons refused for " + c.srv.limiter.Block.String() + " after repeated failures"})
			}
		}
		return StatusLogonFailure, nil
	}
	if !done {
		c.writeSessionSetup(w, 0, out)
		if c.dialect == dialect311 {
			// The response goes into the hash; finish lays out the
			// header, so hash a copy after that (see hashLater).
			w.preauthSess = s
		}
		return StatusMoreProcessingRequired, nil
	}
	return c.sessionDone(r, w, s, secMode, out, false)
}

// sessionDone completes a logon: guest or keyed session, keys derived
// ([MS-SMB2] 3.3.5.5.3).
func (c *conn) sessionDone(r *request, w *response, s *session, secMode byte, out []byte, guestFallback bool) (Status, error) {
	acc := s.auth.NTLM()
	s.auth = nil
	s.valid = true
	c.authed = true
	var flags uint16
	if guestFallback || acc.Anonymous() {
		s.guest = true
		if acc.Anonymous() {
			flags = sessionFlagIsNull
			s.account = "(anonymous)"
		} else {
			flags = sessionFlagIsGuest
			s.account = "guest"
		}
		if c.srv.RequireSigning {
			// Guest sessions cannot sign.
			delete(c.sessions, s.id)
			return StatusLogonFailure, nil
		}
	} else {
		s.account = acc.Account()
		key := acc.SessionKey()
		if len(key) < 16 {
			key = append(key, make([]byte, 16-len(key))...)
		}
		if err := c.deriveKeys(s, key[:16]); err != nil {
			return 0, err
		}
		s.signingRequired = c.srv.RequireSigning || secMode&secModeSigningRequired != 0
		w.forceSign = c.dialect >= dialect300 || s.signingRequired
	}
	c.writeSessionSetup(w, flags, out)
	c.log.Info("smb logon", "account", s.account, "dialect", dialectName(c.dialect), "signing", s.signingRequired)
	c.event(tracker.Event{Event: tracker.KindProgress, Detail: "logon " + s.account})
	return StatusSuccess, nil
}

func (c *conn) writeSessionSetup(w *response, flags uint16, token []byte) {
	w.buf.u16(9)
	w.buf.u16(flags)
	w.buf.u16(headerLen + 8)
	w.buf.u16(uint16(len(token)))
	w.buf.bytes(token)
}

// deriveKeys sets a session's signing and encryption keys ([MS-SMB2]
// 3.3.5.5.3, 3.1.4.2).
func (c *conn) deriveKeys(s *session, key []byte) error {
	var signKey, encKey, decKey []byte
	switch c.dialect {
	case dialect202, dialect210:
		s.signer = &hmacSigner{h: hmac.New(sha256.New, key)}
		return nil
	case dialect300, dialect302:
		signKey = kdf(key, []byte("SMB2AESCMAC\x00"), []byte("SmbSign\x00"))
		encKey = kdf(key, []byte("SMB2AESCCM\x00"), []byte("ServerOut\x00"))
		decKey = kdf(key, []byte("SMB2AESCCM\x00"), []byte("ServerIn \x00"))
	case dialect311:
		signKey = kdf(key, []byte("SMBSigningKey\x00"), s.preauth[:])
		encKey = kdf(key, []byte("SMBS2CCipherKey\x00"), s.preauth[:])
		decKey = kdf(key, []byte("SMBC2SCipherKey\x00"), s.preauth[:])
	default:
		return fmt.Errorf("smb: keys for dialect 0x%04x", c.dialect)
	}
	switch c.signAlg {
	case signGMAC:
		b, _ := aes.NewCipher(signKey)
		g, err := cipher.NewGCM(b)
		if err != nil {
			return err
		}
		s.signer = gmacSigner{g}
	default:
		m, err := newCMAC(signKey)
		if err != nil {
			return err
		}
		s.signer = cmacSigner{m}
	}
	randRead(s.noncePrefix[:])
	var err error
	switch c.cipher {
	case cipherCCM:
		if s.encKey, err = newCCM(encKey); err == nil {
			s.decKey, err = newCCM(decKey)
		}
	case cipherGCM:
		if s.encKey, err = newGCMKey(encKey); err == nil {
			s.decKey, err = newGCMKey(decKey)
		}
	}
	return err
}

func newGCMKey(key []byte) (aeadKey, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return gcmKey{g}, nil
}

// logoff ends a session ([MS-SMB2] 3.3.5.6).
func (c *conn) logoff(r *request, w *response) (Status, error) {
	s := r.sess
	for _, o := range c.opens {
		if o.sess == s {
			o.close(c)
			delete(c.opens, o.id.Volatile)
		}
	}
	delete(c.sessions, s.id)
	w.ended = s
	w.buf.u16(4)
	w.buf.u16(0)
	return StatusSuccess, nil
}

// Transform header ([MS-SMB2] 2.2.41).
const transformLen = 52

// decrypt opens an encrypted message ([MS-SMB2] 3.3.5.2.1).
func (c *conn) decrypt(msg []byte) (*session, []byte, error) {
	if len(msg) < transformLen+headerLen {
		return nil, nil, fmt.Errorf("smb: encrypted message of %d bytes", len(msg))
	}
	size := binary.LittleEndian.Uint32(msg[36:])
	flags := binary.LittleEndian.Uint16(msg[42:])
	sid := binary.LittleEndian.Uint64(msg[44:])
	if flags != 1 || uint64(size) != uint64(len(msg)-transformLen) {
		return nil, nil, fmt.Errorf("smb: transform header size %d flags %d for %d bytes", size, flags, len(msg)-transformLen)
	}
	s := c.sessions[sid]
	if s == nil || !s.valid || s.decKey == nil {
		return nil, nil, fmt.Errorf("smb: encrypted message for session 0x%x without keys", sid)
	}
	nonce := msg[20 : 20+s.decKey.nonceLen()]
	data := msg[transformLen:]
	if err := s.decKey.open(nonce, msg[20:transformLen], data, msg[4:20]); err != nil {
		return nil, nil, fmt.Errorf("smb: decrypt: %w", err)
	}
	if len(data) < 4 || [4]byte(data[:4]) != protoSMB2 {
		return nil, nil, fmt.Errorf("smb: encrypted message is not SMB2")
	}
	return s, data, nil
}

// encrypt encrypts plain in place and returns the transform header.
func (c *conn) encrypt(s *session, plain []byte) []byte {
	th := make([]byte, transformLen)
	copy(th, protoTransform[:])
	s.nonce++
	binary.LittleEndian.PutUint64(th[20:], s.nonce)
	copy(th[28:], s.noncePrefix[:s.encKey.nonceLen()-8])
	binary.LittleEndian.PutUint32(th[36:], uint32(len(plain)))
	binary.LittleEndian.PutUint16(th[42:], 1)
	binary.LittleEndian.PutUint64(th[44:], s.id)
	tag := s.encKey.seal(th[20:20+s.encKey.nonceLen()], th[20:transformLen], plain)
	copy(th[4:20], tag[:])
	return th
}
