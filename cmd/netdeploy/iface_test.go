package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// TestOnlyServedInterface: the server has a second interface on another
// switch; a client there gets no answer, a client on the served one does.
// Also: a UDP range changed through the control API is the range the next
// TFTP session uses.
func TestOnlyServedInterface(t *testing.T) {
	need(t, "udhcpc", "curl")
	lab := netlab.New(t)
	other := netlab.New(t)
	srv := lab.AddHost("srv", "198.18.0.1/24", "")
	other.Attach(srv, "eth1", "198.18.1.1/24")
	cli := lab.AddHost("cli", "", "02:00:00:00:04:01")
	stranger := other.AddHost("str", "", "02:00:00:00:04:02")
	work := t.TempDir()
	data := filepath.Join(work, "data")
	root := filepath.Join(work, "root")
	small := randomFile(t, filepath.Join(root, "small.bin"), 5000)
	nd := serveIn(t, srv, "--interface", "eth0", "--data-dir", data, "--tftp-root", root)

	if l, err := udhcpc(t, stranger, t.TempDir(), "-t", "3", "-V", "PXEClient:Arch:00000:UNDI:002001"); err == nil {
		t.Errorf("client on the other interface got a lease: %v", l)
	}
	for _, e := range nd.all() {
		if e.MAC == stranger.MAC.String() {
			t.Errorf("event for a client on the other interface: %+v", e)
		}
	}
	l, err := udhcpc(t, cli, work, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000")
	if err != nil || l["serverid"] != "198.18.0.1" {
		t.Fatalf("client on the served interface: %v %v", l, err)
	}

	if out := ctl(t, data, "udp-range", "50000-50009"); !strings.Contains(out, `"udp_range": "50000-50009"`) {
		t.Errorf("status after range change: %s", out)
	}
	got := filepath.Join(work, "got")
	if out, err := cli.Run(t.Context(), "curl", "-sS", "-o", got, "tftp://198.18.0.1/small.bin"); err != nil {
		t.Fatalf("curl: %v %s", err, out)
	}
	sameFile(t, "small.bin after the range change", got, small)
	e := nd.wait(5*time.Second, "tftp done", func(e tracker.Event) bool {
		return e.Stage == tracker.StageTFTP && e.Event == tracker.KindDone && e.File == "small.bin"
	})
	if e.LocalPort < 50000 || e.LocalPort > 50009 {
		t.Errorf("session port %d outside the new range 50000-50009", e.LocalPort)
	}
	// An invalid range is refused and the old one kept.
	cmd := ctlCmd(t, data, "udp-range", "900-100")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "udp_range") {
		t.Errorf("invalid range accepted: %v %s", err, out)
	}
	if out := ctl(t, data, "status"); !strings.Contains(out, `"udp_range": "50000-50009"`) {
		t.Errorf("range after a refused change: %s", out)
	}
	nd.stop()
}

// TestDHCPOff: with dhcp.mode off nothing answers DHCP, and TFTP and HTTP
// still serve.
func TestDHCPOff(t *testing.T) {
	need(t, "udhcpc", "curl")
	lab := netlab.New(t)
	srv := lab.AddHost("srv", "198.18.0.1/24", "")
	cli := lab.AddHost("cli", "198.18.0.9/24", "02:00:00:00:05:01")
	work := t.TempDir()
	root := filepath.Join(work, "root")
	small := randomFile(t, filepath.Join(root, "small.bin"), 3000)
	nd := serveIn(t, srv, "--interface", "eth0", "--data-dir", filepath.Join(work, "data"), "--tftp-root", root, "--dhcp-mode", "off")
	for _, e := range nd.all() {
		if e.Event == tracker.KindListening && (e.Port == 67 || e.Port == 4011) {
			t.Errorf("dhcp off but listening: %+v", e)
		}
	}
	if l, err := udhcpc(t, cli, t.TempDir(), "-t", "2", "-V", "PXEClient:Arch:00000:UNDI:002001"); err == nil {
		t.Errorf("dhcp off but a lease came: %v", l)
	}
	for i, url := range []string{"tftp://198.18.0.1/small.bin", "http://198.18.0.1/small.bin"} {
		got := filepath.Join(work, fmt.Sprintf("got%d", i))
		if out, err := cli.Run(t.Context(), "curl", "-sSf", "-o", got, url); err != nil {
			t.Fatalf("curl %s: %v %s", url, err, out)
		}
		sameFile(t, url, got, small)
	}
	// Switched on through the control API (the console's m key does the
	// same): port 67 opens now and the client gets a lease.
	if out, _ := srv.Run(t.Context(), "ss", "-lun", "sport = :67"); strings.Contains(out, ":67") {
		t.Fatalf("port 67 open while off: %s", out)
	}
	if st := ctl(t, filepath.Join(work, "data"), "dhcp-mode", "authoritative"); !strings.Contains(st, `"dhcp_mode": "authoritative"`) {
		t.Fatalf("status after switching on: %s", st)
	}
	cli.Run(t.Context(), "ip", "addr", "flush", "dev", "eth0")
	l, err := udhcpc(t, cli, t.TempDir(), "-V", "PXEClient:Arch:00000:UNDI:002001")
	if err != nil || l["serverid"] != "198.18.0.1" || l["boot_file"] != "undionly.kpxe" {
		t.Fatalf("after switching on: %v %v", l, err)
	}
	nd.wait(5*time.Second, "a mode event", func(e tracker.Event) bool {
		return e.Stage == tracker.StageDHCP && e.MAC == "" && e.Detail == "mode authoritative"
	})
	nd.stop()
}
