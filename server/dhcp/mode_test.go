package dhcp

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/netdeploy/netdeploy/server/stats"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// waitStats polls the counters of port until ok accepts them (the reader
// counts a reply after sending it).
func waitStats(t *testing.T, s *Server, port int, ok func(stats.Snapshot) bool) stats.Snapshot {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := s.Stats()[port]
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %d stats %+v", port, st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// offlineServer sets s up as Listen does, without opening a socket:
// serveOne, SetMode, Leases and Shutdown work, nothing reads the network.
func offlineServer(t *testing.T, s *Server) {
	t.Helper()
	s.mu.Lock()
	s.authzLocked()
	h, err := s.prepareLocked(nil)
	if err == nil {
		s.installLocked(h)
	}
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
}

// ask hands m to the server as if it came in on the DHCP port (or the PXE
// port) and returns the decoded reply, or nil.
func ask(t *testing.T, s *Server, pxe bool, m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	l := listener{port: 67, pxe: pxe}
	if pxe {
		l.port = 4011
	}
	b, _ := s.serveOne(l, m.ToBytes(), &net.UDPAddr{IP: net.IPv4(198, 18, 0, 77), Port: 68})
	if b == nil {
		return nil
	}
	r, err := dhcpv4.FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func modeEvents(evs []tracker.Event) []string {
	var out []string
	for _, e := range evs {
		if e.MAC == "" && e.Stage == tracker.StageDHCP && e.Event == tracker.KindDone && strings.HasPrefix(e.Detail, "mode ") {
			out = append(out, e.Detail)
		}
	}
	return out
}

func clientEvents(evs []tracker.Event) int {
	n := 0
	for _, e := range evs {
		if e.MAC != "" {
			n++
		}
	}
	return n
}

func modeTestServer(mode Mode, dir string, ev tracker.Emitter) *Server {
	return &Server{
		Interface: "eth0", ServerIP: testServerIP, Mode: mode,
		Pool: testPool, Netmask: testMask, Router: testRouter, LeaseDir: dir,
		ScriptURL: testScript, Has: allBinaries, Events: ev, Log: quietLog(),
	}
}

// TestHandleModeOff: a handler in mode off answers nothing and reports
// nothing, on either port.
func TestHandleModeOff(t *testing.T) {
	h := newTestHandler(t, Proxy, allBinaries, nil).withMode(Off, nil)
	for _, m := range []*dhcpv4.DHCPv4{
		msg(t, dhcpv4.MessageTypeDiscover, mac(1), pxeClass, arch(0)),
		msg(t, dhcpv4.MessageTypeRequest, mac(1), pxeClass, arch(7), dhcpv4.WithClientIP(net.IPv4(198, 18, 0, 60))),
		msg(t, dhcpv4.MessageTypeInform, mac(2), pxeClass, dhcpv4.WithClientIP(net.IPv4(198, 18, 0, 61))),
	} {
		for _, pxe := range []bool{false, true} {
			o := h.handle(m, pxe, nil, testNow)
			if o.reply != nil || len(o.events) != 0 || o.drop != "mode off" {
				t.Errorf("%s pxe=%v: reply %v, events %+v, drop %q", m.MessageType(), pxe, o.reply, o.events, o.drop)
			}
		}
	}
	// The same handler switched on again answers as authoritative.
	auth := newTestHandler(t, Authoritative, allBinaries, nil)
	back := h.withMode(Authoritative, auth.leases)
	o := back.handle(msg(t, dhcpv4.MessageTypeDiscover, mac(1), pxeClass, arch(0)), false, nil, testNow)
	if o.reply == nil || !testPoolContains(o.reply.YourIPAddr) || o.reply.BootFileName != "undionly.kpxe" {
		t.Fatalf("authoritative again: %+v", o)
	}
}

// TestSetModeRoundTrip drives one server, without sockets, from proxy to
// authoritative, off, proxy and authoritative again: what a client gets
// follows the mode at once, the leases are loaded on the first switch to
// authoritative, are kept across the others and reach the disk.
func TestSetModeRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ev := newEventLog()
	s := modeTestServer(Proxy, dir, ev)
	offlineServer(t, s)
	discover := func() *dhcpv4.DHCPv4 { return msg(t, dhcpv4.MessageTypeDiscover, mac(1), pxeClass, arch(0)) }
	request := func(ip net.IP) *dhcpv4.DHCPv4 {
		return msg(t, dhcpv4.MessageTypeRequest, mac(1), pxeClass, arch(0),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(testServerIP)),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)))
	}
	wantProxyOffer := func(when string) {
		t.Helper()
		r := ask(t, s, false, discover())
		if r == nil || r.MessageType() != dhcpv4.MessageTypeOffer || !r.YourIPAddr.IsUnspecified() ||
			r.BootFileName != "undionly.kpxe" || r.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
			t.Fatalf("%s: want a proxy offer, got %v", when, r)
		}
	}

	if m := s.CurrentMode(); m != Proxy {
		t.Fatalf("CurrentMode %q", m)
	}
	wantProxyOffer("proxy")
	if s.Leases() != nil {
		t.Fatal("leases in proxy mode before any authoritative mode")
	}
	if _, err := os.Stat(filepath.Join(dir, leaseFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("proxy mode touched the lease file: %v", err)
	}

	// Authoritative: the store is opened and leases are given.
	if err := s.SetMode(Authoritative); err != nil {
		t.Fatal(err)
	}
	if m := s.CurrentMode(); m != Authoritative || s.Mode != Proxy {
		t.Fatalf("CurrentMode %q, field %q", m, s.Mode)
	}
	if _, err := os.Stat(filepath.Join(dir, leaseFileName)); err != nil {
		t.Fatalf("leases not loaded: %v", err)
	}
	offer := ask(t, s, false, discover())
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer || !testPoolContains(offer.YourIPAddr) {
		t.Fatalf("authoritative offer %v", offer)
	}
	ip := offer.YourIPAddr
	ack := ask(t, s, false, request(ip))
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(ip) {
		t.Fatalf("authoritative ack %v", ack)
	}
	if fi, err := os.Stat(filepath.Join(dir, journalFileName)); err != nil || fi.Size() == 0 {
		t.Fatalf("journal not written: %v", err)
	}

	// Off: nothing at all, and no client event.
	if err := s.SetMode(Off); err != nil {
		t.Fatal(err)
	}
	n := clientEvents(ev.all())
	for _, pxe := range []bool{false, true} {
		for _, m := range []*dhcpv4.DHCPv4{discover(), request(ip), msg(t, dhcpv4.MessageTypeRequest, mac(1), pxeClass, arch(7), dhcpv4.WithClientIP(ip))} {
			if r := ask(t, s, pxe, m); r != nil {
				t.Fatalf("mode off answered %s", r.Summary())
			}
		}
	}
	if got := clientEvents(ev.all()); got != n {
		t.Fatalf("client events in mode off: %+v", ev.all()[n:])
	}

	// Proxy: boot information only; the leases are still there.
	if err := s.SetMode(Proxy); err != nil {
		t.Fatal(err)
	}
	wantProxyOffer("proxy again")
	if ls := s.Leases(); len(ls) != 1 || !ls[0].IP.Equal(ip) || ls[0].MAC != mac(1).String() {
		t.Fatalf("leases in proxy mode %+v", ls)
	}

	// Authoritative again: the client keeps its address.
	if err := s.SetMode(Authoritative); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMode(Authoritative); err != nil { // no change, no event
		t.Fatal(err)
	}
	if offer := ask(t, s, false, discover()); offer == nil || !offer.YourIPAddr.Equal(ip) {
		t.Fatalf("after the round trip: offer %v, want %s", offer, ip)
	}
	if ack := ask(t, s, false, request(ip)); ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(ip) {
		t.Fatalf("after the round trip: ack %v", ack)
	}

	if err := s.SetMode("dhcp"); err == nil || !strings.HasPrefix(err.Error(), "dhcp: unknown mode") {
		t.Fatalf("SetMode(dhcp): %v", err)
	}
	want := []string{"mode authoritative", "mode off", "mode proxy", "mode authoritative"}
	if got := modeEvents(ev.all()); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("mode events %q, want %q", got, want)
	}
	for _, e := range ev.all() {
		if strings.HasPrefix(e.Detail, "mode ") && (e.IP != "" || e.Port != 67 || e.Proto != "udp") {
			t.Errorf("mode event %+v", e)
		}
	}

	// A clean stop writes the snapshot; a server started off loads it
	// when it becomes authoritative.
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMode(Proxy); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("SetMode after Shutdown: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, leaseFileName))
	if err != nil || !strings.Contains(string(b), mac(1).String()) {
		t.Fatalf("leases.json %q %v", b, err)
	}
	s2 := modeTestServer(Off, dir, nil)
	offlineServer(t, s2)
	if s2.Leases() != nil || ask(t, s2, false, discover()) != nil {
		t.Fatal("mode off: leases loaded or answered")
	}
	if err := s2.SetMode(Authoritative); err != nil {
		t.Fatal(err)
	}
	if ls := s2.Leases(); len(ls) != 1 || !ls[0].IP.Equal(ip) {
		t.Fatalf("leases after restart in mode off and switch: %+v", ls)
	}
	if offer := ask(t, s2, false, discover()); offer == nil || !offer.YourIPAddr.Equal(ip) {
		t.Fatalf("after restart: offer %v, want %s", offer, ip)
	}
}

