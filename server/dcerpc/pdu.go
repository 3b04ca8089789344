package dcerpc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	msdcerpc "github.com/oiweiwei/go-msrpc/dcerpc"

	"github.com/netdeploy/netdeploy/server/ntlmssp"
)

// PDU types (C706 12.6.4).
const (
	ptypeRequest          uint8 = 0
	ptypeResponse         uint8 = 2
	ptypeFault            uint8 = 3
	ptypeBind             uint8 = 11
	ptypeBindAck          uint8 = 12
	ptypeBindNak          uint8 = 13
	ptypeAlterContext     uint8 = 14
	ptypeAlterContextResp uint8 = 15
	ptypeAuth3            uint8 = 16
	ptypeShutdown         uint8 = 17
	ptypeCoCancel         uint8 = 18
	ptypeOrphaned         uint8 = 19
)

// pfc_flags (C706 12.6.3.1; PFC_SUPPORT_HEADER_SIGN from [MS-RPCE]).
const (
	pfcFirstFrag         uint8 = 0x01
	pfcLastFrag          uint8 = 0x02
	pfcSupportHeaderSign uint8 = 0x04 // bind and bind_ack; PFC_PENDING_CANCEL elsewhere
	pfcConcMpx           uint8 = 0x10
	pfcDidNotExecute     uint8 = 0x20
	pfcObjectUUID        uint8 = 0x80
)

// Sizes on the wire.
const (
	headerLen        = 16                   // the common header
	requestHeaderLen = 24                   // + alloc_hint, p_cont_id, opnum
	secTrailerLen    = 8                    // sec_trailer ([MS-RPCE] 2.2.2.11)
	ntlmSigLen       = ntlmssp.SignatureLen // NTLMSSP_MESSAGE_SIGNATURE ([MS-NLMP] 2.2.2.9)
	syntaxLen        = 20                   // p_syntax_id_t: UUID + version
	uuidLen          = 16

	// mustRecvFragSize is the fragment size every implementation must
	// accept (C706 12.6.3.1); negotiated sizes never go below it.
	mustRecvFragSize = 1432
)

// Results and reasons of presentation context negotiation (C706 12.6.3.1,
// [MS-RPCE] 2.2.2.5, 3.3.1.5.3).
const (
	resultAcceptance        uint16 = 0
	resultProviderRejection uint16 = 2
	resultNegotiateAck      uint16 = 3

	reasonNotSpecified                  uint16 = 0
	reasonAbstractSyntaxNotSupported    uint16 = 1
	reasonTransferSyntaxesNotSupported  uint16 = 2
	reasonLocalLimitExceeded            uint16 = 3
	reasonProtocolVersionNotSupported   uint16 = 4
	reasonAuthenticationTypeUnsupported uint16 = 8
	reasonInvalidChecksum               uint16 = 9
)

// Bind time feature negotiation bits ([MS-RPCE] 2.2.2.14). The server
// keeps connections open after orphaned PDUs, and runs one security
// context per connection (no security context multiplexing).
const (
	featureKeepConnOnOrphan uint8 = 0x02
	supportedFeatures             = featureKeepConnOnOrphan
)

// Errors of the PDU reader. A malformed PDU closes its connection.
var (
	errMalformed = errors.New("malformed PDU")
	errVersion   = errors.New("unsupported RPC version")
	errDataRep   = errors.New("unsupported data representation")
)

// syntaxID is a p_syntax_id_t: an interface or transfer syntax UUID in
// NDR (little-endian) byte order and its version.
type syntaxID struct {
	uuid         [uuidLen]byte
	major, minor uint16
}

func readSyntax(b []byte) syntaxID {
	var s syntaxID
	copy(s.uuid[:], b[:uuidLen])
	s.major = binary.LittleEndian.Uint16(b[16:])
	s.minor = binary.LittleEndian.Uint16(b[18:])
	return s
}

