package server

import (
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/imaging/report"
	"github.com/netdeploy/netdeploy/server/tracker"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// TestSilentOverdue: the pure decision, at and around the timeout.
func TestSilentOverdue(t *testing.T) {
	const timeout = 10 * time.Second
	on := map[string]*deployment{
		"a": {heard: t0},                              // exactly timeout ago
		"b": {heard: t0.Add(time.Nanosecond)},         // a nanosecond short
		"c": {heard: t0.Add(-time.Hour)},              // long ago
		"d": {heard: t0.Add(-time.Hour), quiet: true}, // already marked
		"e": {heard: t0.Add(-time.Hour), silent: "x"}, // marked, then heard: may be again
		"f": {heard: t0.Add(timeout)},                 // just now
		"g": {heard: t0.Add(2 * timeout)},             // in the future (clock step)
		"h": {heard: t0.Add(-timeout)},                // two timeouts ago
	}
	now := t0.Add(timeout)
	for _, c := range []struct {
		timeout time.Duration
		want    []string
	}{
		{timeout, []string{"a", "c", "e", "h"}},
		{0, nil},
		{-time.Second, nil},
		{time.Hour, []string{"c", "e"}},
	} {
		if got := overdue(on, now, c.timeout); !reflect.DeepEqual(got, c.want) {
			t.Errorf("overdue(timeout %v) = %v, want %v", c.timeout, got, c.want)
		}
	}
	if got := overdue(nil, now, timeout); got != nil {
		t.Errorf("overdue(nil) = %v", got)
	}
}

// TestSilentTick: a quarter of the timeout, at most 5s.
func TestSilentTick(t *testing.T) {
	for timeout, want := range map[time.Duration]time.Duration{
		10 * time.Second: 2500 * time.Millisecond,
		20 * time.Second: 5 * time.Second,
		5 * time.Minute:  5 * time.Second,
	} {
		if got := silentTick(timeout); got != want {
			t.Errorf("silentTick(%v) = %v, want %v", timeout, got, want)
		}
	}
}

// harness is a reporter on a temporary journal with a settable clock;
// what it emits goes back into it, as through the tracker.
type harness struct {
	t       *testing.T
	r       *reporter
	path    string
	now     time.Time
	emitted []tracker.Event
}

func newHarness(t *testing.T, timeout time.Duration) *harness {
	t.Helper()
	path := report.Path(t.TempDir())
	j, err := report.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	h := &harness{t: t, path: path, now: t0}
	h.r = newReporter(j, slog.New(slog.DiscardHandler), timeout)
	h.r.now = func() time.Time { return h.now }
	h.r.emit = func(e tracker.Event) { h.emitted = append(h.emitted, e) }
	h.r.sha = func(image string) string { return "sha-of-" + image }
	return h
}

// at moves the clock to t0+d.
func (h *harness) at(d time.Duration) *harness {
	h.now = t0.Add(d)
	return h
}

// ev folds an event of mac at the current time.
func (h *harness) ev(mac string, stage tracker.Stage, kind tracker.Kind, bytes int64, detail string) {
	h.r.fold(tracker.Event{Time: h.now, MAC: mac, IP: "198.18.0.9", Stage: stage, Event: kind, File: "disk.img", Bytes: bytes, Total: 100, Detail: detail})
}

// tick runs the check and feeds back what it emitted; it returns that.
func (h *harness) tick() []tracker.Event {
	n := len(h.emitted)
	h.r.check(h.now)
	out := append([]tracker.Event(nil), h.emitted[n:]...)
	for _, e := range out {
		h.r.fold(e)
	}
	return out
}

func (h *harness) records() []report.Record {
	h.t.Helper()
	recs, err := report.Read(h.path)
	if err != nil {
		h.t.Fatal(err)
	}
	return recs
}

func macs(evs []tracker.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.MAC)
	}
	return out
}

