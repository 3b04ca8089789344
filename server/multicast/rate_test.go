package multicast

import (
	"math"
	mrand "math/rand/v2"
	"testing"
	"time"
)

func TestRateControl(t *testing.T) {
	r := newRateControl(rateConfig{initial: 10e6, min: 1e6, max: 100e6})
	r.increase(10e6)
	if r.rate != 15e6 {
		t.Errorf("slow start: %v", r.rate)
	}
	r.increase(1e6) // the sender managed only 1 MB/s: stay within twice that
	if r.rate != 2e6 {
		t.Errorf("capped by what was achieved: %v", r.rate)
	}
	r.rate = 20e6
	if f := r.decrease(0, decreaseFactor); f != decreaseFactor || r.rate != 14e6 || r.ssthresh != 14e6 || r.settle != 1 {
		t.Errorf("decrease: %+v", r)
	}
	r.increase(100e6) // congestion avoidance: 1/16 per interval
	if r.rate != 14e6*(1+avoidanceStep) {
		t.Errorf("avoidance: %v", r.rate)
	}
	r.rate = 1.2e6
	if f := r.decrease(0, decreaseFactor); f <= decreaseFactor || r.rate != 1e6 {
		t.Errorf("floor: %+v", r)
	}
	r.undo()
	if r.rate != 1.2e6 {
		t.Errorf("undo: %v", r.rate)
	}
	r.rate = 99e6
	r.increase(1e9)
	if r.rate != 100e6 {
		t.Errorf("max: %v", r.rate)
	}
}

func TestLossModel(t *testing.T) {
	// Congestion: the cut helps, the base stays 0, loss again is
	// congestion again.
	var m lossModel
	if c, _ := m.sample(0); c {
		t.Error("no loss is congestion")
	}
	if c, _ := m.sample(0.2); !c {
		t.Error("20% loss from nothing is not congestion")
	}
	m.probe(0.2, decreaseFactor)
	if c, v := m.sample(0); c || v != cutHelped || m.base != 0 {
		t.Errorf("after a helpful cut: %v %v %+v", c, v, m)
	}
	if c, _ := m.sample(0.05); !c {
		t.Error("5% loss over a clean base is not congestion")
	}
	// A bad link: the loss stays after the cut and becomes the base.
	var b lossModel
	b.sample(0.05)
	b.probe(0.05, decreaseFactor)
	if c, v := b.sample(0.05); c || v != cutUseless || b.base != 0.05 {
		t.Errorf("after a useless cut: %v %v %+v", c, v, b)
	}
	for _, l := range []float64{0.06, 0.04, 0.07, 0.05} {
		if c, _ := b.sample(l); c {
			t.Errorf("%v loss on a 5%% link is congestion", l)
		}
	}
	if c, _ := b.sample(0.2); !c {
		t.Error("20% loss on a 5% link is not congestion")
	}
	// Heavy congestion (the rate far above the client's): a cut that
	// helps a little still counts as helping.
	var h lossModel
	h.probe(0.9, decreaseFactor)
	if _, v := h.sample(1 - 0.1/decreaseFactor); v != cutHelped {
		t.Errorf("heavy congestion: %v", v)
	}
}

// fluidClient models a receiver whose loss is a function of the rate.
type fluidClient struct {
	id         uint32
	loss       func(rate float64) float64
	recv, lost float64
}

// fluid drives a session whose clients' loss depends on the rate, with
// explicit time: the sender steps when it wakes and the clients report
// every 100 ms.
type fluid struct {
	t       *testing.T
	clk     *fakeClock
	s       *session
	clients []*fluidClient
	rates   []float64 // the rate at each control tick
	cuts    int
}

func newFluid(t *testing.T, configure func(*sessionConfig), losses ...func(float64) float64) *fluid {
	clk := newClock()
	cfg := testConfig(1 << 24) // 16 GB: never runs out
	cfg.burst = 64 * (Overhead + testBlock)
	if configure != nil {
		configure(&cfg)
	}
	f := &fluid{t: t, clk: clk, s: newSession(cfg, clk.now)}
	for _, l := range losses {
		f.clients = append(f.clients, &fluidClient{id: ready(t, f.s, clk.now), loss: l})
	}
	return f
}

