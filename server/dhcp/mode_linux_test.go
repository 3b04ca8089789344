//go:build linux

package dhcp

import (
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// TestLabModeSwitch: a server started in mode off, with authorization on,
// is switched at run time to authoritative, proxy, off and authoritative
// again. A real client on the link gets nothing, a lease, a proxy offer
// without an address, nothing, and its lease back; the probe runs in mode
// off; the port counters see the exchanges.
func TestLabModeSwitch(t *testing.T) {
	lab := netlab.New(t)
	srv := lab.AddHost("srv", labServerCIDR, "")
	cli := lab.AddHost("cli", "", "02:00:00:00:00:c1")
	ev := newEventLog()
	dir := t.TempDir()
	s := &Server{
		Interface: "eth0", ServerIP: srv.IP(), Mode: Off, Pool: labPool, LeaseDir: dir,
		ScriptURL:     "http://198.18.0.1/boot.ipxe",
		Has:           hasAll("undionly.kpxe", "snponly.efi", "ipxe.efi"),
		Authorization: true, AuthInterval: time.Hour, ProbeWait: 500 * time.Millisecond,
		Events: ev, Log: testLogger(t),
	}
	startInLab(t, srv, s)
	ctx := waitCtx(t, 120*time.Second)

	// The probe runs although the mode is off, and finds nobody.
	ev.wait(ctx, t, "authorized", func(e tracker.Event) bool { return e.Event == tracker.KindAuthorized })
	if st, ok := s.Stats()[68]; !ok || st.PacketsOut == 0 || st.BytesOut == 0 {
		t.Fatalf("probe port stats %+v (present %v)", st, ok)
	}

	c := newLabClient(t, cli)
	quiet := newLabClient(t, cli, nclient4.WithTimeout(time.Second), nclient4.WithRetry(2))
	if offer, err := quiet.DiscoverOffer(ctx, uefiClass, arch(7)); err == nil {
		t.Fatalf("mode off offered: %s", offer.Summary())
	}
	if st := s.Stats()[67]; st.PacketsIn == 0 || st.PacketsOut != 0 {
		t.Fatalf("port 67 stats in mode off %+v", st)
	}
	if ls := s.Leases(); ls != nil {
		t.Fatalf("leases in mode off %+v", ls)
	}

	if err := s.SetMode(Authoritative); err != nil {
		t.Fatal(err)
	}
	lease, err := c.Request(ctx, uefiClass, arch(7))
	if err != nil {
		t.Fatal(err)
	}
	ip := lease.ACK.YourIPAddr
	if !labPoolContains(lease.Offer.YourIPAddr) || !labPoolContains(ip) || lease.ACK.BootFileName != "snponly.efi" {
		t.Fatalf("authoritative: offer %s, ack %s", lease.Offer.Summary(), lease.ACK.Summary())
	}

	if err := s.SetMode(Proxy); err != nil {
		t.Fatal(err)
	}
	offer, err := c.DiscoverOffer(ctx, uefiClass, arch(7))
	if err != nil {
		t.Fatal(err)
	}
	if !offer.YourIPAddr.IsUnspecified() || offer.BootFileName != "snponly.efi" || offer.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		t.Fatalf("proxy offer %s", offer.Summary())
	}

	if err := s.SetMode(Off); err != nil {
		t.Fatal(err)
	}
	if offer, err := quiet.DiscoverOffer(ctx, uefiClass, arch(7)); err == nil {
		t.Fatalf("mode off offered: %s", offer.Summary())
	}
	if err := s.Probe(ctx); err != nil {
		t.Fatalf("probe in mode off: %v", err)
	}

	if err := s.SetMode(Authoritative); err != nil {
		t.Fatal(err)
	}
	again, err := c.Request(ctx, uefiClass, arch(7))
	if err != nil {
		t.Fatal(err)
	}
	if !again.ACK.YourIPAddr.Equal(ip) {
		t.Fatalf("lease after the round trip %s, want %s", again.ACK.YourIPAddr, ip)
	}
	if ls := s.Leases(); len(ls) != 1 || !ls[0].IP.Equal(ip) || ls[0].MAC != cli.MAC.String() {
		t.Fatalf("leases %+v", ls)
	}

	want := "mode authoritative,mode proxy,mode off,mode authoritative"
	if got := strings.Join(modeEvents(ev.all()), ","); got != want {
		t.Fatalf("mode events %q, want %q", got, want)
	}
	// Offers and ACKs: 2 + 2 authoritative, 1 proxy offer. A reply is
	// counted after it is sent, so the client may have it first.
	st := s.Stats()
	for deadline := time.Now().Add(5 * time.Second); st[67].PacketsOut < 5 && time.Now().Before(deadline); st = s.Stats() {
		time.Sleep(10 * time.Millisecond)
	}
	if p := st[67]; p.PacketsOut < 5 || p.PacketsIn < p.PacketsOut || p.BytesOut < 5*240 {
		t.Fatalf("port 67 stats %+v", p)
	}
	if _, ok := st[4011]; !ok {
		t.Fatalf("no stats for port 4011: %+v", st)
	}
	if p := st[68]; p.PacketsOut < 2 {
		t.Fatalf("probe stats %+v", p)
	}
}
