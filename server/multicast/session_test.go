package multicast

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/tracker"
)

const testBlock = 1000

// testConfig is a session of blocks blocks of testBlock bytes (the last
// one shorter), starting as soon as one client is ready.
func testConfig(blocks int) sessionConfig {
	return sessionConfig{
		size: int64(blocks)*testBlock - 10, blockSize: testBlock,
		slowRate: 2e6, rate: rateConfig{initial: 10e6, min: 1e5, max: 1e9},
		silent: 5 * time.Second, heartbeat: 100 * time.Millisecond, control: 200 * time.Millisecond,
		burst: 1e9, event: tracker.Event{Stage: tracker.StageMulticast, Port: 64001, Proto: "udp", File: "img"},
	}
}

func addrOf(id uint32) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + id)}), 64001)
}

// ready joins a client and has it report once.
func ready(t *testing.T, s *session, now time.Time) uint32 {
	t.Helper()
	id, err := s.join(now, fmt.Sprintf("02:00:00:00:00:%02x", len(s.clients)+1), "")
	if err != nil {
		t.Fatal(err)
	}
	s.onStatus(now, addrOf(id), &Status{Client: id})
	return id
}

// send steps the session at now and returns the blocks it sends (at most
// max).
func send(s *session, now time.Time, max int) []uint32 {
	return slices.Clone(s.step(now, max, nil).Blocks)
}

func nack(s *session, now time.Time, id, round uint32, blocks ...uint32) {
	n := Nack{Client: id, Round: round}
	for _, b := range blocks {
		n.Entries = append(n.Entries, NackEntry{Start: b, Count: 1})
	}
	s.onNack(now, addrOf(id), &n)
}

// TestSessionStartDeadClient: a client that dies before the start does
// not hold the others back.
func TestSessionStartDeadClient(t *testing.T) {
	clk := newClock()
	cfg := testConfig(10)
	cfg.start.Clients = 3
	s := newSession(cfg, clk.now)
	a, b := ready(t, s, clk.now), ready(t, s, clk.now)
	s.join(clk.now, "02:00:00:00:00:03", "") // never reports
	for range 30 {
		clk.add(200 * time.Millisecond)
		s.onStatus(clk.now, addrOf(a), &Status{Client: a})
		s.onStatus(clk.now, addrOf(b), &Status{Client: b})
		if got := send(s, clk.now, 100); len(got) > 0 {
			if !clk.now.After(newClock().now.Add(cfg.silent)) {
				t.Errorf("started at %v, before the silent client was dropped", clk.now)
			}
			return
		}
	}
	t.Fatalf("not started, state %s", s.state)
}

func TestSessionStartPolicy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy StartPolicy
		// step: 0 one client ready, 1 a second one ready, 2 delay passed,
		// 3 Start called; the step at which sending begins
		starts int
	}{
		{"at once", StartPolicy{}, 0},
		{"two clients", StartPolicy{Clients: 2}, 1},
		{"three clients or a delay", StartPolicy{Clients: 3, Delay: time.Minute}, 2},
		{"delay", StartPolicy{Delay: time.Minute}, 2},
		{"manual", StartPolicy{Manual: true, Clients: 1}, 3},
	} {
		clk := newClock()
		cfg := testConfig(10)
		cfg.start = tc.policy
		s := newSession(cfg, clk.now)
		for step := range 4 {
			switch step {
			case 0, 1:
				ready(t, s, clk.now)
			case 2:
				clk.add(time.Minute)
				for id := range s.clients {
					s.onStatus(clk.now, addrOf(id), &Status{Client: id})
				}
			case 3:
				s.start()
			}
			got := send(s, clk.now, 100)
			if s.started != (step >= tc.starts) || (step != tc.starts && len(got) > 0) {
				t.Errorf("%s: step %d: started %v, sent %v", tc.name, step, s.started, got)
			}
			if step == tc.starts && (len(got) != 10 || !s.sweep || s.round != 1) {
				t.Errorf("%s: first round sent %v (sweep %v, round %d)", tc.name, got, s.sweep, s.round)
			}
		}
	}
}

