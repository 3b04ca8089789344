package multicast

import (
	"errors"
	"fmt"
	"time"
)

// The receiver's decisions, driven by explicit time and tested without
// sockets. A receiver NACKs (1) the gaps it sees in a sweep round (one that
// sends every block in order) shortly after seeing them, and (2) every
// block it lacks when a round ends, after a random back-off; it reports a
// STATUS every interval, which keeps it in the session and feeds the
// sender's rate control.

// Receiver errors.
var (
	// ErrFallback: the sender dropped this receiver; fetch the image
	// another way (SMB).
	ErrFallback = errors.New("multicast: sender asked for fallback")
	// ErrTimeout: nothing came from the sender for Receiver.Timeout.
	ErrTimeout = errors.New("multicast: sender silent")
	// ErrEnded: the sender ended the session before every block arrived.
	ErrEnded = errors.New("multicast: session ended by the sender")
)

// FallbackError is ErrFallback with the sender's reason.
type FallbackError struct{ Reason Reason }

func (e *FallbackError) Error() string { return ErrFallback.Error() + ": " + e.Reason.String() }
func (e *FallbackError) Unwrap() error { return ErrFallback }

// Receiver decision constants.
const (
	// longRun is the shortest run of missing blocks a NACK sends as a
	// range rather than in a bitmap.
	longRun = 64
	// nackBudget is the entry bytes one NACK packet may carry.
	nackBudget = MaxControlPacket - HeaderLen - nackFixed - TagLen
	// maxGapPackets and maxReplyPackets bound the NACK packets of one gap
	// report and of one round-end reply.
	maxGapPackets   = 4
	maxReplyPackets = 16
	// doneRetries is how many done STATUSes go out before Run returns
	// without the sender's END.
	doneRetries = 5
)

// recvConfig is what the decisions need from the Receiver.
type recvConfig struct {
	client    uint32
	size      int64
	blockSize int
	status    time.Duration // STATUS interval
	backoff   time.Duration // greatest random delay of a round-end reply
	gapDelay  time.Duration // delay before a gap NACK (batching)
	timeout   time.Duration // sender silence
	// jitter returns a random duration in [0, d).
	jitter func(d time.Duration) time.Duration
}

// recvState holds a receiver's state; it is not safe for concurrent use.
type recvState struct {
	cfg    recvConfig
	blocks uint32
	have   bitmap
	held   uint32
	round  uint32 // latest round seen
	heard  time.Time

	seqOK          bool
	lastSeq        uint32
	received, lost uint32

	// Gap NACKs of the current sweep round.
	inSweep           bool
	sweepRound        uint32
	sweepNext         uint32
	gapLo, gapHi      uint32
	gapAt             time.Time // zero: none pending
	replyAt           time.Time // round-end reply due; zero: none
	replyRound        uint32
	lastReply         time.Time
	lastReplyRound    uint32
	statusAt          time.Time
	doneSent          int
	leave             bool
	err               error // how Run ends; nil while running
	over              bool
	dup, bad, nacksTx uint64
}

func newRecvState(cfg recvConfig, now time.Time) *recvState {
	n := uint32((cfg.size + int64(cfg.blockSize) - 1) / int64(cfg.blockSize))
	return &recvState{cfg: cfg, blocks: n, have: newBitmap(n), heard: now, statusAt: now}
}

func (r *recvState) complete() bool { return r.held == r.blocks }

func (r *recvState) payloadLen(b uint32) int {
	if b == r.blocks-1 {
		return int(r.cfg.size - int64(b)*int64(r.cfg.blockSize))
	}
	return r.cfg.blockSize
}

