//go:build linux

package demo

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/config"
	"github.com/netdeploy/netdeploy/server"
	"github.com/netdeploy/netdeploy/server/boot"
	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// Environment of the helper processes.
const (
	envDir   = "NETDEPLOY_DEMO_TEST_DIR"   // server: work directory
	envKnown = "NETDEPLOY_DEMO_TEST_KNOWN" // server: pxe.known (policy approve)
	envArch  = "NETDEPLOY_DEMO_TEST_ARCH"  // client: option 93
	envRate  = "NETDEPLOY_DEMO_TEST_RATE"  // client: bytes/s
)

// Sizes of the namespace test's boot programs.
const (
	e2eBIOSProg = 100_000
	e2eEFIProg  = 180_000
)

// helperMain runs one process of TestNamespaceBoot inside a lab namespace.
func helperMain(role string) int {
	var err error
	switch role {
	case "server":
		err = helperServer()
	case "client":
		err = helperClient()
	default:
		err = fmt.Errorf("unknown helper role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// helperServer is `netdeploy serve` in the server namespace: the real
// orchestrator with DHCP, TFTP, HTTP and the control socket, writing its
// events as JSON lines to stdout until SIGTERM.
func helperServer() error {
	dir := os.Getenv(envDir)
	cfg := config.Default()
	cfg.Interface = "eth0"
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.TFTP.Root = filepath.Join(dir, "root")
	cfg.UDPRange = "64001-64100"
	cfg.DHCP.Pool = "198.18.0.100-198.18.0.120"
	cfg.PXE.Policy = "approve"
	cfg.PXE.Known = strings.Split(os.Getenv(envKnown), ",")
	cfg.Boot.IPXEDir = filepath.Join(dir, "no-ipxe")
	cfg.Boot.Kernel = filepath.Join(dir, "boot", KernelFile)
	cfg.Boot.Initrd = filepath.Join(dir, "boot", InitrdFile)
	rt, err := cfg.Resolve(config.SystemInterfaces)
	if err != nil {
		return err
	}
	o, err := server.New(rt, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		return err
	}
	sub := o.Tracker.Subscribe()
	if err := o.Listen(); err != nil {
		return err
	}
	services := o.Services()
	for _, s := range services {
		go s.Serve()
	}
	o.Announce()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	enc := json.NewEncoder(os.Stdout)
	for {
		select {
		case <-sub.Ready():
			for _, e := range sub.Next() {
				enc.Encode(e)
			}
		case <-stop:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for _, s := range services {
				s.Shutdown(ctx)
			}
			return nil
		}
	}
}

// helperClient is one simulated machine on eth0 of a client namespace.
func helperClient() error {
	arch, _ := strconv.Atoi(os.Getenv(envArch))
	rate, _ := strconv.ParseInt(os.Getenv(envRate), 10, 64)
	c := &Client{Iface: "eth0", Arch: uint16(arch), Rate: rate,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	c.scriptRetry = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return c.Run(ctx)
}

// eventStream collects the server helper's JSON events.
type eventStream struct {
	mu     sync.Mutex
	events []tracker.Event
	ended  chan struct{} // closed when the server's output ends
}

func (s *eventStream) read(r io.Reader) {
	defer close(s.ended)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e tracker.Event
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			s.mu.Lock()
			s.events = append(s.events, e)
			s.mu.Unlock()
		}
	}
}

func (s *eventStream) all() []tracker.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]tracker.Event(nil), s.events...)
}

