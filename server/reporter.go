package server

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/netdeploy/netdeploy/imaging/report"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// The reporter follows deployments from the tracker's events and appends
// one record per finished deployment to data_dir/deployments.jsonl.
//
// A deployment begins with the first apply event of a MAC: only the
// netdeploy agent sends those (an authenticated apply-convention LOG_MSG,
// server/wds/apply.go), and it promises a done or failed at the end. A
// client that only got DHCP, TFTP or HTTP, or a Windows client that only
// talks WDS RPC, is never followed, so it is never marked failed.
//
// While a deployment runs, the client is heard from by any event of its
// MAC in a deployment stage (rpc, smb, multicast, apply; log lines
// included). Boot-stage events (dhcp, pxe, tftp, http) are a machine
// booting, not the agent at work, and do not count: a machine that
// rebooted into a half-written disk and renews its lease is still silent.
//
// Silent timeout: a deployment not heard from for RT.Deploy.SilentTimeout
// is marked failed. The reporter appends a failed record with the reason
// ("silent for 5m3s, last heard in apply"), then emits {Stage: failed,
// Event: error} with it into the tracker, the form of the agent's own
// failure report (wds.ApplyEvent): the console shows the client failed,
// the JSON stream and the report say why.
//
// Late events: the entry stays (quiet) after the silent failure.
//   - the agent resumes (any deployment-stage event other than a new
//     apply start): it is watched again; silent again, the failed event is
//     emitted again but no second record is appended;
//   - a late done appends a done record whose reason says it finished
//     after it was marked failed, so the two records explain each other;
//   - a late failed of the agent's own appends nothing (the report already
//     says failed) and is logged with its reason;
//   - a new apply start (bytes 0) begins a new deployment.
//
// Memory: at most maxInFlight deployments are followed; when full, the
// quiet one heard from longest ago makes room for a new one.

// deployment is what the reporter knows of one client's deployment so far.
type deployment struct {
	ip, image    string
	start        time.Time
	bytes, total int64
	heard        time.Time     // the last event of a deployment stage
	stage        tracker.Stage // its stage
	quiet        bool          // marked silent and not heard from since
	silent       string        // reason of the silent failure recorded, or ""
}

// maxInFlight caps the deployments the reporter follows at once.
const maxInFlight = 4096

// maxSilentTick caps the interval of the silence check.
const maxSilentTick = 5 * time.Second

// echo is a silent-failure event the reporter emitted, recognised when
// the tracker hands it back.
type echo struct {
	at     time.Time
	detail string
}

// reporter appends one record per finished deployment (done or failed
// after an apply) to data_dir/deployments.jsonl, from the tracker's events.
type reporter struct {
	j       *report.Journal
	log     *slog.Logger
	emit    func(tracker.Event)       // into the tracker
	sha     func(image string) string // the catalog's SHA-256 of an image, or ""
	now     func() time.Time
	timeout time.Duration // silent timeout; 0: never
	on      map[string]*deployment
	echoes  map[string]echo // by MAC
}

// newReporter returns a reporter writing to j.
func newReporter(j *report.Journal, log *slog.Logger, timeout time.Duration) *reporter {
	return &reporter{
		j: j, log: log, timeout: timeout, now: time.Now,
		emit:   func(tracker.Event) {},
		sha:    func(string) string { return "" },
		on:     map[string]*deployment{},
		echoes: map[string]echo{},
	}
}

// silentTick is the interval of the silence check: a quarter of the
// timeout, at most maxSilentTick.
func silentTick(timeout time.Duration) time.Duration {
	return max(min(timeout/4, maxSilentTick), time.Millisecond)
}

// serveReport runs the reporter until stop is closed.
func (o *Orchestrator) serveReport(stop <-chan struct{}) error {
	j, err := report.Open(report.Path(o.RT.DataDir))
	if err != nil {
		return err
	}
	defer j.Close()
	sub := o.reportSub
	defer sub.Close()
	r := newReporter(j, o.log, o.RT.Deploy.SilentTimeout)
	r.emit = o.Tracker.Emit
	r.sha = func(image string) string {
		list, err := o.Catalog.List()
		if err != nil {
			return ""
		}
		for _, im := range list {
			if im.Path == image || im.File == image {
				return im.SHA256
			}
		}
		return ""
	}
	var tick <-chan time.Time
	if r.timeout > 0 {
		t := time.NewTicker(silentTick(r.timeout))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-sub.Ready():
			for _, e := range sub.Next() {
				r.fold(e)
			}
		case <-tick:
			for _, e := range sub.Next() { // heard before now
				r.fold(e)
			}
			r.check(r.now())
		case <-stop:
			for _, e := range sub.Next() {
				r.fold(e)
			}
			return nil
		}
	}
}

// deployStage reports whether s is a stage of a running deployment, as
// opposed to a boot stage or an outcome.
func deployStage(s tracker.Stage) bool {
	switch s {
	case tracker.StageRPC, tracker.StageSMB, tracker.StageMulticast, tracker.StageApply:
		return true
	}
	return false
}

// overdue returns, sorted, the MACs of the deployments not heard from for
// timeout or more at now that are not already marked silent.
func overdue(on map[string]*deployment, now time.Time, timeout time.Duration) []string {
	if timeout <= 0 {
		return nil
	}
	var out []string
	for mac, d := range on {
		if !d.quiet && now.Sub(d.heard) >= timeout {
			out = append(out, mac)
		}
	}
	sort.Strings(out)
	return out
}

