package netbios

import (
	"bytes"
	"errors"
	"reflect"
	"runtime"
	"testing"
)

// Wire vectors, written out by hand from RFC 1002 section 4.2.

// bcastQuery is what `nmblookup -B ... NETDEPLOY` sends: a NAME QUERY
// REQUEST, ID 0x1234, RD and B set (0x0110), one question NB IN.
var bcastQuery = []byte("\x12\x34\x01\x10\x00\x01\x00\x00\x00\x00\x00\x00" + encodedName + "\x00\x20\x00\x01")

// statusQuery is a NODE STATUS REQUEST for "*" (`nmblookup -A`), ID 7.
var statusQuery = []byte("\x00\x07\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00" +
	"\x20CKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\x00" + "\x00\x21\x00\x01")

// registration is a broadcast NAME REGISTRATION REQUEST (section
// 4.2.2) for NETDEPLOY<00>: its additional record names the question by
// a pointer to offset 12 (0xC00C), as Windows and Samba send it.
var registration = []byte("\xab\xcd\x29\x10\x00\x01\x00\x00\x00\x00\x00\x01" + encodedName + "\x00\x20\x00\x01" +
	"\xc0\x0c\x00\x20\x00\x01\x00\x04\x93\xe0\x00\x06\x00\x00\xc6\x12\x00\x63")

func TestDecodeQuery(t *testing.T) {
	p, err := decodePacket(bcastQuery)
	if err != nil {
		t.Fatal(err)
	}
	want := &packet{
		header:    header{id: 0x1234, opcode: opQuery, flags: flagRD | flagB},
		questions: []question{{name: makeName("NETDEPLOY", 0), qtype: typeNB, qclass: classIN}},
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("got %+v\nwant %+v", p, want)
	}
	out, err := appendPacket(nil, p)
	if err != nil || !bytes.Equal(out, bcastQuery) {
		t.Fatalf("encoded again: %q %v", out, err)
	}
}

func TestDecodeRegistrationPointer(t *testing.T) {
	p, err := decodePacket(registration)
	if err != nil {
		t.Fatal(err)
	}
	if p.opcode != opRegistration || p.flags != flagRD|flagB || p.response {
		t.Fatalf("header %+v", p.header)
	}
	if len(p.additional) != 1 {
		t.Fatalf("additional %+v", p.additional)
	}
	r := p.additional[0]
	want := resource{name: makeName("NETDEPLOY", 0), rtype: typeNB, rclass: classIN, ttl: 300000, rdata: []byte{0, 0, 198, 18, 0, 99}}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("record %+v, want %+v", r, want)
	}
}

func TestDecodePacketErrors(t *testing.T) {
	hdr := func(qd, an, ns, ar byte) string {
		return "\x00\x01\x00\x00\x00" + string(qd) + "\x00" + string(an) + "\x00" + string(ns) + "\x00" + string(ar)
	}
	for _, c := range []struct {
		what string
		b    string
	}{
		{"empty", ""},
		{"short header", "\x00\x01\x00"},
		{"question missing", hdr(1, 0, 0, 0)},
		{"question type truncated", hdr(1, 0, 0, 0) + encodedName + "\x00"},
		{"answer missing", hdr(0, 1, 0, 0) + encodedName + "\x00\x20\x00\x01\x00\x00"},
		{"RDLENGTH past the end", hdr(0, 1, 0, 0) + encodedName + "\x00\x20\x00\x01\x00\x00\x00\x00\x00\x06\x00\x00"},
		{"huge counts", "\x00\x01\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff" + encodedName + "\x00\x20\x00\x01"},
		{"pointer loop in a question", hdr(1, 0, 0, 0) + "\x02\xc0\x0c\xc0\x0c\x00\x20\x00\x01"},
		{"bad name in additional record", hdr(1, 0, 0, 1) + encodedName + "\x00\x20\x00\x01" + "\xc0\x20\x00\x20\x00\x01\x00\x00\x00\x00\x00\x00"},
	} {
		if _, err := decodePacket([]byte(c.b)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", c.what, err)
		}
	}
}

// TestDecodeHugeCountsAllocation: counts far beyond the bytes present are
// refused before anything is allocated for them.
func TestDecodeHugeCountsAllocation(t *testing.T) {
	b := []byte("\x00\x01\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff" + encodedName + "\x00\x20\x00\x01")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		_, _ = decodePacket(b)
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / 100; per > 1024 {
		t.Fatalf("%d bytes allocated per decode of a %d-byte packet", per, len(b))
	}
}

func TestPacketRoundTrip(t *testing.T) {
	p := &packet{
		header:     header{id: 0xfffe, response: true, opcode: opRefresh, flags: flagAA | flagTC | flagRD | flagRA | flagB, rcode: 0xf},
		questions:  []question{{name: makeName("A", 1), qtype: typeNB, qclass: classIN}},
		answers:    []resource{{name: name{raw: makeName("B", 2).raw, scope: "X.Y"}, rtype: typeNB, rclass: classIN, ttl: 1, rdata: []byte{1, 2, 3}}},
		authority:  []resource{{name: makeName("C", 3), rtype: 2, rclass: classIN, ttl: 2, rdata: []byte{}}},
		additional: []resource{{name: makeName("D", 4), rtype: typeNBSTAT, rclass: classIN, ttl: 3, rdata: []byte{9}}},
	}
	b, err := appendPacket(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	if b[2] != 0xc7 || b[3] != 0x9f { // R, opcode 8, AA TC RD RA B, rcode 15
		t.Fatalf("header word %x", b[2:4])
	}
	q, err := decodePacket(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, q) {
		t.Fatalf("got %+v\nwant %+v", q, p)
	}
}

func TestNodeStatusRDATA(t *testing.T) {
	names := []statusName{{makeName("NETDEPLOY", 0), nameActive}, {makeName("WORKGROUP", 0), nbGroup | nameActive}}
	mac := [6]byte{2, 0, 0, 0, 0, 1}
	b := nodeStatus(names, mac)
	want := "\x02" + "NETDEPLOY      \x00\x04\x00" + "WORKGROUP      \x00\x84\x00" + "\x02\x00\x00\x00\x00\x01" + string(make([]byte, 40))
	if string(b) != want {
		t.Fatalf("got %q\nwant %q", b, want)
	}
	gotNames, gotMAC, err := parseNodeStatus(b)
	if err != nil || !reflect.DeepEqual(gotNames, names) || gotMAC != mac {
		t.Fatalf("parsed %v %v %v", gotNames, gotMAC, err)
	}
	if _, _, err := parseNodeStatus(b[:40]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short node status: %v", err)
	}
}