// TestSetModeNeedsPool: authoritative mode is refused without a pool, and
// nothing changes.
func TestSetModeNeedsPool(t *testing.T) {
	ev := newEventLog()
	s := modeTestServer(Proxy, "", ev)
	s.Pool = Pool{}
	offlineServer(t, s)
	if err := s.SetMode(Authoritative); !errors.Is(err, ErrNoPool) || !strings.Contains(err.Error(), "dhcp.pool") {
		t.Fatalf("SetMode(authoritative) without pool: %v", err)
	}
	if m := s.CurrentMode(); m != Proxy {
		t.Fatalf("mode %q after the refusal", m)
	}
	if r := ask(t, s, false, msg(t, dhcpv4.MessageTypeDiscover, mac(1), pxeClass, arch(0))); r == nil || !r.YourIPAddr.IsUnspecified() {
		t.Fatalf("still proxy: %v", r)
	}
	if got := modeEvents(ev.all()); len(got) != 0 {
		t.Fatalf("mode events %q", got)
	}
	// Off and back to proxy work without a pool.
	if err := s.SetMode(Off); err != nil {
		t.Fatal(err)
	}
	if err := s.SetMode(Proxy); err != nil {
		t.Fatal(err)
	}

	// Starting authoritative without a pool fails the same way; a pool
	// outside the subnet is refused when the switch loads it.
	s2 := modeTestServer(Authoritative, "", nil)
	s2.Pool = Pool{}
	s2.mu.Lock()
	_, err := s2.prepareLocked(nil)
	s2.mu.Unlock()
	if !errors.Is(err, ErrNoPool) {
		t.Fatalf("authoritative without pool: %v", err)
	}
	s3 := modeTestServer(Off, "", nil)
	s3.Pool = Pool{Start: net.IPv4(10, 0, 0, 1), End: net.IPv4(10, 0, 0, 9)}
	offlineServer(t, s3)
	if err := s3.SetMode(Authoritative); err == nil || !strings.Contains(err.Error(), "outside the server's subnet") {
		t.Fatalf("bad pool: %v", err)
	}
	if m := s3.CurrentMode(); m != Off {
		t.Fatalf("mode %q after a failed switch", m)
	}
}