// TestSessionRepairDedup: a block NACKed by many is queued once per
// round; a NACK ahead of the cursor joins the running round; a NACK for a
// block sent since the receiver's view is stale.
func TestSessionRepairDedup(t *testing.T) {
	clk := newClock()
	s := newSession(testConfig(10), clk.now)
	a, b := ready(t, s, clk.now), ready(t, s, clk.now)
	if got := send(s, clk.now, 6); !slices.Equal(got, []uint32{0, 1, 2, 3, 4, 5}) {
		t.Fatalf("round 1 began with %v", got)
	}
	nack(s, clk.now, a, 1, 2, 3)    // behind the cursor: next round
	nack(s, clk.now, b, 1, 2, 3, 8) // 2, 3 queued already; 8 still ahead in this round
	// The round ends in the step that finds nothing more to send, and the
	// ANNOUNCE saying so follows its DATA.
	if got := send(s, clk.now, 100); !slices.Equal(got, []uint32{6, 7, 8, 9}) || s.state != StateRoundEnd {
		t.Fatalf("rest of round 1: %v, state %s", got, s.state)
	}
	if ann, ok := s.announce(clk.now); !ok || ann.State != StateRoundEnd || ann.Round != 1 || ann.Seq != 10 {
		t.Fatalf("after round 1: %+v %v", ann, ok)
	}
	if got := send(s, clk.now, 1); !slices.Equal(got, []uint32{2}) || s.round != 2 || s.sweep {
		t.Fatalf("round 2 began with %v (round %d, sweep %v)", got, s.round, s.sweep)
	}
	nack(s, clk.now, a, 1, 2) // a had seen round 1 only: 2 went out since
	nack(s, clk.now, b, 2, 7) // ahead of the cursor: joins round 2
	nack(s, clk.now, b, 2, 3) // queued in round 2 already
	if got := send(s, clk.now, 100); !slices.Equal(got, []uint32{3, 7}) || s.state != StateRoundEnd || s.next.count() != 0 {
		t.Fatalf("rest of round 2: %v, state %s, %d queued", got, s.state, s.next.count())
	}
	// At the round end, a NACK from a view of round 1 for a block of
	// round 2 is stale; one from round 2's view is queued.
	nack(s, clk.now, a, 1, 3)
	nack(s, clk.now, a, 2, 3)
	if got := send(s, clk.now, 100); !slices.Equal(got, []uint32{3}) || s.round != 3 {
		t.Fatalf("round 3: %v", got)
	}
	want := sessionStats{dataPackets: 14, dataBytes: 14*testBlock - 10, repairPackets: 4, requests: 10, duplicates: 4, stale: 2}
	if s.st != want {
		t.Errorf("stats %+v, want %+v", s.st, want)
	}
}

// simRcv is a receiver in the simulation.
type simRcv struct {
	st    *recvState
	id    uint32
	lossy func() bool // drops a packet to this receiver
	dead  bool        // stopped without a word
	err   error
	ended bool
}

// sim drives a session and receivers over a fake network with explicit
// time: the protocol end to end, without sockets.
type sim struct {
	t       *testing.T
	clk     *fakeClock
	s       *session
	rcvs    []*simRcv
	payload []byte
	rng     *rand.Rand
	sent    int // DATA packets
	events  []tracker.Event
}

func newSim(t *testing.T, cfg sessionConfig) *sim {
	clk := newClock()
	return &sim{t: t, clk: clk, s: newSession(cfg, clk.now), payload: make([]byte, cfg.blockSize),
		rng: rand.New(rand.NewPCG(1, 2))}
}

