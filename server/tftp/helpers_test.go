package tftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pin "github.com/pin/tftp/v3"

	"github.com/netdeploy/netdeploy/server/boot"
	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/tracker"
	"github.com/netdeploy/netdeploy/server/udprange"
)

// eventLog is a tracker.Emitter that keeps every event.
type eventLog struct {
	mu     sync.Mutex
	events []tracker.Event
}

func (l *eventLog) emitter() tracker.Emitter {
	return tracker.EmitterFunc(func(e tracker.Event) {
		l.mu.Lock()
		l.events = append(l.events, e)
		l.mu.Unlock()
	})
}

func (l *eventLog) all() []tracker.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]tracker.Event(nil), l.events...)
}

// waitFor returns the first event matching pred, polling until it shows
// up (events of a session are emitted after the client has finished).
func (l *eventLog) waitFor(t testing.TB, what string, pred func(tracker.Event) bool) tracker.Event {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, e := range l.all() {
			if pred(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event; have %+v", what, l.all())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *eventLog) count(pred func(tracker.Event) bool) int {
	n := 0
	for _, e := range l.all() {
		if pred(e) {
			n++
		}
	}
	return n
}

func kindFile(kind tracker.Kind, file string) func(tracker.Event) bool {
	return func(e tracker.Event) bool { return e.Event == kind && e.File == file }
}

type testServer struct {
	srv    *Server
	addr   string
	root   string
	events *eventLog
	served chan error
}

// defaultTestRange is where sessions get their ports unless a test says
// otherwise.
var defaultTestRange = udprange.Range{First: 41000, Last: 41999}

// startServer runs a server on 127.0.0.1 and an ephemeral port, serving a
// fresh temporary root. configure may change the Server before Serve.
func startServer(t testing.TB, configure func(*Server)) *testServer {
	t.Helper()
	ts := &testServer{root: t.TempDir(), events: &eventLog{}, served: make(chan error, 1)}
	level := slog.LevelDebug
	var out io.Writer = io.Discard
	if os.Getenv("TFTP_TEST_LOG") != "" {
		out = os.Stderr
	}
	ts.srv = &Server{
		FS:     &boot.FS{Root: ts.root},
		Ports:  udprange.NewLive(defaultTestRange),
		Events: ts.events.emitter(),
		Log:    slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level})),
	}
	if configure != nil {
		configure(ts.srv)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = conn.LocalAddr().String()
	go func() { ts.served <- ts.srv.Serve(conn) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := ts.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-ts.served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ts
}

// file writes a file of n pseudo-random bytes under the root.
func (ts *testServer) file(t testing.TB, name string, n int) []byte {
	t.Helper()
	data := make([]byte, n)
	var seed [32]byte
	seed[0], seed[1], seed[2] = byte(n), byte(n>>8), byte(n>>16)
	_, _ = rand.NewChaCha8(seed).Read(data)
	ts.write(t, name, data)
	return data
}

func (ts *testServer) write(t testing.TB, name string, data []byte) {
	t.Helper()
	p := filepath.Join(ts.root, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

type pinResult struct {
	data   []byte
	size   int64
	sized  bool
	remote net.UDPAddr
}

// pinGet downloads name with the pin/tftp client.
func pinGet(addr, name, mode string, blksize int, tsize bool) (pinResult, error) {
	c, err := pin.NewClient(addr)
	if err != nil {
		return pinResult{}, err
	}
	c.SetTimeout(2 * time.Second)
	if blksize > 0 {
		c.SetBlockSize(blksize)
	}
	c.RequestTSize(tsize)
	wt, err := c.Receive(name, mode)
	if err != nil {
		return pinResult{}, err
	}
	var res pinResult
	it := wt.(pin.IncomingTransfer)
	res.size, res.sized = it.Size()
	res.remote = it.RemoteAddr()
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return res, err
	}
	res.data = buf.Bytes()
	return res, nil
}

// rawOpts drives rawGet, a small RFC 7440 client written for the tests.
type rawOpts struct {
	mode     string // "": octet
	blksize  int    // 0: no blksize option
	window   int    // 0: no windowsize option
	tsize    bool
	msft     []int                 // non-nil: ask msftwindow and send these sizes in successive ACKs, the last repeating
	dropACK  func(n int) bool      // the n-th window ACK (from 0, never the final one) is not sent
	dropData func(idx uint64) bool // DATA idx is thrown away the first time it arrives
	wait     time.Duration         // client timeout before re-sending its last ACK; 0: 1s
}

type rawResult struct {
	data   []byte
	oack   map[string]string
	src    netip.AddrPort // the session's address
	dups   int            // DATA packets that were not the next expected one
	resent int            // ACKs re-sent after a client timeout
	acks   int            // window ACKs made (sent or dropped)
}

// rawGet downloads name: it ACKs only the last block of each window and
// the final block, checks that the server never sends past the window,
// and re-sends its last ACK when nothing new arrives in time.
func rawGet(server, name string, o rawOpts) (rawResult, error) {
	var res rawResult
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return res, err
	}
	defer conn.Close()
	_ = conn.SetReadBuffer(8 << 20)
	srv, err := netip.ParseAddrPort(server)
	if err != nil {
		return res, err
	}
	mode := o.mode
	if mode == "" {
		mode = "octet"
	}
	var opts []option
	if o.blksize > 0 {
		opts = append(opts, option{"blksize", strconv.Itoa(o.blksize)})
	}
	if o.window > 0 {
		opts = append(opts, option{"windowsize", strconv.Itoa(o.window)})
	}
	if o.tsize {
		opts = append(opts, option{"tsize", "0"})
	}
	if o.msft != nil {
		opts = append(opts, option{"msftwindow", "31416"})
	}
	wait := o.wait
	if wait == 0 {
		wait = time.Second
	}
	req := appendRequest(nil, opRRQ, name, mode, opts)
	buf := make([]byte, 70000)

	var first []byte
	for tries := 0; ; tries++ {
		if _, err := conn.WriteToUDPAddrPort(req, srv); err != nil {
			return res, err
		}
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) && tries < 3 {
			continue
		}
		if err != nil {
			return res, err
		}
		res.src, first = from, append([]byte(nil), buf[:n]...)
		break
	}

	blksize, window := 512, 1
	msftIdx := 0
	nextWin := func() int {
		if o.msft == nil {
			return 0
		}
		w := o.msft[min(msftIdx, len(o.msft)-1)]
		msftIdx++
		return w
	}
	var lastACK []byte
	sendACK := func(block uint16, win int, send bool) error {
		lastACK = appendACK(nil, block, win)
		if !send {
			return nil
		}
		_, err := conn.WriteToUDPAddrPort(lastACK, res.src)
		return err
	}
	p, err := decode(first)
	if err != nil {
		return res, err
	}
	switch p.op {
	case opERROR:
		return res, fmt.Errorf("server error %d: %s", p.code, p.msg)
	case opOACK:
		res.oack = map[string]string{}
		for _, o := range p.options {
			res.oack[o.name] = o.value
		}
		if v, ok := res.oack["blksize"]; ok {
			blksize, _ = strconv.Atoi(v)
		}
		if v, ok := res.oack["windowsize"]; ok {
			window, _ = strconv.Atoi(v)
		}
		w := 0
		if o.msft != nil {
			if res.oack["msftwindow"] != "27182" {
				return res, fmt.Errorf("msftwindow not granted: %v", res.oack)
			}
			w = nextWin()
			window = min(w, maxWindowSize)
		}
		if err := sendACK(0, w, true); err != nil {
			return res, err
		}
		first = nil
	case opDATA:
	default:
		return res, fmt.Errorf("unexpected first packet %v", p.op)
	}

	expected, lastAck := uint64(1), uint64(0)
	dropped := map[uint64]bool{}
	// The deadline moves on progress only, so duplicates do not delay
	// the client's own retransmission.
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	for {
		pkt := first
		first = nil
		if pkt == nil {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				res.resent++
				if res.resent > 200 {
					return res, errors.New("client gave up")
				}
				if lastACK != nil {
					if _, err := conn.WriteToUDPAddrPort(lastACK, res.src); err != nil {
						return res, err
					}
				}
				_ = conn.SetReadDeadline(time.Now().Add(wait))
				continue
			}
			if err != nil {
				return res, err
			}
			if from != res.src {
				return res, fmt.Errorf("packet from %v, session is %v", from, res.src)
			}
			pkt = buf[:n]
		}
		p, err := decode(pkt)
		if err != nil {
			return res, err
		}
		if p.op == opERROR {
			return res, fmt.Errorf("server error %d: %s", p.code, p.msg)
		}
		if p.op != opDATA {
			return res, fmt.Errorf("unexpected %v", p.op)
		}
		if p.block != uint16(expected) {
			res.dups++
			continue
		}
		idx := expected
		if o.dropData != nil && !dropped[idx] && o.dropData(idx) {
			dropped[idx] = true
			continue
		}
		if idx > lastAck+uint64(window) {
			return res, fmt.Errorf("block %d sent past the window (last ACK %d, window %d)", idx, lastAck, window)
		}
		if len(p.data) > blksize {
			return res, fmt.Errorf("block %d has %d bytes, blksize %d", idx, len(p.data), blksize)
		}
		res.data = append(res.data, p.data...)
		expected++
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		final := len(p.data) < blksize
		if final || idx-lastAck == uint64(window) {
			w := nextWin()
			send := final || o.dropACK == nil || !o.dropACK(res.acks)
			if err := sendACK(uint16(idx), w, send); err != nil {
				return res, err
			}
			res.acks++
			lastAck = idx
			if o.msft != nil {
				window = min(w, maxWindowSize) // the server's cap
			}
			if final {
				return res, nil
			}
		}
	}
}

