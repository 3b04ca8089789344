package tftp

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/tracker"
	"github.com/netdeploy/netdeploy/server/udprange"
)

func TestTransferPin(t *testing.T) {
	ts := startServer(t, nil)
	tests := []struct {
		name    string
		size    int
		blksize int
		tsize   bool
	}{
		{"small", 1000, 0, false},
		{"empty", 0, 0, true},
		{"one block exactly", 512, 0, false},
		{"multiple of 512", 512 * 8, 512, true},
		{"multiple of 1468", 1468 * 3, 1468, true},
		{"large blocks", 200000, 65464, true},
		{"tsize only", 77777, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "files/" + strings.ReplaceAll(tt.name, " ", "_") + ".bin"
			want := ts.file(t, name, tt.size)
			got, err := pinGet(ts.addr, name, "octet", tt.blksize, tt.tsize)
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if !bytes.Equal(got.data, want) {
				t.Fatalf("got %d bytes, want %d identical bytes", len(got.data), len(want))
			}
			if tt.tsize && (!got.sized || got.size != int64(tt.size)) {
				t.Errorf("tsize = %d (%v), want %d", got.size, got.sized, tt.size)
			}
			done := ts.events.waitFor(t, "done", kindFile(tracker.KindDone, name))
			if done.Bytes != int64(tt.size) || done.Total != int64(tt.size) {
				t.Errorf("done event bytes %d total %d, want %d", done.Bytes, done.Total, tt.size)
			}
		})
	}
	// Event fields, checked on one transfer.
	start := ts.events.waitFor(t, "start", kindFile(tracker.KindStart, "files/small.bin"))
	if start.Stage != tracker.StageTFTP || start.Port != 69 || start.Proto != "udp" || start.IP != "127.0.0.1" ||
		start.MAC != "" || start.Total != 1000 || !defaultTestRange.Contains(start.LocalPort) ||
		!strings.HasPrefix(start.Peer, "127.0.0.1:") {
		t.Errorf("start event %+v", start)
	}
	if n := ts.events.count(func(e tracker.Event) bool { return e.Event == tracker.KindError }); n != 0 {
		t.Errorf("%d error events: %+v", n, ts.events.all())
	}
}

// TestRollover sends more than 65535 blocks so block numbers wrap.
func TestRollover(t *testing.T) {
	ts := startServer(t, nil)
	size := 65540*512 + 100
	want := ts.file(t, "big.bin", size)
	t.Run("pin lock-step", func(t *testing.T) {
		got, err := pinGet(ts.addr, "big.bin", "octet", 512, true)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.data, want) || got.size != int64(size) {
			t.Fatalf("got %d bytes (tsize %d), want %d identical", len(got.data), got.size, size)
		}
	})
	t.Run("windowed", func(t *testing.T) {
		got, err := rawGet(ts.addr, "big.bin", rawOpts{blksize: 512, window: 16})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.data, want) {
			t.Fatalf("got %d bytes, want %d identical", len(got.data), size)
		}
	})
	waitDone(t, ts, "big.bin", 2)
	// Progress events, if the transfers lasted long enough to have any,
	// are spaced and bounded.
	type state struct {
		last  time.Time
		bytes int64
	}
	sessions := map[int]*state{} // by session port
	for _, e := range ts.events.all() {
		switch e.Event {
		case tracker.KindStart:
			sessions[e.LocalPort] = &state{last: e.Time}
		case tracker.KindProgress:
			st := sessions[e.LocalPort]
			if st == nil || e.Time.Sub(st.last) < 250*time.Millisecond || e.Bytes < st.bytes || e.Bytes > e.Total || e.Total != int64(size) {
				t.Errorf("progress %+v after %+v", e, st)
				continue
			}
			st.last, st.bytes = e.Time, e.Bytes
		}
	}
}