func appendSyntax(dst []byte, s syntaxID) []byte {
	dst = append(dst, s.uuid[:]...)
	dst = binary.LittleEndian.AppendUint16(dst, s.major)
	return binary.LittleEndian.AppendUint16(dst, s.minor)
}

// toSyntax converts a go-msrpc syntax identifier to its wire form.
func toSyntax(s *msdcerpc.SyntaxID) syntaxID {
	var out syntaxID
	if s == nil {
		return out
	}
	copy(out.uuid[:], s.IfUUID.EncodeBinary())
	out.major, out.minor = s.IfVersionMajor, s.IfVersionMinor
	return out
}

var (
	// NDR 2.0, 8a885d04-1ceb-11c9-9fe8-08002b104860 v2 (C706 14).
	syntaxNDR20 = toSyntax(msdcerpc.TransferNDRSyntaxV2_0)
	// The prefix 6cb71c2c-9812-4540 of bind time feature negotiation
	// ([MS-RPCE] 3.3.1.5.3), in wire order.
	featurePrefix = [8]byte{0x2c, 0x1c, 0xb7, 0x6c, 0x12, 0x98, 0x40, 0x45}
)

// isFeatureNegotiation reports whether s is the bind time feature
// negotiation transfer syntax, and returns its bitmask's first octet.
func isFeatureNegotiation(s syntaxID) (uint8, bool) {
	if [8]byte(s.uuid[:8]) != featurePrefix || s.major != 1 || s.minor != 0 {
		return 0, false
	}
	return s.uuid[8], true
}

// header is the common header of every connection-oriented PDU (C706
// 12.6.3.1).
type header struct {
	versMinor uint8
	ptype     uint8
	flags     uint8
	drep      [4]byte
	fragLen   uint16
	authLen   uint16
	callID    uint32
}

// parseHeader decodes and checks the common header: version 5.0 or 5.1,
// a frag_length between the header size and maxFrag, and an auth_length
// that fits. A PDU in another data representation than little-endian
// ASCII IEEE returns its header (decoded in its own byte order, so that
// the PDU can be skipped and a bind answered) with errDataRep.
func parseHeader(b []byte, maxFrag int) (header, error) {
	var h header
	if len(b) < headerLen {
		return h, fmt.Errorf("%w: short header", errMalformed)
	}
	if b[0] != 5 || b[1] > 1 {
		return h, fmt.Errorf("%w %d.%d", errVersion, b[0], b[1])
	}
	h.versMinor, h.ptype, h.flags = b[1], b[2], b[3]
	copy(h.drep[:], b[4:8])
	var order binary.ByteOrder = binary.LittleEndian
	if h.drep[0]&0xf0 == 0 {
		order = binary.BigEndian
	}
	h.fragLen = order.Uint16(b[8:])
	h.authLen = order.Uint16(b[10:])
	h.callID = order.Uint32(b[12:])
	if int(h.fragLen) < headerLen || int(h.fragLen) > maxFrag {
		return h, fmt.Errorf("%w: frag_length %d outside %d..%d", errMalformed, h.fragLen, headerLen, maxFrag)
	}
	if h.authLen != 0 && headerLen+secTrailerLen+int(h.authLen) > int(h.fragLen) {
		return h, fmt.Errorf("%w: auth_length %d does not fit frag_length %d", errMalformed, h.authLen, h.fragLen)
	}
	// The format label (C706 14.1): integers little-endian, characters
	// ASCII, floating point IEEE, as Windows sends; other
	// representations are refused.
	if h.drep[0] != 0x10 || h.drep[1] != 0 {
		return h, fmt.Errorf("%w %x", errDataRep, h.drep[:2])
	}
	return h, nil
}

