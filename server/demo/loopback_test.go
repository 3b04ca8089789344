package demo

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/boot"
	"github.com/netdeploy/netdeploy/server/httpboot"
	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/tftp"
	"github.com/netdeploy/netdeploy/server/tracker"
	"github.com/netdeploy/netdeploy/server/udprange"
)

// Sizes of the loopback test's files; the boot program is not a multiple
// of the block size.
const (
	loopBootSize = 150_000
	loopKernel   = 2 // MiB
	loopInitrd   = 1 // MiB
)

// loopTestRange is where the loopback server's TFTP sessions get ports
// (apart from the ranges other packages' tests use in parallel).
var loopTestRange = udprange.Range{First: 43000, Last: 43499}

// loopServer is netdeploy's TFTP and HTTP boot servers on 127.0.0.1, high
// ports, feeding one tracker, as the orchestrator wires them.
type loopServer struct {
	tr       *tracker.Tracker
	sub      *tracker.Subscription
	mu       sync.Mutex
	events   []tracker.Event
	tftpPort int
	httpPort int
	entry    boot.Entry
}

// startLoopback starts the servers. script, if not nil, replaces the
// orchestrator's script function (it gets the base URL and the MAC).
func startLoopback(t *testing.T, script func(base, mac string) []byte) *loopServer {
	t.Helper()
	dir := t.TempDir()
	kernel, initrd, err := WriteBootFiles(filepath.Join(dir, "boot"), loopKernel, loopInitrd)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	os.MkdirAll(root, 0o755)
	prog := make([]byte, loopBootSize)
	rand.Read(prog)
	if err := os.WriteFile(filepath.Join(root, "undionly.kpxe"), prog, 0o644); err != nil {
		t.Fatal(err)
	}
	s := &loopServer{tr: tracker.New(), entry: boot.Entry{Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0"}}
	s.sub = s.tr.Subscribe()
	fs := &boot.FS{Root: root, Entry: s.entry}

	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s.tftpPort = conn.LocalAddr().(*net.UDPAddr).Port
	ts := &tftp.Server{FS: fs, Ports: udprange.NewLive(loopTestRange), Events: s.tr}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.httpPort = ln.Addr().(*net.TCPAddr).Port
	base := boot.BaseURL(net.IPv4(127, 0, 0, 1), s.httpPort)
	if script == nil {
		script = func(base, mac string) []byte { return boot.Script(boot.ScriptParams{BaseURL: base, Entry: s.entry}) }
	}
	hs := &httpboot.Server{FS: fs, Port: s.httpPort, Events: s.tr, Script: func(mac string) []byte { return script(base, mac) }}
	tdone, hdone := make(chan error, 1), make(chan error, 1)
	go func() { tdone <- ts.Serve(conn) }()
	go func() { hdone <- hs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ts.Shutdown(ctx); err != nil {
			t.Errorf("tftp shutdown: %v", err)
		}
		if err := hs.Shutdown(ctx); err != nil {
			t.Errorf("http shutdown: %v", err)
		}
		<-tdone
		<-hdone
		s.sub.Close()
	})
	return s
}

// all returns the events so far.
func (s *loopServer) all() []tracker.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, s.sub.Next()...)
	return append([]tracker.Event(nil), s.events...)
}

