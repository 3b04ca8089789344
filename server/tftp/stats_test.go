package tftp

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/stats"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// waitSessions polls the session counters until ok accepts them: a
// session is closed just after its last event.
func waitSessions(t *testing.T, srv *Server, ok func(stats.Snapshot) bool) stats.Snapshot {
	t.Helper()
	_, st := waitStats(t, srv, func(_, s stats.Snapshot) bool { return ok(s) })
	return st
}

// waitStats polls the listen and session counters until ok: a packet is
// counted after it is sent, so the client may see it first.
func waitStats(t *testing.T, srv *Server, ok func(listen, sess stats.Snapshot) bool) (stats.Snapshot, stats.Snapshot) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		listen, sess := srv.Stats()
		if ok(listen, sess) {
			return listen, sess
		}
		if time.Now().After(deadline) {
			t.Fatalf("listen stats %+v, session stats %+v", listen, sess)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestStatsTransfer counts one windowed transfer exactly: one request on
// the service port, the OACK and every DATA block out, ACK 0 and the
// window ACKs in; then a missing file costs one ERROR from port 69.
func TestStatsTransfer(t *testing.T) {
	ts := startServer(t, nil)
	const size, blksize, window = 1468*40 + 100, 1468, 8
	ts.file(t, "f", size)
	res, err := rawGet(ts.addr, "f", rawOpts{blksize: blksize, window: window})
	if err != nil {
		t.Fatal(err)
	}
	ts.events.waitFor(t, "done", kindFile(tracker.KindDone, "f"))
	sess := waitSessions(t, ts.srv, func(st stats.Snapshot) bool { return st.Active == 0 })
	listen, _ := ts.srv.Stats()
	req := appendRequest(nil, opRRQ, "f", "octet", []option{{"blksize", strconv.Itoa(blksize)}, {"windowsize", strconv.Itoa(window)}})
	if listen != (stats.Snapshot{PacketsIn: 1, BytesIn: uint64(len(req))}) {
		t.Errorf("listen stats %+v, want one request of %d bytes", listen, len(req))
	}
	blocks := uint64(size/blksize + 1)
	oack := appendOACK(nil, []option{{"blksize", strconv.Itoa(blksize)}, {"windowsize", strconv.Itoa(window)}})
	want := stats.Snapshot{
		PacketsOut: 1 + blocks,
		BytesOut:   uint64(len(oack)) + 4*blocks + size,
		PacketsIn:  1 + uint64(res.acks),
		BytesIn:    4 * (1 + uint64(res.acks)),
	}
	if res.dups != 0 || res.resent != 0 {
		// A retransmission on a busy machine: the counts only grow.
		t.Logf("retransmissions (dups %d, resent %d): checking lower bounds", res.dups, res.resent)
		if sess.PacketsOut < want.PacketsOut || sess.BytesOut < want.BytesOut || sess.PacketsIn < want.PacketsIn {
			t.Errorf("session stats %+v, want at least %+v", sess, want)
		}
	} else if sess != want {
		t.Errorf("session stats %+v, want %+v", sess, want)
	}

	// A missing file: ERROR 1 from the service port, no session.
	p, _, err := exchange(ts.addr, appendRequest(nil, opRRQ, "missing", "octet", nil))
	if err != nil || p.op != opERROR || p.code != errNotFound {
		t.Fatalf("missing: %+v %v", p, err)
	}
	listen, sess2 := waitStats(t, ts.srv, func(l, _ stats.Snapshot) bool { return l.PacketsOut >= 1 })
	errPkt := appendError(nil, errNotFound, "file not found")
	if listen.PacketsIn != 2 || listen.PacketsOut != 1 || listen.BytesOut != uint64(len(errPkt)) || listen.Active != 0 {
		t.Errorf("listen stats after a missing file %+v", listen)
	}
	if sess2 != sess {
		t.Errorf("a refused request changed the session stats: %+v, was %+v", sess2, sess)
	}
}

// TestSessions lists a lock-step transfer while it runs, with its
// progress, and forgets it when it ends.
func TestSessions(t *testing.T) {
	ts := startServer(t, func(s *Server) { s.Timeout = 10 * time.Second })
	ts.file(t, "dir/f", 512+100)
	if got := ts.srv.Sessions(); len(got) != 0 {
		t.Fatalf("sessions before any request %+v", got)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	before := time.Now()
	p, session, err := sendRecv(conn, ts.addr, appendRequest(nil, opRRQ, "dir/f", "octet", []option{{"tsize", "0"}}))
	if err != nil || p.op != opOACK {
		t.Fatalf("first reply %+v, %v", p, err)
	}
	list := ts.srv.Sessions()
	if len(list) != 1 {
		t.Fatalf("sessions %+v", list)
	}
	got := list[0]
	if got.Client != conn.LocalAddr().String() || got.LocalPort != int(session.Port()) || got.File != "dir/f" ||
		got.Bytes != 0 || got.Total != 612 || got.Started.Before(before.Add(-time.Second)) || got.Started.After(time.Now()) {
		t.Errorf("session %+v (client %s, port %d)", got, conn.LocalAddr(), session.Port())
	}
	if _, st := ts.srv.Stats(); st.Active != 1 {
		t.Errorf("active %d", st.Active)
	}

	// ACK 0, DATA 1, ACK 1: 512 bytes acknowledged.
	if _, err := conn.WriteToUDPAddrPort(appendACK(nil, 0, 0), session); err != nil {
		t.Fatal(err)
	}
	if p, _, err = recvPacket(conn); err != nil || p.op != opDATA || p.block != 1 {
		t.Fatalf("DATA 1: %+v %v", p, err)
	}
	if _, err := conn.WriteToUDPAddrPort(appendACK(nil, 1, 0), session); err != nil {
		t.Fatal(err)
	}
	if p, _, err = recvPacket(conn); err != nil || p.op != opDATA || p.block != 2 {
		t.Fatalf("DATA 2: %+v %v", p, err)
	}
	if list := ts.srv.Sessions(); len(list) != 1 || list[0].Bytes != 512 {
		t.Errorf("after ACK 1: %+v", list)
	}
	if _, err := conn.WriteToUDPAddrPort(appendACK(nil, 2, 0), session); err != nil {
		t.Fatal(err)
	}
	ts.events.waitFor(t, "done", kindFile(tracker.KindDone, "dir/f"))
	st := waitSessions(t, ts.srv, func(st stats.Snapshot) bool { return st.Active == 0 })
	if list := ts.srv.Sessions(); len(list) != 0 {
		t.Errorf("sessions after the transfer %+v", list)
	}
	oack := appendOACK(nil, []option{{"tsize", "612"}})
	if st.PacketsIn != 3 || st.PacketsOut != 3 || st.BytesIn != 12 || st.BytesOut != uint64(len(oack)+4+512+4+100) {
		t.Errorf("session stats %+v", st)
	}
}
