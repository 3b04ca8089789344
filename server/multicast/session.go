package multicast

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/netdeploy/netdeploy/server/tracker"
)

// The sender's decisions, driven by explicit time and tested without
// sockets. Blocks go out in rounds: round 1 sends every block; each later
// round sends, in ascending order, the blocks NACKed since (a carousel over
// what active clients still lack). A block is in a round at most once
// however many clients ask for it; a NACK for a block sent since the
// round the receiver had seen is stale and ignored.

// StartPolicy says when a session starts sending. The zero value starts as
// soon as one client is ready (has reported).
type StartPolicy struct {
	// Clients: start once this many clients are ready.
	Clients int
	// Delay: start this long after the first client joined, with however
	// many are ready then (with Clients: whichever comes first).
	Delay time.Duration
	// Manual: start only when Sender.Start is called.
	Manual bool
}

// SlowPolicy says what happens to a client that holds the group back.
type SlowPolicy int

// Slow-client policies.
const (
	// SlowWait slows the whole group down to the slowest client (down to
	// the minimum rate).
	SlowWait SlowPolicy = iota
	// SlowDrop sends FALLBACK to a client that would push the rate below
	// the slow rate, so that it fetches the image by SMB.
	SlowDrop
)

func (p SlowPolicy) String() string {
	switch p {
	case SlowWait:
		return "wait"
	case SlowDrop:
		return "drop"
	}
	return fmt.Sprintf("slow-policy-%d", int(p))
}

// ParseSlowPolicy reads "wait" or "drop". "split" (a second, slower
// stream) is not implemented.
func ParseSlowPolicy(s string) (SlowPolicy, error) {
	switch s {
	case "wait", "":
		return SlowWait, nil
	case "drop":
		return SlowDrop, nil
	case "split":
		return 0, errors.New("multicast: slow-client policy split is not implemented")
	}
	return 0, fmt.Errorf("multicast: unknown slow-client policy %q", s)
}

// Decision constants.
const (
	// minSamples is the fewest DATA packets a client must have seen or
	// missed in a control interval for its loss to count.
	minSamples = 200
	// maxAccumulate bounds how many control ticks a sample accumulates.
	maxAccumulate = 5
	// slowStrikes is how many times a client must push the rate below the
	// slow rate before SlowDrop drops it.
	slowStrikes = 3
	// progressEvery is the least time between progress events of a client.
	progressEvery = 250 * time.Millisecond
	// noticeEvery is the least time between FALLBACKs to one client.
	noticeEvery = 50 * time.Millisecond
)

type clientState uint8

const (
	clientJoined   clientState = iota // registered, not heard from yet
	clientReady                       // reported at least once
	clientDone                        // holds every block
	clientDropped                     // silent too long
	clientFallback                    // told to fetch by SMB
	clientLeft                        // said it leaves
	clientEnded                       // the session ended first
)

func (s clientState) String() string {
	return [...]string{"joined", "ready", "done", "dropped", "fallback", "left", "ended"}[s]
}

func (s clientState) active() bool { return s == clientJoined || s == clientReady }

// client is the sender's record of one receiver.
type client struct {
	id          uint32
	mac, ip     string
	addr        netip.AddrPort
	state       clientState
	detail      string // why it left the session
	reason      Reason // why it was told to fall back
	joined      time.Time
	heard       time.Time
	held, round uint32
	// Cumulative counters of the last STATUS, and what they grew by in
	// the current control interval.
	recv, lost     uint32
	counted        bool
	ivRecv, ivLost uint64
	ivTicks        int
	lossRate       float64 // last measured loss fraction
	loss           lossModel
	strikes        int
	progressAt     time.Time
	progressHeld   uint32
	noticeAt       time.Time
}

// sessionConfig is what the decisions need from the Sender.
type sessionConfig struct {
	size      int64
	blockSize int
	start     StartPolicy
	slow      SlowPolicy
	slowRate  float64
	rate      rateConfig
	silent    time.Duration
	heartbeat time.Duration
	control   time.Duration
	linger    time.Duration
	burst     float64 // bytes the pacer may send back to back
	event     tracker.Event
}

// notice is a FALLBACK or END for one address.
type notice struct {
	to netip.AddrPort
	n  Notice
}

// batch is what step hands the sender to transmit: Blocks with sequence
// numbers Seq, Seq+1, ...
type batch struct {
	Round  uint32
	Seq    uint32
	Sweep  bool
	Blocks []uint32
}