// wait returns the first event matching ok; the servers emit done events
// just after the client has its last byte, so it polls for a while.
func (s *loopServer) wait(t *testing.T, what string, ok func(tracker.Event) bool) tracker.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, e := range s.all() {
			if ok(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event: %s; have %d events", what, len(s.all()))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *loopServer) count(ok func(tracker.Event) bool) int {
	n := 0
	for _, e := range s.all() {
		if ok(e) {
			n++
		}
	}
	return n
}

func (s *loopServer) client(ip net.IP, mac net.HardwareAddr, rate int64, log *slog.Logger) *Client {
	return &Client{LocalIP: ip, Server: net.IPv4(127, 0, 0, 1), TFTPPort: s.tftpPort, HTTPPort: s.httpPort,
		BootFile: "undionly.kpxe", Rate: rate, Log: log, MAC: mac}
}

func textLog(buf *netlab.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func done(stage tracker.Stage, ip, file string) func(tracker.Event) bool {
	return func(e tracker.Event) bool {
		return e.Stage == stage && e.Event == tracker.KindDone && e.IP == ip && e.File == file
	}
}

// TestLoopbackClients runs two simulated machines from 127.0.0.2 and
// 127.0.0.3 against the real TFTP and HTTP servers and checks what the
// tracker saw.
func TestLoopbackClients(t *testing.T) {
	srv := startLoopback(t, nil)
	mac2 := net.HardwareAddr{0x02, 0xde, 0x7f, 0, 0, 2}
	const rate = 4 << 20 // 3.15 MiB in all: at least ~790 ms each
	type run struct {
		ip      net.IP
		mac     net.HardwareAddr
		log     netlab.Buffer
		err     error
		elapsed time.Duration
	}
	runs := []*run{{ip: net.IPv4(127, 0, 0, 2), mac: mac2}, {ip: net.IPv4(127, 0, 0, 3)}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Go(func() {
			start := time.Now()
			r.err = srv.client(r.ip, r.mac, rate, textLog(&r.log)).Run(ctx)
			r.elapsed = time.Since(start)
		})
	}
	wg.Wait()

	total := int64(loopBootSize + (loopKernel+loopInitrd)<<20)
	for _, r := range runs {
		ip := r.ip.String()
		if r.err != nil {
			t.Fatalf("client %s: %v\n%s", ip, r.err, r.log.String())
		}
		if min := time.Duration(float64(total) / rate * float64(time.Second)); r.elapsed < min*9/10 {
			t.Errorf("client %s took %v; at %d B/s it cannot take less than %v", ip, r.elapsed, rate, min)
		}
		logs := r.log.String()
		for _, want := range []string{"tftp done", fmt.Sprintf("bytes=%d", loopBootSize), "script", "kind=boot", "http done",
			fmt.Sprintf("bytes=%d", loopKernel<<20), fmt.Sprintf("bytes=%d", loopInitrd<<20), "the machine would boot now"} {
			if !strings.Contains(logs, want) {
				t.Errorf("client %s log lacks %q:\n%s", ip, want, logs)
			}
		}

		// The tracker saw each transfer complete, with every byte.
		e := srv.wait(t, "tftp done from "+ip, done(tracker.StageTFTP, ip, "undionly.kpxe"))
		if e.Bytes != loopBootSize || e.Total != loopBootSize || !loopTestRange.Contains(e.LocalPort) || !strings.HasPrefix(e.Peer, ip+":") {
			t.Errorf("tftp done event %+v", e)
		}
		wantMAC := tracker.MACString(r.mac)
		for _, f := range []struct {
			name string
			size int64
		}{{boot.KernelName, loopKernel << 20}, {boot.InitrdName, loopInitrd << 20}} {
			e := srv.wait(t, "http done "+f.name+" from "+ip, done(tracker.StageHTTP, ip, f.name))
			if e.Bytes != f.size || e.Total != f.size || e.MAC != wantMAC || e.Port != srv.httpPort {
				t.Errorf("http done event %+v, want %d bytes, mac %q", e, f.size, wantMAC)
			}
		}
		// The server's own view follows the client's pace: the kernel
		// (2 MiB, 500 ms at the rate) takes it at least half that long,
		// so the console shows progress rather than one jump.
		var kstart, kdone time.Time
		for _, e := range srv.all() {
			if e.IP == ip && e.File == boot.KernelName && e.Stage == tracker.StageHTTP {
				switch e.Event {
				case tracker.KindStart:
					kstart = e.Time
				case tracker.KindDone:
					kdone = e.Time
				}
			}
		}
		if d := kdone.Sub(kstart); d < 250*time.Millisecond {
			t.Errorf("client %s: the server sent the kernel in %v; the paced client needs 500ms", ip, d)
		}
		e = srv.wait(t, "http done boot.ipxe from "+ip, done(tracker.StageHTTP, ip, boot.ScriptName))
		if e.MAC != wantMAC || e.Bytes == 0 {
			t.Errorf("script event %+v", e)
		}
		if n := srv.count(func(e tracker.Event) bool { return e.IP == ip && e.Event == tracker.KindError }); n != 0 {
			t.Errorf("%d error events for %s", n, ip)
		}
	}

	// The tracker's records: the client with a MAC is known by it once the
	// script told the server (its TFTP done lands in the MAC's record or,
	// if the server emitted it before the script request, in the record
	// of its address), the other by its address only. Both end in stage
	// http, done, with every transfer in their history.
	hist := map[string]string{} // ip -> every step of its records
	for _, c := range srv.tr.Clients() {
		for _, s := range c.History {
			hist[c.IP] += " " + string(s.Stage) + "/" + string(s.Event) + "/" + s.File
		}
		switch {
		case c.MAC == mac2.String():
			if c.IP != "127.0.0.2" || c.Stage != tracker.StageHTTP || c.LastEvent != tracker.KindDone {
				t.Errorf("record of %s: %+v", mac2, c)
			}
		case c.IP == "127.0.0.3":
			if c.MAC != "" || c.Stage != tracker.StageHTTP || c.LastEvent != tracker.KindDone {
				t.Errorf("record of 127.0.0.3: %+v", c)
			}
		}
	}
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		for _, step := range []string{"tftp/done/undionly.kpxe", "http/done/boot.ipxe", "http/done/netdeploy/kernel", "http/done/netdeploy/initrd"} {
			if !strings.Contains(hist[ip], step) {
				t.Errorf("tracker history of %s lacks %s: %s", ip, step, hist[ip])
			}
		}
	}
	if _, ok := srv.tr.Client(mac2.String()); !ok {
		t.Errorf("tracker has no record for %s", mac2)
	}
}

// TestLoopbackPendingThenApproved: the script says wait twice, then boots;
// the client asks again each time, carrying its MAC.
func TestLoopbackPendingThenApproved(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0xde, 0x7f, 0, 0, 4}
	var calls atomic.Int32
	var wrongMAC atomic.Value
	var srv *loopServer
	srv = startLoopback(t, func(base, m string) []byte {
		if m != mac.String() {
			wrongMAC.Store(m)
		}
		n := calls.Add(1)
		return boot.Script(boot.ScriptParams{BaseURL: base, Entry: srv.entry, Pending: n <= 2})
	})
	var log netlab.Buffer
	c := srv.client(net.IPv4(127, 0, 0, 4), mac, 0, textLog(&log))
	c.scriptRetry = 50 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("script fetched %d times, want 3 (two pending, then the real one)", n)
	}
	if m := wrongMAC.Load(); m != nil {
		t.Errorf("a script request carried mac %q, want %s", m, mac)
	}
	if !strings.Contains(log.String(), "script pending") || !strings.Contains(log.String(), "attempt=3") {
		t.Errorf("log:\n%s", log.String())
	}
	srv.wait(t, "kernel", done(tracker.StageHTTP, "127.0.0.4", boot.KernelName))

	// A pending script and a cancelled context: Run returns promptly.
	calls.Store(-1000)
	c.scriptRetry = time.Hour
	ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := c.Run(ctx); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 3*time.Second {
		t.Errorf("pending forever: %v after %v", err, time.Since(start))
	}
}