func (f *fluid) run(d time.Duration) {
	end := f.clk.now.Add(d)
	status := f.clk.now
	for f.clk.now.Before(end) {
		before := f.s.rate.rate
		n := float64(len(f.s.step(f.clk.now, 1<<20, nil).Blocks))
		f.s.announce(f.clk.now)
		if f.s.rate.rate < before*0.99 {
			f.cuts++
		}
		if f.s.controlled == f.clk.now {
			f.rates = append(f.rates, f.s.rate.rate)
		}
		for _, c := range f.clients {
			if !f.s.clients[c.id].state.active() {
				continue
			}
			l := c.loss(f.s.rate.rate)
			c.recv += n * (1 - l)
			c.lost += n * l
			if !f.clk.now.Before(status) {
				f.s.onStatus(f.clk.now, addrOf(c.id), &Status{Client: c.id, Received: uint32(c.recv), Lost: uint32(c.lost)})
			}
		}
		if !f.clk.now.Before(status) {
			status = status.Add(100 * time.Millisecond)
		}
		f.clk.now = maxTime(earliest(f.s.wake(f.clk.now), status), f.clk.now.Add(time.Microsecond))
	}
}

func noLoss(float64) float64 { return 0 }

// capacity is congestion loss: a client that takes at most c bytes/s.
func capacity(c float64) func(float64) float64 {
	return func(rate float64) float64 { return max(0, 1-c/rate) }
}

func TestRateIncreasesWithoutLoss(t *testing.T) {
	f := newFluid(t, nil, noLoss, noLoss)
	f.run(2 * time.Second)
	for i := 1; i < len(f.rates); i++ {
		if f.rates[i] < f.rates[i-1] {
			t.Fatalf("rate fell without loss: %v", f.rates)
		}
	}
	if f.s.rate.rate < 10e6*math.Pow(slowStartFactor, 5) {
		t.Errorf("rate after 2 s without loss: %.0f; %v", f.s.rate.rate, f.rates)
	}
}

// TestRateFollowsSlowestClient: the rate settles around the capacity of
// the slowest client, and falls when it is exceeded.
func TestRateFollowsSlowestClient(t *testing.T) {
	const c = 30e6
	f := newFluid(t, nil, noLoss, capacity(c), capacity(3*c))
	f.run(20 * time.Second)
	if f.cuts < 3 {
		t.Errorf("%d cuts: %v", f.cuts, f.rates)
	}
	sum := 0.0
	last := f.rates[len(f.rates)/2:]
	for _, r := range last {
		sum += r
		if r > 1.6*c || r < 0.4*c {
			t.Errorf("rate %.0f far from the slowest client's %.0f: %v", r, c, last)
			break
		}
	}
	if avg := sum / float64(len(last)); avg < 0.6*c || avg > 1.3*c {
		t.Errorf("average rate %.0f for a %.0f client", avg, c)
	}
}

// TestRateIgnoresLinkLoss: loss that does not fall with the rate (a bad
// link) costs at most one cut, which is undone.
func TestRateIgnoresLinkLoss(t *testing.T) {
	f := newFluid(t, nil, noLoss, func(float64) float64 { return 0.05 })
	f.run(3 * time.Second)
	if f.cuts > 1 {
		t.Errorf("%d cuts for 5%% link loss: %v", f.cuts, f.rates)
	}
	if f.s.rate.rate < 10e6*math.Pow(slowStartFactor, 5) {
		t.Errorf("rate %.0f after 3 s: %v", f.s.rate.rate, f.rates)
	}
	if base := f.s.clients[f.clients[1].id].loss.base; math.Abs(base-0.05) > 0.01 {
		t.Errorf("learned loss %v", base)
	}
}

// TestSlowClientDrop: under SlowDrop a client that would take the rate
// below the slow rate gets FALLBACK and the rest go on at speed; under
// SlowWait everyone slows down to it.
func TestSlowClientDrop(t *testing.T) {
	slow := capacity(0.5e6) // a quarter of the 2 MB/s slow rate
	f := newFluid(t, func(c *sessionConfig) { c.slow = SlowDrop }, noLoss, slow)
	f.run(10 * time.Second)
	sc := f.s.clients[f.clients[1].id]
	if sc.state != clientFallback {
		t.Fatalf("slow client %s; rates %v", sc.state, f.rates)
	}
	notices, events := f.s.drain()
	found := false
	for _, n := range notices {
		found = found || n == notice{to: addrOf(sc.id), n: Notice{Client: sc.id, Reason: ReasonSlow}}
	}
	if !found {
		t.Errorf("no FALLBACK to the slow client: %+v", notices)
	}
	if len(events) == 0 || events[len(events)-1].Detail != "fallback: too slow" {
		t.Errorf("events %+v", events)
	}
	if f.s.clients[f.clients[0].id].state != clientReady || f.s.rate.rate < 10e6 {
		t.Errorf("the other client: %s at %.0f", f.s.clients[f.clients[0].id].state, f.s.rate.rate)
	}
	for _, r := range f.rates {
		if r < f.s.cfg.slowRate {
			t.Errorf("rate %.0f below the slow rate under SlowDrop", r)
		}
	}

	w := newFluid(t, nil, noLoss, slow)
	w.run(10 * time.Second)
	if st := w.s.clients[w.clients[1].id].state; st != clientReady || w.s.rate.rate > 1e6 {
		t.Errorf("SlowWait: slow client %s, rate %.0f", st, w.s.rate.rate)
	}
}

