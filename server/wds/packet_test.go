package wds

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"unicode/utf16"
)

// osdGUIDBytes is the OS deployment endpoint GUID as it travels (the bytes
// Metasploit's WDS module sends).
var osdGUIDBytes = []byte{0x5a, 0xeb, 0xde, 0xd8, 0xfd, 0xef, 0xb2, 0x43, 0x99, 0xfc, 0x1a, 0x8a, 0x59, 0x21, 0xc2, 0x27}

func TestGUID(t *testing.T) {
	if !bytes.Equal(OSDeploymentEndpoint[:], osdGUIDBytes) {
		t.Fatalf("wire form % x, want % x", OSDeploymentEndpoint[:], osdGUIDBytes)
	}
	if s := OSDeploymentEndpoint.String(); s != "d8deeb5a-effd-43b2-99fc-1a8a5921c227" {
		t.Fatalf("String() = %s", s)
	}
	g, err := ParseGUID("{D8DEEB5A-EFFD-43B2-99FC-1A8A5921C227}")
	if err != nil || g != OSDeploymentEndpoint {
		t.Fatalf("ParseGUID braces/upper = %v, %v", g, err)
	}
	for _, bad := range []string{"", "d8deeb5a-effd-43b2-99fc", "d8deeb5a-effd-43b2-99fc-1a8a5921c22g", "d8deeb5aeffd43b299fc1a8a5921c227"} {
		if _, err := ParseGUID(bad); err == nil {
			t.Errorf("ParseGUID(%q) accepted", bad)
		}
	}
}

func allTypesPacket() *Packet {
	return &Packet{
		Endpoint: OSDeploymentEndpoint,
		Type:     PacketRequest,
		Code:     OpGetClientUnattend,
		Vars: []Var{
			ByteVar("B", 7),
			UShortVar("US", 0xBEEF),
			ULongVar("ARCHITECTURE", ArchAMD64),
			ULong64Var("BIG", 1<<40+5),
			StringVar("S", "ascii text"),
			WStringVar("CLIENT_MAC", "525400123456"),
			WStringVar("UNICODE", "Grüße ✓ 𝄞"),
			BlobVar("BLOB", []byte{1, 2, 3}),
			BlobVar("EMPTY", nil),
			BlobVar("SIXTEEN", bytes.Repeat([]byte{0xAA}, 16)),
			ULongArrayVar("ARR", 1, 2, 3),
			WStringVar(strings.Repeat("N", MaxNameLen), "longest name"),
		},
	}
}

