package tftp

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func rrq(fields ...string) []byte {
	b := []byte{0, 1}
	for _, f := range fields {
		b = append(append(b, f...), 0)
	}
	return b
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want packet
		bad  bool
	}{
		{name: "rrq", in: rrq("file", "octet"), want: packet{op: opRRQ, filename: "file", mode: "octet"}},
		{name: "rrq options", in: rrq("a/b", "netascii", "blksize", "1428", "tsize", "0"),
			want: packet{op: opRRQ, filename: "a/b", mode: "netascii", options: []option{{"blksize", "1428"}, {"tsize", "0"}}}},
		{name: "rrq empty value", in: rrq("f", "octet", "x", ""), want: packet{op: opRRQ, filename: "f", mode: "octet", options: []option{{"x", ""}}}},
		{name: "rrq nul padding", in: append(rrq("f", "octet", "tsize", "0"), 0, 0, 0),
			want: packet{op: opRRQ, filename: "f", mode: "octet", options: []option{{"tsize", "0"}}}},
		{name: "rrq only padding", in: append(rrq("f", "octet"), 0, 0), want: packet{op: opRRQ, filename: "f", mode: "octet"}},
		{name: "wrq", in: append([]byte{0, 2}, "f\x00octet\x00"...), want: packet{op: opWRQ, filename: "f", mode: "octet"}},
		{name: "data", in: []byte{0, 3, 1, 2, 'x', 'y'}, want: packet{op: opDATA, block: 258, data: []byte("xy")}},
		{name: "data empty", in: []byte{0, 3, 0, 9}, want: packet{op: opDATA, block: 9, data: []byte{}}},
		{name: "ack", in: []byte{0, 4, 0xff, 0xff}, want: packet{op: opACK, block: 65535}},
		{name: "ack msft window", in: []byte{0, 4, 0, 7, 32}, want: packet{op: opACK, block: 7, window: 32}},
		{name: "error", in: append([]byte{0, 5, 0, 1}, "not found\x00"...), want: packet{op: opERROR, code: errNotFound, msg: "not found"}},
		{name: "error no nul", in: append([]byte{0, 5, 0, 8}, "abort"...), want: packet{op: opERROR, code: errOptionRefused, msg: "abort"}},
		{name: "error bare", in: []byte{0, 5, 0, 0}, want: packet{op: opERROR}},
		{name: "oack", in: append([]byte{0, 6}, "blksize\x00512\x00"...), want: packet{op: opOACK, options: []option{{"blksize", "512"}}}},

		{name: "empty", in: nil, bad: true},
		{name: "one byte", in: []byte{0}, bad: true},
		{name: "unknown opcode", in: []byte{0, 9, 0, 0}, bad: true},
		{name: "opcode zero", in: []byte{0, 0}, bad: true},
		{name: "rrq bare", in: []byte{0, 1}, bad: true},
		{name: "rrq unterminated name", in: []byte{0, 1, 'f'}, bad: true},
		{name: "rrq empty name", in: rrq("", "octet"), bad: true},
		{name: "rrq no mode", in: rrq("f"), bad: true},
		{name: "rrq unterminated mode", in: append([]byte{0, 1}, "f\x00oct"...), bad: true},
		{name: "rrq empty mode", in: rrq("f", ""), bad: true},
		{name: "rrq option without value", in: rrq("f", "octet", "blksize"), bad: true},
		{name: "rrq unterminated option", in: append(rrq("f", "octet"), "blksize\x00512"...), bad: true},
		{name: "rrq empty option name", in: rrq("f", "octet", "", "1", "a", "b"), bad: true},
		{name: "data short", in: []byte{0, 3, 0}, bad: true},
		{name: "data too large", in: append([]byte{0, 3, 0, 1}, make([]byte, maxBlockSize+1)...), bad: true},
		{name: "ack short", in: []byte{0, 4, 0}, bad: true},
		{name: "ack long", in: []byte{0, 4, 0, 1, 2, 3}, bad: true},
		{name: "error short", in: []byte{0, 5, 0}, bad: true},
		{name: "oack empty", in: []byte{0, 6}, bad: true},
		{name: "oack odd", in: append([]byte{0, 6}, "blksize\x00"...), bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decode(tt.in)
			if tt.bad {
				if err == nil {
					t.Fatalf("decode(%q) = %+v, want error", tt.in, got)
				}
				if !errors.Is(err, errMalformed) {
					t.Errorf("error %v does not wrap errMalformed", err)
				}
				if !strings.HasPrefix(err.Error(), "tftp: ") {
					t.Errorf("error %q lacks the tftp: prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("decode(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("decode(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"rrq", appendRequest(nil, opRRQ, "f", "octet", []option{{"blksize", "1428"}}), []byte("\x00\x01f\x00octet\x00blksize\x001428\x00")},
		{"wrq", appendRequest(nil, opWRQ, "f", "octet", nil), []byte("\x00\x02f\x00octet\x00")},
		{"oack", appendOACK(nil, []option{{"tsize", "10"}, {"msftwindow", "27182"}}), []byte("\x00\x06tsize\x0010\x00msftwindow\x0027182\x00")},
		{"data", appendData(nil, 65535, []byte("ab")), []byte("\x00\x03\xff\xffab")},
		{"ack", appendACK(nil, 1, 0), []byte("\x00\x04\x00\x01")},
		{"ack window", appendACK(nil, 1, 16), []byte("\x00\x04\x00\x01\x10")},
		{"error", appendError(nil, errAccess, "read-only server"), []byte("\x00\x05\x00\x02read-only server\x00")},
		{"error nul stripped", appendError(nil, errUndefined, "a\x00b"), []byte("\x00\x05\x00\x00ab\x00")},
	}
	for _, tt := range tests {
		if !bytes.Equal(tt.got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
	long := appendError(nil, errUndefined, strings.Repeat("x", 2000))
	if len(long) != 512 || long[511] != 0 {
		t.Errorf("long error: %d bytes, want 512 ending in NUL", len(long))
	}
}

func fuzzSeeds(f *testing.F) {
	seeds := [][]byte{
		nil, {0}, {0, 1}, {0, 2}, {0, 3}, {0, 4}, {0, 5}, {0, 6}, {0, 7}, {0xff, 0xff},
		rrq("pxelinux.0", "octet"),
		rrq("boot/x64/file.efi", "octet", "blksize", "1468", "tsize", "0", "windowsize", "16"),
		rrq(`\Boot\x64\wdsmgfw.efi`, "octet", "msftwindow", "31416", "blksize", "1456"),
		rrq("f", "netascii", "timeout", "3"),
		rrq("f", "octet", "blksize"),
		rrq("", "octet"),
		append(rrq("f", "octet", "tsize", "0"), 0, 0, 0),
		[]byte("\x00\x01f\x00oct"),
		[]byte("\x00\x02f\x00octet\x00"),
		{0, 3, 0, 1, 'h', 'i'},
		{0, 3, 0},
		{0, 4, 0, 1},
		{0, 4, 0, 1, 16},
		{0, 4, 0, 1, 16, 0},
		[]byte("\x00\x05\x00\x08tsize probe\x00"),
		[]byte("\x00\x05\x00\x00"),
		[]byte("\x00\x05\x00"),
		[]byte("\x00\x06blksize\x00512\x00"),
		[]byte("\x00\x06blksize\x00"),
	}
	for _, s := range seeds {
		f.Add(s)
	}
}

// FuzzDecode checks that decode never panics, that only errMalformed
// comes back, and that what decodes encodes back to the same packet.
func FuzzDecode(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decode(b)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("error %v does not wrap errMalformed", err)
			}
			return
		}
		var enc []byte
		switch p.op {
		case opRRQ, opWRQ:
			enc = appendRequest(nil, p.op, p.filename, p.mode, p.options)
		case opDATA:
			enc = appendData(nil, p.block, p.data)
		case opACK:
			enc = appendACK(nil, p.block, p.window)
		case opERROR:
			enc = appendError(nil, p.code, p.msg)
		case opOACK:
			enc = appendOACK(nil, p.options)
		default:
			t.Fatalf("decoded unknown op %v", p.op)
		}
		q, err := decode(enc)
		if err != nil {
			t.Fatalf("re-decode of %q: %v", enc, err)
		}
		if p.op == opERROR && len(p.msg) > 507 {
			q.msg, p.msg = "", ""
		}
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip: %+v became %+v", p, q)
		}
	})
}

// FuzzDecodeRequest checks the request decoder and that negotiation of
// whatever it yields stays within bounds.
func FuzzDecodeRequest(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeRequest(b)
		if err != nil {
			return
		}
		if p.op != opRRQ && p.op != opWRQ {
			t.Fatalf("request op %v", p.op)
		}
		if p.filename == "" || p.mode == "" || strings.ContainsRune(p.filename, 0) {
			t.Fatalf("bad fields %+v", p)
		}
		n := negotiate(p.options, 1<<20, limits{maxBlockSize: 1468})
		if n.blksize < minBlockSize || n.blksize > 1468 {
			t.Fatalf("blksize %d out of bounds", n.blksize)
		}
		if n.window < 1 || n.window > maxWindowSize {
			t.Fatalf("window %d out of bounds", n.window)
		}
	})
}