// TestLossyClientDrop: a client losing most packets whatever the rate is
// told to fall back under SlowDrop.
func TestLossyClientDrop(t *testing.T) {
	f := newFluid(t, func(c *sessionConfig) { c.slow = SlowDrop }, noLoss, func(float64) float64 { return 0.7 })
	f.run(3 * time.Second)
	if c := f.s.clients[f.clients[1].id]; c.state != clientFallback || c.detail != "fallback: too much loss" {
		t.Errorf("lossy client %s (%s)", c.state, c.detail)
	}
}

// TestSessionPacing: the session sends at its rate.
func TestSessionPacing(t *testing.T) {
	clk := newClock()
	cfg := testConfig(1 << 20)
	cfg.rate = rateConfig{initial: 5e6, min: 5e6, max: 5e6}
	cfg.burst = 16 * (Overhead + testBlock)
	s := newSession(cfg, clk.now)
	ready(t, s, clk.now)
	start, bytes := clk.now, 0
	steps := 0
	for ; clk.now.Sub(start) < 2*time.Second; steps++ {
		bytes += len(s.step(clk.now, sendBatch, nil).Blocks) * (Overhead + testBlock)
		s.announce(clk.now)
		w := s.wake(clk.now)
		if !w.After(clk.now) {
			w = clk.now.Add(time.Microsecond)
		}
		clk.now = w
	}
	if r := float64(bytes) / clk.now.Sub(start).Seconds(); math.Abs(r-5e6)/5e6 > 0.02 {
		t.Errorf("sent at %.0f B/s, rate 5e6", r)
	}
	// One step per packet at most (plus heartbeats and control ticks):
	// the loop never spins.
	if limit := bytes/(Overhead+testBlock) + 2*(20+10); steps > limit {
		t.Errorf("%d steps for %d packets", steps, bytes/(Overhead+testBlock))
	}
}

// noisyCapacity is a client that takes about c bytes/s, varying by up to
// spread either way from one call to the next (a busy virtual machine).
func noisyCapacity(c, spread float64, seed uint64) func(float64) float64 {
	rng := mrand.New(mrand.NewPCG(seed, 1))
	return func(rate float64) float64 {
		return max(0, 1-c*(1+spread*(2*rng.Float64()-1))/rate)
	}
}

// TestRateFollowsNoisySlowClient: a slow client whose capacity wanders
// (one cut may seem not to help) is still slowness, not a bad link: the
// rate stays near its capacity instead of learning its loss as the
// link's and sending past it.
func TestRateFollowsNoisySlowClient(t *testing.T) {
	const c = 15e6
	for seed := range uint64(20) {
		f := newFluid(t, nil, noisyCapacity(c, 0.4, seed))
		f.run(20 * time.Second)
		last := f.rates[len(f.rates)/2:]
		sum := 0.0
		for _, r := range last {
			sum += r
		}
		if avg := sum / float64(len(last)); avg > 1.5*c {
			t.Errorf("seed %d: average rate %.0f for a client of %.0f (learned loss %.2f): %v", seed, avg, c,
				f.s.clients[f.clients[0].id].loss.base, last)
		}
	}
}

func TestCutFactor(t *testing.T) {
	for _, c := range []struct{ loss, base, want float64 }{
		{0.05, 0, decreaseFactor},   // mild congestion: the usual cut
		{0.9, 0, minDecreaseFactor}, // 10% taken: bounded
		{0.5, 0, 0.5},               // half taken: to half
		{0.6, 0.2, 0.5},             // of the 80% it can take, it took 40%
		{0.3, 0.99, decreaseFactor}, // it takes nothing anyway
		{0.1, 0.2, decreaseFactor},  // below its base
	} {
		if got := cutFactor(c.loss, c.base); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("cutFactor(%v, %v) = %v, want %v", c.loss, c.base, got, c.want)
		}
	}
}

// TestRateDeepCut: a rate far above a client's capacity (slow start
// overshooting while the client's socket buffer hid its loss) falls to
// that capacity in one cut, not in a cut of 0.7 per control tick.
func TestRateDeepCut(t *testing.T) {
	const c = 20e6 // a quarter of the rate: above minDecreaseFactor
	f := newFluid(t, func(cfg *sessionConfig) { cfg.rate.initial = 80e6 }, capacity(c))
	f.run(2 * time.Second)
	first := -1.0
	for i := 1; i < len(f.rates); i++ {
		if f.rates[i] < f.rates[i-1] {
			first = f.rates[i]
			break
		}
	}
	if first < 0 || first > 1.05*c || first < 0.95*c {
		t.Errorf("first cut to %.0f for a client of %.0f: %v", first, c, f.rates)
	}
}