func TestWindowed(t *testing.T) {
	ts := startServer(t, func(s *Server) { s.MaxBlockSize = 1468 })
	for _, size := range []int{0, 100, 1428 * 16, 1428*16 + 1, 1<<20 + 123} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			name := "w" + strconv.Itoa(size)
			want := ts.file(t, name, size)
			got, err := rawGet(ts.addr, name, rawOpts{blksize: 1428, window: 16, tsize: true})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.data, want) {
				t.Fatalf("got %d bytes, want %d identical", len(got.data), size)
			}
			if got.oack["windowsize"] != "16" || got.oack["blksize"] != "1428" || got.oack["tsize"] != strconv.Itoa(size) {
				t.Errorf("OACK %v", got.oack)
			}
			if wantACKs := size/1428/16 + 1; got.acks != wantACKs {
				t.Errorf("%d ACKs, want %d", got.acks, wantACKs)
			}
			ts.events.waitFor(t, "done", kindFile(tracker.KindDone, name))
		})
	}
	t.Run("tiny blocks", func(t *testing.T) {
		// pin refuses blksize below 512, so this one uses rawGet.
		want := ts.file(t, "tiny", 100)
		got, err := rawGet(ts.addr, "tiny", rawOpts{blksize: 8, window: 3})
		if err != nil {
			t.Fatal(err)
		}
		if got.oack["blksize"] != "8" || !bytes.Equal(got.data, want) {
			t.Errorf("OACK %v, %d bytes", got.oack, len(got.data))
		}
	})
	t.Run("blksize capped", func(t *testing.T) {
		want := ts.file(t, "capped", 100000)
		got, err := rawGet(ts.addr, "capped", rawOpts{blksize: 65464, window: 64})
		if err != nil {
			t.Fatal(err)
		}
		if got.oack["blksize"] != "1468" || got.oack["windowsize"] != "64" || !bytes.Equal(got.data, want) {
			t.Errorf("OACK %v, %d bytes", got.oack, len(got.data))
		}
	})
}

func TestMsftWindow(t *testing.T) {
	ts := startServer(t, nil)
	size := 1468*200 + 5
	want := ts.file(t, "wds.bin", size)
	got, err := rawGet(ts.addr, "wds.bin", rawOpts{blksize: 1468, tsize: true, msft: []int{4, 8, 1, 64, 200, 2, 16}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.data, want) {
		t.Fatalf("got %d bytes, want %d identical", len(got.data), size)
	}
	if got.oack["msftwindow"] != "27182" {
		t.Errorf("OACK %v", got.oack)
	}
	ts.events.waitFor(t, "done", kindFile(tracker.KindDone, "wds.bin"))
}

// TestRetransmission loses ACKs and DATA so the server must time out and
// resend, or rewind to an ACK inside the window.
func TestRetransmission(t *testing.T) {
	ts := startServer(t, func(s *Server) { s.Timeout = 20 * time.Millisecond; s.Retries = 50 })
	size := 512*300 + 17
	want := ts.file(t, "lossy.bin", size)
	tests := []struct {
		name string
		o    rawOpts
	}{
		{"lock-step lost ACKs", rawOpts{dropACK: func(n int) bool { return n%20 == 3 }}},
		{"window lost ACKs", rawOpts{window: 16, dropACK: func(n int) bool { return n%3 == 1 }}},
		{"window lost DATA", rawOpts{window: 16, dropData: func(idx uint64) bool { return idx%37 == 5 || idx == 1 || idx == 16 }}},
		{"window lost both", rawOpts{window: 8, blksize: 512, tsize: true,
			dropACK:  func(n int) bool { return n%4 == 0 },
			dropData: func(idx uint64) bool { return idx%11 == 0 }}},
		{"msft lost both", rawOpts{blksize: 512, msft: []int{3, 16, 5},
			dropACK:  func(n int) bool { return n%5 == 2 },
			dropData: func(idx uint64) bool { return idx%13 == 0 }}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.wait = 60 * time.Millisecond
			got, err := rawGet(ts.addr, "lossy.bin", tt.o)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.data, want) {
				t.Fatalf("got %d bytes, want %d identical", len(got.data), size)
			}
			if got.dups == 0 && got.resent == 0 {
				t.Errorf("no retransmission happened")
			}
		})
	}
	waitDone(t, ts, "lossy.bin", len(tests))
	if n := ts.events.count(func(e tracker.Event) bool { return e.Event == tracker.KindError }); n != 0 {
		t.Errorf("error events: %+v", ts.events.all())
	}
}

func waitDone(t *testing.T, ts *testServer, file string, n int) {
	t.Helper()
	ts.events.waitFor(t, strconv.Itoa(n)+" done", func(tracker.Event) bool {
		return ts.events.count(kindFile(tracker.KindDone, file)) >= n
	})
}

