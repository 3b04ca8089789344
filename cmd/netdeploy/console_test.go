package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/netlab"
)

// tmuxConsole is the real binary's console running in a detached tmux
// session of its own tmux server, read back with capture-pane.
type tmuxConsole struct {
	t      *testing.T
	socket string
	name   string
}

func startTmuxConsole(t *testing.T, host *netlab.Host, w, h int, args ...string) *tmuxConsole {
	t.Helper()
	need(t, "tmux")
	c := &tmuxConsole{t: t, socket: fmt.Sprintf("nd-test-%d", time.Now().UnixNano()), name: "console"}
	// The pane stays after the program ends so that its last words can be
	// read; TERM gives bubbletea a known terminal.
	inner := "ip netns exec " + host.NS + " " + binary(t) + " " + strings.Join(args, " ") + "; echo CONSOLE-EXIT=$?; sleep 600"
	cmd := exec.Command("tmux", "-L", c.socket, "new-session", "-d", "-s", c.name, "-x", strconv.Itoa(w), "-y", strconv.Itoa(h), inner)
	cmd.Env = append(cmd.Environ(), "TERM=xterm-256color")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("tmux", "-L", c.socket, "kill-server").Run() })
	return c
}

// screen is what the pane shows now.
func (c *tmuxConsole) screen() string {
	out, err := exec.Command("tmux", "-L", c.socket, "capture-pane", "-p", "-t", c.name).CombinedOutput()
	if err != nil {
		c.t.Fatalf("capture-pane: %v: %s", err, out)
	}
	return string(out)
}