// TestSilentBegun: only a deployment that began (an apply event) is
// marked; boot-only and RPC-only clients are not, and boot-stage events
// do not count as being heard from.
func TestSilentBegun(t *testing.T) {
	const timeout = 10 * time.Second
	h := newHarness(t, timeout)
	h.ev("boot", tracker.StageDHCP, tracker.KindDone, 0, "")
	h.ev("boot", tracker.StageTFTP, tracker.KindDone, 0, "")
	h.ev("boot", tracker.StageHTTP, tracker.KindDone, 0, "")
	h.ev("windows", tracker.StageRPC, tracker.KindStart, 0, "log init")
	h.ev("windows", tracker.StageSMB, tracker.KindProgress, 10, "")
	h.ev("agent", tracker.StageApply, tracker.KindStart, 0, "")
	h.ev("rebooting", tracker.StageApply, tracker.KindStart, 0, "")
	h.ev("reading", tracker.StageApply, tracker.KindStart, 0, "")
	h.at(5*time.Second).ev("agent", tracker.StageApply, tracker.KindProgress, 40, "")
	h.at(6*time.Second).ev("rebooting", tracker.StageDHCP, tracker.KindDone, 0, "")
	h.at(9*time.Second).ev("reading", tracker.StageSMB, tracker.KindProgress, 50, "")
	h.at(10 * time.Second)
	if got := macs(h.tick()); !reflect.DeepEqual(got, []string{"rebooting"}) {
		t.Fatalf("at 10s marked %v, want [rebooting]", got)
	}
	h.at(15*time.Second - time.Nanosecond)
	if got := h.tick(); len(got) != 0 {
		t.Fatalf("at 15s-1ns marked %v", macs(got))
	}
	h.at(15 * time.Second)
	got := h.tick()
	if !reflect.DeepEqual(macs(got), []string{"agent"}) {
		t.Fatalf("at 15s marked %v, want [agent]", macs(got))
	}
	e := got[0]
	if e.Stage != tracker.StageFailed || e.Event != tracker.KindError || e.Detail != "silent for 10s, last heard in apply" ||
		e.IP != "198.18.0.9" || e.File != "disk.img" || e.Bytes != 40 || !e.Time.Equal(h.now) {
		t.Errorf("event %+v", e)
	}
	h.at(time.Hour)
	if got := macs(h.tick()); !reflect.DeepEqual(got, []string{"reading"}) {
		t.Fatalf("at 1h marked %v, want [reading]", got)
	}
	if got := h.tick(); len(got) != 0 {
		t.Fatalf("marked twice: %v", macs(got))
	}
	recs := h.records()
	if len(recs) != 3 {
		t.Fatalf("%d records: %+v", len(recs), recs)
	}
	want := map[string]string{
		"rebooting": "silent for 10s, last heard in apply",
		"agent":     "silent for 10s, last heard in apply",
		"reading":   "silent for 59m51s, last heard in smb",
	}
	for _, rec := range recs {
		if rec.Result != report.ResultFailed || rec.Reason != want[rec.MAC] || rec.Image != "disk.img" || rec.SHA256 != "sha-of-disk.img" || !rec.Start.Equal(t0) {
			t.Errorf("record %+v", rec)
		}
	}
}