// TestLoopbackDenied: a denied script ends Run with ErrDenied before any
// kernel is fetched.
func TestLoopbackDenied(t *testing.T) {
	srv := startLoopback(t, func(base, mac string) []byte {
		return boot.Script(boot.ScriptParams{BaseURL: base, Denied: true})
	})
	var log netlab.Buffer
	err := srv.client(net.IPv4(127, 0, 0, 5), nil, 0, textLog(&log)).Run(context.Background())
	if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "denied") || !strings.HasPrefix(err.Error(), "demo: ") {
		t.Fatalf("error %v, want ErrDenied\n%s", err, log.String())
	}
	srv.wait(t, "script served", done(tracker.StageHTTP, "127.0.0.5", boot.ScriptName))
	if n := srv.count(func(e tracker.Event) bool { return e.File == boot.KernelName }); n != 0 {
		t.Errorf("%d kernel events after a denial", n)
	}
}

// TestLoopbackErrors: failures name what failed.
func TestLoopbackErrors(t *testing.T) {
	srv := startLoopback(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c := srv.client(net.IPv4(127, 0, 0, 6), nil, 0, nil)
	c.BootFile = "missing.kpxe"
	if err := c.Run(ctx); err == nil || !strings.Contains(err.Error(), "demo: tftp missing.kpxe: server error 1: file not found") {
		t.Errorf("missing boot file: %v", err)
	}

	// No boot entry: the script exits, Run says so.
	srv2 := startLoopback(t, func(base, mac string) []byte { return boot.Script(boot.ScriptParams{BaseURL: base}) })
	if err := srv2.client(net.IPv4(127, 0, 0, 6), nil, 0, nil).Run(ctx); err == nil || !strings.Contains(err.Error(), "no boot entry") {
		t.Errorf("no boot entry: %v", err)
	}

	// A kernel shorter than its Content-Length.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/boot.ipxe" {
			fmt.Fprintf(w, "#!ipxe\nkernel http://%s/k\nboot\n", r.Host)
			return
		}
		w.Header().Set("Content-Length", "100000")
		w.Write(make([]byte, 5000))
	})}
	go hs.Serve(ln)
	defer hs.Close()
	c = srv.client(net.IPv4(127, 0, 0, 6), nil, 0, nil)
	c.HTTPPort = ln.Addr().(*net.TCPAddr).Port
	if err := c.Run(ctx); err == nil || !strings.Contains(err.Error(), "demo: GET http://") || !strings.Contains(err.Error(), "/k after 5000 bytes") {
		t.Errorf("short kernel: %v", err)
	}

	// Loopback mode needs a server and a boot file.
	if err := (&Client{BootFile: "x"}).Run(ctx); err == nil || !strings.Contains(err.Error(), "needs Server") {
		t.Errorf("no server: %v", err)
	}
}