// keys sends tmux key names one at a time, as a person types them.
func (c *tmuxConsole) keys(keys ...string) {
	for _, k := range keys {
		if out, err := exec.Command("tmux", "-L", c.socket, "send-keys", "-t", c.name, k).CombinedOutput(); err != nil {
			c.t.Fatalf("send-keys %s: %v: %s", k, err, out)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// text types literal text.
func (c *tmuxConsole) text(s string) {
	if out, err := exec.Command("tmux", "-L", c.socket, "send-keys", "-t", c.name, "-l", s).CombinedOutput(); err != nil {
		c.t.Fatalf("send-keys: %v: %s", err, out)
	}
	time.Sleep(150 * time.Millisecond)
}

// waitScreen waits until the screen matches ok and returns it.
func (c *tmuxConsole) waitScreen(d time.Duration, what string, ok func(string) bool) string {
	c.t.Helper()
	deadline := time.Now().Add(d)
	var s string
	for time.Now().Before(deadline) {
		if s = c.screen(); ok(s) {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("timed out after %s waiting for %s; screen:\n%s", d, what, s)
	return ""
}

func (c *tmuxConsole) waitText(d time.Duration, text string) string {
	c.t.Helper()
	return c.waitScreen(d, strconv.Quote(text), func(s string) bool { return strings.Contains(s, text) })
}

// TestConsoleTmux drives the real console in tmux: DHCP and HTTP clients
// in a namespace appear as rows; the authorization key changes what the
// DHCP server does (a foreign dnsmasq makes it fall silent); a UDP range
// typed into the console is the range the next TFTP session uses, as
// tshark sees it; q stops every service cleanly.
func TestConsoleTmux(t *testing.T) {
	need(t, "udhcpc", "curl", "tftp", "tshark", "dnsmasq")
	lab := netlab.New(t)
	srv := lab.AddHost("srv", "198.18.0.1/24", "")
	rogue := lab.AddHost("rogue", "198.18.0.2/24", "02:00:00:00:0e:0e")
	cli := lab.AddHost("cli", "", "02:00:00:00:03:01")
	cli2 := lab.AddHost("cli2", "", "02:00:00:00:03:02")
	work := t.TempDir()
	data := filepath.Join(work, "data")

	con := startTmuxConsole(t, srv, 120, 40, "--interface", "eth0", "--data-dir", data, "--dhcp-pool", "198.18.0.100-198.18.0.120")
	con.waitText(15*time.Second, "No clients yet")

	// 1. Real clients appear as rows within seconds.
	l, err := udhcpc(t, cli, work, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000")
	if err != nil {
		t.Fatal(err)
	}
	if l["serverid"] != "198.18.0.1" {
		t.Fatalf("lease %v", l)
	}
	if out, err := cli.Run(context.Background(), "curl", "-sf", "-o", "/dev/null", "http://198.18.0.1/boot.ipxe"); err != nil {
		t.Fatalf("curl: %v %s", err, out)
	}
	row := regexp.MustCompile(`02:00:00:00:03:01 +` + regexp.QuoteMeta(l["ip"]) + ` +bios +D\S*H`)
	s := con.waitScreen(5*time.Second, "a row for the client with its IP, arch and stages", func(s string) bool { return row.MatchString(s) })
	if !strings.Contains(s, "boot.ipxe") {
		t.Errorf("row lacks the last event:\n%s", s)
	}

	// 2. The authorization key. A foreign DHCP server appears; pressing a
	// turns the check on, the header turns unauthorized, and a new client
	// gets its lease from the foreign server only.
	stopDNSMasq := foreignDHCP(t, rogue, work)
	con.keys("a")
	con.waitText(30*time.Second, "UNAUTHORIZED")
	stopCapture := capture(t, srv, "udp src port 67 and src host 198.18.0.1", "ip.dst")
	l2, err := udhcpc(t, cli2, work, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if sent := stopCapture(); len(sent) > 0 {
		t.Errorf("unauthorized netdeploy sent DHCP packets to %v", sent)
	}
	if l2["serverid"] != "198.18.0.2" {
		t.Errorf("lease from %s while unauthorized, want 198.18.0.2", l2["serverid"])
	}
	// And off again: netdeploy answers at once.
	con.keys("a")
	con.waitText(5*time.Second, "authorization off")
	stopDNSMasq()
	if l2, err = udhcpc(t, cli2, work, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000"); err != nil || l2["serverid"] != "198.18.0.1" {
		t.Errorf("after authorization off: lease %v, %v", l2, err)
	}

	// 3. A range edited in the console, first wrong then right, is the
	// range of the next TFTP session.
	con.keys("r", "C-u")
	con.text("64600-64500")
	con.keys("Enter")
	con.waitText(5*time.Second, "keeping 64001-65000")
	con.keys("C-u")
	con.text("64600-64609")
	con.keys("Enter")
	con.waitText(5*time.Second, "UDP range is now 64600-64609")
	stopCapture = capture(t, srv, "udp and src host 198.18.0.1 and not port 67", "udp.srcport")
	got := filepath.Join(work, "u.kpxe")
	out, err := cli.Run(context.Background(), "tftp", "198.18.0.1", "-c", "get", "undionly.kpxe", got)
	if st, serr := os.Stat(got); err != nil || serr != nil || st.Size() == 0 {
		t.Fatalf("tftp: %v %v %s", err, serr, out)
	}
	time.Sleep(time.Second)
	ports := stopCapture()
	if len(ports) == 0 {
		t.Fatalf("tshark saw no TFTP data (tftp said %q)", out)
	}
	for _, p := range ports {
		n, _ := strconv.Atoi(p)
		if n < 64600 || n > 64609 {
			t.Fatalf("TFTP data from port %d, outside the range typed in the console (all: %v)", n, ports)
		}
	}
	// The Ports screen shows the new range and the traffic.
	con.keys("2")
	con.waitScreen(5*time.Second, "ports screen with the new range", func(s string) bool {
		return regexp.MustCompile(`tftp-data +udp 64600-64609 +listening +\d`).MatchString(s)
	})

	// 4. q stops the services cleanly.
	con.keys("q")
	s = con.waitText(20*time.Second, "CONSOLE-EXIT=")
	if !strings.Contains(s, "CONSOLE-EXIT=0") || !strings.Contains(s, "stopped cleanly") {
		t.Fatalf("console did not stop cleanly:\n%s", s)
	}
	if out, _ := srv.Run(context.Background(), "ss", "-lnu"); strings.Contains(out, ":69 ") || strings.Contains(out, ":67 ") {
		t.Errorf("ports still open after quitting: %s", out)
	}
}

// TestConsoleModeSwitch starts the console with DHCP off: nothing answers
// until m switches it to authoritative (sockets opened at that moment),
// then a client gets a lease; m again (proxy) makes offers address-less.
func TestConsoleModeSwitch(t *testing.T) {
	need(t, "udhcpc")
	lab := netlab.New(t)
	srv := lab.AddHost("srv", "198.18.0.1/24", "")
	cli := lab.AddHost("cli", "", "02:00:00:00:04:01")
	work := t.TempDir()
	con := startTmuxConsole(t, srv, 80, 24, "--interface", "eth0", "--data-dir", filepath.Join(work, "data"), "--dhcp-mode", "off")
	con.waitText(15*time.Second, "dhcp off")
	if _, err := udhcpc(t, cli, work, "-t", "2"); err == nil {
		t.Fatal("a lease while DHCP is off")
	}
	con.keys("m")
	con.waitText(5*time.Second, "DHCP mode is now authoritative")
	l, err := udhcpc(t, cli, work)
	if err != nil || l["serverid"] != "198.18.0.1" {
		t.Fatalf("after switching on: lease %v, %v", l, err)
	}
	con.keys("2")
	con.waitScreen(5*time.Second, "dhcp port listening with traffic", func(s string) bool {
		return regexp.MustCompile(`dhcp +udp 67 +listening +[1-9]`).MatchString(s)
	})
	con.keys("m")
	con.waitText(5*time.Second, "DHCP mode is now proxy")
	// In proxy mode nothing hands out addresses, so the client gives up.
	if l, err := udhcpc(t, cli, work, "-t", "2"); err == nil {
		t.Fatalf("a lease in proxy mode: %v", l)
	}
	con.keys("q")
	if s := con.waitText(20*time.Second, "CONSOLE-EXIT="); !strings.Contains(s, "CONSOLE-EXIT=0") {
		t.Fatalf("exit:\n%s", s)
	}
}

// TestDemoTmux runs "netdeploy demo" as a user would: simulated machines
// in a private network boot through DHCP, TFTP and HTTP and show up in
// the console; on q the demo's namespaces are gone.
func TestDemoTmux(t *testing.T) {
	netlab.Skip(t)
	need(t, "tmux")
	c := &tmuxConsole{t: t, socket: fmt.Sprintf("nd-demo-%d", time.Now().UnixNano()), name: "demo"}
	cmd := exec.Command("tmux", "-L", c.socket, "new-session", "-d", "-s", c.name, "-x", "120", "-y", "40",
		binary(t)+" demo --clients 3 --kernel-mib 4 --rate 4000000 --once; echo CONSOLE-EXIT=$?; sleep 600")
	cmd.Env = append(cmd.Environ(), "TERM=xterm-256color")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("tmux", "-L", c.socket, "kill-server").Run() })
	// Every machine gets an address, fetches its boot program by TFTP and
	// ends with the initrd over HTTP.
	done := regexp.MustCompile(`02:de:00:00:00:0\d +198\.18\.0\.\d+ +(bios|efi-x64) +DPTHRS`)
	c.waitScreen(60*time.Second, "three machines through DHCP, PXE, TFTP, HTTP, RPC and SMB", func(s string) bool {
		return len(done.FindAllString(s, -1)) == 3
	})
	out, _ := exec.Command("ip", "netns", "list").Output()
	if !strings.Contains(string(out), "ndemo") {
		t.Fatalf("no demo namespaces while it runs: %s", out)
	}
	c.keys("q")
	if s := c.waitText(20*time.Second, "CONSOLE-EXIT="); !strings.Contains(s, "CONSOLE-EXIT=0") {
		t.Fatalf("demo exit:\n%s", s)
	}
	waitFor(t, 10*time.Second, "demo namespaces removed", func() bool {
		out, _ := exec.Command("ip", "netns", "list").Output()
		return !strings.Contains(string(out), "ndemo")
	})
}

// TestDemoLoopback runs the demo without namespaces: TFTP and HTTP on
// 127.0.0.1 from clients on 127.0.0.N, one row per machine.
func TestDemoLoopback(t *testing.T) {
	need(t, "tmux")
	c := &tmuxConsole{t: t, socket: fmt.Sprintf("nd-demolo-%d", time.Now().UnixNano()), name: "demo"}
	cmd := exec.Command("tmux", "-L", c.socket, "new-session", "-d", "-s", c.name, "-x", "80", "-y", "24",
		binary(t)+" demo --loopback --clients 2 --kernel-mib 2 --rate 4000000 --once; echo CONSOLE-EXIT=$?; sleep 600")
	cmd.Env = append(cmd.Environ(), "TERM=xterm-256color")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("tmux", "-L", c.socket, "kill-server").Run() })
	row := regexp.MustCompile(`02:de:7f:00:00:0\d +127\.0\.0\.1\d .*··THRS`)
	s := c.waitScreen(60*time.Second, "two loopback machines through TFTP, HTTP, RPC and SMB", func(s string) bool {
		return len(row.FindAllString(s, -1)) == 2
	})
	if strings.Contains(s, "(no MAC)") {
		t.Errorf("address-only rows left over:\n%s", s)
	}
	c.keys("q")
	if s := c.waitText(20*time.Second, "CONSOLE-EXIT="); !strings.Contains(s, "CONSOLE-EXIT=0") {
		t.Fatalf("demo exit:\n%s", s)
	}
}