// join adds a receiver that loses each packet with probability loss.
func (m *sim) join(loss float64) *simRcv {
	id, err := m.s.join(m.clk.now, fmt.Sprintf("02:00:00:00:00:%02x", len(m.rcvs)+1), "")
	if err != nil {
		m.t.Fatal(err)
	}
	r := &simRcv{id: id, lossy: func() bool { return m.rng.Float64() < loss }}
	r.st = newRecvState(recvConfig{client: id, size: m.s.cfg.size, blockSize: m.s.cfg.blockSize,
		status: 100 * time.Millisecond, backoff: 20 * time.Millisecond, gapDelay: 5 * time.Millisecond,
		timeout: 10 * time.Second, jitter: func(d time.Duration) time.Duration { return time.Duration(m.rng.Int64N(int64(d) + 1)) }},
		m.clk.now)
	m.rcvs = append(m.rcvs, r)
	return r
}

func (m *sim) live(r *simRcv) bool { return !r.dead && !r.ended }

// step runs one round of the loop: the sender steps, packets are
// delivered, receivers answer, and time moves to the next wake.
func (m *sim) step() {
	now := m.clk.now
	b := m.s.step(now, sendBatch, nil)
	for k, blk := range b.Blocks {
		m.sent++
		n := int(min(int64(m.s.cfg.blockSize), m.s.cfg.size-int64(blk)*int64(m.s.cfg.blockSize)))
		d := Data{Round: b.Round, Seq: b.Seq + uint32(k), Block: blk, Sweep: b.Sweep, Payload: m.payload[:n]}
		for _, r := range m.rcvs {
			if m.live(r) && !r.lossy() {
				r.st.onData(now, &d)
			}
		}
	}
	if ann, ok := m.s.announce(now); ok {
		for _, r := range m.rcvs {
			if m.live(r) && !r.lossy() {
				if err := r.st.onAnnounce(now, &ann); err != nil {
					m.t.Fatal(err)
				}
			}
		}
	}
	m.deliverNotices(now)
	for _, r := range m.rcvs {
		if !m.live(r) {
			continue
		}
		r.st.check(now)
		nacks, st := r.st.due(now)
		for i := range nacks {
			m.s.onNack(now, addrOf(r.id), &nacks[i])
		}
		if st != nil {
			m.s.onStatus(now, addrOf(r.id), st)
		}
		if r.st.over {
			r.ended, r.err = true, r.st.err
		}
	}
	m.deliverNotices(now)
	next := m.s.wake(now)
	for _, r := range m.rcvs {
		if m.live(r) {
			next = earliest(next, r.st.wake())
		}
	}
	m.clk.now = maxTime(next, now.Add(10*time.Microsecond))
}

func (m *sim) deliverNotices(now time.Time) {
	notices, events := m.s.drain()
	m.events = append(m.events, events...)
	for _, n := range notices {
		for _, r := range m.rcvs {
			if m.live(r) && addrOf(r.id) == n.to && !r.lossy() {
				t := TypeEnd
				if n.n.Reason != 0 {
					t = TypeFallback
				}
				r.st.onNotice(t, &n.n)
			}
		}
	}
}