func TestRoundTrip(t *testing.T) {
	p := allTypesPacket()
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint16(b[0:]); got != 0x28 {
		t.Errorf("header size %#x", got)
	}
	if got := binary.LittleEndian.Uint16(b[2:]); got != 0x0100 {
		t.Errorf("endpoint version %#x", got)
	}
	if got := binary.LittleEndian.Uint32(b[4:]); int(got) != len(b) {
		t.Errorf("endpoint packet size %d, packet %d", got, len(b))
	}
	if got := binary.LittleEndian.Uint32(b[40:]); int(got) != len(b)-40 {
		t.Errorf("operation packet size %d, want %d", got, len(b)-40)
	}
	if b[46] != PacketRequest || binary.LittleEndian.Uint32(b[48:]) != OpGetClientUnattend || binary.LittleEndian.Uint32(b[52:]) != uint32(len(p.Vars)) {
		t.Errorf("operation header % x", b[40:56])
	}
	// Every block is a multiple of 16 bytes, so the whole packet is 8 past one.
	if (len(b)-56)%16 != 0 {
		t.Errorf("variables section %d bytes, not a multiple of 16", len(b)-56)
	}
	q, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(q, p) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", q, p)
	}
	b2, err := q.Encode()
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("re-encode differs: %v", err)
	}

	if v, err := q.ULong("architecture"); err != nil || v != ArchAMD64 {
		t.Errorf("ULong(architecture) = %d, %v", v, err)
	}
	if v, err := q.ULong("B"); err != nil || v != 7 {
		t.Errorf("ULong(B) = %d, %v", v, err)
	}
	if v, err := q.ULong("us"); err != nil || v != 0xBEEF {
		t.Errorf("ULong(us) = %d, %v", v, err)
	}
	if v, err := q.ULong64("Big"); err != nil || v != 1<<40+5 {
		t.Errorf("ULong64(Big) = %d, %v", v, err)
	}
	if _, err := q.ULong("BIG"); !errors.Is(err, ErrMalformedValue) {
		t.Errorf("ULong of an 8-byte value: %v", err)
	}
	if s, err := q.String("s"); err != nil || s != "ascii text" {
		t.Errorf("String = %q, %v", s, err)
	}
	if s, err := q.WString("Unicode"); err != nil || s != "Grüße ✓ 𝄞" {
		t.Errorf("WString = %q, %v", s, err)
	}
	if s, err := q.Text("S"); err != nil || s != "ascii text" {
		t.Errorf("Text(STRING) = %q, %v", s, err)
	}
	if b, err := q.Blob("blob"); err != nil || !bytes.Equal(b, []byte{1, 2, 3}) {
		t.Errorf("Blob = %v, %v", b, err)
	}
	if b, err := q.Blob("EMPTY"); err != nil || len(b) != 0 {
		t.Errorf("empty Blob = %v, %v", b, err)
	}
	if m, err := q.MAC("client_mac"); err != nil || m.String() != "52:54:00:12:34:56" {
		t.Errorf("MAC = %v, %v", m, err)
	}
	if _, err := q.WString("NOPE"); !errors.Is(err, ErrMissing) {
		t.Errorf("missing variable: %v", err)
	}
	if _, err := q.WString("ARCHITECTURE"); !errors.Is(err, ErrWrongType) {
		t.Errorf("WString of a ULONG: %v", err)
	}
	if _, err := q.ULong("S"); !errors.Is(err, ErrWrongType) {
		t.Errorf("ULong of a STRING: %v", err)
	}
	if _, err := q.ULong("ARR"); !errors.Is(err, ErrWrongType) {
		t.Errorf("ULong of an array: %v", err)
	}
	var ve *VarError
	if _, err := q.Blob("S"); !errors.As(err, &ve) || ve.Name != "S" {
		t.Errorf("accessor error is not a *VarError: %v", err)
	}
}

// msfVar builds a variable block the way Metasploit's WDS module does:
// array size 0 for a scalar, and padding of 16*(1+len/16) bytes, which is
// 16 bytes too many when the value is a multiple of 16.
func msfVar(name string, base uint16, value []byte) []byte {
	var blk []byte
	for _, u := range utf16.Encode([]rune(name)) {
		blk = binary.LittleEndian.AppendUint16(blk, u)
	}
	blk = append(blk, make([]byte, 66-len(blk))...)
	blk = append(blk, 0, 0)
	blk = binary.LittleEndian.AppendUint16(blk, base)
	blk = binary.LittleEndian.AppendUint16(blk, 0)
	blk = binary.LittleEndian.AppendUint32(blk, uint32(len(value)))
	blk = binary.LittleEndian.AppendUint32(blk, 0)
	padded := make([]byte, 16*(1+len(value)/16))
	copy(padded, value)
	return append(blk, padded...)
}

func wstr(s string) []byte { return utf16le(s, true) }

// msfPacket assembles a request with the endpoint header's packet size
// leaving out the header, as Metasploit's module sends it.
func msfPacket(opcode uint32, vars ...[]byte) []byte {
	var body []byte
	for _, v := range vars {
		body = append(body, v...)
	}
	opSize := uint32(16 + len(body))
	b := binary.LittleEndian.AppendUint16(nil, 40)
	b = binary.LittleEndian.AppendUint16(b, 0x0100)
	b = binary.LittleEndian.AppendUint32(b, opSize)
	b = append(b, osdGUIDBytes...)
	b = append(b, make([]byte, 16)...)
	b = binary.LittleEndian.AppendUint32(b, opSize)
	b = binary.LittleEndian.AppendUint16(b, 0x0100)
	b = append(b, PacketRequest, 0)
	b = binary.LittleEndian.AppendUint32(b, opcode)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(vars)))
	return append(b, body...)
}

