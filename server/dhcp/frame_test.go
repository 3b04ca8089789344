package dhcp

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// buildFrame makes an IPv4 header (with options of optLen bytes) and a UDP
// header around payload, as an AF_PACKET SOCK_DGRAM socket delivers it.
func buildFrame(src, dst net.IP, sport, dport uint16, payload []byte, optLen int) []byte {
	ihl := 20 + optLen
	b := make([]byte, ihl+8+len(payload))
	b[0] = 0x40 | byte(ihl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	b[6] = 0x40 // DF
	b[8] = 64
	b[9] = protoUDP
	copy(b[12:16], src.To4())
	copy(b[16:20], dst.To4())
	for i := 20; i < ihl; i++ {
		b[i] = 1 // NOP options
	}
	binary.BigEndian.PutUint16(b[10:], ipChecksum(b[:ihl]))
	u := b[ihl:]
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	copy(u[8:], payload)
	return b
}

func offerBytes(t testing.TB, xid dhcpv4.TransactionID, serverID net.IP) []byte {
	m, err := dhcpv4.New(
		dhcpv4.WithTransactionID(xid),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer),
		dhcpv4.WithHwAddr(mac(1)),
		dhcpv4.WithYourIP(net.IPv4(198, 18, 0, 150)),
	)
	if err != nil {
		t.Fatal(err)
	}
	m.OpCode = dhcpv4.OpcodeBootReply
	if serverID != nil {
		m.UpdateOption(dhcpv4.OptServerIdentifier(serverID))
	}
	return m.ToBytes()
}

func TestParseFrame(t *testing.T) {
	src, dst := net.IPv4(198, 18, 0, 3), net.IPv4bcast
	payload := []byte("hello dhcp")
	for _, opt := range []int{0, 4, 40} {
		f := buildFrame(src, dst, 67, 68, payload, opt)
		d, err := parseFrame(append(f, 0, 0, 0, 0)) // Ethernet padding after the datagram
		if err != nil {
			t.Fatalf("options %d: %v", opt, err)
		}
		if !d.src.Equal(src) || !d.dst.Equal(dst) || d.srcPort != 67 || d.dstPort != 68 || !bytes.Equal(d.payload, payload) {
			t.Fatalf("options %d: %+v", opt, d)
		}
		// Every truncation fails cleanly.
		for n := 0; n < len(f); n++ {
			if _, err := parseFrame(f[:n]); err == nil {
				t.Fatalf("options %d: truncated to %d accepted", opt, n)
			}
		}
	}
	good := buildFrame(src, dst, 67, 68, payload, 0)
	mut := func(f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		return b
	}
	fix := func(b []byte) { b[10], b[11] = 0, 0; binary.BigEndian.PutUint16(b[10:], ipChecksum(b[:20])) }
	for name, b := range map[string][]byte{
		"ipv6":            mut(func(b []byte) { b[0] = 0x65 }),
		"ihl 4":           mut(func(b []byte) { b[0] = 0x44; fix(b) }),
		"ihl beyond":      mut(func(b []byte) { b[0] = 0x4f; fix(b) }),
		"total too big":   mut(func(b []byte) { binary.BigEndian.PutUint16(b[2:], 2000); fix(b) }),
		"total too small": mut(func(b []byte) { binary.BigEndian.PutUint16(b[2:], 10); fix(b) }),
		"fragment":        mut(func(b []byte) { b[6] = 0x20; fix(b) }),
		"frag offset":     mut(func(b []byte) { b[7] = 1; fix(b) }),
		"tcp":             mut(func(b []byte) { b[9] = 6; fix(b) }),
		"checksum":        mut(func(b []byte) { b[8]++ }),
		"udp len big":     mut(func(b []byte) { binary.BigEndian.PutUint16(b[24:], 500) }),
		"udp len small":   mut(func(b []byte) { binary.BigEndian.PutUint16(b[24:], 7) }),
	} {
		if _, err := parseFrame(b); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestProbeAnswer(t *testing.T) {
	xid := dhcpv4.TransactionID{9, 8, 7, 6}
	other := net.IPv4(198, 18, 0, 3).To4()
	hw := net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 3}
	frame := buildFrame(other, net.IPv4bcast, 67, 68, offerBytes(t, xid, other), 0)
	srv, ok := probeAnswer(frame, hw, xid, testServerIP, 68)
	if !ok || !srv.IP.Equal(other) || srv.MAC.String() != hw.String() {
		t.Fatalf("got %v %v", srv, ok)
	}
	if _, ok := probeAnswer(frame, hw, dhcpv4.TransactionID{1}, testServerIP, 68); ok {
		t.Error("other xid accepted")
	}
	if _, ok := probeAnswer(frame, hw, xid, testServerIP, 1068); ok {
		t.Error("other port accepted")
	}
	if _, ok := probeAnswer(frame, hw, xid, other, 68); ok {
		t.Error("our own server counted")
	}
	// No server identifier: the IP source counts.
	noID := buildFrame(other, net.IPv4bcast, 67, 68, offerBytes(t, xid, nil), 0)
	if srv, ok := probeAnswer(noID, hw, xid, testServerIP, 68); !ok || !srv.IP.Equal(other) {
		t.Errorf("no option 54: %v %v", srv, ok)
	}
	// A request (our own probe seen on the wire) is not an answer.
	probe := buildFrame(testServerIP, net.IPv4bcast, 68, 68, probeMessage(hw, xid).ToBytes(), 0)
	if _, ok := probeAnswer(probe, hw, xid, testServerIP, 68); ok {
		t.Error("request counted as an answer")
	}
}

func FuzzParseFrame(f *testing.F) {
	xid := dhcpv4.TransactionID{9, 8, 7, 6}
	good := buildFrame(net.IPv4(198, 18, 0, 3), net.IPv4bcast, 67, 68, offerBytes(f, xid, net.IPv4(198, 18, 0, 3)), 0)
	f.Add(good)
	f.Add(good[:20])
	f.Add(good[:27])
	f.Add(good[:100])
	f.Add(buildFrame(net.IPv4(198, 18, 0, 3), net.IPv4bcast, 67, 68, nil, 40))
	f.Add(buildFrame(net.IPv4(198, 18, 0, 3), net.IPv4bcast, 67, 68, []byte{1, 2, 3}, 4))
	f.Add([]byte{0x45})
	f.Add([]byte{})
	f.Add(append([]byte{0x4f}, make([]byte, 70)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseFrame(b)
		if err != nil {
			return
		}
		ihl := int(b[0]&0xf) * 4
		if len(d.payload) > len(b)-ihl-udpHeaderLen {
			t.Fatalf("payload of %d bytes from a %d-byte frame", len(d.payload), len(b))
		}
		probeAnswer(b, net.HardwareAddr{1, 2, 3, 4, 5, 6}, xid, testServerIP, int(d.dstPort))
	})
}