// TestSetModeBeforeListen: before Listen, SetMode picks the mode Listen
// starts in.
func TestSetModeBeforeListen(t *testing.T) {
	s := modeTestServer(Authoritative, "", nil)
	if err := s.SetMode(Off); err != nil {
		t.Fatal(err)
	}
	if m := s.CurrentMode(); m != Off {
		t.Fatalf("CurrentMode %q", m)
	}
	offlineServer(t, s)
	if s.Leases() != nil {
		t.Fatal("leases loaded for mode off")
	}
	if r := ask(t, s, false, msg(t, dhcpv4.MessageTypeDiscover, mac(1), pxeClass, arch(0))); r != nil {
		t.Fatalf("answered in mode off: %s", r.Summary())
	}
}

// TestSetModeConcurrent switches modes while requests are being answered
// (run with -race): every reply matches one of the modes.
func TestSetModeConcurrent(t *testing.T) {
	s := modeTestServer(Authoritative, t.TempDir(), nil)
	offlineServer(t, s)
	stop := make(chan struct{})
	var served atomic.Int64
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := msg(t, dhcpv4.MessageTypeDiscover, mac(byte(i)), pxeClass, arch(0)).ToBytes()
			src := &net.UDPAddr{IP: net.IPv4(198, 18, 0, 77), Port: 68}
			for {
				select {
				case <-stop:
					return
				default:
				}
				b, _ := s.serveOne(listener{port: 67}, m, src)
				served.Add(1)
				if b == nil {
					continue
				}
				r, err := dhcpv4.FromBytes(b)
				if err != nil || r.MessageType() != dhcpv4.MessageTypeOffer || !(r.YourIPAddr.IsUnspecified() || testPoolContains(r.YourIPAddr)) {
					t.Errorf("reply %v %v", r, err)
					return
				}
			}
		}()
	}
	modes := []Mode{Proxy, Off, Authoritative}
	for i := 0; i < 300 || served.Load() < 3000; i++ {
		if err := s.SetMode(modes[i%3]); err != nil {
			t.Fatal(err)
		}
		s.CurrentMode()
		s.Leases()
		s.Stats()
	}
	close(stop)
	wg.Wait()
}

