package smb

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/netdeploy/netdeploy/server/ntlmssp"
)

// NEGOTIATE ([MS-SMB2] 2.2.3, 2.2.4, 3.3.5.3, 3.3.5.4).
const (
	secModeSigningEnabled  = 0x0001
	secModeSigningRequired = 0x0002

	capDFS        = 0x00000001
	capLeasing    = 0x00000002
	capLargeMTU   = 0x00000004
	capEncryption = 0x00000040

	ctxPreauth    = 0x0001
	ctxEncryption = 0x0002
	ctxSigning    = 0x0008

	hashSHA512 = 0x0001

	cipherCCM = 0x0001
	cipherGCM = 0x0002

	signHMAC = 0x0000
	signCMAC = 0x0001
	signGMAC = 0x0002

	negotiateRespFixed = 64 // the response body up to Buffer
)

// serverDialects in preference order, highest first.
var serverDialects = []uint16{dialect311, dialect302, dialect300, dialect210, dialect202}

// negotiate handles an SMB2 NEGOTIATE request ([MS-SMB2] 3.3.5.4).
func (c *conn) negotiate(r *request, w *response) (Status, error) {
	if c.dialect != 0 && c.dialect != dialectWildcard {
		return 0, fmt.Errorf("smb: second NEGOTIATE")
	}
	b := r.body()
	if len(b) < 36 || binary.LittleEndian.Uint16(b) != 36 {
		return 0, fmt.Errorf("smb: NEGOTIATE of %d bytes", len(b))
	}
	count := int(binary.LittleEndian.Uint16(b[2:]))
	if count == 0 || 36+2*count > len(b) {
		return 0, fmt.Errorf("smb: NEGOTIATE with %d dialects in %d bytes", count, len(b))
	}
	c.clientSecMode = binary.LittleEndian.Uint16(b[4:])
	c.clientCaps = binary.LittleEndian.Uint32(b[8:])
	copy(c.clientGUID[:], b[12:28])
	var offered []uint16
	for i := range count {
		offered = append(offered, binary.LittleEndian.Uint16(b[36+2*i:]))
	}
	dialect := uint16(0)
	for _, d := range serverDialects {
		for _, o := range offered {
			if o == d && dialect == 0 {
				dialect = d
			}
		}
	}
	if dialect == 0 {
		c.log.Info("smb no common dialect", "offered", fmt.Sprintf("%04x", offered))
		return 0, fmt.Errorf("smb: no common dialect in %04x", offered)
	}
	var ctxs []byte
	if dialect == dialect311 {
		ctxOff := binary.LittleEndian.Uint32(b[28:])
		ctxCount := int(binary.LittleEndian.Uint16(b[32:]))
		var st Status
		ctxs, st = c.negotiateContexts(r.msg, ctxOff, ctxCount)
		if st != StatusSuccess {
			return st, nil
		}
	}
	c.dialect = dialect
	c.serverSecMode = secModeSigningEnabled
	if c.srv.RequireSigning {
		c.serverSecMode |= secModeSigningRequired
	}
	if dialect != dialect202 {
		c.serverCaps |= capLargeMTU
	}
	if (dialect == dialect300 || dialect == dialect302) && c.clientCaps&capEncryption != 0 {
		c.serverCaps |= capEncryption
		c.cipher = cipherCCM
	}
	if dialect == dialect300 || dialect == dialect302 {
		c.signAlg = signCMAC
	}
	c.writeNegotiateResponse(w, dialect, ctxs, len(ctxs) > 0)
	c.log.Debug("smb negotiated", "dialect", dialectName(dialect), "cipher", c.cipher, "signing", c.signAlg)
	return StatusSuccess, nil
}

