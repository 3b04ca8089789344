package multicast

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// testRecv is a receiver of a 100-block image (the last block 990 bytes)
// whose back-off is always 7 ms.
func testRecv(clk *fakeClock) *recvState {
	return newRecvState(recvConfig{client: 5, size: 100*testBlock - 10, blockSize: testBlock,
		status: 100 * time.Millisecond, backoff: 20 * time.Millisecond, gapDelay: 5 * time.Millisecond,
		timeout: 10 * time.Second, jitter: func(time.Duration) time.Duration { return 7 * time.Millisecond }}, clk.now)
}

func block(r *recvState, round, seq, b uint32, sweep bool) *Data {
	return &Data{Round: round, Seq: seq, Block: b, Sweep: sweep, Payload: make([]byte, r.payloadLen(b))}
}

// nacked lists the blocks the NACKs ask for.
func nacked(ns []Nack) []uint32 {
	var out []uint32
	for _, n := range ns {
		for _, e := range n.Entries {
			for i := range e.Count {
				if e.Bits == nil || e.Bits[i/8]&(1<<(i%8)) != 0 {
					out = append(out, e.Start+i)
				}
			}
		}
	}
	return out
}

func span(lo, hi uint32) []uint32 {
	var out []uint32
	for b := lo; b < hi; b++ {
		out = append(out, b)
	}
	return out
}

// TestRecvGapNack: in a sweep round the receiver NACKs the gaps it sees
// after a short delay, batched; a late joiner NACKs what went before.
func TestRecvGapNack(t *testing.T) {
	clk := newClock()
	r := testRecv(clk)
	r.due(clk.now) // the first STATUS
	for _, b := range []uint32{0, 1, 4, 5, 9} {
		if !r.onData(clk.now, block(r, 1, b, b, true)) {
			t.Fatalf("block %d not new", b)
		}
	}
	if ns, _ := r.due(clk.add(4 * time.Millisecond)); len(ns) != 0 {
		t.Errorf("NACK before the gap delay: %+v", ns)
	}
	ns, _ := r.due(clk.add(time.Millisecond))
	if got := nacked(ns); !slices.Equal(got, []uint32{2, 3, 6, 7, 8}) || ns[0].Round != 1 || ns[0].Client != 5 {
		t.Errorf("gap NACK %v %+v", got, ns)
	}
	if r.lost != 5 || r.received != 5 {
		t.Errorf("lost %d, received %d", r.lost, r.received)
	}
	// Not a sweep: no gap NACKs (the sender skips blocks nobody lacks).
	r.onData(clk.now, block(r, 2, 10, 50, false))
	if ns, _ := r.due(clk.add(time.Second)); len(ns) != 1 || ns[0].Round != 1 {
		// Only the reply to round 1's end, which DATA of round 2 implies.
		t.Errorf("NACKs in a partial round: %+v", ns)
	}

	late := testRecv(clk)
	late.onData(clk.now, block(late, 1, 40, 40, true))
	ns, _ = late.due(clk.add(gapDelay))
	if len(ns) != 1 || !slices.Equal(nacked(ns), span(0, 40)) {
		t.Errorf("late joiner's NACK %+v", ns)
	}
	if late.lost != 0 {
		t.Errorf("a late joiner counts %d lost", late.lost)
	}
}

