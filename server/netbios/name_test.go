package netbios

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestEncodeName checks first-level encoding against vectors worked out
// by hand from RFC 1001 section 14.1 (its own example is FRED).
func TestEncodeName(t *testing.T) {
	for _, c := range []struct {
		name  name
		label string
		scope []byte // encoded scope labels and root
	}{
		// RFC 1001 section 14.1: "FRED            " (the 16th byte a
		// space, 0x20) and the scope NETBIOS.COM.
		{name{raw: makeName("FRED", 0x20).raw, scope: "NETBIOS.COM"}, "EGFCEFEECACACACACACACACACACACACA", []byte("\x07NETBIOS\x03COM\x00")},
		// N=4E E=45 T=54 D=44 E=45 P=50 L=4C O=4F Y=59, six spaces, <00>.
		{makeName("NETDEPLOY", 0x00), "EOEFFEEEEFFAEMEPFJCACACACACACAAA", []byte{0}},
		{makeName("NETDEPLOY", 0x20), "EOEFFEEEEFFAEMEPFJCACACACACACACA", []byte{0}},
		// The wildcard of a node status request: '*' (2A), NULs.
		{makeName("*", 0x00), "CKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", []byte{0}},
		// A 15-byte name fills the padding.
		{makeName("ABCDEFGHIJKLMNO", 0x1b), "EBECEDEEEFEGEHEIEJEKELEMENEOEPBL", []byte{0}},
	} {
		got, err := appendName(nil, c.name)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want := append(append([]byte{32}, c.label...), c.scope...)
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, want)
		}
		back, next, err := decodeName(got, 0, true)
		if err != nil || back != c.name || next != len(got) {
			t.Errorf("%s: decoded %v next %d err %v", c.name, back, next, err)
		}
	}
}

func TestNameString(t *testing.T) {
	for _, c := range []struct {
		n    name
		want string
	}{
		{makeName("NETDEPLOY", 0x20), "NETDEPLOY<20>"},
		{makeName("*", 0), "*<00>"},
		{makeName("*SMBSERVER", 0x20), "*SMBSERVER<20>"},
		{name{raw: makeName("FRED", 0).raw, scope: "NETBIOS.COM"}, "FRED<00>.NETBIOS.COM"},
		{makeName("A\x01\\\xffB", 0x1d), `A\x01\x5c\xffB<1d>`},
		{makeName("", 0), "<00>"},
	} {
		if got := c.n.String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
	}
	if !makeName("*", 0).wildcard() || !makeName("*", 0x20).wildcard() || makeName("*X", 0).wildcard() {
		t.Error("wildcard")
	}
	var spaces name
	copy(spaces.raw[:], "*              \x00")
	if !spaces.wildcard() {
		t.Error("* padded with spaces is the wildcard too")
	}
}

// encodedName is NETDEPLOY<00> in wire form, for building packets.
var encodedName = "\x20EOEFFEEEEFFAEMEPFJCACACACACACAAA\x00"

func TestDecodeNamePointers(t *testing.T) {
	// A name, then a pointer to it, then a pointer to the pointer.
	msg := []byte(encodedName + "\xc0\x00" + "\xc0\x22")
	for _, off := range []int{0, 34, 36} {
		n, next, err := decodeName(msg, off, true)
		if err != nil {
			t.Fatalf("offset %d: %v", off, err)
		}
		if n != makeName("NETDEPLOY", 0) {
			t.Errorf("offset %d: %v", off, n)
		}
		want := map[int]int{0: 34, 34: 36, 36: 38}[off]
		if next != want {
			t.Errorf("offset %d: next %d, want %d", off, next, want)
		}
	}
	// The first label inline, the scope behind a pointer.
	msg = []byte("\x07NETBIOS\x03COM\x00" + encodedName[:33] + "\xc0\x00")
	n, next, err := decodeName(msg, 13, true)
	if err != nil || n.scope != "NETBIOS.COM" || n.base() != "NETDEPLOY" || next != len(msg) {
		t.Fatalf("scope by pointer: %v %d %v", n, next, err)
	}
}

