package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Opcodes (RFC 1350 section 5, RFC 2347 for OACK).
type opcode uint16

const (
	opRRQ   opcode = 1
	opWRQ   opcode = 2
	opDATA  opcode = 3
	opACK   opcode = 4
	opERROR opcode = 5
	opOACK  opcode = 6
)

func (o opcode) String() string {
	switch o {
	case opRRQ:
		return "RRQ"
	case opWRQ:
		return "WRQ"
	case opDATA:
		return "DATA"
	case opACK:
		return "ACK"
	case opERROR:
		return "ERROR"
	case opOACK:
		return "OACK"
	}
	return fmt.Sprintf("opcode(%d)", uint16(o))
}

// Error codes (RFC 1350 appendix, RFC 2347 for code 8).
type errCode uint16

const (
	errUndefined     errCode = 0
	errNotFound      errCode = 1
	errAccess        errCode = 2
	errDiskFull      errCode = 3
	errIllegalOp     errCode = 4
	errUnknownTID    errCode = 5
	errExists        errCode = 6
	errNoUser        errCode = 7
	errOptionRefused errCode = 8
)

// maxBlockSize is the largest blksize RFC 2348 allows.
const maxBlockSize = 65464

// errMalformed is wrapped by every decode error.
var errMalformed = errors.New("tftp: malformed packet")

// option is one name/value pair of a request or OACK (RFC 2347), in wire
// order.
type option struct {
	name, value string
}

// packet is a decoded TFTP packet; which fields are set depends on op.
type packet struct {
	op opcode
	// RRQ, WRQ
	filename, mode string
	// RRQ, WRQ, OACK
	options []option
	// DATA, ACK
	block uint16
	// DATA: the payload, aliasing the decoded buffer.
	data []byte
	// ACK: the window size hint of Microsoft's variable window, 0 if absent.
	window int
	// ERROR
	code errCode
	msg  string
}

// decode parses any TFTP packet. It never retains b except for DATA's
// payload.
func decode(b []byte) (packet, error) {
	if len(b) < 2 {
		return packet{}, fmt.Errorf("%w: %d bytes", errMalformed, len(b))
	}
	op := opcode(binary.BigEndian.Uint16(b))
	switch op {
	case opRRQ, opWRQ:
		return decodeRequest(b)
	case opDATA:
		if len(b) < 4 {
			return packet{}, fmt.Errorf("%w: short DATA", errMalformed)
		}
		if len(b) > 4+maxBlockSize {
			return packet{}, fmt.Errorf("%w: DATA larger than %d bytes", errMalformed, maxBlockSize)
		}
		return packet{op: op, block: binary.BigEndian.Uint16(b[2:]), data: b[4:]}, nil
	case opACK:
		block, window, err := decodeACK(b)
		if err != nil {
			return packet{}, err
		}
		return packet{op: op, block: block, window: window}, nil
	case opERROR:
		code, msg, err := decodeError(b)
		if err != nil {
			return packet{}, err
		}
		return packet{op: op, code: code, msg: msg}, nil
	case opOACK:
		opts, err := decodeOptions(b[2:])
		if err != nil {
			return packet{}, err
		}
		if len(opts) == 0 {
			return packet{}, fmt.Errorf("%w: empty OACK", errMalformed)
		}
		return packet{op: op, options: opts}, nil
	}
	return packet{}, fmt.Errorf("%w: unknown opcode %d", errMalformed, uint16(op))
}

// decodeRequest parses an RRQ or WRQ (RFC 1350 section 5, options RFC 2347
// section 2).
func decodeRequest(b []byte) (packet, error) {
	if len(b) < 2 {
		return packet{}, fmt.Errorf("%w: %d bytes", errMalformed, len(b))
	}
	op := opcode(binary.BigEndian.Uint16(b))
	if op != opRRQ && op != opWRQ {
		return packet{}, fmt.Errorf("%w: %v is not a request", errMalformed, op)
	}
	rest := b[2:]
	filename, rest, ok := cutString(rest)
	if !ok {
		return packet{}, fmt.Errorf("%w: unterminated file name", errMalformed)
	}
	if filename == "" {
		return packet{}, fmt.Errorf("%w: empty file name", errMalformed)
	}
	mode, rest, ok := cutString(rest)
	if !ok {
		return packet{}, fmt.Errorf("%w: unterminated mode", errMalformed)
	}
	if mode == "" {
		return packet{}, fmt.Errorf("%w: empty mode", errMalformed)
	}
	opts, err := decodeOptions(rest)
	if err != nil {
		return packet{}, err
	}
	return packet{op: op, filename: filename, mode: mode, options: opts}, nil
}

