package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// ctlCmd is "netdeploy ctl" against the server using dataDir.
func ctlCmd(t *testing.T, dataDir string, args ...string) *exec.Cmd {
	return exec.Command(binary(t), append([]string{"ctl", "--data-dir", dataDir}, args...)...)
}

// ctl runs "netdeploy ctl" against the server using dataDir.
func ctl(t *testing.T, dataDir string, args ...string) string {
	t.Helper()
	out, err := ctlCmd(t, dataDir, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("netdeploy ctl %v: %v: %s", args, err, out)
	}
	return string(out)
}

// TestAuthorizationForeignServer: with dhcp.authorization on, a foreign
// DHCP server (dnsmasq in another namespace) stops netdeploy from handing
// out addresses; turning authorization off through the control API makes
// it answer at once.
func TestAuthorizationForeignServer(t *testing.T) {
	need(t, "udhcpc", "dnsmasq", "tshark")
	lab := netlab.New(t)
	srv := lab.AddHost("srv", "198.18.0.1/24", "")
	rogue := lab.AddHost("rogue", "198.18.0.2/24", "02:00:00:00:0e:0e")
	cli := lab.AddHost("cli", "", "02:00:00:00:02:01")
	work := t.TempDir()
	stopDNSMasq := foreignDHCP(t, rogue, work)

	data := filepath.Join(work, "data")
	nd := serveIn(t, srv, "--interface", "eth0", "--data-dir", data, "--dhcp-pool", "198.18.0.100-198.18.0.120", "--dhcp-authorization")
	un := nd.wait(30*time.Second, "unauthorized event", func(e tracker.Event) bool {
		return e.Stage == tracker.StageDHCP && e.Event == tracker.KindUnauthorized
	})
	if un.IP != "198.18.0.2" || !strings.Contains(un.Detail, "02:00:00:00:0e:0e") || !strings.Contains(un.Detail, "dhcp.authorized_servers") {
		t.Errorf("unauthorized event must name the other server's IP and MAC and the fix: %+v", un)
	}
	waitFor(t, 5*time.Second, "a log line naming the other server", func() bool {
		return strings.Contains(nd.logs(), "ip=198.18.0.2 mac=02:00:00:00:0e:0e")
	})
	if st := ctl(t, data, "status"); !strings.Contains(st, `"authorized": false`) {
		t.Errorf("status while unauthorized: %s", st)
	}

	// While unauthorized netdeploy sends nothing from port 67.
	stopCapture := capture(t, srv, "udp src port 67 and src host 198.18.0.1", "ip.dst")
	l, err := udhcpc(t, cli, work, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // let a late answer show up in the capture
	sent := stopCapture()
	if l["serverid"] != "198.18.0.2" {
		t.Errorf("lease from %s, want the foreign server 198.18.0.2", l["serverid"])
	}
	if len(sent) > 0 {
		t.Errorf("unauthorized netdeploy sent DHCP packets to: %s", sent)
	}
	for _, e := range nd.all() {
		if e.MAC == cli.MAC.String() && e.Stage == tracker.StageDHCP && e.Event == tracker.KindDone {
			t.Errorf("unauthorized netdeploy completed a lease: %+v", e)
		}
	}

	// The console's key, here the control API: authorization off applies at
	// once. Stop the foreign server so the client hears only netdeploy.
	if st := ctl(t, data, "authorization", "off"); !strings.Contains(st, `"authorized": true`) {
		t.Errorf("status after authorization off: %s", st)
	}
	stopDNSMasq()
	l, err = udhcpc(t, cli, work, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000")
	if err != nil {
		t.Fatal(err)
	}
	if l["serverid"] != "198.18.0.1" || l["boot_file"] != "undionly.kpxe" {
		t.Errorf("after authorization off: lease %v", l)
	}
	// On again: the probe finds nobody now, so netdeploy stays authorized.
	ctl(t, data, "authorization", "on")
	nd.wait(30*time.Second, "authorized event", func(e tracker.Event) bool {
		return e.Stage == tracker.StageDHCP && e.Event == tracker.KindAuthorized
	})
	nd.stop()
}

// TestApprovePolicy: with pxe.policy approve an unknown PXE client gets an
// address but no boot file and is listed as pending until approved through
// the control API.
func TestApprovePolicy(t *testing.T) {
	need(t, "udhcpc")
	lab := netlab.New(t)
	srv := lab.AddHost("srv", "198.18.0.1/24", "")
	cli := lab.AddHost("cli", "", "02:00:00:00:03:01")
	work := t.TempDir()
	data := filepath.Join(work, "data")
	nd := serveIn(t, srv, "--interface", "eth0", "--data-dir", data, "--pxe-policy", "approve")
	pxe := []string{"-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000"}
	l, err := udhcpc(t, cli, work, pxe...)
	if err != nil {
		t.Fatal(err)
	}
	if l["ip"] == "" || l["boot_file"] != "" {
		t.Errorf("pending client: lease %v (want an address and no boot file)", l)
	}
	nd.wait(5*time.Second, "pending event", func(e tracker.Event) bool {
		return e.MAC == cli.MAC.String() && e.Event == tracker.KindPending
	})
	if p := ctl(t, data, "pending"); !strings.Contains(p, cli.MAC.String()) {
		t.Errorf("pending list lacks the client: %s", p)
	}
	ctl(t, data, "approve", cli.MAC.String())
	l, err = udhcpc(t, cli, work, pxe...)
	if err != nil {
		t.Fatal(err)
	}
	if l["boot_file"] != "undionly.kpxe" {
		t.Errorf("approved client: lease %v", l)
	}
	if p := ctl(t, data, "pending"); strings.Contains(p, cli.MAC.String()) {
		t.Errorf("approved client still pending: %s", p)
	}
	nd.stop()
}

// foreignDHCP starts dnsmasq as a foreign DHCP server (pool
// 198.18.0.150-160) on host's eth0 and waits until it listens; stop kills
// it (also run at cleanup).
func foreignDHCP(t *testing.T, host *netlab.Host, work string) (stop func()) {
	t.Helper()
	dm := host.Command(context.Background(), "dnsmasq", "--no-daemon", "--port=0", "--conf-file=/dev/null", "--pid-file=",
		"--dhcp-range=198.18.0.150,198.18.0.160,1h", "--interface=eth0", "--bind-interfaces",
		"--dhcp-leasefile="+filepath.Join(work, "dnsmasq.leases"))
	if err := dm.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { dm.Wait(); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { dm.Process.Kill(); <-done }) }
	t.Cleanup(stop)
	waitFor(t, 15*time.Second, "dnsmasq on port 67", func() bool {
		out, _ := host.Run(context.Background(), "ss", "-lun", "sport = :67")
		return strings.Contains(out, ":67")
	})
	return stop
}
