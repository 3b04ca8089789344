package dhcp

import (
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/netdeploy/netdeploy/server/tracker"
)

var (
	rogueIP  = net.IPv4(198, 18, 0, 3).To4()
	rogueMAC = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 3}
)

func TestAuthorizerStates(t *testing.T) {
	ev := newEventLog()
	a := newAuthorizer("eth0", testServerIP, 67, false, nil, quietLog(), ev.Emit)
	if ok, why := a.status(); !ok || !strings.Contains(why, "off") {
		t.Fatalf("off: %v %q", ok, why)
	}

	gen := a.setEnabled(true)
	if a.allowsAnswers() {
		t.Fatal("answers before the first probe")
	}
	if ok, why := a.status(); ok || !strings.Contains(why, "checking") {
		t.Fatalf("checking: %v %q", ok, why)
	}

	// Nobody else: authorized, one event.
	a.record(gen, nil)
	if !a.allowsAnswers() {
		t.Fatal("silent with no other server")
	}
	evs := ev.all()
	if len(evs) != 1 || evs[0].Event != tracker.KindAuthorized || evs[0].MAC != "" || evs[0].Stage != tracker.StageDHCP {
		t.Fatalf("events %+v", evs)
	}
	a.record(gen, nil)
	if len(ev.all()) != 1 {
		t.Fatalf("repeated result reported again: %+v", ev.all())
	}

	// A rogue server: unauthorized, event naming it and the fix.
	a.record(gen, []seenServer{{IP: rogueIP, MAC: rogueMAC}})
	if a.allowsAnswers() {
		t.Fatal("answers beside an unauthorized server")
	}
	e := ev.all()[1]
	if e.Event != tracker.KindUnauthorized || e.IP != "198.18.0.3" || e.MAC != "" || e.Stage != tracker.StageDHCP {
		t.Fatalf("event %+v", e)
	}
	for _, want := range []string{"198.18.0.3", rogueMAC.String(), "dhcp.authorized_servers"} {
		if !strings.Contains(e.Detail, want) {
			t.Errorf("detail %q lacks %q", e.Detail, want)
		}
	}
	if ok, why := a.status(); ok || !strings.Contains(why, "198.18.0.3") || !strings.Contains(why, "dhcp.authorized_servers") {
		t.Fatalf("status %v %q", ok, why)
	}

	// Authorizing it flips at once, without a new probe.
	a.setAllowed([]net.IP{net.ParseIP("198.18.0.3")})
	if !a.allowsAnswers() {
		t.Fatal("still silent after authorizing the other server")
	}
	if last := ev.all()[len(ev.all())-1]; last.Event != tracker.KindAuthorized {
		t.Fatalf("last event %+v", last)
	}
	if ok, why := a.status(); !ok || !strings.Contains(why, "authorized: 198.18.0.3") {
		t.Fatalf("status %v %q", ok, why)
	}
	a.setAllowed(nil)
	if a.allowsAnswers() {
		t.Fatal("answers after the server was removed from the list")
	}

	// A stale probe (from before a disable/enable) is ignored.
	a.setEnabled(false)
	if !a.allowsAnswers() {
		t.Fatal("authorization off must answer")
	}
	gen2 := a.setEnabled(true)
	a.record(gen, nil)
	if a.allowsAnswers() {
		t.Fatal("stale probe result accepted")
	}
	// A failed first probe keeps it silent and says why.
	a.failed(gen2, errors.New("no route"))
	if ok, why := a.status(); ok || !strings.Contains(why, "no route") {
		t.Fatalf("after failure %v %q", ok, why)
	}
	a.record(gen2, nil)
	a.failed(gen2, errors.New("later failure"))
	if !a.allowsAnswers() {
		t.Fatal("a failure after a good probe must keep the good result")
	}
}

// fakeTransport answers a probe with canned frames.
type fakeTransport struct {
	mu       sync.Mutex
	sent     [][]byte
	frames   func(xid dhcpv4.TransactionID) [][]byte
	queue    [][]byte
	deadline time.Time
	sendErr  error
}

func (f *fakeTransport) send(b []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sendErr != nil {
		return f.sendErr
	}
	f.sent = append(f.sent, b)
	m, _ := dhcpv4.FromBytes(b)
	if f.frames != nil && len(f.sent) == 1 {
		f.queue = append(f.queue, f.frames(m.TransactionID)...)
	}
	return nil
}

func (f *fakeTransport) setReadDeadline(t time.Time) error { f.deadline = t; return nil }

func (f *fakeTransport) readFrame(buf []byte) (int, net.HardwareAddr, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queue) == 0 {
		return 0, nil, false, os.ErrDeadlineExceeded
	}
	b := f.queue[0]
	f.queue = f.queue[1:]
	return copy(buf, b), rogueMAC, false, nil
}

func (f *fakeTransport) drain() {}

func TestProbeOnce(t *testing.T) {
	hw := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	ft := &fakeTransport{frames: func(xid dhcpv4.TransactionID) [][]byte {
		offer := offerBytes(t, xid, rogueIP)
		return [][]byte{
			buildFrame(rogueIP, net.IPv4bcast, 67, 68, offer, 0),
			buildFrame(rogueIP, net.IPv4bcast, 67, 68, offer, 0), // duplicate
			buildFrame(testServerIP, net.IPv4bcast, 67, 68, offerBytes(t, xid, testServerIP), 0),
			buildFrame(rogueIP, net.IPv4bcast, 67, 68, offerBytes(t, dhcpv4.TransactionID{}, rogueIP), 0),
			{0x45, 0, 1},
		}
	}}
	seen, err := probeOnce(ft, hw, testServerIP, 68, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || !seen[0].IP.Equal(rogueIP) || seen[0].MAC.String() != rogueMAC.String() {
		t.Fatalf("seen %v", seen)
	}
	if len(ft.sent) != 2 {
		t.Fatalf("sent %d probes, want the first and one repeat", len(ft.sent))
	}
	m, err := dhcpv4.FromBytes(ft.sent[0])
	if err != nil || m.MessageType() != dhcpv4.MessageTypeDiscover || !m.IsBroadcast() || m.ClientHWAddr.String() != hw.String() {
		t.Fatalf("probe %v %v", m, err)
	}

	ft = &fakeTransport{sendErr: errors.New("network is unreachable")}
	if _, err := probeOnce(ft, hw, testServerIP, 68, time.Millisecond); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("send error: %v", err)
	}
}
