//go:build linux

package dhcp

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// These tests run real clients against the server in network namespaces
// (198.18.0.0/24 only). netlab.New skips them unless root.

const labServerCIDR = "198.18.0.1/24"

var labPool = Pool{Start: net.IPv4(198, 18, 0, 100), End: net.IPv4(198, 18, 0, 149)}

func labPoolContains(ip net.IP) bool {
	v, ok := ipToU32(ip)
	a, _ := ipToU32(labPool.Start)
	b, _ := ipToU32(labPool.End)
	return ok && v >= a && v <= b
}

// startInLab listens inside host's namespace and serves until the test
// ends.
func startInLab(t *testing.T, host *netlab.Host, s *Server) {
	t.Helper()
	if err := host.Do(s.Listen); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
}

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("needs %s", name)
	}
	return p
}

// newLabClient opens an nclient4 client on the host's eth0.
func newLabClient(t *testing.T, host *netlab.Host, opts ...nclient4.ClientOpt) *nclient4.Client {
	t.Helper()
	var c *nclient4.Client
	if err := host.Do(func() (err error) {
		c, err = nclient4.New(host.Iface, append([]nclient4.ClientOpt{nclient4.WithTimeout(2 * time.Second), nclient4.WithRetry(3)}, opts...)...)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestLabUDHCPC: busybox udhcpc as a BIOS PXE client gets a lease from the
// pool and undionly.kpxe.
func TestLabUDHCPC(t *testing.T) {
	lab := netlab.New(t)
	udhcpc := needTool(t, "udhcpc")
	srv := lab.AddHost("srv", labServerCIDR, "")
	cli := lab.AddHost("cli", "", "02:00:00:00:00:c1")
	ev := newEventLog()
	dir := t.TempDir()
	s := &Server{
		Interface: "eth0",
		ServerIP:  srv.IP(),
		Mode:      Authoritative,
		Pool:      labPool,
		Router:    srv.IP(),
		LeaseDir:  dir,
		ScriptURL: "http://198.18.0.1/boot.ipxe",
		Has:       hasAll("undionly.kpxe", "snponly.efi", "ipxe.efi"),
		Events:    ev,
		Log:       testLogger(t),
	}
	startInLab(t, srv, s)

	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"+
		"if [ \"$1\" = bound ]; then echo \"LEASE ip=$ip boot_file=$boot_file siaddr=$siaddr serverid=$serverid subnet=$subnet router=$router\"; fi\n"+
		"exit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := waitCtx(t, 60*time.Second)
	out, err := cli.Run(ctx, udhcpc, "-f", "-q", "-n", "-i", "eth0", "-t", "5", "-T", "2",
		"-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000", "-s", script)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("udhcpc: %s", out)
	m := regexp.MustCompile(`LEASE ip=(\S+) boot_file=(\S*) siaddr=(\S*) serverid=(\S*) subnet=(\S*) router=(\S*)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("udhcpc printed no lease: %s", out)
	}
	ip := net.ParseIP(m[1])
	if !labPoolContains(ip) {
		t.Errorf("lease %s outside the pool", m[1])
	}
	if m[2] != "undionly.kpxe" || m[3] != "198.18.0.1" || m[4] != "198.18.0.1" || m[5] != "255.255.255.0" || m[6] != "198.18.0.1" {
		t.Errorf("udhcpc saw boot_file=%q siaddr=%q serverid=%q subnet=%q router=%q", m[2], m[3], m[4], m[5], m[6])
	}
	ls := s.Leases()
	if len(ls) != 1 || ls[0].MAC != cli.MAC.String() || !ls[0].IP.Equal(ip) {
		t.Errorf("server leases %+v", ls)
	}
	e := ev.wait(ctx, t, "dhcp done", func(e tracker.Event) bool {
		return e.Stage == tracker.StageDHCP && e.Event == tracker.KindDone && e.MAC == cli.MAC.String()
	})
	if e.IP != ip.String() || e.Arch != "bios" || e.Port != 67 {
		t.Errorf("dhcp done event %+v", e)
	}
	e = ev.wait(ctx, t, "pxe done", func(e tracker.Event) bool {
		return e.Stage == tracker.StagePXE && e.Event == tracker.KindDone && e.MAC == cli.MAC.String()
	})
	if e.File != "undionly.kpxe" {
		t.Errorf("pxe done event %+v", e)
	}
}

var uefiClass = dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016"))

// TestLabNclient4UEFI: a UEFI (arch 7) PXE client through the full
// DISCOVER/OFFER/REQUEST/ACK gets snponly.efi, preferred over ipxe.efi.
func TestLabNclient4UEFI(t *testing.T) {
	lab := netlab.New(t)
	srv := lab.AddHost("srv", labServerCIDR, "")
	cli := lab.AddHost("cli", "", "")
	s := &Server{
		Interface: "eth0", ServerIP: srv.IP(), Mode: Authoritative, Pool: labPool,
		ScriptURL: "http://198.18.0.1/boot.ipxe",
		Has:       hasAll("undionly.kpxe", "snponly.efi", "ipxe.efi"),
		Log:       testLogger(t),
	}
	startInLab(t, srv, s)
	c := newLabClient(t, cli)
	ctx := waitCtx(t, 30*time.Second)
	lease, err := c.Request(ctx, uefiClass, arch(7))
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*dhcpv4.DHCPv4{"offer": lease.Offer, "ack": lease.ACK} {
		if r.BootFileName != "snponly.efi" || r.BootFileNameOption() != "snponly.efi" || !r.ServerIPAddr.Equal(srv.IP()) {
			t.Errorf("%s: %s", name, r.Summary())
		}
		if !labPoolContains(r.YourIPAddr) {
			t.Errorf("%s: yiaddr %s", name, r.YourIPAddr)
		}
	}
	if lease.ACK.MessageType() != dhcpv4.MessageTypeAck || lease.ACK.IPAddressLeaseTime(0) != time.Hour {
		t.Errorf("ack %s", lease.ACK.Summary())
	}
}

// TestLabProxy: in proxy mode a PXE DISCOVER gets an OFFER without an
// address, a REQUEST to port 4011 an ACK back to its source, and a
// non-PXE client nothing.
func TestLabProxy(t *testing.T) {
	lab := netlab.New(t)
	srv := lab.AddHost("srv", labServerCIDR, "")
	cli := lab.AddHost("cli", "198.18.0.60/24", "")
	s := &Server{
		Interface: "eth0", ServerIP: srv.IP(), Mode: Proxy,
		ScriptURL: "http://198.18.0.1/boot.ipxe",
		Has:       hasAll("undionly.kpxe", "ipxe.efi"),
		Log:       testLogger(t),
	}
	startInLab(t, srv, s)
	c := newLabClient(t, cli)
	ctx := waitCtx(t, 30*time.Second)
	offer, err := c.DiscoverOffer(ctx, uefiClass, arch(9))
	if err != nil {
		t.Fatal(err)
	}
	if !offer.YourIPAddr.IsUnspecified() || offer.BootFileName != "ipxe.efi" || offer.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		t.Errorf("proxy offer %s", offer.Summary())
	}

	// Non-PXE: no answer at all.
	quiet := newLabClient(t, cli, nclient4.WithTimeout(time.Second), nclient4.WithRetry(2))
	if _, err := quiet.DiscoverOffer(ctx); err == nil {
		t.Error("proxy answered a non-PXE client")
	}

	// The PXE boot server: REQUEST from the client's address to 4011.
	var conn *net.UDPConn
	if err := cli.Do(func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: cli.IP()})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := msg(t, dhcpv4.MessageTypeRequest, cli.MAC, uefiClass, arch(7), dhcpv4.WithClientIP(cli.IP()))
	exchange(t, conn, &net.UDPAddr{IP: srv.IP(), Port: 4011}, req)
	r, from := readReply(t, conn)
	if r.MessageType() != dhcpv4.MessageTypeAck || r.BootFileName != "ipxe.efi" || !r.YourIPAddr.IsUnspecified() || !from.IP.Equal(srv.IP()) || from.Port != 4011 {
		t.Errorf("4011 reply from %s: %s", from, r.Summary())
	}
}

// dnsmasq runs a rogue DHCP server on host until the test ends.
func dnsmasq(t *testing.T, host *netlab.Host) {
	t.Helper()
	bin := needTool(t, "dnsmasq")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := host.Command(ctx, bin, "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--dhcp-range=198.18.0.150,198.18.0.160,1h", "--interface=eth0", "--bind-interfaces",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file=", "--no-ping", "--user=root",
		"--log-dhcp", "--log-facility=-")
	var out netlab.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq: %s", out.String())
		}
	})
}

// offersFrom sends a PXE DISCOVER and returns the server identifiers that
// offered, waiting until want answers or the client gives up.
func offersFrom(ctx context.Context, c *nclient4.Client, hw net.HardwareAddr, want net.IP) (seen []string, got bool) {
	d, err := dhcpv4.NewDiscovery(hw, pxeClass, arch(0))
	if err != nil {
		return nil, false
	}
	var mu sync.Mutex
	_, err = c.SendAndRead(ctx, c.RemoteAddr(), d, func(r *dhcpv4.DHCPv4) bool {
		if r.MessageType() != dhcpv4.MessageTypeOffer {
			return false
		}
		mu.Lock()
		seen = append(seen, r.ServerIdentifier().String())
		mu.Unlock()
		return r.ServerIdentifier().Equal(want)
	})
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), seen...), err == nil
}

// TestLabAuthorization: with dnsmasq on the link and authorization on, the
// server goes unauthorized, names dnsmasq, and answers nothing; once
// dnsmasq is authorized it answers. Turning authorization off and on at
// run time (from outside the namespace) works too.
func TestLabAuthorization(t *testing.T) {
	lab := netlab.New(t)
	srv := lab.AddHost("srv", labServerCIDR, "")
	rogue := lab.AddHost("rogue", "198.18.0.3/24", "02:00:00:00:00:03")
	cli := lab.AddHost("cli", "", "02:00:00:00:00:c1")
	dnsmasq(t, rogue)
	ctx := waitCtx(t, 120*time.Second)

	// dnsmasq answers before netdeploy starts.
	c := newLabClient(t, cli)
	if seen, ok := offersFrom(ctx, c, cli.MAC, rogue.IP()); !ok {
		t.Fatalf("dnsmasq does not answer (offers from %v)", seen)
	}

	ev := newEventLog()
	s := &Server{
		Interface: "eth0", ServerIP: srv.IP(), Mode: Authoritative, Pool: labPool,
		ScriptURL: "http://198.18.0.1/boot.ipxe", Has: hasAll("undionly.kpxe"),
		Authorization: true, AuthInterval: time.Hour, ProbeWait: 2 * time.Second,
		Events: ev, Log: testLogger(t),
	}
	if ok, _ := s.Authorized(); ok {
		t.Fatal("authorized before any probe")
	}
	startInLab(t, srv, s)
	e := ev.wait(ctx, t, "unauthorized", func(e tracker.Event) bool { return e.Event == tracker.KindUnauthorized })
	if e.IP != "198.18.0.3" || e.MAC != "" || e.Stage != tracker.StageDHCP {
		t.Errorf("unauthorized event %+v", e)
	}
	for _, want := range []string{"198.18.0.3", rogue.MAC.String(), "dhcp.authorized_servers"} {
		if !strings.Contains(e.Detail, want) {
			t.Errorf("detail %q lacks %q", e.Detail, want)
		}
	}
	if ok, why := s.Authorized(); ok || !strings.Contains(why, "198.18.0.3") {
		t.Errorf("Authorized() = %v, %q", ok, why)
	}
	// Port 68 is open while authorization is on.
	listening68 := false
	for _, e := range ev.all() {
		listening68 = listening68 || e.Event == tracker.KindListening && e.Port == 68
	}
	if !listening68 {
		t.Error("no listening event for the probe port")
	}

	// Unauthorized: a PXE DISCOVER gets dnsmasq's offer but none from us.
	quiet := newLabClient(t, cli, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(2))
	seen, ok := offersFrom(ctx, quiet, cli.MAC, srv.IP())
	if ok {
		t.Fatalf("unauthorized server offered (offers from %v)", seen)
	}
	if !strings.Contains(strings.Join(seen, " "), "198.18.0.3") {
		t.Fatalf("the DISCOVER reached nobody: offers from %v", seen)
	}
	for _, e := range ev.all() {
		if e.MAC == cli.MAC.String() {
			t.Fatalf("client event while unauthorized: %+v", e)
		}
	}

	// Authorize dnsmasq: answers at once, and a fresh probe agrees.
	n := ev.count()
	s.SetAuthorizedServers([]net.IP{rogue.IP()})
	if ok, why := s.Authorized(); !ok {
		t.Fatalf("still unauthorized: %s", why)
	}
	ev.waitFrom(ctx, t, n, "authorized", func(e tracker.Event) bool { return e.Event == tracker.KindAuthorized })
	if err := s.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, why := s.Authorized(); !ok || !strings.Contains(why, "198.18.0.3") {
		t.Fatalf("after probe: %v %q", ok, why)
	}
	if seen, ok := offersFrom(ctx, c, cli.MAC, srv.IP()); !ok {
		t.Fatalf("authorized server did not offer (offers from %v)", seen)
	}

	// Off at run time: answers regardless; on again (called from this
	// goroutine, outside the namespace): probes at once and goes silent.
	s.SetAuthorizedServers(nil)
	if ok, _ := s.Authorized(); ok {
		t.Fatal("authorized after emptying the list")
	}
	s.SetAuthorization(false)
	if ok, _ := s.Authorized(); !ok || s.AuthorizationEnabled() {
		t.Fatal("authorization off must answer")
	}
	if seen, ok := offersFrom(ctx, c, cli.MAC, srv.IP()); !ok {
		t.Fatalf("no offer with authorization off (offers from %v)", seen)
	}
	n = ev.count()
	s.SetAuthorization(true)
	if ok, _ := s.Authorized(); ok {
		t.Fatal("answers before the first probe after turning authorization on")
	}
	e = ev.waitFrom(ctx, t, n, "unauthorized again", func(e tracker.Event) bool {
		return e.Event == tracker.KindUnauthorized || e.Event == tracker.KindAuthorized
	})
	if e.Event != tracker.KindUnauthorized || e.IP != "198.18.0.3" {
		t.Fatalf("after turning authorization on again: %+v", e)
	}
	if err := s.Probe(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
}