// onData takes a DATA packet and reports whether its payload is new (to be
// written at Block*blockSize).
func (r *recvState) onData(now time.Time, d *Data) bool {
	if d.Block >= r.blocks || len(d.Payload) != r.payloadLen(d.Block) {
		r.bad++
		return false
	}
	r.heard = now
	r.received++
	if r.seqOK && int32(d.Seq-r.lastSeq) > 0 {
		r.lost += d.Seq - r.lastSeq - 1
	}
	if !r.seqOK || int32(d.Seq-r.lastSeq) > 0 {
		r.seqOK, r.lastSeq = true, d.Seq
	}
	if int32(d.Round-r.round) > 0 {
		if d.Round > 1 {
			r.roundEnded(now, d.Round-1)
		}
		r.round = d.Round
	}
	if d.Sweep && d.Round == r.round {
		if !r.inSweep || r.sweepRound != d.Round {
			r.inSweep, r.sweepRound, r.sweepNext = true, d.Round, 0
		}
		if d.Block >= r.sweepNext {
			if lo := r.have.nextClear(r.sweepNext); lo < d.Block {
				r.noteGap(now, lo, d.Block)
			}
			r.sweepNext = d.Block + 1
		}
	} else if !d.Sweep {
		r.inSweep = false
	}
	if r.have.get(d.Block) {
		r.dup++
		return false
	}
	r.have.set(d.Block)
	r.held++
	if r.complete() {
		r.statusAt = now
	}
	return true
}

func (r *recvState) noteGap(now time.Time, lo, hi uint32) {
	if r.gapAt.IsZero() {
		r.gapLo, r.gapHi, r.gapAt = lo, hi, now.Add(r.cfg.gapDelay)
		return
	}
	r.gapLo, r.gapHi = min(r.gapLo, lo), max(r.gapHi, hi)
}

// onAnnounce takes a heartbeat; parameters that disagree with the
// receiver's are an error.
func (r *recvState) onAnnounce(now time.Time, a *Announce) error {
	if a.Size != uint64(r.cfg.size) || int(a.BlockSize) != r.cfg.blockSize {
		return fmt.Errorf("multicast: sender announces %d bytes in blocks of %d, expected %d in blocks of %d",
			a.Size, a.BlockSize, r.cfg.size, r.cfg.blockSize)
	}
	r.heard = now
	if last := a.Seq - 1; r.seqOK && int32(last-r.lastSeq) > 0 {
		r.lost += last - r.lastSeq
		r.lastSeq = last
	} else if !r.seqOK {
		r.seqOK, r.lastSeq = true, last
	}
	switch a.State {
	case StateRoundEnd:
		if int32(a.Round-r.round) >= 0 && a.Round > 0 {
			r.round = a.Round
			r.roundEnded(now, a.Round)
		}
	case StateSending:
		if int32(a.Round-r.round) > 0 {
			if a.Round > 1 {
				r.roundEnded(now, a.Round-1)
			}
			r.round = a.Round
		}
	}
	return nil
}

// roundEnded schedules the reply to the end of round rd: a NACK of every
// missing block after a random back-off. Repeated ends of one round
// (heartbeats while the sender idles) get a reply at most every back-off.
func (r *recvState) roundEnded(now time.Time, rd uint32) {
	if r.complete() {
		return
	}
	if !r.replyAt.IsZero() {
		if int32(rd-r.replyRound) > 0 {
			r.replyRound = rd
		}
		return
	}
	if rd == r.lastReplyRound && now.Sub(r.lastReply) < 2*r.cfg.backoff {
		return
	}
	r.replyAt, r.replyRound = now.Add(r.cfg.jitter(r.cfg.backoff)), rd
}

// onNotice takes a FALLBACK or END.
func (r *recvState) onNotice(t Type, n *Notice) {
	switch {
	case t == TypeFallback && n.Client == r.cfg.client:
		r.over, r.err = true, &FallbackError{Reason: n.Reason}
	case t == TypeEnd && n.Client == r.cfg.client && r.complete():
		r.over = true
	case t == TypeEnd && n.Client == 0:
		r.over = true
		if !r.complete() {
			r.err = ErrEnded
		}
	}
}