// writeNegotiateResponse writes the NEGOTIATE response body ([MS-SMB2]
// 2.2.4) with the SPNEGO hint as the security buffer and, for 3.1.1,
// the negotiate contexts after it.
func (c *conn) writeNegotiateResponse(w *response, dialect uint16, ctxs []byte, is311 bool) {
	maxRead := uint32(maxReadSize)
	maxWrite := uint32(maxWriteSize)
	if dialect == dialect202 || dialect == dialectWildcard {
		maxRead, maxWrite = 65536, 65536
	}
	hint := ntlmssp.NegTokenInitHint()
	w.buf.u16(65)
	w.buf.u16(c.serverSecMode)
	w.buf.u16(dialect)
	ctxCount := 0
	if is311 {
		ctxCount = int(binary.LittleEndian.Uint16(ctxs[:2]))
		ctxs = ctxs[2:]
	}
	w.buf.u16(uint16(ctxCount))
	w.buf.bytes(c.srv.guid[:])
	w.buf.u32(c.serverCaps)
	w.buf.u32(maxRead) // MaxTransactSize
	w.buf.u32(maxRead)
	w.buf.u32(maxWrite)
	w.buf.u64(filetime(time.Now()))
	w.buf.u64(0) // ServerStartTime
	w.buf.u16(headerLen + negotiateRespFixed)
	w.buf.u16(uint16(len(hint)))
	ctxOffPos := len(w.buf)
	w.buf.u32(0)
	w.buf.bytes(hint)
	if is311 {
		w.buf.align(8)
		w.buf.at32(ctxOffPos, uint32(len(w.buf)))
		w.buf.bytes(ctxs)
	}
}

// negotiateContexts parses the 3.1.1 negotiate contexts ([MS-SMB2]
// 2.2.3.1) and returns the response's contexts, prefixed with their
// count.
func (c *conn) negotiateContexts(msg []byte, off uint32, count int) ([]byte, Status) {
	if count == 0 || off%8 != 0 || uint64(off) > uint64(len(msg)) {
		return nil, StatusInvalidParameter
	}
	p := msg[off:]
	var preauth, enc, sign bool
	var ciphers, algs []uint16
	for i := range count {
		if len(p) < 8 {
			return nil, StatusInvalidParameter
		}
		typ := binary.LittleEndian.Uint16(p)
		n := int(binary.LittleEndian.Uint16(p[2:]))
		if 8+n > len(p) {
			return nil, StatusInvalidParameter
		}
		data := p[8 : 8+n]
		switch typ {
		case ctxPreauth:
			if preauth || len(data) < 4 {
				return nil, StatusInvalidParameter
			}
			hc := int(binary.LittleEndian.Uint16(data))
			if hc == 0 || 4+2*hc > len(data) {
				return nil, StatusInvalidParameter
			}
			found := false
			for j := range hc {
				if binary.LittleEndian.Uint16(data[4+2*j:]) == hashSHA512 {
					found = true
				}
			}
			if !found {
				return nil, StatusSMBNoPreauthIntegrityHashOverlap
			}
			preauth = true
		case ctxEncryption:
			if enc || len(data) < 2 {
				return nil, StatusInvalidParameter
			}
			cc := int(binary.LittleEndian.Uint16(data))
			if cc == 0 || 2+2*cc > len(data) {
				return nil, StatusInvalidParameter
			}
			for j := range cc {
				ciphers = append(ciphers, binary.LittleEndian.Uint16(data[2+2*j:]))
			}
			enc = true
		case ctxSigning:
			if sign || len(data) < 2 {
				return nil, StatusInvalidParameter
			}
			sc := int(binary.LittleEndian.Uint16(data))
			if sc == 0 || 2+2*sc > len(data) {
				return nil, StatusInvalidParameter
			}
			for j := range sc {
				algs = append(algs, binary.LittleEndian.Uint16(data[2+2*j:]))
			}
			sign = true
		}
		if i < count-1 {
			adv := (8 + n + 7) &^ 7
			if adv > len(p) {
				return nil, StatusInvalidParameter
			}
			p = p[adv:]
		}
	}
	if !preauth {
		return nil, StatusInvalidParameter
	}
	var out le
	n := uint16(1)
	// Preauth integrity: SHA-512 with a 32-byte salt.
	salt := make([]byte, 32)
	randRead(salt)
	ctx := func(typ uint16, data []byte) {
		out.align(8)
		out.u16(typ)
		out.u16(uint16(len(data)))
		out.u32(0)
		out.bytes(data)
	}
	var d le
	d.u16(1)
	d.u16(32)
	d.u16(hashSHA512)
	d.bytes(salt)
	ctx(ctxPreauth, d)
	if enc {
		c.cipher = 0
		for _, want := range []uint16{cipherGCM, cipherCCM} {
			if c.cipher == 0 && bytes.Contains(u16s(ciphers), u16s([]uint16{want})) {
				c.cipher = want
			}
		}
		d = nil
		d.u16(1)
		d.u16(c.cipher)
		ctx(ctxEncryption, d)
		n++
	}
	c.signAlg = signCMAC
	if sign {
		for _, want := range []uint16{signGMAC, signCMAC} {
			if bytes.Contains(u16s(algs), u16s([]uint16{want})) {
				c.signAlg = want
				break
			}
		}
		d = nil
		d.u16(1)
		d.u16(c.signAlg)
		ctx(ctxSigning, d)
		n++
	}
	return append(binary.LittleEndian.AppendUint16(nil, n), out...), StatusSuccess
}