// decodeOptions parses NUL-terminated name/value pairs. Some ROMs pad
// requests with NULs, so trailing empty strings that cannot be a value
// are dropped.
func decodeOptions(b []byte) ([]option, error) {
	if len(bytes.Trim(b, "\x00")) == 0 {
		return nil, nil // nothing, or NUL padding
	}
	if b[len(b)-1] != 0 {
		return nil, fmt.Errorf("%w: unterminated option", errMalformed)
	}
	fields := bytes.Split(b[:len(b)-1], []byte{0})
	for n := len(fields); n > 0 && len(fields[n-1]) == 0 && (n%2 == 1 || len(fields[n-2]) == 0); n-- {
		fields = fields[:n-1]
	}
	if len(fields)%2 == 1 {
		return nil, fmt.Errorf("%w: option %q without value", errMalformed, fields[len(fields)-1])
	}
	if len(fields) == 0 {
		return nil, nil
	}
	opts := make([]option, 0, len(fields)/2)
	for i := 0; i < len(fields); i += 2 {
		if len(fields[i]) == 0 {
			return nil, fmt.Errorf("%w: empty option name", errMalformed)
		}
		opts = append(opts, option{name: string(fields[i]), value: string(fields[i+1])})
	}
	return opts, nil
}

// decodeACK parses an ACK (RFC 1350 section 5). A fifth byte is the
// window size a Microsoft variable-window client asks for next.
func decodeACK(b []byte) (block uint16, window int, err error) {
	if len(b) < 4 || len(b) > 5 {
		return 0, 0, fmt.Errorf("%w: ACK of %d bytes", errMalformed, len(b))
	}
	if opcode(binary.BigEndian.Uint16(b)) != opACK {
		return 0, 0, fmt.Errorf("%w: not an ACK", errMalformed)
	}
	block = binary.BigEndian.Uint16(b[2:])
	if len(b) == 5 {
		window = int(b[4])
	}
	return block, window, nil
}

// decodeError parses an ERROR (RFC 1350 section 5). A missing final NUL
// is tolerated: the message runs to the end of the packet.
func decodeError(b []byte) (errCode, string, error) {
	if len(b) < 4 {
		return 0, "", fmt.Errorf("%w: ERROR of %d bytes", errMalformed, len(b))
	}
	if opcode(binary.BigEndian.Uint16(b)) != opERROR {
		return 0, "", fmt.Errorf("%w: not an ERROR", errMalformed)
	}
	code := errCode(binary.BigEndian.Uint16(b[2:]))
	msg := b[4:]
	if i := bytes.IndexByte(msg, 0); i >= 0 {
		msg = msg[:i]
	}
	return code, string(msg), nil
}

func cutString(b []byte) (s string, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil, false
	}
	return string(b[:i]), b[i+1:], true
}

// appendRequest encodes an RRQ or WRQ with options.
func appendRequest(dst []byte, op opcode, filename, mode string, opts []option) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(op))
	dst = appendString(dst, filename)
	dst = appendString(dst, mode)
	return appendOptions(dst, opts)
}

// appendOACK encodes an OACK (RFC 2347 section 2).
func appendOACK(dst []byte, opts []option) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(opOACK))
	return appendOptions(dst, opts)
}

func appendOptions(dst []byte, opts []option) []byte {
	for _, o := range opts {
		dst = appendString(dst, o.name)
		dst = appendString(dst, o.value)
	}
	return dst
}

// appendData encodes a DATA packet.
func appendData(dst []byte, block uint16, data []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(opDATA))
	dst = binary.BigEndian.AppendUint16(dst, block)
	return append(dst, data...)
}

// appendACK encodes an ACK; window > 0 adds Microsoft's window byte.
func appendACK(dst []byte, block uint16, window int) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(opACK))
	dst = binary.BigEndian.AppendUint16(dst, block)
	if window > 0 {
		dst = append(dst, byte(window))
	}
	return dst
}

// appendError encodes an ERROR packet. NUL bytes in msg are dropped and
// the message is cut so the packet fits a 512-byte datagram.
func appendError(dst []byte, code errCode, msg string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(opERROR))
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	n := 0
	for i := 0; i < len(msg) && n < 507; i++ {
		if msg[i] != 0 {
			dst = append(dst, msg[i])
			n++
		}
	}
	return append(dst, 0)
}

func appendString(dst []byte, s string) []byte {
	return append(append(dst, s...), 0)
}