func TestTimeoutGivesUp(t *testing.T) {
	ts := startServer(t, func(s *Server) { s.Timeout = 10 * time.Millisecond; s.Retries = 2 })
	ts.file(t, "f", 5000)
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p, _, err := sendRecv(conn, ts.addr, appendRequest(nil, opRRQ, "f", "octet", nil))
	if err != nil || p.op != opDATA || p.block != 1 {
		t.Fatalf("first reply %+v, %v", p, err)
	}
	// No ACK: the server resends block 1 twice, then gives up.
	for i := 0; i < 2; i++ {
		if p, _, err := recvPacket(conn); err != nil || p.op != opDATA || p.block != 1 {
			t.Fatalf("retransmission %d: %+v, %v", i, p, err)
		}
	}
	e := ts.events.waitFor(t, "error", kindFile(tracker.KindError, "f"))
	if e.Detail != "timeout after 2 retries" {
		t.Errorf("detail %q", e.Detail)
	}
}

func TestSessionPortInRange(t *testing.T) {
	rng := udprange.Range{First: 40000, Last: 40010}
	ts := startServer(t, func(s *Server) { s.Ports = udprange.NewLive(rng) })
	want := ts.file(t, "f", 3000)
	for i := 0; i < 5; i++ {
		got, err := rawGet(ts.addr, "f", rawOpts{})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.data, want) {
			t.Fatal("data differs")
		}
		if !rng.Contains(int(got.src.Port())) || got.src.Addr().String() != "127.0.0.1" {
			t.Errorf("DATA from %v, want 127.0.0.1 and a port in %v", got.src, rng)
		}
	}
	for _, e := range ts.events.all() {
		if !rng.Contains(e.LocalPort) {
			t.Errorf("event LocalPort %d outside %v", e.LocalPort, rng)
		}
	}
}

func TestPortRangeExhausted(t *testing.T) {
	busy, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := busy.LocalAddr().(*net.UDPAddr).Port
	rng := udprange.Range{First: port, Last: port}
	ts := startServer(t, func(s *Server) { s.Ports = udprange.NewLive(rng) })
	want := ts.file(t, "f", 2000)

	_, err = pinGet(ts.addr, "f", "octet", 0, false)
	wantMsg := "no free port in udp_range " + rng.String()
	if err == nil || !strings.Contains(err.Error(), wantMsg) {
		t.Fatalf("err = %v, want %q", err, wantMsg)
	}
	e := ts.events.waitFor(t, "error", kindFile(tracker.KindError, "f"))
	if e.Detail != wantMsg {
		t.Errorf("detail %q, want %q", e.Detail, wantMsg)
	}

	busy.Close()
	got, err := pinGet(ts.addr, "f", "octet", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.data, want) || got.remote.Port != port {
		t.Errorf("after freeing: %d bytes from port %d, want port %d", len(got.data), got.remote.Port, port)
	}
}