// TestSilentLate: what follows a silent failure.
func TestSilentLate(t *testing.T) {
	const timeout = 10 * time.Second
	h := newHarness(t, timeout)
	for _, mac := range []string{"resumes", "fails", "restarts", "again"} {
		h.ev(mac, tracker.StageApply, tracker.KindStart, 0, "")
	}
	h.at(timeout)
	if got := h.tick(); len(got) != 4 {
		t.Fatalf("marked %v", macs(got))
	}
	// Resumes and finishes: a done record that says so.
	h.at(20*time.Second).ev("resumes", tracker.StageApply, tracker.KindProgress, 60, "")
	h.ev("resumes", tracker.StageApply, tracker.KindDone, 100, "")
	h.ev("resumes", tracker.StageDone, tracker.KindDone, 0, "deployed")
	// Its own failure report: nothing more.
	h.ev("fails", tracker.StageFailed, tracker.KindError, 0, "smb: connection reset")
	// A new run: a new deployment, done.
	h.at(21*time.Second).ev("restarts", tracker.StageApply, tracker.KindStart, 0, "")
	h.at(22*time.Second).ev("restarts", tracker.StageDone, tracker.KindDone, 0, "deployed")
	// Heard again, then silent again: an event, no second record.
	h.at(25*time.Second).ev("again", tracker.StageRPC, tracker.KindLog, 0, "hello")
	h.at(35 * time.Second)
	got := h.tick()
	if !reflect.DeepEqual(macs(got), []string{"again"}) || got[0].Detail != "silent for 10s, last heard in rpc" {
		t.Fatalf("silent again: %+v", got)
	}
	if len(h.r.on) != 1 || len(h.r.echoes) != 0 {
		t.Errorf("following %d, echoes %d; want 1 and 0", len(h.r.on), len(h.r.echoes))
	}
	var lines []string
	for _, rec := range h.records() {
		lines = append(lines, fmt.Sprintf("%s %s %s %d %v", rec.MAC, rec.Result, rec.Reason, rec.Bytes, rec.End.Sub(rec.Start)))
	}
	want := []string{
		"again failed silent for 10s, last heard in apply 0 10s",
		"fails failed silent for 10s, last heard in apply 0 10s",
		"restarts failed silent for 10s, last heard in apply 0 10s",
		"resumes failed silent for 10s, last heard in apply 0 10s",
		"resumes done finished after it was marked failed (silent for 10s, last heard in apply) 100 20s",
		"restarts done  0 1s",
	}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("records:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// TestSilentDropped: lost events count as having heard from everyone.
func TestSilentDropped(t *testing.T) {
	h := newHarness(t, 10*time.Second)
	h.ev("a", tracker.StageApply, tracker.KindStart, 0, "")
	h.at(8 * time.Second)
	h.r.fold(tracker.Event{Time: h.now, Event: tracker.KindDropped, Bytes: 3})
	if got := h.at(17 * time.Second).tick(); len(got) != 0 {
		t.Fatalf("marked %v after dropped events", macs(got))
	}
	if got := h.at(18 * time.Second).tick(); len(got) != 1 {
		t.Fatalf("marked %v, want a", macs(got))
	}
}

// TestSilentOff: timeout 0 never marks anyone.
func TestSilentOff(t *testing.T) {
	h := newHarness(t, 0)
	h.ev("a", tracker.StageApply, tracker.KindStart, 0, "")
	if got := h.at(100 * time.Hour).tick(); len(got) != 0 {
		t.Fatalf("marked %v", macs(got))
	}
}

// TestSilentMaxInFlight: a full table makes room by dropping the quiet
// deployment heard from longest ago, and refuses when none is quiet.
func TestSilentMaxInFlight(t *testing.T) {
	h := newHarness(t, 10*time.Second)
	for i := range maxInFlight {
		h.at(time.Duration(i)*time.Millisecond).ev(fmt.Sprintf("m%d", i), tracker.StageApply, tracker.KindStart, 0, "")
	}
	h.at(time.Second).ev("extra", tracker.StageApply, tracker.KindStart, 0, "")
	if _, ok := h.r.on["extra"]; ok || len(h.r.on) != maxInFlight {
		t.Fatalf("followed %d, extra in: %v", len(h.r.on), ok)
	}
	h.at(10*time.Second + 2*time.Millisecond)
	if got := h.tick(); len(got) != 3 {
		t.Fatalf("marked %v, want m0..m2", macs(got))
	}
	h.ev("extra", tracker.StageApply, tracker.KindStart, 0, "")
	if _, ok := h.r.on["extra"]; !ok || len(h.r.on) != maxInFlight {
		t.Fatalf("followed %d, extra in: %v", len(h.r.on), ok)
	}
	if _, ok := h.r.on["m0"]; ok {
		t.Error("m0, quiet longest, still followed")
	}
}

// TestReportOutcomes: an agent's own done and failed are recorded as
// before; a done or failed without an apply is not.
func TestReportOutcomes(t *testing.T) {
	h := newHarness(t, 10*time.Second)
	h.ev("ok", tracker.StageApply, tracker.KindStart, 0, "")
	h.ev("bad", tracker.StageApply, tracker.KindStart, 0, "")
	h.at(3*time.Second).ev("ok", tracker.StageApply, tracker.KindDone, 100, "")
	h.ev("ok", tracker.StageDone, tracker.KindDone, 0, "deployed")
	h.ev("bad", tracker.StageFailed, tracker.KindError, 0, "checksum mismatch")
	h.ev("stray", tracker.StageDone, tracker.KindDone, 0, "deployed")
	// A failure before anything was written is a deployment too.
	h.ev("nodisk", tracker.StageFailed, tracker.KindError, 0, "no target disk")
	recs := h.records()
	if len(recs) != 3 || recs[0].MAC != "ok" || recs[0].Result != report.ResultDone || recs[0].Reason != "" || recs[0].Bytes != 100 ||
		recs[1].MAC != "bad" || recs[1].Result != report.ResultFailed || recs[1].Reason != "checksum mismatch" ||
		recs[2].MAC != "nodisk" || recs[2].Result != report.ResultFailed || recs[2].Reason != "no target disk" || recs[2].Bytes != 0 {
		t.Fatalf("records %+v", recs)
	}
	if got := h.at(time.Hour).tick(); len(got) != 0 || len(h.r.on) != 0 {
		t.Fatalf("after the outcomes: marked %v, following %d", macs(got), len(h.r.on))
	}
}
