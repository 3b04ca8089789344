package dhcp

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/netdeploy/netdeploy/server/tracker"
)

// freePorts returns n UDP ports free on the loopback interface now.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	var conns []*net.UDPConn
	for len(out) < n {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		out = append(out, c.LocalAddr().(*net.UDPAddr).Port)
	}
	for _, c := range conns {
		c.Close()
	}
	return out
}

func skipUnlessLinux(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the server needs Linux")
	}
}

// loopbackServer starts a server on lo with high ports; it needs no
// privilege.
func loopbackServer(t *testing.T, mode Mode, dir string, ev tracker.Emitter) (*Server, []int) {
	t.Helper()
	skipUnlessLinux(t)
	ports := freePorts(t, 3)
	s := &Server{
		Interface:  "lo",
		ServerIP:   net.IPv4(127, 0, 0, 1),
		Mode:       mode,
		Pool:       Pool{Start: net.IPv4(127, 0, 0, 100), End: net.IPv4(127, 0, 0, 110)},
		LeaseDir:   dir,
		ScriptURL:  "http://127.0.0.1/boot.ipxe",
		Has:        allBinaries,
		Events:     ev,
		Log:        testLogger(t),
		Port:       ports[0],
		PXEPort:    ports[1],
		ClientPort: ports[2],
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve after shutdown: %v", err)
		}
	})
	return s, ports
}

func exchange(t *testing.T, c *net.UDPConn, to *net.UDPAddr, m *dhcpv4.DHCPv4) {
	t.Helper()
	if _, err := c.WriteToUDP(m.ToBytes(), to); err != nil {
		t.Fatal(err)
	}
}

func readReply(t *testing.T, c *net.UDPConn) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := c.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	r, err := dhcpv4.FromBytes(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return r, from
}

// TestServerProxyLoopback runs the sockets end to end on lo: a malformed
// packet is dropped, a PXE REQUEST to the PXE port is answered back to its
// source, an INFORM to the DHCP port goes to ciaddr.
func TestServerProxyLoopback(t *testing.T) {
	ev := newEventLog()
	_, ports := loopbackServer(t, Proxy, "", ev)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pxeAddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: ports[1]}
	for _, junk := range [][]byte{{1, 2, 3}, make([]byte, 300), append([]byte{1, 1, 200}, make([]byte, 300)...)} {
		if _, err := c.WriteToUDP(junk, pxeAddr); err != nil {
			t.Fatal(err)
		}
	}
	req := msg(t, dhcpv4.MessageTypeRequest, mac(7), pxeClass, arch(7), dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 1)))
	exchange(t, c, pxeAddr, req)
	r, from := readReply(t, c)
	if r.MessageType() != dhcpv4.MessageTypeAck || r.BootFileName != "snponly.efi" || !r.YourIPAddr.IsUnspecified() || from.Port != ports[1] {
		t.Fatalf("reply from %s: %s", from, r.Summary())
	}

	cl, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: ports[2]})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	inform := msg(t, dhcpv4.MessageTypeInform, mac(8), pxeClass, dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 1)))
	exchange(t, c, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: ports[0]}, inform)
	r, _ = readReply(t, cl)
	if r.MessageType() != dhcpv4.MessageTypeAck || r.BootFileName != "undionly.kpxe" {
		t.Fatalf("inform reply %s", r.Summary())
	}

	ctx := waitCtx(t, 10*time.Second)
	e := ev.wait(ctx, t, "pxe done", func(e tracker.Event) bool {
		return e.Stage == tracker.StagePXE && e.Event == tracker.KindDone && e.MAC == mac(7).String()
	})
	if e.Port != ports[1] || e.File != "snponly.efi" || e.Arch != "efi-x64" || e.Proto != "udp" {
		t.Errorf("event %+v", e)
	}
	listening := 0
	for _, e := range ev.all() {
		if e.Event == tracker.KindListening && e.MAC == "" {
			listening++
		}
	}
	if listening != 2 {
		t.Errorf("%d listening events, want 2", listening)
	}
}

// TestServerAuthoritativeLoopback: a renewing client is ACKed by unicast,
// the lease is on disk, and a restarted server has it.
func TestServerAuthoritativeLoopback(t *testing.T) {
	dir := t.TempDir()
	ev := newEventLog()
	s, ports := loopbackServer(t, Authoritative, dir, ev)
	cl, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero, Port: ports[2]})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ip := net.IPv4(127, 0, 0, 105)
	exchange(t, cl, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: ports[0]}, msg(t, dhcpv4.MessageTypeRequest, mac(5), dhcpv4.WithClientIP(ip)))
	r, _ := readReply(t, cl)
	if r.MessageType() != dhcpv4.MessageTypeAck || !r.YourIPAddr.Equal(ip) || r.IPAddressLeaseTime(0) != time.Hour {
		t.Fatalf("reply %s", r.Summary())
	}
	if !strings.Contains(r.SubnetMask().String(), "ff000000") {
		t.Errorf("netmask from lo: %s", r.SubnetMask())
	}
	if ls := s.Leases(); len(ls) != 1 || !ls[0].IP.Equal(ip) || ls[0].MAC != mac(5).String() {
		t.Fatalf("leases %+v", ls)
	}
	ctx := waitCtx(t, 10*time.Second)
	ev.wait(ctx, t, "dhcp done", func(e tracker.Event) bool {
		return e.Stage == tracker.StageDHCP && e.Event == tracker.KindDone && e.IP == ip.String() && strings.HasPrefix(e.Detail, "lease ")
	})
	if _, err := os.Stat(filepath.Join(dir, "leases.json")); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ctx); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}

	s2 := &Server{Interface: "lo", ServerIP: net.IPv4(127, 0, 0, 1), Mode: Authoritative, Pool: s.Pool, LeaseDir: dir, Log: quietLog(), Port: ports[0], PXEPort: ports[1]}
	if err := s2.Listen(); err != nil {
		t.Fatal(err)
	}
	defer s2.Shutdown(ctx)
	if ls := s2.Leases(); len(ls) != 1 || !ls[0].IP.Equal(ip) {
		t.Fatalf("after restart %+v", ls)
	}
}

