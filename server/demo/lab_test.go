//go:build linux

package demo

import (
	"context"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// skipWithoutNamespaces skips t unless network namespaces can be used.
func skipWithoutNamespaces(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("needs network namespaces (CI runs as root): %v", err)
	}
}

func ipOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func namespaces(t *testing.T) []string {
	t.Helper()
	ns, err := ListNamespaces()
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// labNamespaces returns the namespaces that start with prefix + "-".
func labNamespaces(t *testing.T, prefix string) []string {
	var out []string
	for _, n := range namespaces(t) {
		if strings.HasPrefix(n, prefix+"-") {
			out = append(out, n)
		}
	}
	return out
}

// pingCommand is a ping that exists here, or nil.
func pingCommand() []string {
	if p, err := exec.LookPath("ping"); err == nil {
		return []string{p}
	}
	if p, err := exec.LookPath("busybox"); err == nil {
		return []string{p, "ping"}
	}
	return nil
}

func TestStalePid(t *testing.T) {
	for name, want := range map[string]int{"ndemo123-lan": 123, "ndemo7-c12": 7, "ndemo-lan": 0, "ndemoabc-x": 0, "ndemo12": 0, "nd12-lan": 0, "ndemo0-x": 0} {
		got, ok := stalePid(name)
		if got != want || ok != (want != 0) {
			t.Errorf("stalePid(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
	if !alive(os.Getpid()) {
		t.Error("this process is not alive")
	}
	if m := clientMAC(12); m.String() != "02:de:00:00:00:0c" {
		t.Errorf("client 12 MAC %s", m)
	}
}

// TestLab builds a lab and checks its namespaces, addresses, MACs and
// links; that Close removes everything (also processes) and is safe twice;
// that a failing NewLab leaves nothing; and that CleanStale removes only
// namespaces of processes that are gone.
func TestLab(t *testing.T) {
	skipWithoutNamespaces(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := LabPrefix + strconv.Itoa(os.Getpid())
	if left := labNamespaces(t, prefix); len(left) > 0 {
		t.Fatalf("namespaces of this process exist before the test: %v", left)
	}

	// A NewLab that fails half-way removes what it made, and only that.
	if _, err := NewLab(ctx, 0); err == nil || !strings.HasPrefix(err.Error(), "demo: ") {
		t.Errorf("NewLab(0): %v", err)
	}
	blocker := prefix + "-c2"
	ipOut(t, "netns", "add", blocker)
	if _, err := NewLab(ctx, 3); err == nil || !strings.HasPrefix(err.Error(), "demo: ") || !strings.Contains(err.Error(), blocker) {
		t.Errorf("NewLab with %s taken: %v", blocker, err)
	}
	if left := labNamespaces(t, prefix); !slices.Equal(left, []string{blocker}) {
		t.Errorf("after a failed NewLab: %v, want only %s", left, blocker)
	}
	ipOut(t, "netns", "del", blocker)

	// Stale namespaces: one of a process that is gone (with a process
	// still running inside), one of a live process, one not ours.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	if alive(gone.Process.Pid) {
		t.Skip("pid reused at once")
	}
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { live.Process.Kill(); live.Wait() }()
	stale := LabPrefix + strconv.Itoa(gone.Process.Pid) + "-x"
	keep := LabPrefix + strconv.Itoa(live.Process.Pid) + "-y"
	other := LabPrefix + "x" + strconv.Itoa(os.Getpid()) + "-z"
	for _, n := range []string{stale, keep, other} {
		ipOut(t, "netns", "add", n)
		defer exec.Command("ip", "netns", "del", n).Run()
	}
	orphan := exec.Command("ip", "netns", "exec", stale, "sleep", "60")
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	orphanDone := make(chan error, 1)
	go func() { orphanDone <- orphan.Wait() }()
	defer orphan.Process.Kill()

	lab, err := NewLab(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	if lab.Prefix != prefix || lab.ServerNS != prefix+"-srv" || lab.LAN != prefix+"-lan" || !lab.ServerIP.Equal(net.IPv4(198, 18, 0, 1)) || len(lab.Clients) != 2 {
		t.Fatalf("lab %+v", lab)
	}
	want := []string{prefix + "-lan", prefix + "-srv", prefix + "-c1", prefix + "-c2"}
	if got := lab.Namespaces(); !slices.Equal(got, want) {
		t.Errorf("Namespaces() = %v, want %v", got, want)
	}
	for _, n := range want {
		if !slices.Contains(namespaces(t), n) {
			t.Errorf("namespace %s missing", n)
		}
	}
	if out := ipOut(t, "-n", lab.ServerNS, "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, "inet 198.18.0.1/24") {
		t.Errorf("server address: %s", out)
	}
	bridged := ipOut(t, "-n", lab.LAN, "-o", "link", "show", "master", "br0")
	for i, c := range lab.Clients {
		n := i + 1
		if c.Name != "c"+strconv.Itoa(n) || c.NS != prefix+"-c"+strconv.Itoa(n) || c.Iface != "eth0" || c.MAC.String() != "02:de:00:00:00:0"+strconv.Itoa(n) {
			t.Errorf("client %d: %+v", n, c)
		}
		link := ipOut(t, "-n", c.NS, "-o", "link", "show", "dev", "eth0")
		if !strings.Contains(link, "link/ether "+c.MAC.String()) || !strings.Contains(link, "LOWER_UP") {
			t.Errorf("client %s link: %s", c.Name, link)
		}
		if addr := strings.TrimSpace(ipOut(t, "-n", c.NS, "-4", "-o", "addr", "show", "dev", "eth0")); addr != "" {
			t.Errorf("client %s has an address before DHCP: %s", c.Name, addr)
		}
		if !strings.Contains(bridged, "v"+c.Name+"@") {
			t.Errorf("v%s is not on br0: %s", c.Name, bridged)
		}
	}
	if !strings.Contains(bridged, "vsrv@") {
		t.Errorf("vsrv is not on br0: %s", bridged)
	}

	// No address, no way to the server; with one, the bridge carries it.
	if ping := pingCommand(); ping != nil {
		c1 := lab.Clients[0]
		args := append(ping[1:], "-c", "1", "-W", "2", "198.18.0.1")
		if out, err := lab.Command(ctx, c1.NS, ping[0], args...).CombinedOutput(); err == nil {
			t.Errorf("ping from %s without an address worked: %s", c1.NS, out)
		}
		ipOut(t, "-n", c1.NS, "addr", "add", "198.18.0.50/24", "dev", "eth0")
		if out, err := lab.Command(ctx, c1.NS, ping[0], args...).CombinedOutput(); err != nil {
			t.Errorf("ping from %s with 198.18.0.50: %v: %s", c1.NS, err, out)
		}
	} else {
		t.Log("no ping or busybox: reachability not checked")
	}

	if err := CleanStale(); err != nil {
		t.Fatalf("CleanStale: %v", err)
	}
	after := namespaces(t)
	if slices.Contains(after, stale) {
		t.Errorf("CleanStale left %s of dead pid %d", stale, gone.Process.Pid)
	}
	for _, n := range append([]string{keep, other}, want...) {
		if !slices.Contains(after, n) {
			t.Errorf("CleanStale removed %s", n)
		}
	}
	select {
	case <-orphanDone:
	case <-time.After(5 * time.Second):
		t.Errorf("the process in %s survived CleanStale", stale)
	}

	// Close kills what runs inside and removes every namespace.
	sleeper := lab.Command(ctx, lab.Clients[1].NS, "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	sleeperDone := make(chan error, 1)
	go func() { sleeperDone <- sleeper.Wait() }()
	// Let it enter the namespace (TestLabCloseWhileStarting covers a
	// process still on its way in).
	c2, _ := identOf("/run/netns/" + lab.Clients[1].NS)
	waitUntil(t, 5*time.Second, "sleep inside "+lab.Clients[1].NS, func() bool {
		return slices.Contains(pidsIn(c2), sleeper.Process.Pid)
	})
	if err := lab.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case <-sleeperDone:
	case <-time.After(5 * time.Second):
		t.Error("a process in the lab survived Close")
	}
	if left := labNamespaces(t, prefix); len(left) > 0 {
		t.Errorf("after Close: %v", left)
	}
	if lab.Namespaces() != nil {
		t.Errorf("Namespaces() after Close: %v", lab.Namespaces())
	}
	if err := lab.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if !slices.Contains(namespaces(t), keep) {
		t.Errorf("Close removed %s", keep)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLabCloseWhileStarting closes labs right after starting processes in
// them, before they are inside: none may survive.
func TestLabCloseWhileStarting(t *testing.T) {
	skipWithoutNamespaces(t)
	for round := range 5 {
		lab, err := NewLab(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		var waits []chan error
		for range 3 {
			cmd := lab.Command(context.Background(), lab.Clients[0].NS, "sleep", "60")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ch := make(chan error, 1)
			go func() { ch <- cmd.Wait() }()
			waits = append(waits, ch)
		}
		if err := lab.Close(); err != nil {
			t.Errorf("round %d: Close: %v", round, err)
		}
		for i, ch := range waits {
			select {
			case <-ch:
			case <-time.After(5 * time.Second):
				t.Fatalf("round %d: process %d survived Close", round, i)
			}
		}
	}
}