// StatusSMBNoPreauthIntegrityHashOverlap: no common preauth hash.
const StatusSMBNoPreauthIntegrityHashOverlap Status = 0xC05D0000

// u16s encodes values for a 2-byte aligned search.
func u16s(v []uint16) []byte {
	var b le
	for _, x := range v {
		b.u16(x)
	}
	return b
}

// handleSMB1 answers an SMB1 multi-protocol NEGOTIATE ([MS-SMB2]
// 3.3.5.3.1) with an SMB2 NEGOTIATE response: dialect 0x02FF when the
// client offers "SMB 2.???", else 2.0.2 when it offers "SMB 2.002". Any
// other SMB1 message drops the connection.
func (c *conn) handleSMB1(msg []byte) error {
	if c.dialect != 0 || c.smb1Done {
		return fmt.Errorf("smb: SMB1 message after NEGOTIATE")
	}
	// SMB1 header ([MS-CIFS] 2.2.3.1): 32 bytes, command at 4.
	if len(msg) < 35 || msg[4] != 0x72 {
		return fmt.Errorf("smb: SMB1 message that is not a NEGOTIATE")
	}
	words := int(msg[32])
	p := 33 + 2*words
	if p+2 > len(msg) {
		return fmt.Errorf("smb: short SMB1 NEGOTIATE")
	}
	n := int(binary.LittleEndian.Uint16(msg[p:]))
	data := msg[p+2:]
	if n > len(data) {
		return fmt.Errorf("smb: SMB1 NEGOTIATE byte count %d beyond %d", n, len(data))
	}
	var wildcard, smb2002 bool
	for _, d := range bytes.Split(data[:n], []byte{0}) {
		if len(d) < 1 || d[0] != 0x02 {
			continue
		}
		switch string(d[1:]) {
		case "SMB 2.???":
			wildcard = true
		case "SMB 2.002":
			smb2002 = true
		}
	}
	dialect := uint16(0)
	switch {
	case wildcard:
		dialect = dialectWildcard
	case smb2002:
		dialect = dialect202
	default:
		return fmt.Errorf("smb: SMB1 NEGOTIATE without an SMB2 dialect")
	}
	c.smb1Done = true
	c.serverSecMode = secModeSigningEnabled
	if c.srv.RequireSigning {
		c.serverSecMode |= secModeSigningRequired
	}
	if dialect == dialect202 {
		c.dialect = dialect202
	}
	w := newResponse()
	c.writeNegotiateResponse(w, dialect, nil, false)
	// The response has MessageId 0; it consumes that id.
	c.credits.consume(0, 1)
	h := header{Command: cmdNegotiate, Flags: flagResponse, Credits: c.credits.grant(1)}
	h.put(w.buf)
	return c.writeFrame(w.buf)
}