func TestListenErrors(t *testing.T) {
	skipUnlessLinux(t)
	ports := freePorts(t, 2)
	base := func() *Server {
		return &Server{Interface: "lo", ServerIP: net.IPv4(127, 0, 0, 1), Mode: Proxy, Log: quietLog(), Port: ports[0], PXEPort: ports[1]}
	}
	for _, tc := range []struct {
		name string
		mod  func(s *Server)
		want string
	}{
		{"no interface", func(s *Server) { s.Interface = "" }, "dhcp: no interface"},
		{"unknown interface", func(s *Server) { s.Interface = "nd-none0" }, "dhcp: interface nd-none0"},
		{"no mode", func(s *Server) { s.Mode = "" }, "dhcp: unknown mode"},
		{"no server ip", func(s *Server) { s.ServerIP = nil }, "dhcp: server ip"},
		{"bad pool", func(s *Server) {
			s.Mode = Authoritative
			s.Pool = Pool{Start: net.IPv4(10, 0, 0, 1), End: net.IPv4(10, 0, 0, 9)}
		}, "outside the server's subnet"},
		{"short lease", func(s *Server) { s.LeaseTime = time.Second }, "lease time"},
	} {
		s := base()
		tc.mod(s)
		err := s.Listen()
		if err == nil {
			s.Shutdown(context.Background())
			t.Errorf("%s: Listen succeeded", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "dhcp: ") {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}

	// A port held by a socket without SO_REUSEADDR: the error names it.
	hold, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero, Port: ports[1]})
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	s := base()
	err = s.Listen()
	if err == nil {
		s.Shutdown(context.Background())
		t.Fatal("Listen on a busy port succeeded")
	}
	want := "dhcp: listen udp port " + strings.TrimPrefix(hold.LocalAddr().String(), "0.0.0.0:") + " on lo: "
	if !strings.HasPrefix(err.Error(), want) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("busy port: %v", err)
	}
	var le *ListenError
	if !errors.As(err, &le) || le.Port != ports[1] || le.Interface != "lo" {
		t.Fatalf("busy port: %#v", err)
	}
}

// TestServeContext: cancelling Serve's context is a clean stop.
func TestServeContext(t *testing.T) {
	skipUnlessLinux(t)
	ports := freePorts(t, 2)
	s := &Server{Interface: "lo", ServerIP: net.IPv4(127, 0, 0, 1), Mode: Proxy, Log: quietLog(), Port: ports[0], PXEPort: ports[1]}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	// Serve listens by itself; wait until it does.
	deadline := waitCtx(t, 10*time.Second)
	for {
		s.mu.Lock()
		up := s.serving
		s.mu.Unlock()
		if up {
			break
		}
		select {
		case <-deadline.Done():
			t.Fatal("Serve did not start")
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-deadline.Done():
		t.Fatal("Serve did not return")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestAuthorizationBeforeListen: the state can be set and read before the
// server listens; turning the check on keeps the server silent until the
// first probe.
func TestAuthorizationBeforeListen(t *testing.T) {
	s := &Server{Interface: "eth0", ServerIP: net.IPv4(198, 18, 0, 1), Mode: Proxy, Log: quietLog()}
	if s.AuthorizationEnabled() {
		t.Fatal("enabled by default")
	}
	if ok, why := s.Authorized(); !ok || !strings.Contains(why, "off") {
		t.Fatalf("off: %v %q", ok, why)
	}
	s.SetAuthorization(true)
	if !s.AuthorizationEnabled() {
		t.Fatal("SetAuthorization(true) ignored")
	}
	if ok, why := s.Authorized(); ok || !strings.Contains(why, "checking") {
		t.Fatalf("on: %v %q", ok, why)
	}
	if err := s.Probe(context.Background()); err == nil {
		t.Fatal("probe before Listen")
	}
	s.SetAuthorizedServers([]net.IP{net.IPv4(198, 18, 0, 3)})
	s.SetAuthorization(false)
	if ok, _ := s.Authorized(); !ok {
		t.Fatal("off again must answer")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Listen after Shutdown: %v", err)
	}
}