func (s *eventStream) wait(t *testing.T, d time.Duration, what string, ok func(tracker.Event) bool) tracker.Event {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		for _, e := range s.all() {
			if ok(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event within %v: %s", d, what)
		}
		select {
		case <-s.ended:
			for _, e := range s.all() {
				if ok(e) {
					return e
				}
			}
			t.Fatalf("the server ended before: %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestNamespaceBoot runs the real server (orchestrator, pxe.policy approve)
// in a lab's server namespace and two simulated machines in the client
// namespaces, each a separate process as `netdeploy demo` runs them. c1
// (BIOS, a known MAC) boots at once; c2 (x64 UEFI) gets no boot file
// until the test approves it through the control socket.
func TestNamespaceBoot(t *testing.T) {
	skipWithoutNamespaces(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	if _, _, err := WriteBootFiles(filepath.Join(dir, "boot"), 3, 2); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	os.MkdirAll(root, 0o755)
	os.MkdirAll(filepath.Join(dir, "no-ipxe"), 0o755) // the programs come from the root
	for name, size := range map[string]int{"undionly.kpxe": e2eBIOSProg, "snponly.efi": e2eEFIProg} {
		b := make([]byte, size)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(root, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	lab, err := NewLab(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := lab.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	c1, c2 := lab.Clients[0], lab.Clients[1]

	var srvLog netlab.Buffer
	srv := lab.Command(ctx, lab.ServerNS, exe)
	srv.Env = append(os.Environ(), helperEnv+"=server", envDir+"="+dir, envKnown+"="+c1.MAC.String())
	srv.Stderr = &srvLog
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	events := &eventStream{ended: make(chan struct{})}
	go events.read(stdout)
	defer func() {
		srv.Process.Signal(syscall.SIGTERM)
		<-events.ended
		srv.Wait()
		if t.Failed() {
			t.Logf("server log:\n%s", srvLog.String())
		}
	}()
	events.wait(t, 20*time.Second, "http listening", func(e tracker.Event) bool {
		return e.Stage == tracker.StageHTTP && e.Event == tracker.KindListening
	})

	type proc struct {
		host LabHost
		arch uint16
		log  netlab.Buffer
		cmd  *exec.Cmd
		err  chan error
	}
	procs := []*proc{{host: c1, arch: 0}, {host: c2, arch: 7}}
	for _, p := range procs {
		p.cmd = lab.Command(ctx, p.host.NS, exe)
		p.cmd.Env = append(os.Environ(), helperEnv+"=client", envArch+"="+strconv.Itoa(int(p.arch)), envRate+"="+strconv.Itoa(8<<20))
		p.cmd.Stdout, p.cmd.Stderr = &p.log, &p.log
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p.err = make(chan error, 1)
		go func() { p.err <- p.cmd.Wait() }()
	}

	// c2 is held: the server lists it as pending; approve it as the
	// console would.
	events.wait(t, 30*time.Second, "c2 pending", func(e tracker.Event) bool {
		return e.MAC == c2.MAC.String() && e.Event == tracker.KindPending
	})
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", server.ControlSocket(filepath.Join(dir, "data")))
	}}}
	resp, err := hc.Post("http://netdeploy/v1/approve", "application/json", strings.NewReader(`{"mac":"`+c2.MAC.String()+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("approve: %s", resp.Status)
	}

	for _, p := range procs {
		select {
		case err := <-p.err:
			if err != nil {
				t.Errorf("client %s: %v\n%s", p.host.Name, err, p.log.String())
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("client %s did not finish:\n%s", p.host.Name, p.log.String())
		}
	}
	if t.Failed() {
		return
	}

	kernel, initrd := int64(3<<20), int64(2<<20)
	for _, p := range procs {
		mac := p.host.MAC.String()
		logs := p.log.String()
		for _, want := range []string{"dhcp offer", "dhcp ack", "stage=ipxe", "address configured", "tftp done", "http done", "the machine would boot now"} {
			if !strings.Contains(logs, want) {
				t.Errorf("client %s log lacks %q:\n%s", p.host.Name, want, logs)
			}
		}
		ack := events.wait(t, 5*time.Second, "dhcp done "+mac, func(e tracker.Event) bool {
			return e.MAC == mac && e.Stage == tracker.StageDHCP && e.Event == tracker.KindDone
		})
		n, _ := strconv.Atoi(strings.TrimPrefix(ack.IP, "198.18.0."))
		if !strings.HasPrefix(ack.IP, "198.18.0.") || n < 100 || n > 120 {
			t.Errorf("client %s leased %q, outside the pool", p.host.Name, ack.IP)
		}
		if wantArch := map[uint16]string{0: "bios", 7: "efi-x64"}[p.arch]; ack.Arch != wantArch {
			t.Errorf("client %s: arch %q, want %q", p.host.Name, ack.Arch, wantArch)
		}
		// The address really is on the client's interface.
		if out := ipOut(t, "-n", p.host.NS, "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, "inet "+ack.IP+"/24") {
			t.Errorf("client %s interface: %s, want %s/24", p.host.Name, out, ack.IP)
		}
		prog, size := "undionly.kpxe", int64(e2eBIOSProg)
		if p.arch == 7 {
			prog, size = "snponly.efi", e2eEFIProg
		}
		e := events.wait(t, 5*time.Second, "tftp done "+mac, func(e tracker.Event) bool {
			return e.MAC == mac && e.Stage == tracker.StageTFTP && e.Event == tracker.KindDone
		})
		if e.File != prog || e.Bytes != size || e.IP != ack.IP || e.LocalPort < 64001 || e.LocalPort > 64100 {
			t.Errorf("client %s tftp done %+v, want %s of %d bytes", p.host.Name, e, prog, size)
		}
		for file, size := range map[string]int64{boot.KernelName: kernel, boot.InitrdName: initrd} {
			e := events.wait(t, 5*time.Second, "http done "+file+" "+mac, func(e tracker.Event) bool {
				return e.MAC == mac && e.Stage == tracker.StageHTTP && e.Event == tracker.KindDone && e.File == file
			})
			if e.Bytes != size || e.IP != ack.IP {
				t.Errorf("client %s http done %+v, want %d bytes", p.host.Name, e, size)
			}
		}
	}
	pendingFor := func(mac string) bool {
		for _, e := range events.all() {
			if e.MAC == mac && e.Event == tracker.KindPending {
				return true
			}
		}
		return false
	}
	if pendingFor(c1.MAC.String()) {
		t.Error("known client c1 was held for approval")
	}
	if !strings.Contains(procs[1].log.String(), "waiting for the operator") {
		t.Errorf("c2 did not report waiting:\n%s", procs[1].log.String())
	}
}