// TestModeOffLoopback: a server started in mode off holds its ports and
// answers nothing; switched to proxy it answers the next request, and to
// authoritative it leases (the leases loaded then, the journal synced by
// the running server). The port counters follow.
func TestModeOffLoopback(t *testing.T) {
	dir := t.TempDir()
	ev := newEventLog()
	s, ports := loopbackServer(t, Off, dir, ev)
	listening := 0
	for _, e := range ev.all() {
		if e.Event == tracker.KindListening {
			listening++
			if !strings.Contains(e.Detail, "mode off") {
				t.Errorf("listening event %+v", e)
			}
		}
	}
	if listening != 2 {
		t.Fatalf("%d listening events", listening)
	}
	for _, p := range ports[:2] {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero, Port: p})
		if err == nil {
			c.Close()
			t.Fatalf("port %d is not held in mode off", p)
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("port %d: %v", p, err)
		}
	}

	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pxeAddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: ports[1]}
	req := msg(t, dhcpv4.MessageTypeRequest, mac(7), pxeClass, arch(7), dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 1)))
	exchange(t, c, pxeAddr, req)
	waitStats(t, s, ports[1], func(st stats.Snapshot) bool { return st.PacketsIn == 1 })
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := c.ReadFromUDP(make([]byte, 2048)); err == nil {
		t.Fatalf("mode off answered (%d bytes)", n)
	}
	if st := s.Stats()[ports[1]]; st.PacketsOut != 0 || st.BytesIn != uint64(len(req.ToBytes())) {
		t.Fatalf("port %d stats in mode off %+v", ports[1], st)
	}

	if err := s.SetMode(Proxy); err != nil {
		t.Fatal(err)
	}
	exchange(t, c, pxeAddr, req)
	r, _ := readReply(t, c)
	if r.MessageType() != dhcpv4.MessageTypeAck || r.BootFileName != "snponly.efi" {
		t.Fatalf("proxy reply %s", r.Summary())
	}
	st := waitStats(t, s, ports[1], func(st stats.Snapshot) bool { return st.PacketsOut == 1 })
	if st.PacketsIn != 2 || st.BytesOut != uint64(len(r.ToBytes())) || st.BytesIn != 2*uint64(len(req.ToBytes())) {
		t.Fatalf("port %d stats %+v (reply %d bytes)", ports[1], st, len(r.ToBytes()))
	}
	if _, ok := s.Stats()[ports[2]]; ok {
		t.Fatal("stats for the probe port with authorization off")
	}

	if err := s.SetMode(Authoritative); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	syncing := s.syncing
	s.mu.Unlock()
	if !syncing {
		t.Fatal("no journal sync after switching to authoritative")
	}
	cl, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero, Port: ports[2]})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ip := net.IPv4(127, 0, 0, 105)
	exchange(t, cl, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: ports[0]}, msg(t, dhcpv4.MessageTypeRequest, mac(5), dhcpv4.WithClientIP(ip)))
	r, _ = readReply(t, cl)
	if r.MessageType() != dhcpv4.MessageTypeAck || !r.YourIPAddr.Equal(ip) {
		t.Fatalf("authoritative reply %s", r.Summary())
	}
	if ls := s.Leases(); len(ls) != 1 || !ls[0].IP.Equal(ip) {
		t.Fatalf("leases %+v", ls)
	}
	st = waitStats(t, s, ports[0], func(st stats.Snapshot) bool { return st.PacketsOut == 1 })
	if st.PacketsIn != 1 || st.BytesOut != uint64(len(r.ToBytes())) {
		t.Fatalf("port %d stats %+v", ports[0], st)
	}
	if got := modeEvents(ev.all()); strings.Join(got, ",") != "mode proxy,mode authoritative" {
		t.Fatalf("mode events %q", got)
	}
}