func TestDecodeNameErrors(t *testing.T) {
	long := encodedName[:33]
	for range 4 {
		long += "\x3f" + strings.Repeat("x", 63)
	}
	for _, c := range []struct {
		what     string
		msg      string
		off      int
		pointers bool
	}{
		{"empty", "", 0, true},
		{"truncated label", encodedName[:20], 0, true},
		{"no root label", encodedName[:33], 0, true},
		{"root only", "\x00", 0, true},
		{"short first label", "\x04FRED\x00", 0, true},
		{"lower case half-ASCII", "\x20" + strings.ToLower(encodedName[1:33]) + "\x00", 0, true},
		{"half-ASCII beyond P", "\x20" + strings.Repeat("Q", 32) + "\x00", 0, true},
		{"reserved label type 0x40", "\x40", 0, true},
		{"reserved label type 0x80", "\x80", 0, true},
		{"pointer to itself", "\xc0\x00", 0, true},
		{"pointer forward", "\xc0\x02" + encodedName, 0, true},
		{"pointer truncated", encodedName + "\xc0", 34, true},
		{"pointer not allowed", encodedName + "\xc0\x00", 34, false},
		// A label whose bytes hold a pointer back to the label, and a
		// pointer after it: reading through the first pointer loops,
		// which the pointer limit stops, or with long labels the length
		// limit.
		{"loop through a label", "\x02\xc0\x00\xc0\x00", 1, true},
		{"loop through a long label", "\x3f\xc0\x00" + strings.Repeat("x", 61) + "\xc0\x00", 1, true},
		{"longer than 255 bytes", long + "\x00", 0, true},
		{"dot in a scope label", encodedName[:33] + "\x03a.b\x00", 0, true},
	} {
		_, _, err := decodeName([]byte(c.msg), c.off, c.pointers)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", c.what, err)
		}
	}
}

// TestDecodeNamePointerChain: a chain of backward pointers longer than
// maxPointers is refused, a shorter one followed.
func TestDecodeNamePointerChain(t *testing.T) {
	build := func(hops int) ([]byte, int) {
		msg := []byte(encodedName)
		prev := 0
		for range hops {
			at := len(msg)
			msg = append(msg, 0xc0|byte(prev>>8), byte(prev))
			prev = at
		}
		return msg, prev
	}
	msg, start := build(maxPointers)
	if _, _, err := decodeName(msg, start, true); err != nil {
		t.Fatalf("%d pointers: %v", maxPointers, err)
	}
	msg, start = build(maxPointers + 1)
	if _, _, err := decodeName(msg, start, true); !errors.Is(err, ErrMalformed) {
		t.Fatalf("%d pointers: %v", maxPointers+1, err)
	}
}

func TestAppendNameLimits(t *testing.T) {
	if _, err := appendName(nil, name{scope: strings.Repeat("x", 64)}); err == nil {
		t.Error("64-byte scope label accepted")
	}
	if _, err := appendName(nil, name{scope: "a..b"}); err == nil {
		t.Error("empty scope label accepted")
	}
	s := strings.Repeat("x", 63)
	if _, err := appendName(nil, name{scope: s + "." + s + "." + s + "." + s}); err == nil {
		t.Error("name over 255 bytes accepted")
	}
}

func TestCheckName(t *testing.T) {
	for in, want := range map[string]string{"netdeploy": "NETDEPLOY", "Deploy-01": "DEPLOY-01", "MY GROUP": "MY GROUP", "ABCDEFGHIJKLMNO": "ABCDEFGHIJKLMNO"} {
		if got, err := checkName("name", in); err != nil || got != want {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	for _, in := range []string{"", "ABCDEFGHIJKLMNOP", " X", "X ", "A.B", "A*", "A\\B", "A\x00", "caf\xc3\xa9"} {
		if _, err := checkName("name", in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
