package tftp

import (
	"testing"
	"time"
)

// simulate runs n waits of a session whose packets take spinWait when it
// spins and sleepWait when it sleeps; it returns how many waits spun.
func simulate(s *spinner, n int, spinWait, sleepWait time.Duration) int {
	spins := 0
	for range n {
		if d := s.budget(); d > 0 {
			spins++
			s.observe(spinWait, spinWait <= d)
			s.end()
		} else {
			s.observe(sleepWait, false)
		}
	}
	return spins
}

func TestSpinner(t *testing.T) {
	gate := &spinGate{}
	gate.once.Do(func() { gate.limit = 1 })
	a, b := spinner{gate: gate}, spinner{gate: gate}

	// It starts sleeping, then probes spinning; spinning is faster, so
	// it keeps spinning, sleeping only in rare probe epochs.
	if d := a.budget(); d != 0 {
		t.Fatalf("first wait spins %v", d)
	}
	a.observe(40*time.Microsecond, false)
	simulate(&a, spinEpoch*3, 10*time.Microsecond, 40*time.Microsecond)
	if !a.prefer {
		t.Fatal("spinning was faster but is not preferred")
	}
	if spins := simulate(&a, spinEpoch*100, 10*time.Microsecond, 40*time.Microsecond); spins < spinEpoch*90 {
		t.Errorf("%d spins of %d", spins, spinEpoch*100)
	}
	// The gate lets one session spin at a time.
	for !a.prefer || a.probing {
		simulate(&a, 1, 10*time.Microsecond, 40*time.Microsecond)
	}
	if d := a.budget(); d != spinBudget {
		t.Fatalf("budget %v", d)
	}
	if d := b.budget(); d != 0 {
		t.Errorf("second session spins %v past the gate", d)
	}
	a.observe(10*time.Microsecond, true)
	a.end()

	// Spinning gets slow (say the CPUs are busy): it stops, but for probe
	// epochs at growing intervals.
	simulate(&a, spinEpoch*3, time.Millisecond, 40*time.Microsecond)
	if a.prefer {
		t.Fatal("spinning was slower but is still preferred")
	}
	if spins := simulate(&a, spinEpoch*200, time.Millisecond, 40*time.Microsecond); spins > spinEpoch*8 {
		t.Errorf("%d spins in %d waits", spins, spinEpoch*200)
	}

	// A slow client is never worth spinning for.
	c := spinner{gate: gate}
	if spins := simulate(&c, spinEpoch*200, 500*time.Microsecond, 500*time.Microsecond); spins > spinEpoch*8 {
		t.Errorf("%d spins in %d waits for a slow client", spins, spinEpoch*200)
	}
	if c.prefer {
		t.Error("spinning preferred for a slow client")
	}
	if gate.n.Load() != 0 {
		t.Errorf("gate holds %d", gate.n.Load())
	}
	if d := (&spinner{}).budget(); d != 0 {
		t.Errorf("spinner without gate spins %v", d)
	}
}
