package smb

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/tracker"
)

// A full read of a file emits logon, tree, start, progress and done,
// with sizes.
func TestEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB transfer skipped in -short mode")
	}
	needSmbclient(t)
	ts := newTestServer(t, true, nil)
	out := filepath.Join(t.TempDir(), "out")
	// A slow-ish link is not needed: progress is rate-limited, so only
	// its bounds are checked.
	if o, err := ts.smbclient(t, "images", "-U", testUser+"%"+testPass, "-m", "SMB2_02", "-c", "get big.bin "+out); err != nil {
		t.Fatalf("smbclient: %v\n%s", err, o)
	}
	size := int64(len(bigContent()))
	var logon, tree, start, done bool
	for _, e := range ts.events.All() {
		if e.Stage != tracker.StageSMB || e.Proto != "tcp" || e.IP != "127.0.0.1" || e.Port != ts.port {
			t.Fatalf("event %+v: wrong stage, proto, ip or port", e)
		}
		switch {
		case e.Detail == "logon "+testUser:
			logon = true
		case e.Detail == "tree images":
			tree = true
		case e.Event == tracker.KindStart && e.File == "big.bin":
			start = e.Total == size
		case e.Event == tracker.KindProgress && e.File == "big.bin":
			if !start || e.Bytes <= 0 || e.Bytes >= size || e.Total != size {
				t.Errorf("progress %+v", e)
			}
		case e.Event == tracker.KindDone && e.File == "big.bin":
			done = e.Bytes == size && e.Total == size
		}
	}
	if !logon || !tree || !start || !done {
		t.Errorf("events: logon %t tree %t start %t done %t: %+v", logon, tree, start, done, ts.events.All())
	}
}

// Progress events come at most every 250 ms per open file.
func TestProgressRate(t *testing.T) {
	ts := newTestServer(t, false, nil)
	c := loggedOn(t, ts)
	f, _ := c.open("small.txt")
	for range 50 {
		c.call(cmdRead, readBody(f, 0, 1))
	}
	n := 0
	for _, e := range ts.events.All() {
		if e.Event == tracker.KindProgress && e.File == "small.txt" {
			n++
		}
	}
	if n > 1 {
		t.Errorf("%d progress events for 50 quick reads, want at most 1", n)
	}
	c.call(cmdClose, closeBody(f))
	var done bool
	for _, e := range ts.events.All() {
		done = done || e.Event == tracker.KindDone && e.File == "small.txt"
	}
	if !done {
		t.Error("no done event after reading the whole file and closing it")
	}
}

func TestShutdownAndServeErrors(t *testing.T) {
	s := &Server{Shares: []Share{{Name: "images", Path: t.TempDir()}}}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	// An idle connection is closed by Shutdown.
	var nc net.Conn
	for i := 0; i < 100; i++ {
		var err error
		if nc, err = net.Dial("tcp", l.Addr().String()); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer nc.Close()
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
	nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := nc.Read(make([]byte, 1)); err == nil {
		t.Fatal("idle connection still open after Shutdown")
	}
	// Serve on a listener closed by someone else reports net.ErrClosed.
	s2 := &Server{}
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	l2.Close()
	if err := s2.Serve(l2); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve on a closed listener: %v", err)
	}
	// A share that cannot be opened fails Serve.
	s3 := &Server{Shares: []Share{{Name: "x", Path: "/nonexistent/dir"}}}
	l3, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := s3.Serve(l3); err == nil {
		t.Fatal("Serve with a missing share directory succeeded")
	}
}

func TestLimits(t *testing.T) {
	ts := newTestServer(t, false, func(s *Server) {
		s.MaxConns = 2
		s.HandshakeTimeout = 300 * time.Millisecond
	})
	a := dialRaw(t, ts.addr)
	b := dialRaw(t, ts.addr)
	if h, _ := b.call(cmdNegotiate, negotiateBody(dialect210)); h.Status != 0 {
		t.Fatalf("NEGOTIATE: 0x%08x", h.Status)
	}
	cc := dialRaw(t, ts.addr)
	cc.sendFrame(cc.msg(cmdNegotiate, negotiateBody(dialect210), 1, 0))
	if r := cc.recvFrame(); r != nil {
		t.Fatal("third connection served with MaxConns 2")
	}
	// The handshake timeout closes connections that never log on.
	start := time.Now()
	if r := a.recvFrame(); r != nil || time.Since(start) > 5*time.Second {
		t.Fatalf("connection without a logon not closed in time")
	}
	b.nc.Close()
	// A frame larger than the cap drops the connection.
	d := dialRaw(t, ts.addr)
	d.nc.Write([]byte{0, 0x7f, 0xff, 0xff})
	if r := d.recvFrame(); r != nil {
		t.Fatal("answer after an oversized frame")
	}
	if st := ts.srv.Stats(); st.PacketsIn == 0 || st.PacketsOut == 0 || st.BytesIn == 0 {
		t.Errorf("stats: %+v", st)
	}
}

func TestOpenLimit(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	ts := newTestServer(t, false, nil)
	c := loggedOn(t, ts)
	for i := 0; i < MaxOpens; i++ {
		if _, st := c.open("small.txt"); st != StatusSuccess {
			t.Fatalf("open %d: 0x%08x", i, uint32(st))
		}
	}
	if _, st := c.open("small.txt"); st != StatusTooManyOpenedFiles {
		t.Fatalf("open beyond MaxOpens: 0x%08x", uint32(st))
	}
}
