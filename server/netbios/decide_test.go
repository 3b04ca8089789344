package netbios

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

var (
	testIP  = net.IPv4(198, 18, 0, 1)
	testMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x01}
)

func testTable(t testing.TB) *table {
	t.Helper()
	tb, err := newTable("netdeploy", "", testIP, testMAC)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// query builds a name service request with one question.
func query(id uint16, op uint8, flags uint8, n name, qtype, qclass uint16) []byte {
	b, err := appendPacket(nil, &packet{header: header{id: id, opcode: op, flags: flags},
		questions: []question{{name: n, qtype: qtype, qclass: qclass}}})
	if err != nil {
		panic(err)
	}
	return b
}

// TestPositiveResponseBytes pins the reply to a broadcast query byte for
// byte (RFC 1002 section 4.2.13).
func TestPositiveResponseBytes(t *testing.T) {
	v, out := testTable(t).answer(bcastQuery)
	want := []byte("\x12\x34" + // the query's ID
		"\x85\x00" + // R, opcode 0, AA and RD, rcode 0
		"\x00\x00\x00\x01\x00\x00\x00\x00" + // one answer
		encodedName + "\x00\x20\x00\x01" + // NETDEPLOY<00> NB IN
		"\x00\x03\xf4\x80" + // TTL 259200 s
		"\x00\x06" + "\x00\x00" + "\xc6\x12\x00\x01") // unique B node, 198.18.0.1
	if !bytes.Equal(out, want) {
		t.Fatalf("got  %q\nwant %q", out, want)
	}
	if v.detail != "name query NETDEPLOY<00>" {
		t.Fatalf("detail %q", v.detail)
	}
}

func TestDecideNameQuery(t *testing.T) {
	tb := testTable(t)
	for _, c := range []struct {
		n       name
		flags   uint8
		nbFlags uint16
		detail  string
	}{
		{makeName("NETDEPLOY", 0x00), flagRD | flagB, 0, "name query NETDEPLOY<00>"},
		{makeName("NETDEPLOY", 0x20), flagRD, 0, "name query NETDEPLOY<20>"},
		{makeName("netdeploy", 0x20), 0, 0, "name query netdeploy<20>"},
		{makeName("NetDeploy", 0x00), flagB, 0, "name query NetDeploy<00>"},
		{makeName("WORKGROUP", 0x00), flagB, nbGroup, "name query WORKGROUP<00>"},
		{makeName("*", 0x00), flagB, 0, "name query *<00>"},
		{makeName("*", 0x20), flagB, 0, "name query *<20>"},
	} {
		p := mustDecode(t, query(0x4242, opQuery, c.flags, c.n, typeNB, classIN))
		v := tb.decide(p)
		if v.reply == nil {
			t.Errorf("%s: no reply (%s)", c.n, v.detail)
			continue
		}
		r := v.reply
		if r.id != 0x4242 || !r.response || r.opcode != opQuery || r.flags != flagAA|flagRD || r.rcode != 0 {
			t.Errorf("%s: header %+v", c.n, r.header)
		}
		if len(r.questions) != 0 || len(r.answers) != 1 || len(r.authority) != 0 || len(r.additional) != 0 {
			t.Fatalf("%s: sections %+v", c.n, r)
		}
		a := r.answers[0]
		if a.name != c.n || a.rtype != typeNB || a.rclass != classIN || a.ttl != answerTTL {
			t.Errorf("%s: answer %+v", c.n, a)
		}
		if want := addrEntry(c.nbFlags, [4]byte{198, 18, 0, 1}); !bytes.Equal(a.rdata, want) {
			t.Errorf("%s: rdata %x, want %x", c.n, a.rdata, want)
		}
		if v.detail != c.detail {
			t.Errorf("%s: detail %q, want %q", c.n, v.detail, c.detail)
		}
	}
}

func TestDecideNodeStatus(t *testing.T) {
	tb := testTable(t)
	for _, n := range []name{makeName("*", 0), makeName("NETDEPLOY", 0x20), makeName("netdeploy", 0)} {
		v, out := tb.answer(query(9, opQuery, 0, n, typeNBSTAT, classIN))
		if out == nil {
			t.Fatalf("%s: ignored: %s", n, v.detail)
		}
		p := mustDecode(t, out)
		if p.id != 9 || !p.response || p.flags != flagAA || len(p.answers) != 1 {
			t.Fatalf("%s: reply %+v", n, p)
		}
		a := p.answers[0]
		if a.name != n || a.rtype != typeNBSTAT || a.rclass != classIN || a.ttl != 0 {
			t.Fatalf("%s: answer %+v", n, a)
		}
		names, mac, err := parseNodeStatus(a.rdata)
		if err != nil {
			t.Fatal(err)
		}
		want := []statusName{
			{makeName("NETDEPLOY", 0x00), 0x0400},
			{makeName("NETDEPLOY", 0x20), 0x0400},
			{makeName("WORKGROUP", 0x00), 0x8400},
		}
		if len(names) != len(want) {
			t.Fatalf("names %v", names)
		}
		for i := range want {
			if names[i] != want[i] {
				t.Errorf("name %d: %v, want %v", i, names[i], want[i])
			}
		}
		if !bytes.Equal(mac[:], testMAC) {
			t.Errorf("mac %x", mac)
		}
		if len(a.rdata) != 1+3*18+statsLen {
			t.Errorf("rdata %d bytes", len(a.rdata))
		}
		if v.detail != "node status "+n.String() {
			t.Errorf("detail %q", v.detail)
		}
	}
	v, out := tb.answer(statusQuery)
	if out == nil || v.detail != "node status *<00>" {
		t.Fatalf("nmblookup -A's query: %s", v.detail)
	}
}

// TestDecideIgnores: everything but queries for our names gets no reply.
func TestDecideIgnores(t *testing.T) {
	tb := testTable(t)
	ours := makeName("NETDEPLOY", 0)
	twoQuestions, _ := appendPacket(nil, &packet{questions: []question{{ours, typeNB, classIN}, {ours, typeNB, classIN}}})
	noQuestion, _ := appendPacket(nil, &packet{})
	response, _ := appendPacket(nil, &packet{header: header{response: true, flags: flagAA},
		answers: []resource{{name: ours, rtype: typeNB, rclass: classIN, rdata: addrEntry(0, [4]byte{198, 18, 0, 9})}}})
	for _, c := range []struct {
		what, reason string
		b            []byte
	}{
		{"another name", "not ours", query(1, opQuery, flagB, makeName("OTHER", 0), typeNB, classIN)},
		{"our name, another suffix", "not ours", query(1, opQuery, flagB, makeName("NETDEPLOY", 0x03), typeNB, classIN)},
		{"workgroup, browser suffix", "not ours", query(1, opQuery, flagB, makeName("WORKGROUP", 0x1e), typeNB, classIN)},
		{"prefix of our name", "not ours", query(1, opQuery, flagB, makeName("NETDEPLO", 0), typeNB, classIN)},
		{"wildcard, other suffix", "not ours", query(1, opQuery, flagB, makeName("*", 0x1d), typeNB, classIN)},
		{"name in a scope", "scope", query(1, opQuery, flagB, name{raw: ours.raw, scope: "CORP"}, typeNB, classIN)},
		{"class other than IN", "class", query(1, opQuery, flagB, ours, typeNB, 3)},
		{"type other than NB and NBSTAT", "type", query(1, opQuery, flagB, ours, 1, classIN)},
		{"node status for another name", "not ours", query(1, opQuery, 0, makeName("OTHER", 0), typeNBSTAT, classIN)},
		{"node status for *<20>", "not ours", query(1, opQuery, 0, makeName("*", 0x20), typeNBSTAT, classIN)},
		{"registration", "registration request", registration},
		{"registration of our name", "registration", query(1, opRegistration, flagB, ours, typeNB, classIN)},
		{"release", "release", query(1, opRelease, flagB, ours, typeNB, classIN)},
		{"refresh", "refresh", query(1, opRefresh, 0, ours, typeNB, classIN)},
		{"refresh (0x9)", "refresh", query(1, opRefreshAlt, 0, ours, typeNB, classIN)},
		{"multi-homed registration", "multi-homed", query(1, opMultiHomed, 0, ours, typeNB, classIN)},
		{"another node's response", "response", response},
		{"two questions", "2 questions", twoQuestions},
		{"no question", "0 questions", noQuestion},
		{"garbage", "malformed", []byte("hello, world")},
		{"truncated query", "malformed", bcastQuery[:len(bcastQuery)-1]},
	} {
		v, out := tb.answer(c.b)
		if out != nil || v.reply != nil {
			t.Errorf("%s: answered (%s)", c.what, v.detail)
			continue
		}
		if !strings.Contains(v.detail, c.reason) {
			t.Errorf("%s: reason %q lacks %q", c.what, v.detail, c.reason)
		}
	}
}

func TestNewTable(t *testing.T) {
	tb, err := newTable("deploy", "lab", testIP, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tb.name != "DEPLOY" || tb.workgroup != "LAB" || tb.mac != [6]byte{} || tb.ip != [4]byte{198, 18, 0, 1} {
		t.Fatalf("%+v", tb)
	}
	for _, c := range []struct {
		what, nm, wg string
		ip           net.IP
		mac          net.HardwareAddr
	}{
		{"no name", "", "", testIP, nil},
		{"long name", "ABCDEFGHIJKLMNOPQ", "", testIP, nil},
		{"bad workgroup", "NETDEPLOY", "A*B", testIP, nil},
		{"name is the workgroup", "lab", "LAB", testIP, nil},
		{"no ip", "NETDEPLOY", "", nil, nil},
		{"ipv6", "NETDEPLOY", "", net.ParseIP("2001:db8::1"), nil},
		{"unspecified ip", "NETDEPLOY", "", net.IPv4zero, nil},
		{"8-byte mac", "NETDEPLOY", "", testIP, net.HardwareAddr{1, 2, 3, 4, 5, 6, 7, 8}},
	} {
		if _, err := newTable(c.nm, c.wg, c.ip, c.mac); err == nil {
			t.Errorf("%s: accepted", c.what)
		}
	}
}

func mustDecode(t testing.TB, b []byte) *packet {
	t.Helper()
	p, err := decodePacket(b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