// TestRecvRoundEnd: the end of a round (ANNOUNCE, or DATA of a later
// round) gets one NACK of every missing block after the back-off.
func TestRecvRoundEnd(t *testing.T) {
	clk := newClock()
	r := testRecv(clk)
	for b := uint32(0); b < 100; b++ {
		if b%10 != 3 && b < 90 {
			r.onData(clk.now, block(r, 2, b, b, false))
		}
	}
	end := &Announce{State: StateRoundEnd, BlockSize: testBlock, Round: 2, Seq: 100, Blocks: 100, Size: 100*testBlock - 10}
	if err := r.onAnnounce(clk.now, end); err != nil {
		t.Fatal(err)
	}
	if r.lost != 100-81 {
		t.Errorf("lost %d (the tail counted from the ANNOUNCE's seq)", r.lost)
	}
	if ns, _ := r.due(clk.add(6 * time.Millisecond)); len(ns) != 0 {
		t.Errorf("reply before the back-off: %+v", ns)
	}
	ns, _ := r.due(clk.add(time.Millisecond))
	want := append([]uint32{3, 13, 23, 33, 43, 53, 63, 73, 83}, span(90, 100)...)
	if got := nacked(ns); !slices.Equal(got, want) || ns[0].Round != 2 {
		t.Errorf("reply %v, want %v", got, want)
	}
	// Heartbeats repeating the end: a reply at most every two back-offs.
	r.onAnnounce(clk.add(10*time.Millisecond), end)
	if ns, _ := r.due(clk.add(20 * time.Millisecond)); len(ns) != 0 {
		t.Errorf("second reply too soon: %+v", ns)
	}
	r.onAnnounce(clk.add(20*time.Millisecond), end)
	if ns, _ := r.due(clk.add(7 * time.Millisecond)); len(nacked(ns)) != len(want) {
		t.Errorf("no reply to a later heartbeat: %+v", ns)
	}
	// DATA of round 4 means round 3 ended.
	r.onData(clk.now, block(r, 4, 200, 3, false))
	ns, _ = r.due(clk.add(7 * time.Millisecond))
	if len(ns) == 0 || ns[0].Round != 3 || slices.Contains(nacked(ns), 3) {
		t.Errorf("reply to round 3's end: %+v", ns)
	}
}

func TestRecvStatusAndEnd(t *testing.T) {
	clk := newClock()
	r := testRecv(clk)
	if _, st := r.due(clk.now); st == nil || *st != (Status{Client: 5}) {
		t.Errorf("first STATUS %+v", st)
	}
	if _, st := r.due(clk.add(99 * time.Millisecond)); st != nil {
		t.Error("STATUS before the interval")
	}
	for b := range uint32(100) {
		r.onData(clk.now, block(r, 1, b+1, b, true))
	}
	_, st := r.due(clk.now) // every block held: at once
	// The first DATA seen sets the sequence: nothing counts as lost before.
	if st == nil || !st.Done || st.Held != 100 || st.Received != 100 || st.Lost != 0 || st.Round != 1 {
		t.Errorf("done STATUS %+v", st)
	}
	if r.onData(clk.now, block(r, 1, 200, 5, true)) || r.dup != 1 {
		t.Error("a held block is new again")
	}
	r.onNotice(TypeEnd, &Notice{Client: 6})
	if r.over {
		t.Error("another client's END ends the run")
	}
	r.onNotice(TypeEnd, &Notice{Client: 5})
	if !r.over || r.err != nil {
		t.Errorf("after END: over %v, %v", r.over, r.err)
	}

	// Without END the done STATUS is repeated, then the run ends anyway.
	q := testRecv(clk)
	for b := range uint32(100) {
		q.onData(clk.now, block(q, 1, b, b, true))
	}
	sent := 0
	for i := 0; i < 20 && !q.over; i++ {
		if _, st := q.due(clk.add(100 * time.Millisecond)); st != nil {
			sent++
		}
	}
	if !q.over || q.err != nil || sent != doneRetries {
		t.Errorf("unacknowledged: over %v, %v after %d STATUSes", q.over, q.err, sent)
	}
}

func TestRecvEndings(t *testing.T) {
	clk := newClock()
	r := testRecv(clk)
	r.onNotice(TypeFallback, &Notice{Client: 4, Reason: ReasonSlow})
	if r.over {
		t.Error("another client's FALLBACK")
	}
	r.onNotice(TypeFallback, &Notice{Client: 5, Reason: ReasonSlow})
	var fe *FallbackError
	if !r.over || !errors.Is(r.err, ErrFallback) || !strings.Contains(r.err.Error(), "too slow") || !errors.As(r.err, &fe) || fe.Reason != ReasonSlow {
		t.Errorf("FALLBACK: %v", r.err)
	}

	r = testRecv(clk)
	r.onNotice(TypeEnd, &Notice{})
	if !r.over || !errors.Is(r.err, ErrEnded) {
		t.Errorf("END to all before done: %v", r.err)
	}

	r = testRecv(clk)
	r.check(clk.add(10 * time.Second))
	if r.over {
		t.Error("timeout at the limit")
	}
	r.check(clk.add(time.Millisecond))
	if !r.over || !errors.Is(r.err, ErrTimeout) {
		t.Errorf("timeout: %v", r.err)
	}
	if w := testRecv(clk).wake(); !w.Equal(clk.now) {
		t.Errorf("a new receiver wakes at %v, not now", w)
	}
}