// readPDU reads one PDU from r and returns its header and bytes, a slice
// of *buf. *buf is allocated (maxFrag bytes) once a valid header has
// arrived, so a connection that never sends one costs no buffer; nothing
// is sized by the peer.
func readPDU(r io.Reader, buf *[]byte, maxFrag int) (header, []byte, error) {
	var hb [headerLen]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return header{}, nil, err
	}
	h, herr := parseHeader(hb[:], maxFrag)
	if herr != nil && !errors.Is(herr, errDataRep) {
		return h, nil, herr
	}
	if len(*buf) < maxFrag {
		*buf = make([]byte, maxFrag)
	}
	frag := (*buf)[:h.fragLen]
	copy(frag, hb[:])
	if _, err := io.ReadFull(r, frag[headerLen:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return h, nil, err
	}
	return h, frag, herr
}

// authVerifier is the sec_trailer and auth_value at the end of a PDU
// ([MS-RPCE] 2.2.2.11, C706 13.2.6.1).
type authVerifier struct {
	authType   uint8
	level      uint8
	padLen     uint8
	ctxID      uint32
	token      []byte // auth_value (aliases the PDU)
	trailerOff int    // offset of the sec_trailer in the PDU
}

// parseAuth locates the verifier of a PDU whose body starts at
// bodyStart. It returns nil when auth_length is 0; end is where the body
// (with its auth padding) ends.
func parseAuth(h header, frag []byte, bodyStart int) (v *authVerifier, end int, err error) {
	if h.authLen == 0 {
		return nil, len(frag), nil
	}
	off := len(frag) - int(h.authLen) - secTrailerLen
	if off < bodyStart {
		return nil, 0, fmt.Errorf("%w: sec_trailer at %d overlaps the PDU header (%d bytes)", errMalformed, off, bodyStart)
	}
	t := frag[off:]
	v = &authVerifier{
		authType:   t[0],
		level:      t[1],
		padLen:     t[2],
		ctxID:      binary.LittleEndian.Uint32(t[4:]),
		token:      frag[len(frag)-int(h.authLen):],
		trailerOff: off,
	}
	return v, off, nil
}

// presContext is one p_cont_elem_t of a bind or alter_context.
type presContext struct {
	id        uint16
	abstract  syntaxID
	transfers []syntaxID
}

// bindPDU is a bind or alter_context (C706 12.6.4.3, 12.6.4.1).
type bindPDU struct {
	maxXmit, maxRecv uint16
	assocGroup       uint32
	contexts         []presContext
	auth             *authVerifier
}

// maxContexts bounds the presentation contexts of one connection.
const maxContexts = 64

func parseBind(h header, frag []byte) (*bindPDU, error) {
	auth, end, err := parseAuth(h, frag, headerLen+12)
	if err != nil {
		return nil, err
	}
	if end < headerLen+12 {
		return nil, fmt.Errorf("%w: short bind", errMalformed)
	}
	b := &bindPDU{
		maxXmit:    binary.LittleEndian.Uint16(frag[16:]),
		maxRecv:    binary.LittleEndian.Uint16(frag[18:]),
		assocGroup: binary.LittleEndian.Uint32(frag[20:]),
		auth:       auth,
	}
	n := int(frag[24])
	p := headerLen + 12
	for i := 0; i < n; i++ {
		if p+4+syntaxLen > end {
			return nil, fmt.Errorf("%w: presentation context %d truncated", errMalformed, i)
		}
		pc := presContext{id: binary.LittleEndian.Uint16(frag[p:])}
		nt := int(frag[p+2])
		pc.abstract = readSyntax(frag[p+4:])
		p += 4 + syntaxLen
		if p+nt*syntaxLen > end {
			return nil, fmt.Errorf("%w: transfer syntaxes of context %d truncated", errMalformed, pc.id)
		}
		pc.transfers = make([]syntaxID, nt)
		for j := range pc.transfers {
			pc.transfers[j] = readSyntax(frag[p:])
			p += syntaxLen
		}
		b.contexts = append(b.contexts, pc)
	}
	return b, nil
}

// requestPDU is a request fragment (C706 12.6.4.9).
type requestPDU struct {
	allocHint uint32
	ctxID     uint16
	opnum     uint16
	object    *[uuidLen]byte
	stubOff   int // start of the stub in the PDU
	bodyEnd   int // end of stub and auth padding (the sec_trailer, or the PDU's end)
	auth      *authVerifier
}

