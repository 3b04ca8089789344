package netbios

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/stats"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// eventLog keeps the events a test server emits.
type eventLog = tracker.Recorder

// testLog writes to the test log when NETBIOS_TEST_LOG is set, and is
// silent (at debug level, so every log call still runs) otherwise.
func testLog(t testing.TB) *slog.Logger {
	var out io.Writer = io.Discard
	if os.Getenv("NETBIOS_TEST_LOG") != "" {
		out = os.Stderr
	}
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type served struct {
	addr *net.UDPAddr
	done chan error
}

// serveUDP runs serve on a loopback socket and shuts it down at the end
// of the test, checking that Serve returned nil.
func serveUDP(t *testing.T, serve func(*net.UDPConn) error, shutdown func(context.Context) error) served {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := served{addr: conn.LocalAddr().(*net.UDPAddr), done: make(chan error, 1)}
	go func() { s.done <- serve(conn) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-s.done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// exchange sends b to addr and returns the reply, or nil after wait.
func exchange(t *testing.T, addr *net.UDPAddr, b []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// TestServeLoopback: queries over a real socket get their replies, with
// the events and counters; garbage in between changes nothing.
func TestServeLoopback(t *testing.T) {
	ev := &eventLog{}
	s := &Server{Name: "netdeploy", IP: testIP, MAC: testMAC, Events: ev, Log: testLog(t)}
	srv := serveUDP(t, s.Serve, s.Shutdown)

	out := exchange(t, srv.addr, bcastQuery, 5*time.Second)
	p := mustDecode(t, out)
	if p.id != 0x1234 || !p.response || len(p.answers) != 1 || string(p.answers[0].rdata) != "\x00\x00\xc6\x12\x00\x01" {
		t.Fatalf("reply %+v", p)
	}
	for _, junk := range [][]byte{nil, []byte("x"), bcastQuery[:20], []byte("\x00\x01\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff"),
		query(1, opQuery, flagB, makeName("OTHER", 0), typeNB, classIN), registration} {
		if got := exchange(t, srv.addr, junk, 100*time.Millisecond); got != nil {
			t.Fatalf("reply to %q: %q", junk, got)
		}
	}
	out = exchange(t, srv.addr, statusQuery, 5*time.Second)
	if p := mustDecode(t, out); p.id != 7 || len(p.answers) != 1 || p.answers[0].rtype != typeNBSTAT {
		t.Fatalf("node status reply %+v", p)
	}

	// A reply is counted after it is written: the client may read it first.
	st := settledStats(s, func(st stats.Snapshot) bool { return st.PacketsOut >= 2 })
	if st.PacketsIn != 8 || st.PacketsOut != 2 || st.BytesOut == 0 || st.BytesIn == 0 {
		t.Fatalf("stats %+v", st)
	}
	evs := ev.All()
	if len(evs) != 2 {
		t.Fatalf("events %+v", evs)
	}
	e := evs[0]
	if e.Stage != tracker.StageSMB || e.Event != tracker.KindProgress || e.Port != 137 || e.Proto != "udp" ||
		e.IP != "127.0.0.1" || e.Detail != "name query NETDEPLOY<00>" || e.Time.IsZero() || !strings.HasPrefix(e.Peer, "127.0.0.1:") {
		t.Fatalf("event %+v", e)
	}
	if evs[1].Detail != "node status *<00>" {
		t.Fatalf("event %+v", evs[1])
	}
}

func TestServeConfigError(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Name: "", IP: testIP}
	if err := s.Serve(conn); err == nil || !strings.Contains(err.Error(), "name is empty") {
		t.Fatalf("Serve: %v", err)
	}
	if _, _, err := conn.ReadFromUDP(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("conn left open: %v", err)
	}
	if err := (&Server{Name: "X", IP: nil}).ListenAndServe(); err == nil || !strings.Contains(err.Error(), "ip") {
		t.Fatalf("ListenAndServe: %v", err)
	}
}

// TestServeClosedConn: a socket closed under Serve is an error wrapping
// net.ErrClosed; after Shutdown Serve returns nil at once.
func TestServeClosedConn(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Name: "NETDEPLOY", IP: testIP}
	done := make(chan error, 1)
	go func() { done <- s.Serve(conn) }()
	time.Sleep(50 * time.Millisecond)
	conn.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve: %v", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(conn); err != nil {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
	if _, _, err := conn.ReadFromUDP(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("conn left open: %v", err)
	}
}

func TestDatagramServer(t *testing.T) {
	s := &DatagramServer{Log: testLog(t)}
	srv := serveUDP(t, s.Serve, s.Shutdown)
	for _, b := range [][]byte{dgmAnnouncement, dgmAnnouncement[:30], []byte("junk"), nil} {
		if got := exchange(t, srv.addr, b, 50*time.Millisecond); got != nil {
			t.Fatalf("reply %q", got)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().PacketsIn != 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := s.Stats(); st.PacketsIn != 4 || st.PacketsOut != 0 || st.BytesIn != uint64(len(dgmAnnouncement)+30+4) {
		t.Fatalf("stats %+v", st)
	}
}

// dgmAnnouncement is a DIRECT_GROUP datagram (RFC 1002 section 4.4.2)
// from CLIENT<00> at 198.18.0.2:138 to WORKGROUP<1d>, first fragment,
// with 4 bytes of user data.
var dgmAnnouncement = []byte("\x11\x02\x00\x2a\xc6\x12\x00\x02\x00\x8a\x00\x48\x00\x00" + clientName +
	"\x20FHEPFCELEHFCEPFFFACACACACACACABN\x00" + "\x01\x02\x03\x04")

func TestDecodeDatagram(t *testing.T) {
	d, err := decodeDatagram(dgmAnnouncement)
	if err != nil {
		t.Fatal(err)
	}
	if d.typeName() != "direct group" || d.src.String() != "CLIENT<00>" || d.dst.String() != "WORKGROUP<1d>" ||
		d.data != 4 || d.sourceIP != [4]byte{198, 18, 0, 2} || d.port != 138 {
		t.Fatalf("%+v", d)
	}
	later := append([]byte(nil), dgmAnnouncement...)
	later[1] = 0x00 // not the first fragment: user data only
	if d, err := decodeDatagram(later); err != nil || d.data != 0x48 {
		t.Fatalf("later fragment: %+v %v", d, err)
	}
	query := []byte("\x14\x02\x00\x01\xc6\x12\x00\x02\x00\x8a" + encodedName)
	if d, err := decodeDatagram(query); err != nil || d.dst.String() != "NETDEPLOY<00>" || d.typeName() != "query request" {
		t.Fatalf("query: %+v %v", d, err)
	}
	for _, b := range []string{"", "\x11\x02\x00", string(dgmAnnouncement[:12]), "\x11\x02\x00\x2a\xc6\x12\x00\x02\x00\x8a\x01\x00\x00\x00",
		string(dgmAnnouncement[:14+34]) + "\x00", "\x13\x00\x00\x01\xc6\x12\x00\x02\x00\x8a", "\x14\x02\x00\x01\xc6\x12\x00\x02\x00\x8a\xc0\x00",
		"\x42\x00\x00\x00\x00\x00\x00\x00\x00\x00"} {
		if _, err := decodeDatagram([]byte(b)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", b, err)
		}
	}
}

// settledStats polls the server's counters until done holds or five seconds
// pass, and returns the last snapshot for the caller to check.
func settledStats(s *Server, done func(stats.Snapshot) bool) stats.Snapshot {
	deadline := time.Now().Add(5 * time.Second)
	st := s.Stats()
	for !done(st) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		st = s.Stats()
	}
	return st
}
