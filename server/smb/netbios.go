package smb

import (
	"fmt"
	"io"
	"time"
)

// NetBIOS session service packet types ([RFC 1002] 4.3.1).
const (
	nbSessionMessage  = 0x00
	nbSessionRequest  = 0x81
	nbPositiveResp    = 0x82
	nbNegativeResp    = 0x83
	nbKeepAlive       = 0x85
	nbCalledNameError = 0x82 // "Called name not present" ([RFC 1002] 4.3.4)

	// A SESSION REQUEST carries two encoded NetBIOS names ([RFC 1002]
	// 4.1.1, 14): each a length byte of 32, 32 half-ASCII bytes and a
	// zero label, possibly with a scope.
	nbMaxRequest = 2 * 256
)

// netbiosHandshake answers the SESSION REQUEST that opens a port-139
// connection ([RFC 1002] 4.3.2, 5.3.2) with a POSITIVE SESSION RESPONSE:
// the server answers to any called name, as Windows does for
// *SMBSERVER. Keep-alives before it are skipped.
func (c *conn) netbiosHandshake() error {
	c.nc.SetReadDeadline(time.Now().Add(c.srv.handshakeTimeout()))
	for {
		if _, err := io.ReadFull(c.nc, c.hdr[:]); err != nil {
			return err
		}
		n := int(c.hdr[1]&1)<<16 | int(c.hdr[2])<<8 | int(c.hdr[3])
		switch c.hdr[0] {
		case nbKeepAlive:
			if n != 0 {
				return fmt.Errorf("smb: netbios keep-alive with %d bytes", n)
			}
			continue
		case nbSessionRequest:
		default:
			return fmt.Errorf("smb: netbios packet type 0x%02x before SESSION REQUEST", c.hdr[0])
		}
		if n > nbMaxRequest {
			return fmt.Errorf("smb: netbios SESSION REQUEST of %d bytes", n)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c.nc, body); err != nil {
			return err
		}
		called, rest, err := parseNetBIOSName(body)
		if err == nil {
			_, _, err = parseNetBIOSName(rest)
		}
		if err != nil {
			c.nc.Write([]byte{nbNegativeResp, 0, 0, 1, nbCalledNameError})
			return err
		}
		c.log.Debug("smb netbios session", "called", called)
		_, err = c.nc.Write([]byte{nbPositiveResp, 0, 0, 0})
		return err
	}
}

// parseNetBIOSName decodes a first-level encoded NetBIOS name ([RFC
// 1001] 14.1, [RFC 1002] 4.1): 32 bytes of 'A'..'P' halves, then scope
// labels up to a zero length.
func parseNetBIOSName(b []byte) (string, []byte, error) {
	if len(b) < 34 || b[0] != 32 {
		return "", nil, fmt.Errorf("smb: malformed NetBIOS name")
	}
	var name [16]byte
	for i := range 16 {
		hi, lo := b[1+2*i]-'A', b[2+2*i]-'A'
		if hi > 15 || lo > 15 {
			return "", nil, fmt.Errorf("smb: malformed NetBIOS name")
		}
		name[i] = hi<<4 | lo
	}
	p := 33
	for {
		if p >= len(b) {
			return "", nil, fmt.Errorf("smb: NetBIOS name without its end")
		}
		l := int(b[p])
		if l == 0 {
			p++
			break
		}
		if l > 63 || p+1+l > len(b) {
			return "", nil, fmt.Errorf("smb: malformed NetBIOS scope")
		}
		p += 1 + l
	}
	s := string(name[:15])
	for len(s) > 0 && s[len(s)-1] == ' ' {
		s = s[:len(s)-1]
	}
	return s, b[p:], nil
}