func msfClientUnattend() []byte {
	return msfPacket(OpGetClientUnattend,
		msfVar("CLIENT_GUID", TypeWString, wstr(strings.Repeat("ab", 16))),
		msfVar("CLIENT_MAC", TypeWString, wstr(strings.Repeat("0", 20)+"525400abcdef")),
		msfVar("ARCHITECTURE", TypeULong, []byte{9}),
		msfVar("VERSION", TypeULong, []byte{1, 0, 0, 0}),
		msfVar("PADDED", TypeBlob, bytes.Repeat([]byte{0x55}, 32)), // 16 surplus pad bytes follow
		msfVar("LAST", TypeULong, []byte{2, 0, 0, 0}),
	)
}

func TestDecodeClientQuirks(t *testing.T) {
	p, err := Decode(msfClientUnattend())
	if err != nil {
		t.Fatal(err)
	}
	if p.Endpoint != OSDeploymentEndpoint || p.Code != OpGetClientUnattend || len(p.Vars) != 6 {
		t.Fatalf("decoded %+v", p)
	}
	if a, err := p.ULong("ARCHITECTURE"); err != nil || a != ArchAMD64 {
		t.Errorf("1-byte ARCHITECTURE = %d, %v", a, err)
	}
	if m, err := p.MAC("CLIENT_MAC"); err != nil || m.String() != "52:54:00:ab:cd:ef" {
		t.Errorf("zero-padded CLIENT_MAC = %v, %v", m, err)
	}
	if v, err := p.ULong("LAST"); err != nil || v != 2 {
		t.Errorf("variable after surplus padding = %d, %v", v, err)
	}
}