// due returns the packets to send now: NACKs, then a STATUS.
func (r *recvState) due(now time.Time) ([]Nack, *Status) {
	var nacks []Nack
	if !r.over && !r.gapAt.IsZero() && !now.Before(r.gapAt) {
		next := r.gapLo
		for i := 0; i < maxGapPackets && next < r.gapHi; i++ {
			var e []NackEntry
			if e, next = missingEntries(r.have, next, r.gapHi, nackBudget); len(e) > 0 {
				nacks = append(nacks, Nack{Client: r.cfg.client, Round: r.sweepRound, Entries: e})
			}
		}
		r.gapAt = time.Time{}
		if next < r.gapHi {
			r.noteGap(now, next, r.gapHi)
		}
	}
	if !r.over && !r.replyAt.IsZero() && !now.Before(r.replyAt) {
		next := uint32(0)
		for i := 0; i < maxReplyPackets && next < r.blocks; i++ {
			var e []NackEntry
			if e, next = missingEntries(r.have, next, r.blocks, nackBudget); len(e) > 0 {
				nacks = append(nacks, Nack{Client: r.cfg.client, Round: r.replyRound, Entries: e})
			}
		}
		r.replyAt, r.lastReply, r.lastReplyRound = time.Time{}, now, r.replyRound
	}
	r.nacksTx += uint64(len(nacks))
	if r.over || now.Before(r.statusAt) {
		return nacks, nil
	}
	r.statusAt = now.Add(r.cfg.status)
	st := &Status{Client: r.cfg.client, Round: r.round, Held: r.held, Received: r.received, Lost: r.lost,
		Done: r.complete(), Leave: r.leave}
	if st.Done {
		if r.doneSent++; r.doneSent >= doneRetries {
			r.over = true
		}
	}
	return nacks, st
}

// check ends the run when the sender has been silent too long.
func (r *recvState) check(now time.Time) {
	if !r.over && now.Sub(r.heard) > r.cfg.timeout {
		r.over, r.err = true, fmt.Errorf("%w for %v", ErrTimeout, now.Sub(r.heard).Round(time.Millisecond))
	}
}

// wake returns when due or check must run next.
func (r *recvState) wake() time.Time {
	w := r.heard.Add(r.cfg.timeout + time.Millisecond)
	for _, t := range []time.Time{r.gapAt, r.replyAt} {
		if !t.IsZero() {
			w = earliest(w, t)
		}
	}
	return earliest(w, r.statusAt)
}

// missingEntries encodes the blocks missing from have in [from, to) as
// NACK entries within budget bytes: runs of longRun or more as ranges,
// scattered blocks as bitmaps. It returns the entries and where the next
// NACK continues (to when all fitted).
func missingEntries(have bitmap, from, to uint32, budget int) ([]NackEntry, uint32) {
	var out []NackEntry
	used := 0
	pos := from
	for pos < to && len(out) < MaxNackEntries {
		s := have.nextClear(pos)
		if s >= to {
			return out, to
		}
		e := min(have.nextSet(s), to)
		if e-s >= longRun {
			if used+rangeLen > budget {
				break
			}
			out = append(out, NackEntry{Start: s, Count: e - s})
			used += rangeLen
			pos = e
			continue
		}
		room := (budget - used - bitmapFixed) * 8
		if room < 8 {
			break
		}
		limit := min(uint64(s)+uint64(min(MaxBitmapBits, room)), uint64(to))
		end := min(uint64(e), limit)
		for p := uint64(e); p < limit; {
			m := uint64(have.nextClear(uint32(p)))
			if m >= limit {
				break
			}
			me := uint64(min(have.nextSet(uint32(m)), to))
			if me-m >= longRun {
				break
			}
			end, p = min(me, limit), me
		}
		n := uint32(end) - s
		bits := make([]byte, (n+7)/8)
		for i := range n {
			if !have.get(s + i) {
				bits[i/8] |= 1 << (i % 8)
			}
		}
		out = append(out, NackEntry{Start: s, Count: n, Bits: bits})
		used += bitmapFixed + len(bits)
		pos = uint32(end)
	}
	return out, pos
}
