// Package netlab builds throw-away test networks out of Linux network
// namespaces: one namespace holds a bridge (the "switch") and every host is
// a namespace of its own joined to it by a veth pair. Tests send traffic
// only inside these namespaces, and the lab removes them when the test
// ends. It needs root and iproute2; without them New skips the test.
package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Lab is one test network.
type Lab struct {
	t      testing.TB
	Prefix string // namespace name prefix
	LAN    string // namespace holding the bridge br0
	hosts  []*Host
	taps   []string
}

// Host is one machine on the lab network.
type Host struct {
	lab   *Lab
	Name  string
	NS    string // network namespace name
	Iface string // its interface on the LAN ("eth0")
	MAC   net.HardwareAddr
	CIDR  string // configured address, or "" for a DHCP client
}

// Skip skips t unless it runs as root with iproute2 available.
func Skip(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
}

// New creates a lab with an empty switch.
func New(t testing.TB) *Lab {
	t.Helper()
	Skip(t)
	b := make([]byte, 3)
	rand.Read(b)
	l := &Lab{t: t, Prefix: "nd" + hex.EncodeToString(b)}
	l.LAN = l.Prefix + "-lan"
	t.Cleanup(l.Close)
	l.must("ip", "netns", "add", l.LAN)
	l.nsMust(l.LAN, "ip", "link", "set", "lo", "up")
	l.nsMust(l.LAN, "ip", "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
	l.nsMust(l.LAN, "ip", "link", "set", "br0", "up")
	return l
}

// AddHost adds a namespace named after name, with eth0 on the switch. cidr
// (e.g. "198.18.0.1/24") is assigned when not empty. mac may be "" for a
// random one.
func (l *Lab) AddHost(name, cidr, mac string) *Host {
	l.t.Helper()
	h := &Host{lab: l, Name: name, NS: l.Prefix + "-" + name, Iface: "eth0", CIDR: cidr}
	peer := "v" + name
	if len(peer) > 15 {
		l.t.Fatalf("netlab: host name %q too long", name)
	}
	l.must("ip", "netns", "add", h.NS)
	l.hosts = append(l.hosts, h)
	l.nsMust(h.NS, "ip", "link", "set", "lo", "up")
	l.nsMust(l.LAN, "ip", "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", h.NS)
	l.nsMust(l.LAN, "ip", "link", "set", peer, "master", "br0")
	l.nsMust(l.LAN, "ip", "link", "set", peer, "up")
	if mac != "" {
		l.nsMust(h.NS, "ip", "link", "set", "eth0", "address", mac)
	}
	if cidr != "" {
		l.nsMust(h.NS, "ip", "addr", "add", cidr, "dev", "eth0")
	}
	l.nsMust(h.NS, "ip", "link", "set", "eth0", "up")
	out := l.nsMust(h.NS, "cat", "/sys/class/net/eth0/address")
	hw, err := net.ParseMAC(strings.TrimSpace(out))
	if err != nil {
		l.t.Fatalf("netlab: mac of %s: %v", h.NS, err)
	}
	h.MAC = hw
	return h
}

// Attach joins an existing host (possibly of another lab) to this lab's
// switch with a second interface named iface, assigning cidr if set.
func (l *Lab) Attach(h *Host, iface, cidr string) {
	l.t.Helper()
	peer := "v" + h.Name + iface
	if len(peer) > 15 {
		l.t.Fatalf("netlab: names %q/%q too long", h.Name, iface)
	}
	l.nsMust(l.LAN, "ip", "link", "add", peer, "type", "veth", "peer", "name", iface, "netns", h.NS)
	l.nsMust(l.LAN, "ip", "link", "set", peer, "master", "br0")
	l.nsMust(l.LAN, "ip", "link", "set", peer, "up")
	if cidr != "" {
		l.nsMust(h.NS, "ip", "addr", "add", cidr, "dev", iface)
	}
	l.nsMust(h.NS, "ip", "link", "set", iface, "up")
}

// AddTap creates a tap device on the switch for a virtual machine and
// returns its name; run the VM inside l.LAN (LAN.Command).
func (l *Lab) AddTap(name string) string {
	l.t.Helper()
	l.nsMust(l.LAN, "ip", "tuntap", "add", "dev", name, "mode", "tap")
	l.nsMust(l.LAN, "ip", "link", "set", name, "master", "br0")
	l.nsMust(l.LAN, "ip", "link", "set", name, "up")
	l.taps = append(l.taps, name)
	return name
}

// IP returns the host's configured address without the prefix length.
func (h *Host) IP() net.IP {
	ip, _, err := net.ParseCIDR(h.CIDR)
	if err != nil {
		return nil
	}
	return ip
}

// Command returns a command that runs inside the host's namespace.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return nsCommand(ctx, h.NS, name, args...)
}

// Run runs a command in the host's namespace and returns its combined
// output.
func (h *Host) Run(ctx context.Context, name string, args ...string) (string, error) {
	var buf bytes.Buffer
	cmd := h.Command(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), h.NS, err, buf.String())
	}
	return buf.String(), err
}

// LANCommand returns a command that runs inside the switch's namespace.
func (l *Lab) LANCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return nsCommand(ctx, l.LAN, name, args...)
}

func nsCommand(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Close deletes every namespace of the lab (also registered as cleanup).
func (l *Lab) Close() {
	for _, h := range l.hosts {
		killNS(h.NS)
		exec.Command("ip", "netns", "del", h.NS).Run()
	}
	l.hosts = nil
	if l.LAN != "" {
		killNS(l.LAN)
		exec.Command("ip", "netns", "del", l.LAN).Run()
		l.LAN = ""
	}
}

func (l *Lab) must(name string, args ...string) string {
	l.t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("netlab: %s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (l *Lab) nsMust(ns, name string, args ...string) string {
	l.t.Helper()
	return l.must("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}
