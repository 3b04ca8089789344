package server

import (
	"context"
	"time"

	"github.com/netdeploy/netdeploy/imaging/report"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// deployment is what the reporter knows of one client's deployment so far.
type deployment struct {
	ip, image string
	start     time.Time
	bytes     int64
}

// maxInFlight caps the deployments the reporter follows at once.
const maxInFlight = 4096

// reporter appends one record per finished deployment (done or failed
// after an apply) to data_dir/deployments.jsonl, from the tracker's events.
type reporter struct {
	o   *Orchestrator
	j   *report.Journal
	sub *tracker.Subscription
	on  map[string]*deployment
}

// serveReport runs the reporter until stop is closed.
func (o *Orchestrator) serveReport(stop <-chan struct{}) error {
	j, err := report.Open(report.Path(o.RT.DataDir))
	if err != nil {
		return err
	}
	defer j.Close()
	r := &reporter{o: o, j: j, sub: o.reportSub, on: map[string]*deployment{}}
	defer r.sub.Close()
	for {
		select {
		case <-r.sub.Ready():
			for _, e := range r.sub.Next() {
				r.fold(e)
			}
		case <-stop:
			for _, e := range r.sub.Next() {
				r.fold(e)
			}
			return nil
		}
	}
}

func (r *reporter) fold(e tracker.Event) {
	if e.MAC == "" {
		return
	}
	d := r.on[e.MAC]
	switch {
	case e.Stage == tracker.StageApply:
		if d == nil {
			if len(r.on) >= maxInFlight {
				return
			}
			d = &deployment{start: e.Time}
			r.on[e.MAC] = d
		}
		d.ip, d.bytes = e.IP, max(d.bytes, e.Bytes)
		if e.File != "" {
			d.image = e.File
		}
	case (e.Stage == tracker.StageDone || e.Stage == tracker.StageFailed) && d != nil:
		delete(r.on, e.MAC)
		rec := report.Record{MAC: e.MAC, IP: d.ip, Image: d.image, Start: d.start, End: e.Time, Bytes: d.bytes, Result: report.ResultDone}
		if e.Stage == tracker.StageFailed {
			rec.Result, rec.Reason = report.ResultFailed, e.Detail
		}
		if list, err := r.o.Catalog.List(); err == nil {
			for _, im := range list {
				if im.Path == d.image || im.File == d.image {
					rec.SHA256 = im.SHA256
				}
			}
		}
		if err := r.j.Append(rec); err != nil {
			r.o.log.Error("deployment report", "mac", e.MAC, "err", err)
		}
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