// exchange sends b from a fresh socket to addr and returns the first
// reply, or an error after a while.
func exchange(addr string, b []byte) (packet, netip.AddrPort, error) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return packet{}, netip.AddrPort{}, err
	}
	defer conn.Close()
	return sendRecv(conn, addr, b)
}

func sendRecv(conn *net.UDPConn, addr string, b []byte) (packet, netip.AddrPort, error) {
	to, err := netip.ParseAddrPort(addr)
	if err != nil {
		return packet{}, netip.AddrPort{}, err
	}
	if _, err := conn.WriteToUDPAddrPort(b, to); err != nil {
		return packet{}, netip.AddrPort{}, err
	}
	return recvPacket(conn)
}

func recvPacket(conn *net.UDPConn) (packet, netip.AddrPort, error) {
	buf := make([]byte, 70000)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return packet{}, from, err
	}
	p, err := decode(append([]byte(nil), buf[:n]...))
	return p, from, err
}

// emptyFS has no files.
type emptyFS struct{}

func (emptyFS) Open(name string) (boot.File, error) {
	return nil, fmt.Errorf("open %s: %w", name, fs.ErrNotExist)
}

func dirFS(dir string) Opener { return &boot.FS{Root: dir} }

// logLines collects log output for tests that wait for a log line.
type logLines struct {
	netlab.Buffer
}

func (l *logLines) waitFor(t testing.TB, text string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if strings.Contains(l.String(), text) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q", text)
		}
		time.Sleep(time.Millisecond)
	}
}
