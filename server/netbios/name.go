package netbios

import (
	"errors"
	"fmt"
	"strings"
)

// ErrMalformed is wrapped by every error about bytes that break the wire
// format: a name service packet, a datagram, a session packet.
var ErrMalformed = errors.New("netbios: malformed packet")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// Name suffixes (the 16th byte of a NetBIOS name) the server owns.
const (
	SuffixWorkstation = 0x00 // workstation service; also the workgroup's group name
	SuffixFileServer  = 0x20 // file server service
)

// Limits of the encoded form (RFC 1001 section 14, RFC 1035 section
// 2.3.4): a label is at most 63 bytes, a whole name at most 255.
const (
	maxLabel   = 63
	maxNameLen = 255
	// maxPointers bounds the compression pointers followed in one name;
	// with pointers that must point backwards and the 255-byte limit it
	// makes every decode end quickly, whatever the packet holds.
	maxPointers = 32
)

// name is a NetBIOS name as it travels: the 16 bytes (15 of name padded,
// then the suffix) and the NetBIOS scope, its labels joined with dots ("":
// none).
type name struct {
	raw   [16]byte
	scope string
}

// makeName pads n to 15 bytes with spaces and adds the suffix. The
// wildcard "*" is padded with NULs (RFC 1002 section 4.2.18), as Windows
// and Samba send it.
func makeName(n string, suffix byte) name {
	var nm name
	pad := byte(' ')
	if n == "*" {
		pad = 0
	}
	for i := range 15 {
		if i < len(n) {
			nm.raw[i] = n[i]
		} else {
			nm.raw[i] = pad
		}
	}
	nm.raw[15] = suffix
	return nm
}

// base is the name without its padding (trailing spaces and NULs) and
// suffix.
func (n name) base() string {
	return strings.TrimRight(string(n.raw[:15]), " \x00")
}

func (n name) suffix() byte { return n.raw[15] }

// wildcard reports whether n is "*" (padded with NULs or spaces).
func (n name) wildcard() bool {
	return n.raw[0] == '*' && n.base() == "*"
}

// String formats n as nmblookup does, "NAME<20>", followed by ".scope"
// when there is one. Bytes outside printable ASCII are shown as \xNN, so
// the result is safe to log.
func (n name) String() string {
	var b strings.Builder
	for _, c := range []byte(n.base()) {
		if c < 0x20 || c > 0x7e || c == '\\' {
			fmt.Fprintf(&b, `\x%02x`, c)
		} else {
			b.WriteByte(c)
		}
	}
	fmt.Fprintf(&b, "<%02x>", n.suffix())
	if n.scope != "" {
		b.WriteByte('.')
		b.WriteString(n.scope)
	}
	return b.String()
}

// appendName appends n in first-level encoding (RFC 1001 section 14.1):
// the 32-byte label of half-ASCII characters ('A' plus each nibble), the
// scope labels, and the root label. It never compresses.
func appendName(b []byte, n name) ([]byte, error) {
	var labels []string
	if n.scope != "" {
		labels = strings.Split(n.scope, ".")
	}
	total := 1 + 32 + 1
	for _, l := range labels {
		if len(l) == 0 || len(l) > maxLabel {
			return b, fmt.Errorf("netbios: scope label %q is empty or longer than %d bytes", l, maxLabel)
		}
		total += 1 + len(l)
	}
	if total > maxNameLen {
		return b, fmt.Errorf("netbios: encoded name is %d bytes, more than %d", total, maxNameLen)
	}
	b = append(b, 32)
	for _, c := range n.raw {
		b = append(b, 'A'+c>>4, 'A'+c&0x0f)
	}
	for _, l := range labels {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0), nil
}

// decodeName reads the name at msg[off:], following label compression
// pointers (RFC 1002 section 4.1, RFC 1035 section 4.1.4) when pointers is
// true. It returns the name and the offset after it where it starts (after
// the first pointer, if any). Pointers must point before themselves, at
// most maxPointers are followed, and the name is at most 255 bytes: a
// pointer loop ends with an error.
func decodeName(msg []byte, off int, pointers bool) (name, int, error) {
	var n name
	pos, next, hops, total := off, -1, 0, 0
	var labels [][]byte
	for {
		if pos >= len(msg) {
			return n, 0, malformed("name at offset %d truncated", off)
		}
		c := msg[pos]
		switch c & 0xc0 {
		case 0xc0:
			if !pointers {
				return n, 0, malformed("compression pointer at offset %d where none is allowed", pos)
			}
			if pos+1 >= len(msg) {
				return n, 0, malformed("compression pointer at offset %d truncated", pos)
			}
			ptr := int(c&0x3f)<<8 | int(msg[pos+1])
			if ptr >= pos {
				return n, 0, malformed("compression pointer at offset %d points forward to %d", pos, ptr)
			}
			if hops++; hops > maxPointers {
				return n, 0, malformed("more than %d compression pointers in the name at offset %d", maxPointers, off)
			}
			if next < 0 {
				next = pos + 2
			}
			pos = ptr
			continue
		case 0x00:
		default:
			return n, 0, malformed("reserved label type 0x%02x at offset %d", c&0xc0, pos)
		}
		if c == 0 {
			pos++
			break
		}
		l := int(c)
		if pos+1+l > len(msg) {
			return n, 0, malformed("label at offset %d truncated", pos)
		}
		if total += 1 + l; total+1 > maxNameLen {
			return n, 0, malformed("name at offset %d longer than %d bytes", off, maxNameLen)
		}
		labels = append(labels, msg[pos+1:pos+1+l])
		pos += 1 + l
	}
	if next < 0 {
		next = pos
	}
	if len(labels) == 0 || len(labels[0]) != 32 {
		return n, 0, malformed("name at offset %d: first label is not 32 bytes", off)
	}
	for i := range 16 {
		hi, lo := labels[0][2*i]-'A', labels[0][2*i+1]-'A'
		if hi > 15 || lo > 15 {
			return n, 0, malformed("name at offset %d: %q is not half-ASCII", off, labels[0])
		}
		n.raw[i] = hi<<4 | lo
	}
	scope := make([]string, 0, len(labels)-1)
	for _, l := range labels[1:] {
		if strings.IndexByte(string(l), '.') >= 0 {
			return n, 0, malformed("name at offset %d: scope label %q holds a dot", off, l)
		}
		scope = append(scope, string(l))
	}
	n.scope = strings.Join(scope, ".")
	return n, next, nil
}

// checkName validates a configured NetBIOS name (the server's name or its
// workgroup) and returns it in upper case: 1 to 15 printable ASCII bytes,
// no leading or trailing space, none of . \ / : * ? " < > |.
func checkName(what, s string) (string, error) {
	switch {
	case s == "":
		return "", fmt.Errorf("netbios: %s is empty", what)
	case len(s) > 15:
		return "", fmt.Errorf("netbios: %s %q is longer than 15 bytes", what, s)
	case s[0] == ' ' || s[len(s)-1] == ' ':
		return "", fmt.Errorf("netbios: %s %q starts or ends with a space", what, s)
	}
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7e || strings.IndexByte(`.\/:*?"<>|`, c) >= 0 {
			return "", fmt.Errorf("netbios: %s %q holds %q, not allowed in a NetBIOS name", what, s, c)
		}
	}
	return asciiUpper(s), nil
}

// asciiUpper upper-cases ASCII letters only; other bytes stay as they are.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