// FuzzDecodeACK checks the ACK decoder used on the hot path.
func FuzzDecodeACK(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		block, window, err := decodeACK(b)
		if err != nil {
			return
		}
		if len(b) != 4 && len(b) != 5 || window < 0 || window > 255 {
			t.Fatalf("accepted %q as block %d window %d", b, block, window)
		}
		if got := appendACK(nil, block, window); window > 0 && !bytes.Equal(got, b) {
			t.Fatalf("round trip %q -> %q", b, got)
		}
	})
}

// FuzzDecodeError checks the ERROR decoder.
func FuzzDecodeError(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, msg, err := decodeError(b)
		if err == nil && strings.ContainsRune(msg, 0) {
			t.Fatalf("message %q holds a NUL", msg)
		}
	})
}

// FuzzDecodeOptions checks the option list decoder.
func FuzzDecodeOptions(f *testing.F) {
	f.Add([]byte("blksize\x00512\x00"))
	f.Add([]byte("blksize\x00512\x00tsize\x000\x00\x00"))
	f.Add([]byte("\x00\x00"))
	f.Add([]byte("\x00a\x00"))
	f.Add([]byte("a\x00"))
	f.Add([]byte("a\x00b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		opts, err := decodeOptions(b)
		if err != nil {
			return
		}
		again, err := decodeOptions(appendOptions(nil, opts))
		if err != nil || len(again) != len(opts) {
			t.Fatalf("round trip of %q: %v, %v", opts, again, err)
		}
		for i := range opts {
			if opts[i] != again[i] {
				t.Fatalf("round trip of %q: %q", opts, again)
			}
		}
	})
}

func TestToNetascii(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"abc", "abc"},
		{"a\nb", "a\r\nb"},
		{"a\rb", "a\r\x00b"},
		{"a\r\nb\n", "a\r\x00\r\nb\r\n"},
	}
	for _, tt := range tests {
		got, err := toNetascii([]byte(tt.in), 100)
		if err != nil || string(got) != tt.want {
			t.Errorf("toNetascii(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := toNetascii([]byte("\n\n\n"), 5); err == nil {
		t.Error("toNetascii past the limit: no error")
	}
}