func TestRangeChangeAppliesToNextSession(t *testing.T) {
	first := udprange.Range{First: 40020, Last: 40025}
	second := udprange.Range{First: 40030, Last: 40035}
	live := udprange.NewLive(first)
	ts := startServer(t, func(s *Server) { s.Ports = live })
	ts.file(t, "f", 100)
	got, err := rawGet(ts.addr, "f", rawOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if !first.Contains(int(got.src.Port())) {
		t.Errorf("port %d not in %v", got.src.Port(), first)
	}
	if err := live.Set(second); err != nil {
		t.Fatal(err)
	}
	got, err = rawGet(ts.addr, "f", rawOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if !second.Contains(int(got.src.Port())) {
		t.Errorf("port %d not in %v after the change", got.src.Port(), second)
	}
}

func TestNilPortsUsesDefault(t *testing.T) {
	ts := startServer(t, func(s *Server) { s.Ports = nil })
	ts.file(t, "f", 10)
	got, err := rawGet(ts.addr, "f", rawOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if !udprange.Default().Contains(int(got.src.Port())) {
		t.Errorf("port %d not in the default range", got.src.Port())
	}
}

func TestTraversal(t *testing.T) {
	ts := startServer(t, nil)
	ts.write(t, "x", []byte("inside"))
	ts.write(t, "a/y", []byte("inside"))
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(ts.root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(ts.root, "dirlink")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"../x", "a/../../x", "a/../x", `..\x`, "/../x", "link", "dirlink/secret", "C:/x", "x\x00", "a\x00../../secret"} {
		t.Run(strconv.Quote(name), func(t *testing.T) {
			p, from, err := exchange(ts.addr, appendRequest(nil, opRRQ, name, "octet", nil))
			if err != nil {
				t.Fatal(err)
			}
			if p.op != opERROR {
				t.Fatalf("got %v from %v, want ERROR", p.op, from)
			}
			if p.code != errAccess && p.code != errIllegalOp {
				t.Errorf("ERROR %d %q", p.code, p.msg)
			}
		})
	}
	// A NUL inside the name over the pin client too.
	if got, err := pinGet(ts.addr, "a\x00../../secret", "octet", 0, false); err == nil {
		t.Errorf("NUL name served %q", got.data)
	}
	e := ts.events.waitFor(t, "error", kindFile(tracker.KindError, "link"))
	if !strings.HasPrefix(e.Detail, "access violation") {
		t.Errorf("symlink detail %q", e.Detail)
	}
	if n := ts.events.count(func(e tracker.Event) bool { return e.Event == tracker.KindStart }); n != 0 {
		t.Errorf("%d sessions started", n)
	}
}

func TestBackslashPath(t *testing.T) {
	ts := startServer(t, nil)
	want := ts.file(t, "boot/x64/file.efi", 4096+7)
	got, err := pinGet(ts.addr, `\Boot\X64\file.EFI`, "octet", 1468, true)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.data, want) {
		t.Fatalf("got %d bytes, want %d identical", len(got.data), len(want))
	}
	ts.events.waitFor(t, "done", kindFile(tracker.KindDone, "Boot/X64/file.EFI"))
}

func TestNotFound(t *testing.T) {
	ts := startServer(t, nil)
	p, _, err := exchange(ts.addr, appendRequest(nil, opRRQ, "missing", "octet", nil))
	if err != nil || p.op != opERROR || p.code != errNotFound {
		t.Fatalf("got %+v, %v; want ERROR 1", p, err)
	}
	e := ts.events.waitFor(t, "error", kindFile(tracker.KindError, "missing"))
	if e.Detail != "file not found" || e.Peer == "" || e.IP != "127.0.0.1" {
		t.Errorf("event %+v", e)
	}
}

func TestNetascii(t *testing.T) {
	ts := startServer(t, nil)
	text := []byte("line one\nline two\r\nbare cr\rend\n" + strings.Repeat("x\n", 600))
	ts.write(t, "t.txt", text)
	got, err := pinGet(ts.addr, "t.txt", "netascii", 0, true)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.data, text) {
		t.Errorf("netascii round trip differs:\n%q\n%q", got.data[:40], text[:40])
	}
	conv, _ := toNetascii(text, netasciiMax)
	if got.size != int64(len(conv)) {
		t.Errorf("tsize %d, want the netascii size %d", got.size, len(conv))
	}
	raw, err := rawGet(ts.addr, "t.txt", rawOpts{mode: "NetASCII", window: 4})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw.data, conv) {
		t.Error("wire form is not netascii")
	}
}

func TestSizeProbe(t *testing.T) {
	ts := startServer(t, nil)
	want := ts.file(t, "shim.efi", 123456)
	for _, code := range []errCode{errOptionRefused, errUndefined} {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		p, from, err := sendRecv(conn, ts.addr, appendRequest(nil, opRRQ, "shim.efi", "octet",
			[]option{{"tsize", "0"}, {"blksize", "1468"}}))
		if err != nil || p.op != opOACK {
			t.Fatalf("got %+v, %v; want OACK", p, err)
		}
		if p.options[0] != (option{"tsize", "123456"}) {
			t.Errorf("OACK %v", p.options)
		}
		if _, err := conn.WriteToUDPAddrPort(appendError(nil, code, "tsize query"), from); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		got, err := pinGet(ts.addr, "shim.efi", "octet", 1468, true)
		if err != nil || !bytes.Equal(got.data, want) {
			t.Fatalf("download after probe: %v", err)
		}
	}
	ts.events.waitFor(t, "2 probes", func(tracker.Event) bool {
		return ts.events.count(func(e tracker.Event) bool { return e.Event == tracker.KindDone && e.Detail == "size probe" }) == 2
	})
	waitDone(t, ts, "shim.efi", 4)
	if n := ts.events.count(func(e tracker.Event) bool { return e.Event == tracker.KindError }); n != 0 {
		t.Errorf("error events: %+v", ts.events.all())
	}
}

func TestWriteRefused(t *testing.T) {
	ts := startServer(t, nil)
	p, _, err := exchange(ts.addr, appendRequest(nil, opWRQ, "upload", "octet", nil))
	if err != nil || p.op != opERROR || p.code != errAccess || p.msg != "read-only server" {
		t.Fatalf("got %+v, %v", p, err)
	}
	e := ts.events.waitFor(t, "error", kindFile(tracker.KindError, "upload"))
	if e.Detail != "access violation: read-only server" {
		t.Errorf("detail %q", e.Detail)
	}
	if _, err := os.Stat(filepath.Join(ts.root, "upload")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file created: %v", err)
	}
}