// sessionStats counts the decisions.
type sessionStats struct {
	dataPackets, dataBytes uint64
	repairPackets          uint64 // DATA after the first round
	requests               uint64 // blocks NACKed
	duplicates             uint64 // NACKed blocks already queued
	stale                  uint64 // NACKed blocks sent since the receiver's view
	invalid                uint64 // NACKed blocks past the end
}

// session holds the sender's state; it is not safe for concurrent use.
type session struct {
	cfg     sessionConfig
	blocks  uint32
	clients map[uint32]*client
	nextID  uint32

	state          State
	started        bool
	manual         bool // Start was called
	closing        bool // no more joins; end once the active clients are
	startAt        time.Time
	round, cursor  uint32
	sweep          bool
	cur, next, pre bitmap // this round's blocks, the next round's, the previous round's
	seq            uint32

	rate                  rateControl
	tokens                float64
	filled                time.Time
	sent                  float64 // bytes sent since the last control tick
	controlAt, controlled time.Time
	announceAt            time.Time
	announceNow           bool
	completeAt            time.Time

	st      sessionStats
	notices []notice
	events  []tracker.Event
}

func newSession(cfg sessionConfig, now time.Time) *session {
	n := uint32((cfg.size + int64(cfg.blockSize) - 1) / int64(cfg.blockSize))
	s := &session{
		cfg: cfg, blocks: n, clients: map[uint32]*client{}, nextID: 1,
		state: StateWaiting,
		cur:   newBitmap(n), next: newBitmap(n), pre: newBitmap(n),
		rate:   newRateControl(cfg.rate),
		filled: now, controlAt: now.Add(cfg.control), controlled: now, announceAt: now,
	}
	s.next.fill()
	if cfg.burst < float64(Overhead+cfg.blockSize) {
		s.cfg.burst = float64(Overhead + cfg.blockSize)
	}
	s.tokens = s.cfg.burst
	return s
}

// payloadLen is the length of block b.
func (s *session) payloadLen(b uint32) int {
	if b == s.blocks-1 {
		return int(s.cfg.size - int64(b)*int64(s.cfg.blockSize))
	}
	return s.cfg.blockSize
}

// join registers a client and returns its ID.
func (s *session) join(now time.Time, mac, ip string) (uint32, error) {
	if s.closing {
		return 0, errors.New("multicast: session closing")
	}
	id := s.nextID
	s.nextID++
	s.clients[id] = &client{id: id, mac: mac, ip: ip, joined: now, heard: now}
	if s.startAt.IsZero() && s.cfg.start.Delay > 0 {
		s.startAt = now.Add(s.cfg.start.Delay)
	}
	s.completeAt = time.Time{}
	return id, nil
}

// count returns how many clients are ready and how many are active.
func (s *session) count() (ready, active int) {
	for _, c := range s.clients {
		if c.state == clientReady {
			ready++
		}
		if c.state.active() {
			active++
		}
	}
	return
}

func (s *session) event(c *client, kind tracker.Kind, now time.Time, detail string) {
	e := s.cfg.event
	e.Time, e.MAC, e.IP, e.Event, e.Detail, e.Total = now, c.mac, c.ip, kind, detail, s.cfg.size
	e.Bytes = min(int64(c.held)*int64(s.cfg.blockSize), s.cfg.size)
	if c.addr.IsValid() {
		e.Peer = c.addr.String()
	}
	s.events = append(s.events, e)
}

// finish takes c out of the session.
func (s *session) finish(c *client, st clientState, now time.Time, detail string) {
	c.state, c.detail = st, detail
	if st == clientDone {
		s.event(c, tracker.KindDone, now, "")
		return
	}
	s.event(c, tracker.KindError, now, detail)
}

// fallback drops c and tells it to fetch by SMB.
func (s *session) fallback(c *client, r Reason, now time.Time) {
	s.finish(c, clientFallback, now, "fallback: "+r.String())
	c.reason = r
	s.notify(c, r, now)
}

// notify sends c a FALLBACK (r set, at most every noticeEvery) or the END
// acknowledging its done.
func (s *session) notify(c *client, r Reason, now time.Time) {
	if !c.addr.IsValid() || (r != 0 && now.Sub(c.noticeAt) < noticeEvery) {
		return
	}
	c.noticeAt = now
	s.notices = append(s.notices, notice{to: c.addr, n: Notice{Client: c.id, Reason: r}})
}

