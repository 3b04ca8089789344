package agent

import (
	"encoding/binary"
	"net"
	"sync/atomic"
)

// unsignedReads is the connection under go-smb2 for a transfer whose
// bytes are checked against a SHA-256 that came over the sealed RPC
// channel. go-smb2 signs every request of a session, and a server signs
// the response to a signed request ([MS-SMB2] 3.3.4.1.1): each READ
// response is then AES-CMACed by the server and checked by the client, a
// pass over every byte on each side that costs more than the transfer
// itself. As Samba's smbclient does by default, READ requests go
// unsigned unless the server requires signing (its NEGOTIATE response
// says SIGNING_REQUIRED): the server then answers them unsigned. Every
// other request stays signed (TREE_CONNECT must be, [MS-SMB2]
// 3.2.4.1.1), and encrypted messages are passed through.
//
// The wrapper sees go-smb2's byte stream, framed by the 4-byte Direct
// TCP header ([MS-SMB2] 2.1): on the way out it holds a frame's first
// bytes until the SMB2 header is complete, clears the READ's SIGNED flag
// and signature in its own copy, and writes the frame on; on the way in
// it reads the NEGOTIATE responses' security mode.
type unsignedReads struct {
	net.Conn

	// Outgoing.
	out     [frameHdrLen + smb2HdrLen]byte // a frame's start, held
	outN    int                            // bytes in out
	outLeft int                            // bytes of the current frame not yet seen, after out

	// Incoming.
	in       [frameHdrLen + smb2HdrLen + 4]byte // a frame's start, for NEGOTIATE
	inN      int
	inLeft   int // bytes of the current frame after in
	inFrame  int // the current frame's length
	negSeen  atomic.Bool
	required atomic.Bool // the server requires signing

	unsigned atomic.Int64 // READ requests sent unsigned
}

const (
	frameHdrLen = 4
	smb2HdrLen  = 64

	smb2FlagResponse = 0x00000001
	smb2FlagSigned   = 0x00000008
	smb2CmdNegotiate = 0x0000
	smb2CmdRead      = 0x0008
	smb2SigningReq   = 0x0002
)

var smb2Magic = [4]byte{0xfe, 'S', 'M', 'B'}

func (c *unsignedReads) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if c.outLeft > 0 {
			// Inside a frame whose header went out: pass it on.
			k := min(len(p), c.outLeft)
			if _, err := c.Conn.Write(p[:k]); err != nil {
				return total - len(p), err
			}
			c.outLeft -= k
			p = p[k:]
			continue
		}
		// A frame starts: hold its first bytes, up to the end of the
		// SMB2 header.
		if c.outN < frameHdrLen {
			k := copy(c.out[c.outN:frameHdrLen], p)
			c.outN += k
			p = p[k:]
			if c.outN < frameHdrLen {
				continue
			}
		}
		flen := int(binary.BigEndian.Uint32(c.out[:4]) & 0xffffff)
		need := frameHdrLen + min(flen, smb2HdrLen)
		k := copy(c.out[c.outN:need], p)
		c.outN += k
		p = p[k:]
		if c.outN < need {
			continue
		}
		c.unsign(c.out[frameHdrLen:c.outN])
		// The held start and what follows of the frame, in one write.
		k = min(len(p), flen-(c.outN-frameHdrLen))
		bufs := net.Buffers{c.out[:c.outN], p[:k]}
		c.outLeft = flen - (c.outN - frameHdrLen) - k
		c.outN = 0
		if _, err := bufs.WriteTo(c.Conn); err != nil {
			return total - len(p), err
		}
		p = p[k:]
	}
	return total, nil
}

// unsign clears the signature of a READ request when the server does
// not require signing.
func (c *unsignedReads) unsign(m []byte) {
	if len(m) < smb2HdrLen || [4]byte(m[:4]) != smb2Magic || !c.negSeen.Load() || c.required.Load() {
		return
	}
	flags := binary.LittleEndian.Uint32(m[16:])
	if binary.LittleEndian.Uint16(m[12:]) != smb2CmdRead || flags&smb2FlagSigned == 0 || binary.LittleEndian.Uint32(m[20:]) != 0 {
		return // not a lone signed READ
	}
	binary.LittleEndian.PutUint32(m[16:], flags&^smb2FlagSigned)
	clear(m[48:64])
	c.unsigned.Add(1)
}

func (c *unsignedReads) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.watch(p[:n])
	return n, err
}

// watch follows the incoming frames and reads each NEGOTIATE response's
// security mode.
func (c *unsignedReads) watch(p []byte) {
	for len(p) > 0 {
		if c.inLeft > 0 {
			k := min(len(p), c.inLeft)
			c.inLeft -= k
			p = p[k:]
			continue
		}
		if c.inN < frameHdrLen {
			k := copy(c.in[c.inN:frameHdrLen], p)
			c.inN += k
			p = p[k:]
			if c.inN < frameHdrLen {
				return
			}
			c.inFrame = int(binary.BigEndian.Uint32(c.in[:4]) & 0xffffff)
		}
		end := frameHdrLen + min(c.inFrame, len(c.in)-frameHdrLen)
		k := copy(c.in[c.inN:end], p)
		c.inN += k
		p = p[k:]
		if c.inN < end {
			return
		}
		m := c.in[frameHdrLen:end]
		if len(m) >= smb2HdrLen+4 && [4]byte(m[:4]) == smb2Magic &&
			binary.LittleEndian.Uint16(m[12:]) == smb2CmdNegotiate && binary.LittleEndian.Uint32(m[16:])&smb2FlagResponse != 0 {
			c.required.Store(binary.LittleEndian.Uint16(m[smb2HdrLen+2:])&smb2SigningReq != 0)
			c.negSeen.Store(true)
		}
		c.inLeft = c.inFrame - (end - frameHdrLen)
		c.inN = 0
	}
}