func TestDecodeLeniency(t *testing.T) {
	good, _ := (&Packet{Endpoint: OSDeploymentEndpoint, Type: 9, Code: OpLogInit, Vars: []Var{ULongVar("VERSION", 1), WStringVar("W", "abc")}}).Encode()

	// A packet type that is neither request nor reply is kept.
	if p, err := Decode(good); err != nil || p.Type != 9 {
		t.Errorf("odd packet type: %v %v", p, err)
	}
	// The last variable without its padding.
	cut := good[:len(good)-6]
	binary.LittleEndian.PutUint32(cut[4:], uint32(len(cut)))
	binary.LittleEndian.PutUint32(cut[40:], uint32(len(cut)-40))
	if p, err := Decode(cut); err != nil || len(p.Vars) != 2 {
		t.Errorf("unpadded last variable: %v", err)
	}
	// The operation packet size counting the endpoint header too.
	whole := append([]byte{}, good...)
	binary.LittleEndian.PutUint32(whole[40:], uint32(len(whole)))
	if _, err := Decode(whole); err != nil {
		t.Errorf("operation size with the endpoint header: %v", err)
	}
	// Trailing bytes after the declared variables are ignored.
	if _, err := Decode(append(append([]byte{}, good...), 1, 2, 3)); err != nil {
		t.Errorf("trailing bytes: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	base := func() []byte {
		b, _ := (&Packet{Endpoint: OSDeploymentEndpoint, Type: PacketRequest, Code: OpLogInit, Vars: []Var{ULongVar("VERSION", 1), WStringVar("NAME", "x")}}).Encode()
		return b
	}
	set32 := func(b []byte, off int, v uint32) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b }
	set16 := func(b []byte, off int, v uint16) []byte { binary.LittleEndian.PutUint16(b[off:], v); return b }
	second := 56 + 96 // the second variable block (VERSION's block is 80+16)
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"short", base()[:55], ErrTruncated},
		{"too large", make([]byte, MaxPacketSize+1), ErrTooLarge},
		{"header size", set16(base(), 0, 0x20), ErrHeader},
		{"endpoint size beyond buffer", set32(base(), 4, 10000), ErrTruncated},
		{"operation size below header", set32(base(), 40, 15), ErrHeader},
		{"operation size beyond buffer", set32(base(), 40, 10000), ErrTruncated},
		{"variable count beyond data", set32(base(), 52, 3), ErrTruncated},
		{"variable count beyond limit", set32(base(), 52, MaxVariables+1), ErrTooManyVariables},
		{"empty name", set16(base(), second, 0), ErrName},
		{"unterminated name", func() []byte {
			b := base()
			for i := 0; i < 66; i += 2 {
				set16(b, second+i, 'A')
			}
			return b
		}(), ErrName},
		{"duplicate name", func() []byte {
			b := base()
			copy(b[second:], utf16le("version", true)) // "NAME" becomes "version"
			return b
		}(), ErrDuplicateName},
		{"unknown base type", set16(base(), second+68, 0x80), ErrType},
		{"unknown modifier", set16(base(), second+70, 0x2000), ErrType},
		{"array of zero elements", set16(base(), second+70, ModifierArray), ErrArray}, // array size field is 1: make it 0 below
		{"value beyond data", set32(base(), second+72, 1000), ErrTruncated},
		{"array length overflow", set32(set32(set16(base(), second+70, ModifierArray), second+72, 0xFFFFFFFF), second+76, 0xFFFFFFFF), ErrTruncated},
	}
	cases[14].b = set32(cases[14].b, second+76, 0)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Decode(c.b)
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("not a *DecodeError: %T", err)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	cases := []struct {
		name string
		vars []Var
		want error
	}{
		{"empty name", []Var{ULongVar("", 1)}, ErrName},
		{"long name", []Var{ULongVar(strings.Repeat("N", MaxNameLen+1), 1)}, ErrName},
		{"NUL in name", []Var{ULongVar("A\x00B", 1)}, ErrName},
		{"duplicate", []Var{ULongVar("Version", 1), ULongVar("VERSION", 2)}, ErrDuplicateName},
		{"unknown type", []Var{{Name: "X", Base: 3, Value: []byte{1}}}, ErrType},
		{"bad array", []Var{{Name: "X", Base: TypeULong, Array: true, ElemLen: 4, Count: 2, Value: []byte{1, 2, 3, 4}}}, ErrArray},
		{"empty array", []Var{{Name: "X", Base: TypeULong, Array: true, ElemLen: 4}}, ErrArray},
		{"too large", []Var{BlobVar("X", make([]byte, MaxPacketSize))}, ErrTooLarge},
		{"too many", func() []Var {
			vs := make([]Var, MaxVariables+1)
			for i := range vs {
				vs[i] = ByteVar(V1ImageVar("V", i), 0)
			}
			return vs
		}(), ErrTooManyVariables},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := EncodeRequest(OSDeploymentEndpoint, OpLogInit, c.vars...)
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
}

func TestParseClientMAC(t *testing.T) {
	want := net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	for _, s := range []string{
		"525400123456", "52-54-00-12-34-56", "52:54:00:12:34:56", " 525400123456 ",
		"52540012345600000000000000000000", // a 16-byte hardware address field
		"00000000000000000000525400123456", // Metasploit's padding
	} {
		m, err := ParseClientMAC(s)
		if err != nil || !bytes.Equal(m, want) {
			t.Errorf("ParseClientMAC(%q) = %v, %v", s, m, err)
		}
	}
	for _, s := range []string{"", "5254001234", "52540012345g", "52:54:00-12-34-56:", "11111111111111111111111111111111", strings.Repeat("z", 300)} {
		if m, err := ParseClientMAC(s); err == nil {
			t.Errorf("ParseClientMAC(%q) = %v", s, m)
		}
	}
}
