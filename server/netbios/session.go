package netbios

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// The session service (RFC 1002 section 4.3) frames a TCP stream on port
// 139 into session packets: a 4-byte header TYPE, FLAGS, LENGTH, then
// LENGTH bytes. The lowest bit of FLAGS (E, section 4.3.1) is the 17th
// bit of the length. A client opens with a SESSION REQUEST naming the
// server (the called name) and itself (the calling name), the server
// accepts with a POSITIVE SESSION RESPONSE or refuses with a NEGATIVE
// SESSION RESPONSE and its code, and then both send SESSION MESSAGEs, one
// SMB message each, with SESSION KEEP ALIVEs in between.
//
// SMB2 over "direct TCP" on port 445 ([MS-SMB2] section 2.1) keeps the
// same 4-byte header without the session request: a zero byte, then a
// 24-bit length (StreamProtocolLength). ReadFrame and WriteFrame handle
// both; Framing says which.

// Session packet types (RFC 1002 section 4.3.1).
const (
	TypeSessionMessage   = 0x00
	TypeSessionRequest   = 0x81
	TypePositiveResponse = 0x82
	TypeNegativeResponse = 0x83
	TypeRetargetResponse = 0x84
	TypeKeepAlive        = 0x85
)

// NegativeCode is the error code of a NEGATIVE SESSION RESPONSE (RFC 1002
// section 4.3.4).
type NegativeCode byte

// Negative session response codes (RFC 1002 section 4.3.4).
const (
	NotListeningOnCalled   NegativeCode = 0x80 // not listening on the called name
	NotListeningForCalling NegativeCode = 0x81 // not listening for the calling name
	CalledNotPresent       NegativeCode = 0x82 // called name not present
	InsufficientResources  NegativeCode = 0x83 // called name present, but insufficient resources
	UnspecifiedError       NegativeCode = 0x8f
)

// Framing is how session messages are delimited on a stream.
type Framing int

const (
	// NetBIOS is the session service on TCP 139 (RFC 1002 section
	// 4.3.1): TYPE 0x00, FLAGS with only the E bit, a 17-bit length
	// (at most 131071 bytes).
	NetBIOS Framing = iota
	// Direct is SMB2's direct TCP on 445 ([MS-SMB2] section 2.1): a zero
	// byte and a 24-bit length (at most 16777215 bytes).
	Direct
)

// MaxLen is the longest message the framing can carry.
func (f Framing) MaxLen() int {
	if f == Direct {
		return 1<<24 - 1
	}
	return 1<<17 - 1
}

func (f Framing) String() string {
	if f == Direct {
		return "direct TCP"
	}
	return "NetBIOS session"
}

// ErrTooLarge is wrapped by ReadFrame's error for a message longer than
// the caller's maximum, and WriteFrame's for one the framing cannot carry.
var ErrTooLarge = errors.New("netbios: session message too large")

// maxSessionRequest is the longest SESSION REQUEST body: two names of at
// most 255 bytes each (RFC 1002 section 4.3.2).
const maxSessionRequest = 2 * maxNameLen

// ReadSessionRequest reads the SESSION REQUEST (RFC 1002 section 4.3.2)
// that opens a connection on port 139, skipping keep-alives before it,
// and returns the called and calling names in nmblookup's form
// "NAME<xx>" (the name without its padding, then the suffix in hex; a
// ".scope" after it if the client uses a NetBIOS scope; bytes outside
// printable ASCII as \xNN). Clients connecting by address call
// "*SMBSERVER<20>"; Samba's smbd accepts any called name.
//
// A packet of another type, a length over 510 bytes, names that do not
// decode or bytes after them give an error wrapping ErrMalformed; answer
// it by closing the connection (or with a NEGATIVE SESSION RESPONSE).
// A stream that ends before the request gives io.EOF, or an error
// wrapping io.ErrUnexpectedEOF inside it.
func ReadSessionRequest(r io.Reader) (called, calling string, err error) {
	var h [4]byte
	for {
		if err := readHeader(r, h[:]); err != nil {
			return "", "", err
		}
		if h[0] == TypeKeepAlive && h[1] == 0 && h[2] == 0 && h[3] == 0 {
			continue
		}
		break
	}
	if h[0] != TypeSessionRequest {
		return "", "", malformed("session packet type 0x%02x, want a session request (0x81)", h[0])
	}
	n, err := netbiosLength(h[:])
	if err != nil {
		return "", "", err
	}
	if n > maxSessionRequest {
		return "", "", malformed("session request of %d bytes, more than %d", n, maxSessionRequest)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return "", "", fmt.Errorf("netbios: session request: %w", unexpected(err))
	}
	cd, next, err := decodeName(body, 0, false)
	if err != nil {
		return "", "", fmt.Errorf("called name: %w", err)
	}
	cg, next, err := decodeName(body, next, false)
	if err != nil {
		return "", "", fmt.Errorf("calling name: %w", err)
	}
	if next != len(body) {
		return "", "", malformed("%d bytes after the names of the session request", len(body)-next)
	}
	return cd.String(), cg.String(), nil
}

