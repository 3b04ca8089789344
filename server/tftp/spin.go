package tftp

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Busy-polling: a spinning wait polls the socket for up to spinBudget
// before it sleeps in the network poller. Whether to spin is measured in
// epochs of spinEpoch waits: normal epochs use the mode that has been
// faster, and every few epochs one probe epoch uses the other mode. A
// probe whose mean wait is under 9/10 of the last normal epoch's wins;
// probes that lose come at doubling intervals, up to spinProbeMax epochs,
// or at once when a normal epoch is four times slower than the one before.
const (
	spinBudget   = 100 * time.Microsecond
	spinEpoch    = 64
	spinProbeMin = 2
	spinProbeMax = 64
)

// spinGate caps how many sessions busy-poll at once: half the CPUs Go
// may use (none on a single CPU).
type spinGate struct {
	n     atomic.Int32
	once  sync.Once
	limit int32
}

func (g *spinGate) acquire() bool {
	g.once.Do(func() { g.limit = int32(runtime.GOMAXPROCS(0) / 2) })
	if g.n.Add(1) > g.limit {
		g.n.Add(-1)
		return false
	}
	return true
}

func (g *spinGate) release() { g.n.Add(-1) }

// spinner is one session's busy-polling policy. Spinning saves the sleep
// and wake-up of a wait, which on an idle machine (or a VM whose idle
// CPUs halt) is much of a LAN round trip; but when CPUs are scarce it
// takes time from the processes that answer, and for a slow client it
// only burns CPU. So the session measures both and keeps the faster.
type spinner struct {
	gate     *spinGate     // nil: never spin
	prefer   bool          // normal epochs spin
	probing  bool          // the current epoch tries the other mode
	spinning bool          // the current wait spins
	every    int           // normal epochs between probes
	left     int           // normal epochs until the next probe
	last     time.Duration // mean wait of the last normal epoch
	sum      time.Duration // of the waits in this epoch
	n        int

	spinMean, sleepMean time.Duration // last epoch means, for the log
	hits, all           int           // packets caught spinning, of all
}

// budget returns how long the next wait may spin; when it is > 0 the
// caller holds a gate slot and must call end.
func (s *spinner) budget() time.Duration {
	s.spinning = false
	if s.gate == nil {
		return 0
	}
	if s.every == 0 {
		s.every, s.left = spinProbeMin, 1
	}
	if s.prefer == s.probing || !s.gate.acquire() {
		return 0
	}
	s.spinning = true
	return spinBudget
}

// end releases the gate slot taken by budget.
func (s *spinner) end() { s.gate.release() }

// observe records how long the current wait took until a packet came,
// and whether the spin caught it.
func (s *spinner) observe(wait time.Duration, hit bool) {
	if s.gate == nil {
		return
	}
	s.all++
	if hit {
		s.hits++
	}
	s.sum += wait
	if s.n++; s.n < spinEpoch {
		return
	}
	mean := s.sum / spinEpoch
	s.n, s.sum = 0, 0
	if s.prefer != s.probing {
		s.spinMean = mean
	} else {
		s.sleepMean = mean
	}
	if !s.probing {
		if s.left--; s.left <= 0 || mean > 4*s.last {
			s.probing = true // due, or things got slower: look again
		}
		s.last = mean
		return
	}
	if mean < s.last*9/10 {
		s.prefer = !s.prefer
		s.every, s.last = spinProbeMin, mean
	} else {
		s.every = min(2*s.every, spinProbeMax)
	}
	s.probing, s.left = false, s.every
}