// run steps until cond holds, failing after a minute of simulated time.
func (m *sim) run(what string, cond func() bool) {
	m.t.Helper()
	limit := m.clk.now.Add(time.Minute)
	for !cond() {
		if m.clk.now.After(limit) {
			m.t.Fatalf("no %s after a simulated minute; stats %+v", what, m.s.st)
		}
		m.step()
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (m *sim) state(r *simRcv) clientState { return m.s.clients[r.id].state }

// TestSessionCarouselLateJoiner: a receiver that joins halfway through
// the first round gets the first half in the next round, and only that.
func TestSessionCarouselLateJoiner(t *testing.T) {
	m := newSim(t, testConfig(1000))
	first := m.join(0)
	m.run("first half", func() bool { return first.st.held >= 500 })
	missed := int(first.st.held)
	late := m.join(0)
	m.run("session end", func() bool { return m.s.finished(m.clk.now) })
	for _, r := range []*simRcv{first, late} {
		if !r.ended || r.err != nil || !r.st.complete() || m.state(r) != clientDone {
			t.Errorf("client %d: ended %v, err %v, held %d, state %s", r.id, r.ended, r.err, r.st.held, m.state(r))
		}
	}
	// Round 1 sends every block once, round 2 what the late one missed.
	if m.sent != 1000+missed || m.s.round != 2 || m.s.sweep {
		t.Errorf("sent %d DATA in %d rounds; the late receiver missed %d", m.sent, m.s.round, missed)
	}
	if late.st.dup != 0 || first.st.dup != 0 {
		t.Errorf("duplicates: first %d, late %d", first.st.dup, late.st.dup)
	}
}

// TestSessionLossyReceiverCompletes: 5% loss at one of three receivers;
// everyone completes and repairs stay near the loss.
func TestSessionLossyReceiverCompletes(t *testing.T) {
	m := newSim(t, testConfig(5000))
	lossy := m.join(0.05)
	others := []*simRcv{m.join(0), m.join(0)}
	m.run("session end", func() bool { return m.s.finished(m.clk.now) })
	for _, r := range append(others, lossy) {
		if r.err != nil || !r.st.complete() || m.state(r) != clientDone {
			t.Errorf("client %d: err %v, held %d, state %s", r.id, r.err, r.st.held, m.state(r))
		}
	}
	if o := float64(m.sent) / 5000; o > 1.08 {
		t.Errorf("sent %.3fx the blocks for 5%% loss", o)
	}
	t.Logf("sent %d DATA for 5000 blocks in %d rounds; %+v", m.sent, m.s.round, m.s.st)
}

// TestSessionSilentClientDropped: a receiver that stops mid-transfer is
// dropped after the silence timeout, and the others finish.
func TestSessionSilentClientDropped(t *testing.T) {
	cfg := testConfig(20000)
	cfg.rate.initial, cfg.rate.max = 1e6, 1e6 // 20 s for the image
	m := newSim(t, cfg)
	steady, dies := m.join(0), m.join(0)
	m.run("a third", func() bool { return dies.st.held > 20000/3 })
	dies.dead = true
	diedAt := m.clk.now
	m.run("drop", func() bool { return m.state(dies) == clientDropped })
	// It last reported at most a STATUS interval before it died.
	if d := m.clk.now.Sub(diedAt); d < cfg.silent-100*time.Millisecond || d > cfg.silent+cfg.control {
		t.Errorf("dropped after %v of silence, timeout %v", d, cfg.silent)
	}
	m.run("session end", func() bool { return m.s.finished(m.clk.now) })
	if steady.err != nil || m.state(steady) != clientDone {
		t.Errorf("steady: %v, %s", steady.err, m.state(steady))
	}
	var errs []string
	for _, e := range m.events {
		if e.Event == tracker.KindError {
			errs = append(errs, e.MAC+" "+e.Detail)
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0], "02:00:00:00:00:02 silent for 5.") {
		t.Errorf("error events %q", errs)
	}
	// Heard again, it is told to fall back.
	m.s.onStatus(m.clk.now, addrOf(dies.id), &Status{Client: dies.id})
	if n, _ := m.s.drain(); len(n) != 1 || n[0].n.Reason != ReasonSilent || n[0].to != addrOf(dies.id) {
		t.Errorf("notices to the dropped client: %+v", n)
	}
}

func TestSessionUnknownClient(t *testing.T) {
	clk := newClock()
	s := newSession(testConfig(10), clk.now)
	from := netip.MustParseAddrPort("198.18.0.99:64001")
	s.onStatus(clk.now, from, &Status{Client: 42})
	s.onNack(clk.now, from, &Nack{Client: 42, Entries: []NackEntry{{Start: 0, Count: 10}}})
	n, ev := s.drain()
	if len(n) != 2 || n[0] != (notice{to: from, n: Notice{Client: 42, Reason: ReasonUnknown}}) || len(ev) != 0 {
		t.Errorf("notices %+v, events %+v", n, ev)
	}
	if s.st.requests != 0 || len(s.clients) != 0 {
		t.Errorf("an unknown client changed the session: %+v", s.st)
	}
}

// TestSessionEvents: start, progress at most every 250 ms, done with the
// image size, and an END acknowledging the done.
func TestSessionEvents(t *testing.T) {
	clk := newClock()
	s := newSession(testConfig(10), clk.now)
	id, _ := s.join(clk.now, "02:00:00:00:00:01", "198.18.0.11")
	s.onStatus(clk.now, addrOf(id), &Status{Client: id})
	send(s, clk.now, 100)
	for i := range uint32(10) {
		s.onStatus(clk.add(100*time.Millisecond), addrOf(id), &Status{Client: id, Held: i})
	}
	s.onStatus(clk.add(time.Millisecond), addrOf(id), &Status{Client: id, Held: 10, Done: true})
	send(s, clk.now, 100)
	n, ev := s.drain()
	var kinds []string
	for _, e := range ev {
		kinds = append(kinds, string(e.Event))
		if e.MAC != "02:00:00:00:00:01" || e.IP != "198.18.0.11" || e.Stage != tracker.StageMulticast || e.Total != 9990 || e.Peer != "198.18.0.11:64001" {
			t.Errorf("event %+v", e)
		}
	}
	if strings.Join(kinds, " ") != "start progress progress progress done" || ev[len(ev)-1].Bytes != 9990 {
		t.Errorf("events %v", ev)
	}
	if len(n) != 1 || n[0].n != (Notice{Client: id}) {
		t.Errorf("notices %+v", n)
	}
	if !s.finished(clk.now) {
		t.Error("not finished with every client done")
	}
}

// TestSessionLinger: with Linger the session waits for late joiners after
// everyone finished; a join restarts the wait.
func TestSessionLinger(t *testing.T) {
	clk := newClock()
	cfg := testConfig(10)
	cfg.linger = time.Second
	s := newSession(cfg, clk.now)
	id := ready(t, s, clk.now)
	send(s, clk.now, 100)
	s.onStatus(clk.now, addrOf(id), &Status{Client: id, Held: 10, Done: true})
	send(s, clk.now, 100)
	if s.finished(clk.add(999 * time.Millisecond)) {
		t.Error("finished before the linger time")
	}
	late := ready(t, s, clk.now)
	send(s, clk.now, 100)
	if s.finished(clk.add(2 * time.Second)) {
		t.Error("finished with a client running")
	}
	s.onStatus(clk.now, addrOf(late), &Status{Client: late, Held: 10, Done: true})
	send(s, clk.now, 100)
	if s.finished(clk.now) || !s.finished(clk.add(time.Second)) {
		t.Error("linger after the late client")
	}
	s.close()
	if _, err := s.join(clk.now, "", ""); err == nil {
		t.Error("join after close")
	}
}

// TestSessionEndedClient: a client heard after the session ended gets
// the END to all, as the group did.
func TestSessionEndedClient(t *testing.T) {
	clk := newClock()
	s := newSession(testConfig(10), clk.now)
	id := ready(t, s, clk.now)
	send(s, clk.now, 3)
	s.end(clk.now, "session stopped")
	s.drain()
	s.onStatus(clk.now, addrOf(id), &Status{Client: id, Held: 3})
	if n, ev := s.drain(); len(n) != 1 || n[0] != (notice{to: addrOf(id), n: Notice{}}) || len(ev) != 0 {
		t.Errorf("notices %+v, events %+v", n, ev)
	}
	if !s.finished(clk.now) {
		t.Error("not finished after end")
	}
}