func TestMalformedPackets(t *testing.T) {
	ts := startServer(t, nil)
	want := ts.file(t, "f", 700)
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Answered with ERROR 4.
	for _, b := range [][]byte{{0, 9}, {0, 1, 'f'}, rrq("f", "octet", "blksize"), rrq("f", "mail"), rrq("f", "")} {
		p, _, err := sendRecv(conn, ts.addr, b)
		if err != nil || p.op != opERROR || p.code != errIllegalOp {
			t.Errorf("%q: got %+v, %v; want ERROR 4", b, p, err)
		}
	}
	// Ignored.
	for _, b := range [][]byte{{}, {0}, {0, 4, 0, 1}, {0, 3, 0, 1, 'x'}, {0, 5, 0, 0, 0}, {0, 6, 'a', 0, 'b', 0}} {
		if _, err := conn.WriteTo(b, mustUDPAddr(t, ts.addr)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := pinGet(ts.addr, "f", "octet", 0, false)
	if err != nil || !bytes.Equal(got.data, want) {
		t.Fatalf("server broken after junk: %v", err)
	}
}

func mustUDPAddr(t *testing.T, s string) *net.UDPAddr {
	a, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestUnknownTID sends to a session port from another socket: that socket
// gets ERROR 5 and the transfer goes on.
func TestUnknownTID(t *testing.T) {
	ts := startServer(t, func(s *Server) { s.Timeout = 10 * time.Second })
	want := ts.file(t, "f", 512*10+3)
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p, session, err := sendRecv(conn, ts.addr, appendRequest(nil, opRRQ, "f", "octet", nil))
	if err != nil || p.op != opDATA || p.block != 1 {
		t.Fatalf("first reply %+v, %v", p, err)
	}
	data := append([]byte(nil), p.data...)
	intruder, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer intruder.Close()
	q, _, err := sendRecv(intruder, session.String(), appendACK(nil, 1, 0))
	if err != nil || q.op != opERROR || q.code != errUnknownTID {
		t.Fatalf("intruder got %+v, %v; want ERROR 5", q, err)
	}
	for block := uint16(1); ; block++ {
		if _, err := conn.WriteToUDPAddrPort(appendACK(nil, block, 0), session); err != nil {
			t.Fatal(err)
		}
		if len(p.data) < 512 {
			break
		}
		p, _, err = recvPacket(conn)
		if err != nil || p.op != opDATA || p.block != block+1 {
			t.Fatalf("block %d: %+v, %v", block+1, p, err)
		}
		data = append(data, p.data...)
	}
	if !bytes.Equal(data, want) {
		t.Fatal("data differs")
	}
	ts.events.waitFor(t, "done", kindFile(tracker.KindDone, "f"))
}

// TestRepeatedRequest sends the same RRQ twice before answering: one
// session serves it.
func TestRepeatedRequest(t *testing.T) {
	logs := &logLines{}
	ts := startServer(t, func(s *Server) {
		s.Timeout = 10 * time.Second
		s.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ts.file(t, "f", 100)
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := appendRequest(nil, opRRQ, "f", "octet", []option{{"tsize", "0"}})
	for i := 0; i < 2; i++ {
		if _, err := conn.WriteTo(req, mustUDPAddr(t, ts.addr)); err != nil {
			t.Fatal(err)
		}
	}
	p, session, err := recvPacket(conn)
	if err != nil || p.op != opOACK {
		t.Fatalf("got %+v, %v", p, err)
	}
	// Answer only once the server has seen the second request: after an
	// answer, a request is a new one.
	logs.waitFor(t, "ignoring repeated request")
	if _, err := conn.WriteToUDPAddrPort(appendACK(nil, 0, 0), session); err != nil {
		t.Fatal(err)
	}
	for {
		p, from, err := recvPacket(conn)
		if err != nil {
			t.Fatal(err)
		}
		if from != session || p.op != opDATA {
			t.Fatalf("second session answered: %+v from %v", p, from)
		}
		if p.block == 1 {
			if _, err := conn.WriteToUDPAddrPort(appendACK(nil, 1, 0), session); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	ts.events.waitFor(t, "done", kindFile(tracker.KindDone, "f"))
	if n := ts.events.count(kindFile(tracker.KindStart, "f")); n != 1 {
		t.Errorf("%d sessions started", n)
	}
}

func TestMaxSessions(t *testing.T) {
	ts := startServer(t, func(s *Server) { s.MaxSessions = 1; s.Timeout = 5 * time.Second })
	ts.file(t, "f", 5000)
	hold, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p, session, err := sendRecv(hold, ts.addr, appendRequest(nil, opRRQ, "f", "octet", nil))
	if err != nil || p.op != opDATA {
		t.Fatalf("first session: %+v, %v", p, err)
	}
	q, _, err := exchange(ts.addr, appendRequest(nil, opRRQ, "f", "octet", nil))
	if err != nil || q.op != opERROR || q.code != errUndefined {
		t.Fatalf("second session: %+v, %v; want ERROR 0", q, err)
	}
	// End the first session with an ERROR from the client.
	if _, err := hold.WriteToUDPAddrPort(appendError(nil, errUndefined, "bye"), session); err != nil {
		t.Fatal(err)
	}
	hold.Close()
	e := ts.events.waitFor(t, "client error", func(e tracker.Event) bool {
		return e.Event == tracker.KindError && strings.HasPrefix(e.Detail, "client error 0")
	})
	if e.LocalPort == 0 {
		t.Errorf("event %+v", e)
	}
	// The slot frees just after the event: retry while busy.
	for i := 0; ; i++ {
		_, err := rawGet(ts.addr, "f", rawOpts{})
		if err == nil {
			break
		}
		if i > 100 || !strings.Contains(err.Error(), "busy") {
			t.Fatalf("after the first session ended: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serveLoopback runs srv.Serve on a new loopback socket, without the
// cleanup startServer registers (the Shutdown tests do that themselves).
func serveLoopback(t *testing.T, srv *Server) (*net.UDPConn, <-chan error) {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(conn) }()
	return conn, served
}

func TestShutdown(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		srv := &Server{FS: emptyFS{}}
		conn, served := serveLoopback(t, srv)
		// Make sure Serve runs before Shutdown: a request gets an answer.
		if _, _, err := exchange(conn.LocalAddr().String(), rrq("x", "octet")); err != nil {
			t.Fatal(err)
		}
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Fatalf("Serve: %v", err)
		}
		// Serve after Shutdown returns at once.
		conn2, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Serve(conn2); err != nil {
			t.Fatalf("Serve after Shutdown: %v", err)
		}
	})
	t.Run("stalled session", func(t *testing.T) {
		events := &eventLog{}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 5000), 0o644); err != nil {
			t.Fatal(err)
		}
		srv := &Server{FS: dirFS(dir), Timeout: time.Minute, Events: events.emitter(), Ports: udprange.NewLive(defaultTestRange)}
		conn, served := serveLoopback(t, srv)
		p, _, err := exchange(conn.LocalAddr().String(), rrq("f", "octet"))
		if err != nil || p.op != opDATA {
			t.Fatalf("got %+v, %v", p, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want deadline exceeded", err)
		}
		if err := <-served; err != nil {
			t.Fatalf("Serve: %v", err)
		}
		e := events.waitFor(t, "error", func(e tracker.Event) bool { return e.Event == tracker.KindError })
		if !strings.Contains(e.Detail, "shutting down") {
			t.Errorf("detail %q", e.Detail)
		}
	})
	t.Run("closed elsewhere", func(t *testing.T) {
		srv := &Server{FS: emptyFS{}}
		conn, served := serveLoopback(t, srv)
		if _, _, err := exchange(conn.LocalAddr().String(), rrq("x", "octet")); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if err := <-served; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve = %v, want net.ErrClosed", err)
		}
	})
	t.Run("nil FS", func(t *testing.T) {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		if err := (&Server{}).Serve(conn); err == nil {
			t.Fatal("Serve without FS: no error")
		}
	})
}

func TestListenAndServe(t *testing.T) {
	srv := &Server{FS: emptyFS{}}
	probe, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.LocalAddr().String()
	probe.Close()
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe(addr) }()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 600)
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatal("no answer from ListenAndServe")
		}
		if _, err := conn.WriteTo(rrq("x", "octet"), mustUDPAddr(t, addr)); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			continue
		}
		if p, err := decode(buf[:n]); err != nil || p.op != opERROR || p.code != errNotFound {
			t.Fatalf("got %+v, %v; want ERROR 1", p, err)
		}
		break
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("ListenAndServe: %v", err)
	}
	if err := srv.ListenAndServe("127.0.0.1:notaport"); err == nil {
		t.Error("bad address: no error")
	}
}
