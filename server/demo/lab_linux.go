package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// NewLab builds the lab network with the given number of clients. The
// namespaces are named after this process ("ndemo<pid>-..."), so only one
// lab per process exists at a time. On any error it removes what it made.
func NewLab(ctx context.Context, clients int) (*Lab, error) {
	if clients < 1 || clients > MaxLabClients {
		return nil, fmt.Errorf("demo: %d clients (want 1 to %d)", clients, MaxLabClients)
	}
	if err := Available(); err != nil {
		return nil, err
	}
	prefix := LabPrefix + strconv.Itoa(os.Getpid())
	ip, _, _ := net.ParseCIDR(LabServerCIDR)
	l := &Lab{
		Prefix:      prefix,
		LAN:         prefix + "-lan",
		ServerNS:    prefix + "-srv",
		ServerIP:    ip.To4(),
		ServerIface: "eth0",
	}
	if err := l.build(ctx, clients); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Lab) build(ctx context.Context, clients int) error {
	if err := l.addNS(ctx, l.LAN); err != nil {
		return err
	}
	if err := run(ctx, "ip", "-n", l.LAN, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0"); err != nil {
		return err
	}
	if err := run(ctx, "ip", "-n", l.LAN, "link", "set", "br0", "up"); err != nil {
		return err
	}
	if err := l.addHost(ctx, l.ServerNS, "vsrv", nil, LabServerCIDR); err != nil {
		return err
	}
	for i := 1; i <= clients; i++ {
		h := LabHost{Name: "c" + strconv.Itoa(i), NS: l.Prefix + "-c" + strconv.Itoa(i), Iface: "eth0", MAC: clientMAC(i)}
		if err := l.addHost(ctx, h.NS, "v"+h.Name, h.MAC, ""); err != nil {
			return err
		}
		l.Clients = append(l.Clients, h)
	}
	return nil
}

// addNS creates a namespace with its loopback up.
func (l *Lab) addNS(ctx context.Context, ns string) error {
	if err := run(ctx, "ip", "netns", "add", ns); err != nil {
		return err
	}
	l.mu.Lock()
	l.made = append(l.made, ns)
	l.mu.Unlock()
	return run(ctx, "ip", "-n", ns, "link", "set", "lo", "up")
}

// addHost creates namespace ns whose eth0 is joined to the bridge by a
// veth pair (peer, on the LAN side), with mac and cidr when set.
func (l *Lab) addHost(ctx context.Context, ns, peer string, mac net.HardwareAddr, cidr string) error {
	if err := l.addNS(ctx, ns); err != nil {
		return err
	}
	steps := [][]string{
		{"ip", "-n", l.LAN, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"ip", "-n", l.LAN, "link", "set", peer, "master", "br0"},
		{"ip", "-n", l.LAN, "link", "set", peer, "up"},
	}
	if mac != nil {
		steps = append(steps, []string{"ip", "-n", ns, "link", "set", "eth0", "address", mac.String()})
	}
	if cidr != "" {
		steps = append(steps, []string{"ip", "-n", ns, "addr", "add", cidr, "dev", "eth0"})
	}
	steps = append(steps, []string{"ip", "-n", ns, "link", "set", "eth0", "up"})
	for _, s := range steps {
		if err := run(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// Close kills the processes left in the lab's namespaces and deletes them.
// It is safe to call more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	made := l.made
	l.made = nil
	l.mu.Unlock()
	var errs []error
	var ids []nsIdent
	// Hosts first, the switch last.
	for i := len(made) - 1; i >= 0; i-- {
		id, err := deleteNS(made[i])
		if err != nil {
			errs = append(errs, err)
		}
		if id != (nsIdent{}) {
			ids = append(ids, id)
		}
	}
	sweep(ids)
	return errors.Join(errs...)
}

// nsIdent identifies a network namespace (the nsfs device and inode of
// /run/netns/NAME and of /proc/PID/ns/net).
type nsIdent struct{ dev, ino uint64 }

func identOf(path string) (nsIdent, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return nsIdent{}, false
	}
	return nsIdent{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true
}

// pidsIn lists the processes whose network namespace is one of ids.
func pidsIn(ids ...nsIdent) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		id, ok := identOf("/proc/" + e.Name() + "/ns/net")
		if ok && slices.Contains(ids, id) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killIn kills the processes in ids until none is left or 3 s have
// passed.
func killIn(ids ...nsIdent) {
	deadline := time.Now().Add(3 * time.Second)
	for {
		pids := pidsIn(ids...)
		if len(pids) == 0 || time.Now().After(deadline) {
			return
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sweep catches a process that opened a namespace just before it was
// deleted and entered it just after (an `ip netns exec` that was
// starting): nothing can enter once the name is gone, so one late pass
// finds them all.
func sweep(ids []nsIdent) {
	if len(ids) == 0 {
		return
	}
	time.Sleep(50 * time.Millisecond)
	killIn(ids...)
}

// deleteNS kills what runs in ns and deletes the namespace. It returns
// the namespace's identity for a later sweep.
func deleteNS(ns string) (nsIdent, error) {
	id, ok := identOf("/run/netns/" + ns)
	if ok {
		killIn(id)
	}
	if err := run(context.Background(), "ip", "netns", "del", ns); err != nil {
		if !nsExists(ns) {
			return id, nil
		}
		return id, err
	}
	return id, nil
}

// ListNamespaces returns the names of the network namespaces `ip netns`
// knows.
func ListNamespaces() ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("demo: ip netns list: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		// "name (id: 3)" or "name"
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

func nsExists(ns string) bool {
	_, err := os.Stat("/run/netns/" + ns)
	return err == nil
}

// stalePid returns the pid in a lab namespace name "ndemo<pid>-...", or
// false for other names.
func stalePid(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, LabPrefix)
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "-")
	if !ok || digits == "" {
		return 0, false
	}
	for _, r := range digits {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	pid, err := strconv.Atoi(digits)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// alive reports whether process pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// CleanStale deletes namespaces named ndemo<pid>-* whose process is no
// longer running (left behind by a crash), killing what still runs in
// them. Namespaces of this process and of running processes stay (a pid
// reused by an unrelated process keeps its namespaces until that ends).
func CleanStale() error {
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("demo: iproute2 (ip) not found: %w", err)
	}
	names, err := ListNamespaces()
	if err != nil {
		return err
	}
	var errs []error
	var ids []nsIdent
	for _, n := range names {
		pid, ok := stalePid(n)
		if !ok || pid == os.Getpid() || alive(pid) {
			continue
		}
		id, err := deleteNS(n)
		if err != nil {
			errs = append(errs, err)
		}
		if id != (nsIdent{}) {
			ids = append(ids, id)
		}
	}
	sweep(ids)
	return errors.Join(errs...)
}

// Available returns nil when network namespaces can be used here (root,
// iproute2's ip in PATH, and `ip netns add` works), else an error saying
// why.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("demo: network namespaces need root (run with sudo)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("demo: iproute2's ip is not in PATH (apt-get install iproute2)")
	}
	probe := LabPrefix + strconv.Itoa(os.Getpid()) + "-probe"
	if err := run(context.Background(), "ip", "netns", "add", probe); err != nil {
		return fmt.Errorf("demo: cannot create network namespaces: %w", err)
	}
	if err := run(context.Background(), "ip", "netns", "del", probe); err != nil {
		return fmt.Errorf("demo: cannot delete network namespaces: %w", err)
	}
	return nil
}

// run runs a command, its output becoming part of the error.
func run(ctx context.Context, name string, args ...string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("demo: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}