// lookup finds the client of a feedback packet; unknown and finished
// clients get their FALLBACK or END again.
func (s *session) lookup(now time.Time, from netip.AddrPort, id uint32) *client {
	c := s.clients[id]
	if c == nil {
		s.notices = append(s.notices, notice{to: from, n: Notice{Client: id, Reason: ReasonUnknown}})
		return nil
	}
	c.addr = from
	switch c.state {
	case clientJoined, clientReady:
		c.heard = now
		return c
	case clientDone:
		s.notify(c, 0, now)
	case clientDropped:
		s.notify(c, ReasonSilent, now)
	case clientFallback:
		s.notify(c, c.reason, now)
	case clientEnded:
		// The session is over: the END to all, to this client.
		s.notices = append(s.notices, notice{to: from, n: Notice{}})
	}
	return nil
}

// onStatus handles a STATUS.
func (s *session) onStatus(now time.Time, from netip.AddrPort, st *Status) {
	c := s.lookup(now, from, st.Client)
	if c == nil {
		return
	}
	if c.state == clientJoined {
		c.state = clientReady
		s.event(c, tracker.KindStart, now, "")
		c.progressAt = now
	}
	// Counters only grow: an older STATUS arriving late is not counted.
	dr, dl := st.Received-c.recv, st.Lost-c.lost
	if !c.counted || (int32(dr) >= 0 && int32(dl) >= 0) {
		if c.counted {
			c.ivRecv += uint64(dr)
			c.ivLost += uint64(dl)
		}
		c.recv, c.lost, c.counted = st.Received, st.Lost, true
	}
	c.held = max(c.held, min(st.Held, s.blocks))
	if int32(st.Round-c.round) > 0 {
		c.round = st.Round
	}
	switch {
	case st.Leave:
		s.finish(c, clientLeft, now, "receiver left")
	case st.Done && c.held == s.blocks:
		s.finish(c, clientDone, now, "")
		s.notify(c, 0, now)
	case c.held != c.progressHeld && now.Sub(c.progressAt) >= progressEvery:
		c.progressAt, c.progressHeld = now, c.held
		s.event(c, tracker.KindProgress, now, "")
	}
}

// onNack queues the blocks of a NACK.
func (s *session) onNack(now time.Time, from netip.AddrPort, n *Nack) {
	c := s.lookup(now, from, n.Client)
	if c == nil {
		return
	}
	r := n.Round
	if int32(r-s.round) > 0 {
		r = s.round
	}
	for _, e := range n.Entries {
		if e.Bits == nil {
			end := uint32(min(uint64(e.Start)+uint64(e.Count), uint64(s.blocks)))
			if e.Start >= end {
				s.st.invalid += uint64(e.Count)
				continue
			}
			s.st.invalid += uint64(e.Count - (end - e.Start))
			for b := e.Start; b < end; b++ {
				s.request(b, r)
			}
			continue
		}
		for i := range e.Count {
			if e.Bits[i/8]&(1<<(i%8)) == 0 {
				continue
			}
			if b := e.Start + i; b < s.blocks {
				s.request(b, r)
			} else {
				s.st.invalid++
			}
		}
	}
}

// request queues block b, NACKed by a receiver that had seen round r:
// into this round if the cursor has not passed it, else into the next;
// never twice in one round, and not when it was sent since round r (in
// this round behind the cursor, which is past the end once the round
// ended, or in the previous round): the receiver will say again if that
// copy was lost too.
func (s *session) request(b, r uint32) {
	s.st.requests++
	if (int32(s.round-r) > 0 && b < s.cursor && s.cur.get(b)) || (int32(s.round-1-r) > 0 && s.pre.get(b)) {
		s.st.stale++
		return
	}
	sending := s.state == StateSending
	switch {
	case sending && b >= s.cursor && s.cur.get(b), s.next.get(b):
		s.st.duplicates++
	case sending && b >= s.cursor:
		s.cur.set(b)
	default:
		s.next.set(b)
	}
}

// start asks for the session to start (Sender.Start).
func (s *session) start() { s.manual = true }

// close stops joins: the session ends once the active clients finished.
func (s *session) close() { s.closing = true }