// WritePositiveResponse accepts a session (RFC 1002 section 4.3.3).
func WritePositiveResponse(w io.Writer) error {
	return writeAll(w, []byte{TypePositiveResponse, 0, 0, 0})
}

// WriteNegativeResponse refuses a session with code (RFC 1002 section
// 4.3.4); close the connection after it.
func WriteNegativeResponse(w io.Writer, code NegativeCode) error {
	return writeAll(w, []byte{TypeNegativeResponse, 0, 0, 1, byte(code)})
}

// ReadFrame reads the next session message of the stream and returns its
// payload (one SMB message), skipping SESSION KEEP ALIVEs (type 0x85,
// which Samba also sends on port 445). limit caps the payload length;
// limit <= 0 means the framing's own maximum. The buffer is allocated for
// the length announced, so choose limit with memory in mind.
//
// Errors: io.EOF when the stream ends cleanly between messages; one
// wrapping io.ErrUnexpectedEOF when it ends inside one; ErrTooLarge for a
// length over limit; ErrMalformed for another packet type or reserved bits
// set. After any error the stream is out of step: close it.
func ReadFrame(r io.Reader, f Framing, limit int) ([]byte, error) {
	if limit <= 0 || limit > f.MaxLen() {
		limit = f.MaxLen()
	}
	var h [4]byte
	for {
		if err := readHeader(r, h[:]); err != nil {
			return nil, err
		}
		if h[0] == TypeKeepAlive {
			if h[1] != 0 || h[2] != 0 || h[3] != 0 {
				return nil, malformed("keep-alive with flags 0x%02x and length %d", h[1], int(h[2])<<8|int(h[3]))
			}
			continue
		}
		if h[0] != TypeSessionMessage {
			return nil, malformed("session packet type 0x%02x where a session message was expected", h[0])
		}
		break
	}
	var n int
	if f == Direct {
		n = int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	} else {
		var err error
		if n, err = netbiosLength(h[:]); err != nil {
			return nil, err
		}
	}
	if n > limit {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, n, limit)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, fmt.Errorf("netbios: session message of %d bytes: %w", n, unexpected(err))
	}
	return msg, nil
}

// WriteFrame writes msg as one session message, header and payload in a
// single write where w allows (writev on a TCP connection).
func WriteFrame(w io.Writer, f Framing, msg []byte) error {
	n := len(msg)
	if n > f.MaxLen() {
		return fmt.Errorf("%w: %d bytes, more than %s carries (%d)", ErrTooLarge, n, f, f.MaxLen())
	}
	// 17 bits in NetBIOS framing put the E bit where Direct has the
	// length's top byte: one header encodes both.
	h := []byte{TypeSessionMessage, byte(n >> 16), byte(n >> 8), byte(n)}
	bufs := net.Buffers{h, msg}
	if _, err := bufs.WriteTo(w); err != nil {
		return fmt.Errorf("netbios: write session message: %w", err)
	}
	return nil
}

// readHeader reads a 4-byte session packet header: io.EOF if the stream
// ends before it, io.ErrUnexpectedEOF (wrapped) if it ends inside it.
func readHeader(r io.Reader, h []byte) error {
	if _, err := io.ReadFull(r, h); err != nil {
		if err == io.EOF {
			return io.EOF
		}
		return fmt.Errorf("netbios: session packet header: %w", err)
	}
	return nil
}

// netbiosLength is the 17-bit LENGTH of a session packet header (RFC
// 1002 section 4.3.1); FLAGS bits other than E are reserved, must be 0.
func netbiosLength(h []byte) (int, error) {
	if h[1]&^0x01 != 0 {
		return 0, malformed("session packet flags 0x%02x: reserved bits set", h[1])
	}
	return int(h[1]&1)<<16 | int(binary.BigEndian.Uint16(h[2:])), nil
}

// unexpected turns io.EOF inside a packet into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func writeAll(w io.Writer, b []byte) error {
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("netbios: write session packet: %w", err)
	}
	return nil
}