// check marks the overdue deployments failed: a record (the first time)
// and a failed event.
func (r *reporter) check(now time.Time) {
	for _, mac := range overdue(r.on, now, r.timeout) {
		d := r.on[mac]
		reason := fmt.Sprintf("silent for %s, last heard in %s", now.Sub(d.heard).Truncate(time.Second), d.stage)
		d.quiet = true
		if d.silent == "" {
			d.silent = reason
			r.record(mac, d, now, report.ResultFailed, reason)
		}
		r.log.Warn("deployment marked failed: the client went silent", "mac", mac, "ip", d.ip, "image", d.image, "reason", reason)
		if len(r.echoes) >= maxInFlight {
			clear(r.echoes) // echoes lost with dropped events
		}
		r.echoes[mac] = echo{at: now, detail: reason}
		r.emit(tracker.Event{Time: now, MAC: mac, IP: d.ip, Stage: tracker.StageFailed, Event: tracker.KindError,
			File: d.image, Bytes: d.bytes, Total: d.total, Detail: reason})
	}
}

// fold applies one tracker event.
func (r *reporter) fold(e tracker.Event) {
	if e.Time.IsZero() {
		e.Time = r.now()
	}
	if e.Event == tracker.KindDropped && e.MAC == "" {
		// Events were lost: whoever was heard from in them must not be
		// declared silent for it.
		for _, d := range r.on {
			if !d.quiet {
				d.heard = e.Time
			}
		}
		return
	}
	if e.MAC == "" {
		return
	}
	if ec, ok := r.echoes[e.MAC]; ok && e.Stage == tracker.StageFailed && e.Detail == ec.detail && e.Time.Equal(ec.at) {
		delete(r.echoes, e.MAC) // our own silent failure
		return
	}
	d := r.on[e.MAC]
	switch {
	case e.Stage == tracker.StageApply:
		if d != nil && d.silent != "" && e.Event == tracker.KindStart {
			r.log.Info("deployment starts again after it was marked failed", "mac", e.MAC, "was", d.silent)
			delete(r.on, e.MAC)
			d = nil
		}
		if d == nil {
			if d = r.begin(e.MAC, e.Time); d == nil {
				return
			}
		}
		r.hear(e.MAC, d, e)
		d.bytes = max(d.bytes, e.Bytes)
		if e.Total > 0 {
			d.total = e.Total
		}
		if e.File != "" {
			d.image = e.File
		}
	case d != nil && deployStage(e.Stage):
		r.hear(e.MAC, d, e)
	case d != nil && e.Stage == tracker.StageDone:
		delete(r.on, e.MAC)
		reason := ""
		if d.silent != "" {
			reason = "finished after it was marked failed (" + d.silent + ")"
			r.log.Info("deployment finished after it was marked failed; recorded again as done", "mac", e.MAC, "was", d.silent)
		}
		r.record(e.MAC, d, e.Time, report.ResultDone, reason)
	case d != nil && e.Stage == tracker.StageFailed:
		delete(r.on, e.MAC)
		if d.silent != "" {
			r.log.Info("late failure report after the silent timeout; the report already says failed", "mac", e.MAC, "reason", e.Detail, "was", d.silent)
			return
		}
		r.record(e.MAC, d, e.Time, report.ResultFailed, e.Detail)
	case d == nil && e.Stage == tracker.StageFailed && e.Event == tracker.KindError:
		// The agent failed before it wrote anything (no disk, no such
		// image): a deployment all the same, and the report says why.
		r.record(e.MAC, &deployment{ip: e.IP, image: e.File, start: e.Time}, e.Time, report.ResultFailed, e.Detail)
	}
}

// begin follows a new deployment of mac, or returns nil when maxInFlight
// are followed and none of them is quiet.
func (r *reporter) begin(mac string, at time.Time) *deployment {
	if len(r.on) >= maxInFlight {
		oldest := ""
		for m, d := range r.on {
			if d.quiet && (oldest == "" || d.heard.Before(r.on[oldest].heard)) {
				oldest = m
			}
		}
		if oldest == "" {
			r.log.Debug("deployment not followed: too many at once", "mac", mac, "max", maxInFlight)
			return nil
		}
		delete(r.on, oldest)
	}
	d := &deployment{start: at, heard: at}
	r.on[mac] = d
	return d
}

// hear notes that mac was heard from in e.
func (r *reporter) hear(mac string, d *deployment, e tracker.Event) {
	if d.quiet {
		r.log.Info("client heard from again after it was marked failed", "mac", mac, "stage", e.Stage, "was", d.silent)
		d.quiet = false
	}
	if e.Time.After(d.heard) {
		d.heard = e.Time
	}
	d.stage = e.Stage
	if e.IP != "" {
		d.ip = e.IP
	}
}

// record appends the record of d's deployment.
func (r *reporter) record(mac string, d *deployment, end time.Time, result, reason string) {
	rec := report.Record{MAC: mac, IP: d.ip, Image: d.image, SHA256: r.sha(d.image), Start: d.start, End: end,
		Bytes: d.bytes, Result: result, Reason: reason}
	if err := r.j.Append(rec); err != nil {
		r.log.Error("deployment report", "mac", mac, "err", err)
	}
}

// reportService is the Service that keeps the deployment report.
func (o *Orchestrator) reportService() Service {
	stop := make(chan struct{})
	done := make(chan struct{})
	return Service{
		Name: "report",
		Serve: func() error {
			defer close(done)
			return o.serveReport(stop)
		},
		Shutdown: func(ctx context.Context) error {
			select {
			case <-stop:
			default:
				close(stop)
			}
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
	}
}