// end takes every active client out: the session is over.
func (s *session) end(now time.Time, detail string) {
	for _, c := range s.sorted() {
		if c.state.active() {
			s.finish(c, clientEnded, now, detail)
		}
	}
	s.closing = true
	s.state = StateRoundEnd
}

// shouldStart applies the start policy. Clients that joined and dropped
// out before the start count towards Clients once every active one is
// ready, so that one dead client does not hold the others forever.
func (s *session) shouldStart(now time.Time, ready, active int) bool {
	if ready == 0 {
		return false
	}
	p := s.cfg.start
	switch {
	case s.closing || s.manual:
		return true
	case p.Manual:
		return false
	case p.Delay > 0 && !s.startAt.IsZero() && !now.Before(s.startAt):
		return true
	case p.Delay > 0 && p.Clients <= 0:
		return false
	}
	need := max(p.Clients, 1)
	return ready >= need || (ready == active && len(s.clients) >= need)
}

// step advances the session to now and returns the blocks to send now,
// at most max, appended to buf.
func (s *session) step(now time.Time, max int, buf []uint32) batch {
	s.tick(now)
	ready, active := s.count()
	if s.state == StateWaiting && s.shouldStart(now, ready, active) {
		s.state, s.started = StateRoundEnd, true
	}
	if s.started && active == 0 {
		// Nobody is left to want what is queued; a later joiner NACKs.
		if s.state == StateSending {
			s.endRound()
		}
		s.next.reset()
	}
	if s.state == StateRoundEnd && ready > 0 && s.next.nextSet(0) < s.blocks {
		s.startRound()
	}
	b := batch{Round: s.round, Seq: s.seq, Sweep: s.sweep, Blocks: buf[:0]}
	if s.state == StateSending {
		s.refill(now)
		for len(b.Blocks) < max {
			blk := s.cur.nextSet(s.cursor)
			if blk >= s.blocks {
				s.endRound()
				break
			}
			cost := float64(Overhead + s.payloadLen(blk))
			if s.tokens < cost {
				break
			}
			s.tokens -= cost
			s.sent += cost
			s.cursor = blk + 1
			b.Blocks = append(b.Blocks, blk)
			s.st.dataPackets++
			s.st.dataBytes += uint64(s.payloadLen(blk))
			if s.round > 1 {
				s.st.repairPackets++
			}
		}
		s.seq += uint32(len(b.Blocks))
	}
	return b
}

func (s *session) refill(now time.Time) {
	if d := now.Sub(s.filled); d > 0 {
		s.tokens = min(s.tokens+s.rate.rate*d.Seconds(), s.cfg.burst)
	}
	s.filled = now
}

func (s *session) startRound() {
	s.pre, s.cur, s.next = s.cur, s.next, s.pre
	s.next.reset()
	s.round++
	s.cursor = 0
	s.sweep = s.cur.count() == s.blocks
	s.state = StateSending
}

func (s *session) endRound() {
	s.state = StateRoundEnd
	s.cursor = s.blocks
	s.announceNow = true
}

// tick runs the timers: silence, rate control, heartbeat, completion.
func (s *session) tick(now time.Time) {
	if !now.Before(s.controlAt) {
		for _, c := range s.sorted() {
			if c.state.active() && now.Sub(c.heard) > s.cfg.silent {
				s.finish(c, clientDropped, now, fmt.Sprintf("silent for %v", now.Sub(c.heard).Round(time.Millisecond)))
			}
		}
		s.control(now)
		s.controlAt = now.Add(s.cfg.control)
	}
	if _, active := s.count(); s.started && active == 0 && len(s.clients) > 0 && s.completeAt.IsZero() {
		s.completeAt = now
	}
}