func parseRequest(h header, frag []byte) (*requestPDU, error) {
	start := requestHeaderLen
	if h.flags&pfcObjectUUID != 0 {
		start += uuidLen
	}
	if len(frag) < start {
		return nil, fmt.Errorf("%w: short request", errMalformed)
	}
	auth, end, err := parseAuth(h, frag, start)
	if err != nil {
		return nil, err
	}
	r := &requestPDU{
		allocHint: binary.LittleEndian.Uint32(frag[16:]),
		ctxID:     binary.LittleEndian.Uint16(frag[20:]),
		opnum:     binary.LittleEndian.Uint16(frag[22:]),
		stubOff:   start,
		bodyEnd:   end,
		auth:      auth,
	}
	if h.flags&pfcObjectUUID != 0 {
		var u [uuidLen]byte
		copy(u[:], frag[requestHeaderLen:])
		r.object = &u
	}
	if auth != nil && int(auth.padLen) > end-start {
		return nil, fmt.Errorf("%w: auth_pad_length %d longer than the stub", errMalformed, auth.padLen)
	}
	return r, nil
}

// decodePDU parses a PDU of the types the server receives. It is what
// the connection uses, and what FuzzReadPDU exercises.
func decodePDU(h header, frag []byte) (any, error) {
	switch h.ptype {
	case ptypeBind, ptypeAlterContext:
		return parseBind(h, frag)
	case ptypeRequest:
		return parseRequest(h, frag)
	case ptypeAuth3:
		v, _, err := parseAuth(h, frag, headerLen)
		if err == nil && v == nil {
			err = fmt.Errorf("%w: auth3 without a verifier", errMalformed)
		}
		return v, err
	case ptypeCoCancel, ptypeOrphaned, ptypeShutdown:
		return nil, nil
	}
	return nil, fmt.Errorf("%w: unexpected PDU type %d", errMalformed, h.ptype)
}

// putHeader writes a common header (little-endian, ASCII, IEEE).
func putHeader(b []byte, versMinor, ptype, flags uint8, fragLen, authLen int, callID uint32) {
	b[0], b[1], b[2], b[3] = 5, versMinor, ptype, flags
	b[4], b[5], b[6], b[7] = 0x10, 0, 0, 0
	binary.LittleEndian.PutUint16(b[8:], uint16(fragLen))
	binary.LittleEndian.PutUint16(b[10:], uint16(authLen))
	binary.LittleEndian.PutUint32(b[12:], callID)
}

// ctxResult is one p_result_t of a bind_ack or alter_context_resp.
type ctxResult struct {
	result, reason uint16
	transfer       syntaxID
}

// authOut is the verifier the server appends to a bind_ack or
// alter_context_resp.
type authOut struct {
	authType, level uint8
	ctxID           uint32
	token           []byte
}

// appendBindAck builds a bind_ack or alter_context_resp (C706 12.6.4.4,
// 12.6.4.2): an alter_context_resp carries an empty secondary address.
func appendBindAck(dst []byte, ptype, versMinor, flags uint8, callID uint32, maxXmit, maxRecv int, assoc uint32, secAddr string, results []ctxResult, auth *authOut) ([]byte, error) {
	start := len(dst)
	dst = append(dst, make([]byte, headerLen)...)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(maxXmit))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(maxRecv))
	dst = binary.LittleEndian.AppendUint32(dst, assoc)
	if secAddr == "" {
		dst = binary.LittleEndian.AppendUint16(dst, 0)
	} else {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(secAddr)+1))
		dst = append(dst, secAddr...)
		dst = append(dst, 0)
	}
	for (len(dst)-start)%4 != 0 {
		dst = append(dst, 0)
	}
	dst = append(dst, uint8(len(results)), 0, 0, 0)
	for _, r := range results {
		dst = binary.LittleEndian.AppendUint16(dst, r.result)
		dst = binary.LittleEndian.AppendUint16(dst, r.reason)
		dst = appendSyntax(dst, r.transfer)
	}
	authLen := 0
	if auth != nil {
		pad := (4 - (len(dst)-start)%4) % 4
		dst = append(dst, make([]byte, pad)...)
		dst = append(dst, auth.authType, auth.level, uint8(pad), 0)
		dst = binary.LittleEndian.AppendUint32(dst, auth.ctxID)
		dst = append(dst, auth.token...)
		authLen = len(auth.token)
	}
	n := len(dst) - start
	if n > 0xffff {
		return nil, fmt.Errorf("bind_ack of %d bytes exceeds a fragment", n)
	}
	putHeader(dst[start:], versMinor, ptype, flags, n, authLen, callID)
	return dst, nil
}

