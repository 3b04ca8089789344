package multicast

// Rate control: AIMD on the receivers' loss. The sender cuts its rate by
// decreaseFactor when a client's loss rises above what that client loses
// anyway (deeper, to the share of the stream the client took, when it
// lost more: one cut instead of several after slow start overshoots a
// slow client), grows it by slowStartFactor per clean interval until the
// first cut (slow start), then by avoidanceStep of itself per clean
// interval.

const (
	decreaseFactor = 0.7
	// minDecreaseFactor bounds a deep cut.
	minDecreaseFactor = 0.2
	slowStartFactor   = 1.5
	avoidanceStep     = 1.0 / 16
	// lossMargin is the loss above a client's rate-independent loss that
	// counts as congestion (plus half that loss again).
	lossMargin = 0.01
	// maxHealthyLoss: a client losing more than this whatever the rate is
	// not healthy (dropped under SlowDrop, ignored for the rate otherwise).
	maxHealthyLoss = 0.5
	// learnWeight is the weight of a clean sample in the learned loss.
	learnWeight = 0.05
)

// rateConfig holds the limits, in bytes per second.
type rateConfig struct {
	initial, min, max float64
}

// rateControl is the sender's pacing rate.
type rateControl struct {
	cfg      rateConfig
	rate     float64
	ssthresh float64 // slow start below this
	settle   int     // control ticks to let pass after a cut
	// The rate and ssthresh before the last cut, restored when the cut
	// turns out to have been for rate-independent loss.
	undoRate, undoSsthresh float64
}

func newRateControl(cfg rateConfig) rateControl {
	return rateControl{cfg: cfg, rate: min(max(cfg.initial, cfg.min), cfg.max), ssthresh: cfg.max}
}

// cutFactor is the cut for a client that lost loss, base of it whatever
// the rate: decreaseFactor, or the share of what it could take that it
// took when that is less (not below minDecreaseFactor).
func cutFactor(loss, base float64) float64 {
	if base >= 0.99 || loss <= base {
		return decreaseFactor
	}
	took := (1 - loss) / (1 - base)
	return min(decreaseFactor, max(took, minDecreaseFactor))
}

// decrease cuts the rate by factor (not below floor) and ends slow start.
// It returns the factor applied: more than factor when floor stopped it.
func (r *rateControl) decrease(floor, factor float64) float64 {
	floor = max(floor, r.cfg.min)
	old := r.rate
	r.undoRate, r.undoSsthresh = r.rate, r.ssthresh
	r.rate = max(r.rate*factor, floor)
	r.ssthresh = r.rate
	r.settle = 1
	return r.rate / old
}

// undo restores the rate from before the last cut.
func (r *rateControl) undo() {
	if r.undoRate > 0 {
		r.rate, r.ssthresh = r.undoRate, r.undoSsthresh
		r.undoRate = 0
	}
}

// increase raises the rate after a clean interval; achieved is what the
// sender actually sent per second in it, and the rate stays within twice
// that.
func (r *rateControl) increase(achieved float64) {
	if r.rate < r.ssthresh {
		r.rate *= slowStartFactor
	} else {
		r.rate += r.rate * avoidanceStep
	}
	r.rate = max(min(r.rate, r.cfg.max, max(2*achieved, r.cfg.min)), r.cfg.min)
}

// lossModel tells one client's congestion loss, which falls when the rate
// falls, from loss that does not depend on the rate (a bad link): after a
// cut, loss that did not fall as congestion loss would becomes the
// client's base, and only loss above the base counts.
type lossModel struct {
	base    float64 // rate-independent loss learned so far
	probing bool    // a cut was made for this client; judge the next sample
	before  float64 // the loss that caused the cut
	factor  float64 // the cut
}

// threshold is the loss above which a sample means congestion.
func (m *lossModel) threshold() float64 { return m.base*1.5 + lossMargin }

// Verdicts on a cut, from the sample after it.
const (
	noVerdict = iota
	cutHelped
	cutUseless // the loss did not fall: it does not depend on the rate
)

// sample feeds one interval's loss fraction; it reports congestion and,
// after a cut made for this client, whether the cut helped.
func (m *lossModel) sample(loss float64) (congested bool, verdict int) {
	if m.probing {
		m.probing = false
		// Congestion loss after a cut: what arrived before still arrives.
		expect := max(0, 1-(1-m.before)/m.factor)
		if loss >= m.before-(m.before-expect)/2 {
			m.base = max(m.base, loss)
			return false, cutUseless
		}
		verdict = cutHelped
	}
	if loss > m.threshold() {
		return true, verdict
	}
	if loss < m.base {
		m.base = (m.base + loss) / 2
	} else {
		m.base += learnWeight * (loss - m.base)
	}
	return false, verdict
}

// probe marks that the rate was cut by factor for this client's loss.
func (m *lossModel) probe(loss, factor float64) {
	m.probing, m.before, m.factor = true, loss, factor
}