func TestRecvRejects(t *testing.T) {
	clk := newClock()
	r := testRecv(clk)
	for _, d := range []*Data{
		{Round: 1, Block: 100, Payload: make([]byte, testBlock)}, // past the end
		{Round: 1, Block: 3, Payload: make([]byte, testBlock-1)}, // short
		{Round: 1, Block: 99, Payload: make([]byte, testBlock)},  // the last block is 990
	} {
		if r.onData(clk.now, d) {
			t.Errorf("accepted %+v", d)
		}
	}
	if r.bad != 3 || r.held != 0 || r.received != 0 {
		t.Errorf("bad %d, held %d, received %d", r.bad, r.held, r.received)
	}
	err := r.onAnnounce(clk.now, &Announce{State: StateSending, BlockSize: 512, Blocks: 196, Size: 100*testBlock - 10})
	if err == nil {
		t.Error("an ANNOUNCE of other parameters accepted")
	}
}

func TestMissingEntries(t *testing.T) {
	have := newBitmap(20000)
	have.fill()
	for _, b := range []uint32{5, 6, 7, 100} {
		have.unset(b)
	}
	for b := uint32(1000); b < 3000; b++ {
		have.unset(b)
	}
	have.unset(19999)
	e, next := missingEntries(have, 0, have.n, nackBudget)
	if next != have.n || len(e) != 3 {
		t.Fatalf("entries %+v, next %d", e, next)
	}
	if e[0].Start != 5 || e[0].Count != 96 || e[0].Bits == nil || !reflect.DeepEqual(e[1], NackEntry{Start: 1000, Count: 2000}) || e[2].Start != 19999 || e[2].Count != 1 {
		t.Errorf("entries %+v", e)
	}
	if got := nacked([]Nack{{Entries: e}}); !slices.Equal(got, append(append([]uint32{5, 6, 7, 100}, span(1000, 3000)...), 19999)) {
		t.Errorf("blocks %v", got)
	}
	// A small budget stops early and says where to go on.
	e, next = missingEntries(have, 0, have.n, bitmapFixed+13)
	if len(e) != 1 || next != 101 {
		t.Errorf("small budget: %+v, next %d", e, next)
	}
	if e, next = missingEntries(have, 3000, 19999, nackBudget); len(e) != 0 || next != 19999 {
		t.Errorf("nothing missing: %+v, next %d", e, next)
	}
}

func TestBitmap(t *testing.T) {
	for _, n := range []uint32{1, 63, 64, 65, 200} {
		b := newBitmap(n)
		if b.nextSet(0) != n || b.nextClear(0) != 0 || b.count() != 0 {
			t.Errorf("%d: empty bitmap", n)
		}
		b.fill()
		if b.count() != n || b.nextClear(0) != n || b.nextSet(n-1) != n-1 {
			t.Errorf("%d: full bitmap: count %d", n, b.count())
		}
		b.reset()
		for i := uint32(0); i < n; i += 3 {
			b.set(i)
		}
		for i := range n {
			wantSet, wantClear := n, n
			for j := i; j < n; j++ {
				if j%3 == 0 && wantSet == n {
					wantSet = j
				}
				if j%3 != 0 && wantClear == n {
					wantClear = j
				}
			}
			if b.nextSet(i) != wantSet || b.nextClear(i) != wantClear || b.get(i) != (i%3 == 0) {
				t.Fatalf("%d: at %d: nextSet %d (want %d), nextClear %d (want %d)", n, i, b.nextSet(i), wantSet, b.nextClear(i), wantClear)
			}
		}
		if b.get(n) || b.nextSet(n) != n || b.nextClear(n+5) != n {
			t.Errorf("%d: past the end", n)
		}
	}
}