// control runs once per control interval: it measures every ready
// client's loss and moves the rate.
func (s *session) control(now time.Time) {
	achieved := 0.0
	if d := now.Sub(s.controlled).Seconds(); d > 0 {
		achieved = s.sent / d
	}
	budget := s.rate.rate * now.Sub(s.controlled).Seconds()
	used := s.sent >= budget/2
	s.sent, s.controlled = 0, now
	if s.rate.settle > 0 {
		s.rate.settle--
		for _, c := range s.clients {
			c.ivRecv, c.ivLost, c.ivTicks = 0, 0, 0
		}
		return
	}
	var worst *client
	var congested []*client
	excess := 0.0
	helped, useless := false, false
	for _, c := range s.sorted() {
		if c.state != clientReady {
			continue
		}
		n := c.ivRecv + c.ivLost
		if n < minSamples {
			if c.ivTicks++; c.ivTicks >= maxAccumulate {
				c.ivRecv, c.ivLost, c.ivTicks = 0, 0, 0
			}
			continue
		}
		loss := float64(c.ivLost) / float64(n)
		c.ivRecv, c.ivLost, c.ivTicks, c.lossRate = 0, 0, 0, loss
		cong, verdict := c.loss.sample(loss)
		helped = helped || verdict == cutHelped
		useless = useless || verdict == cutUseless
		if !cong {
			if c.loss.base > maxHealthyLoss && s.cfg.slow == SlowDrop {
				s.fallback(c, ReasonLossy, now)
			}
			if loss <= c.loss.threshold() {
				c.strikes = 0
			}
			continue
		}
		congested = append(congested, c)
		if e := loss - c.loss.threshold(); worst == nil || e > excess {
			worst, excess = c, e
		}
	}
	if useless && !helped {
		// The last cut was for loss that does not depend on the rate.
		s.rate.undo()
	}
	if worst == nil {
		if used && s.state == StateSending {
			s.rate.increase(achieved)
		}
		return
	}
	floor := s.cfg.rate.min
	factor := cutFactor(worst.lossRate, worst.loss.base)
	if s.cfg.slow == SlowDrop {
		floor = max(floor, s.cfg.slowRate)
		// A strike when even the usual cut would go below the slow rate: a
		// deep cut for one stalled interval is no reason to drop.
		if s.rate.rate*decreaseFactor < s.cfg.slowRate {
			if worst.strikes++; worst.strikes >= slowStrikes {
				s.fallback(worst, ReasonSlow, now)
				return
			}
		}
	}
	if applied := s.rate.decrease(floor, factor); applied <= factor*1.001 {
		for _, c := range congested {
			c.loss.probe(c.lossRate, applied)
		}
	}
}

// sorted returns the clients by ID.
func (s *session) sorted() []*client {
	out := make([]*client, 0, len(s.clients))
	for _, c := range s.clients {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *client) int { return int(a.id) - int(b.id) })
	return out
}

// announce returns the heartbeat to send now, if one is due.
func (s *session) announce(now time.Time) (Announce, bool) {
	if !s.announceNow && now.Before(s.announceAt) {
		return Announce{}, false
	}
	s.announceNow = false
	s.announceAt = now.Add(s.cfg.heartbeat)
	return Announce{
		State: s.state, BlockSize: uint16(s.cfg.blockSize), Round: s.round, Seq: s.seq,
		Blocks: s.blocks, Size: uint64(s.cfg.size), Rate: uint64(s.rate.rate),
	}, true
}

// drain returns and clears the notices and events produced so far.
func (s *session) drain() ([]notice, []tracker.Event) {
	n, e := s.notices, s.events
	s.notices, s.events = nil, nil
	return n, e
}

// wake returns when step should run next.
func (s *session) wake(now time.Time) time.Time {
	w := s.controlAt
	if s.announceNow {
		return now
	}
	w = earliest(w, s.announceAt)
	if s.state == StateWaiting && !s.startAt.IsZero() {
		w = earliest(w, s.startAt)
	}
	if !s.completeAt.IsZero() {
		w = earliest(w, s.completeAt.Add(s.cfg.linger))
	}
	switch {
	case s.state == StateRoundEnd && s.next.nextSet(0) < s.blocks:
		if ready, _ := s.count(); ready > 0 {
			return now
		}
	case s.state == StateSending:
		blk := s.cur.nextSet(s.cursor)
		if blk >= s.blocks {
			return now
		}
		need := float64(Overhead+s.payloadLen(blk)) - s.tokens
		if need <= 0 {
			return now
		}
		// A microsecond late, so that rounding never leaves it short.
		w = earliest(w, now.Add(time.Duration(need/s.rate.rate*float64(time.Second))+time.Microsecond))
	}
	return w
}

// finished reports whether the session is over: started (or closing),
// every client finished, and the linger time passed (closing: at once).
func (s *session) finished(now time.Time) bool {
	if _, active := s.count(); active > 0 {
		return false
	}
	if s.closing {
		return true
	}
	return !s.completeAt.IsZero() && !now.Before(s.completeAt.Add(s.cfg.linger))
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
