package dcerpc

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	msdcerpc "github.com/oiweiwei/go-msrpc/dcerpc"
)

// TestCapsManyConnections holds 500 idle connections (400 bound, 100
// that never sent a byte) and 100 half-open ones (10 bytes of a
// header) while a real client is served; memory stays bounded, and the
// idle and half-open connections are closed by the timeouts.
func TestCapsManyConnections(t *testing.T) {
	const bound, silent, halfOpen = 400, 100, 100
	s := &Server{
		Interfaces:       []Interface{wdsInterface()},
		Accounts:         testAccounts(),
		MaxConns:         bound + silent + halfOpen + 10,
		IdleTimeout:      6 * time.Second,
		HandshakeTimeout: 3 * time.Second,
	}
	addr := startServer(t, s)

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	start := time.Now()
	var conns []*rawClient
	bind := buildBind(ptypeBind, 1, 5840, []testCtx{{0, syntaxWDS, []syntaxID{syntaxNDR20}}}, nil)
	for range bound {
		rc := rawDial(t, addr)
		rc.send(bind)
		if a := rc.bindAck(); len(a.results) != 1 || a.results[0].result != resultAcceptance {
			t.Fatalf("bind: %+v", a)
		}
		conns = append(conns, rc)
	}
	for range silent {
		conns = append(conns, rawDial(t, addr))
	}
	for range halfOpen {
		rc := rawDial(t, addr)
		rc.send(bind[:10])
		conns = append(conns, rc)
	}
	waitFor(t, 5*time.Second, "all connections accepted", func() bool {
		return s.Stats().Active == bound+silent+halfOpen
	})

	// A real client still gets served, with NTLM privacy and a
	// fragmented call.
	cli, err := dial(t, addr, ntlmOpts(testUser, testPassword, msdcerpc.WithSeal())...)
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("0123456789"), 6000)
	reply, err := call(cli, payload)
	if err != nil {
		t.Fatal(err)
	}
	if _, echo := splitReply(t, reply); !bytes.Equal(echo, payload) {
		t.Fatal("echo differs")
	}
	if time.Since(start) > s.HandshakeTimeout {
		t.Logf("setup took %v: the timeouts below may be checked late", time.Since(start))
	}

	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	if grew := int64(during.HeapInuse) - int64(before.HeapInuse); grew > 64<<20 {
		t.Errorf("heap in use grew by %d MiB with %d connections", grew>>20, bound+silent+halfOpen)
	}
	t.Logf("heap in use grew by %d KiB with %d connections", (int64(during.HeapInuse)-int64(before.HeapInuse))>>10, bound+silent+halfOpen)

	// Silent and half-open connections go at the handshake timeout; the
	// bound ones (and the client's) at the idle timeout.
	waitFor(t, 6*time.Second, "half-open connections closed", func() bool {
		return s.Stats().Active <= bound+1
	})
	for _, rc := range conns[bound:] {
		rc.expectClosed(time.Second)
	}
	waitFor(t, 10*time.Second, "idle connections closed", func() bool { return s.Stats().Active == 0 })
	for _, rc := range conns[:bound] {
		rc.expectClosed(time.Second)
	}
}

// TestCapsMaxConns checks connections beyond MaxConns are closed at once.
func TestCapsMaxConns(t *testing.T) {
	s := &Server{Interfaces: []Interface{wdsInterface()}, MaxConns: 3}
	addr := startServer(t, s)
	bind := buildBind(ptypeBind, 1, 5840, []testCtx{{0, syntaxWDS, []syntaxID{syntaxNDR20}}}, nil)
	var held []*rawClient
	for range 3 {
		rc := rawDial(t, addr)
		rc.send(bind)
		rc.bindAck()
		held = append(held, rc)
	}
	extra := rawDial(t, addr)
	t0 := time.Now()
	extra.expectClosed(2 * time.Second)
	if d := time.Since(t0); d > time.Second {
		t.Errorf("connection beyond MaxConns closed after %v", d)
	}
	if n := s.Stats().Active; n != 3 {
		t.Errorf("%d active connections, want 3", n)
	}
	// Once one goes, a new connection is served.
	held[0].c.Close()
	waitFor(t, 2*time.Second, "a free slot", func() bool { return s.Stats().Active == 2 })
	rc := rawDial(t, addr)
	rc.send(bind)
	if a := rc.bindAck(); len(a.results) != 1 {
		t.Errorf("bind after a slot freed: %+v", a)
	}
}