// appendBindNak builds a bind_nak (C706 12.6.4.5) listing version 5.0.
func appendBindNak(dst []byte, versMinor uint8, callID uint32, reason uint16) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, headerLen)...)
	dst = binary.LittleEndian.AppendUint16(dst, reason)
	dst = append(dst, 1, 5, 0, 0, 0, 0) // one version (5.0), padding to 4
	putHeader(dst[start:], versMinor, ptypeBindNak, pfcFirstFrag|pfcLastFrag, len(dst)-start, 0, callID)
	return dst
}

// faultLen is the size of a fault PDU without stub data.
const faultLen = 32

// appendFault builds a fault PDU (C706 12.6.4.7) with a nonzero status.
func appendFault(dst []byte, versMinor uint8, callID uint32, ctxID uint16, status uint32, didNotExecute bool) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, faultLen)...)
	flags := pfcFirstFrag | pfcLastFrag
	if didNotExecute {
		flags |= pfcDidNotExecute
	}
	b := dst[start:]
	putHeader(b, versMinor, ptypeFault, flags, faultLen, 0, callID)
	binary.LittleEndian.PutUint16(b[20:], ctxID)
	binary.LittleEndian.PutUint32(b[24:], status)
	return dst
}

// appendShutdown builds a shutdown PDU (C706 12.6.4.11).
func appendShutdown(dst []byte, versMinor uint8) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, headerLen)...)
	putHeader(dst[start:], versMinor, ptypeShutdown, pfcFirstFrag|pfcLastFrag, headerLen, 0, 0)
	return dst
}

// verificationTrailerSignature starts an rpc_sec_verification_trailer
// ([MS-RPCE] 2.2.2.13).
var verificationTrailerSignature = msdcerpc.VerificationTrailerSignature

// stripVerificationTrailer removes a verification trailer from the end of
// a request stub: it must start 4-byte aligned with the signature and its
// commands must run exactly to the end, the last one flagged
// SEC_VT_COMMAND_END. Anything else is left alone (it is stub data).
func stripVerificationTrailer(stub []byte) []byte {
	const maxTrailer = 1024
	lo := max(0, len(stub)-maxTrailer)
	for off := (len(stub) - len(verificationTrailerSignature)) &^ 3; off >= lo; off -= 4 {
		if [8]byte(stub[off:off+8]) != verificationTrailerSignature {
			continue
		}
		if trailerCommandsEnd(stub[off+8:]) {
			return stub[:off]
		}
	}
	return stub
}

// trailerCommandsEnd reports whether b is a run of verification trailer
// commands (type, length, value) whose last command, flagged
// SEC_VT_COMMAND_END (0x4000), ends exactly at the end of b.
func trailerCommandsEnd(b []byte) bool {
	for len(b) >= 4 {
		cmd := binary.LittleEndian.Uint16(b)
		n := int(binary.LittleEndian.Uint16(b[2:]))
		if 4+n > len(b) {
			return false
		}
		b = b[4+n:]
		if cmd&0x4000 != 0 {
			return len(b) == 0
		}
	}
	return false
}
