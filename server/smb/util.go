package smb

import (
	"crypto/rand"
	"encoding/binary"
	"time"
	"unicode/utf16"
)

func randRead(b []byte) { rand.Read(b) }

// filetime converts t to a FILETIME: 100 ns intervals since 1601.
func filetime(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixNano()/100) + 116444736000000000
}

// utf16le encodes s as UTF-16LE.
func utf16le(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

// fromUTF16 decodes UTF-16LE; an odd length fails.
func fromUTF16(b []byte) (string, bool) {
	if len(b)%2 != 0 {
		return "", false
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u)), true
}
