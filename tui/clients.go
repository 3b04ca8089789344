package tui

import (
	"sort"
	"strings"
	"time"

	"github.com/netdeploy/netdeploy/server/tracker"
)

// stripStages are the steps of the stage strip, in boot order. HTTP sits
// beside TFTP (iPXE and UEFI HTTP boot); SMB and multicast share a slot.
var stripStages = [...]struct {
	letter string
	stages []tracker.Stage
}{
	{"D", []tracker.Stage{tracker.StageDHCP}},
	{"P", []tracker.Stage{tracker.StagePXE}},
	{"T", []tracker.Stage{tracker.StageTFTP}},
	{"H", []tracker.Stage{tracker.StageHTTP}},
	{"R", []tracker.Stage{tracker.StageRPC}},
	{"S", []tracker.Stage{tracker.StageSMB, tracker.StageMulticast}},
	{"A", []tracker.Stage{tracker.StageApply}},
	{"✓", []tracker.Stage{tracker.StageDone}},
}

// maxHistory caps the events kept per client in the console.
const maxHistory = 256

// maxClients caps the clients the console keeps, as the tracker does; a
// flood of made-up MACs cannot grow it without bound.
const maxClients = tracker.DefaultMaxClients

// transfer is a client's current (or last) download.
type transfer struct {
	Stage  tracker.Stage
	File   string
	Bytes  int64
	Total  int64
	Start  time.Time
	End    time.Time
	Active bool
	Rate   float64 // bytes per second, smoothed

	lastT time.Time
	lastB int64
}

// Percent is the fraction done, 0 when the size is unknown.
func (x transfer) Percent() float64 {
	if x.Total <= 0 {
		return 0
	}
	return min(1, float64(x.Bytes)/float64(x.Total))
}

// Left is the estimated time to completion, or -1 when unknown.
func (x transfer) Left() time.Duration {
	if !x.Active || x.Total <= 0 || x.Rate <= 0 {
		return -1
	}
	return time.Duration(float64(x.Total-x.Bytes) / x.Rate * float64(time.Second))
}

// client is the console's record of one machine, folded from events.
type client struct {
	Key       string
	MAC       string
	IP        string
	Arch      string
	Stage     tracker.Stage
	Last      tracker.Event
	FirstSeen time.Time
	LastSeen  time.Time
	Complete  map[tracker.Stage]bool
	Pending   bool
	Denied    bool
	Failed    bool
	Result    string
	Xfer      transfer
	HasXfer   bool
	History   []tracker.Event
	Logs      []tracker.Event
}

// isTransfer reports whether a stage moves file bytes worth a progress bar.
func isTransfer(s tracker.Stage) bool {
	switch s {
	case tracker.StageTFTP, tracker.StageHTTP, tracker.StageSMB, tracker.StageMulticast, tracker.StageApply:
		return true
	}
	return false
}

// clientSet is every client the console knows, in order of first sight.
type clientSet struct {
	byKey   map[string]*client
	order   []*client
	renamed map[string]string // address-only keys merged into a MAC's
}

func newClientSet() *clientSet { return &clientSet{byKey: map[string]*client{}} }

// apply folds one event into the set; service events (no MAC, no IP) are
// ignored here.
func (cs *clientSet) apply(e tracker.Event) {
	if e.Service() || e.MAC == "" && e.IP == "" {
		return
	}
	// Everything but the times and numbers came off the network.
	e.MAC, e.IP, e.Arch, e.File, e.Detail, e.Peer = sanitize(e.MAC), sanitize(e.IP), sanitize(e.Arch), sanitize(e.File), sanitize(e.Detail), sanitize(e.Peer)
	key := e.MAC
	if key == "" {
		key = "ip:" + e.IP
	}
	c := cs.byKey[key]
	if c == nil && e.MAC != "" && e.IP != "" {
		// Known by its address only until now (as the tracker does).
		if old := cs.byKey["ip:"+e.IP]; old != nil {
			delete(cs.byKey, old.Key)
			if cs.renamed == nil {
				cs.renamed = map[string]string{}
			}
			cs.renamed[old.Key] = key
			old.Key, old.MAC = key, e.MAC
			cs.byKey[key] = old
			c = old
		}
	}
	if c == nil {
		if len(cs.order) >= maxClients {
			cs.evict()
		}
		c = &client{Key: key, MAC: e.MAC, FirstSeen: e.Time, Complete: map[tracker.Stage]bool{}}
		cs.byKey[key] = c
		cs.order = append(cs.order, c)
	}
	c.fold(e)
}

func (c *client) fold(e tracker.Event) {
	if e.IP != "" {
		c.IP = e.IP
	}
	if e.Arch != "" {
		c.Arch = e.Arch
	}
	if e.Time.After(c.LastSeen) {
		c.LastSeen = e.Time
	}
	if e.Event == tracker.KindLog {
		c.Logs = appendCapped(c.Logs, e)
		c.History = appendCapped(c.History, e)
		return
	}
	c.Stage = e.Stage
	c.Last = e
	switch {
	case e.Event == tracker.KindPending:
		c.Pending = true
	case e.Stage == tracker.StagePXE && e.Event == tracker.KindDone:
		c.Pending, c.Denied = false, false
	case e.Stage == tracker.StagePXE && e.Event == tracker.KindError && strings.Contains(e.Detail, "denied"):
		c.Pending, c.Denied = false, true
	case e.Stage == tracker.StagePXE && e.Event == tracker.KindError && strings.Contains(e.Detail, "approval"):
		c.Pending = true // held by the policy, asking again
	}
	if e.Event == tracker.KindDone {
		c.Complete[e.Stage] = true
	}
	switch e.Stage {
	case tracker.StageFailed:
		c.Failed = true
		c.Result = e.Detail
	case tracker.StageDone:
		c.Failed = false
		c.Result = "deployed"
		if e.Detail != "" {
			c.Result = e.Detail
		}
	default:
		if c.Failed && e.Event != tracker.KindError {
			c.Failed = false // it came back and started over
			c.Result = ""
		}
	}
	// Steps without bytes (an SMB logon, a name query) are not transfers.
	if isTransfer(e.Stage) && e.Detail != "size probe" && (e.File != "" || e.Bytes > 0 || e.Total > 0) {
		c.foldTransfer(e)
	}
	if e.Event != tracker.KindProgress {
		c.History = appendCapped(c.History, e)
	}
}

func (c *client) foldTransfer(e tracker.Event) {
	x := &c.Xfer
	switch e.Event {
	case tracker.KindStart:
		*x = transfer{Stage: e.Stage, File: e.File, Total: e.Total, Start: e.Time, Active: true, lastT: e.Time}
		c.HasXfer = true
	case tracker.KindProgress, tracker.KindDone:
		if !c.HasXfer || x.Stage != e.Stage || (e.File != "" && x.File != e.File) {
			*x = transfer{Stage: e.Stage, File: e.File, Start: e.Time, Active: true, lastT: e.Time}
			c.HasXfer = true
		}
		if e.Total > 0 {
			x.Total = e.Total
		}
		if dt := e.Time.Sub(x.lastT).Seconds(); dt > 0 && e.Bytes >= x.lastB {
			r := float64(e.Bytes-x.lastB) / dt
			if x.Rate == 0 {
				x.Rate = r
			} else {
				x.Rate = 0.6*r + 0.4*x.Rate // smooth the noisy per-update rate
			}
		}
		x.Bytes, x.lastB, x.lastT = e.Bytes, e.Bytes, e.Time
		if e.Event == tracker.KindDone {
			x.Active = false
			x.End = e.Time
			if d := e.Time.Sub(x.Start).Seconds(); d > 0 {
				x.Rate = float64(x.Bytes) / d // average over the whole transfer
			}
			if x.Total == 0 {
				x.Total = x.Bytes
			}
		}
	case tracker.KindError:
		if c.HasXfer && x.Active && x.Stage == e.Stage {
			x.Active = false
			x.End = e.Time
		}
	}
}

func appendCapped(list []tracker.Event, e tracker.Event) []tracker.Event {
	list = append(list, e)
	if len(list) > maxHistory {
		list = append(list[:0:0], list[len(list)-maxHistory:]...)
	}
	return list
}

// counts summarises the set for the header and the tab title.
type counts struct{ All, Active, Pending, Failed, Done int }

func (cs *clientSet) counts() counts {
	var n counts
	for _, c := range cs.order {
		n.All++
		switch {
		case c.Failed:
			n.Failed++
		case c.Pending:
			n.Pending++
		case c.Stage == tracker.StageDone:
			n.Done++
		case c.HasXfer && c.Xfer.Active:
			n.Active++
		}
	}
	return n
}

// sorted returns the clients in display order: first sight, then key.
func (cs *clientSet) sorted() []*client {
	out := append([]*client(nil), cs.order...)
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].FirstSeen.Equal(out[j].FirstSeen) {
			return out[i].FirstSeen.Before(out[j].FirstSeen)
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// elapsed is the time since first sight, frozen when the client is done
// or failed.
func (c *client) elapsed(now time.Time) time.Duration {
	if c.Failed || c.Stage == tracker.StageDone {
		now = c.LastSeen
	}
	return now.Sub(c.FirstSeen)
}

// syncPending makes the waiting flags follow the policy's pending list,
// which is the authority (approvals made elsewhere, restarts).
func (cs *clientSet) syncPending(pending []Pending) {
	set := make(map[string]bool, len(pending))
	for _, p := range pending {
		set[strings.ToLower(p.MAC)] = true
	}
	for _, c := range cs.order {
		if c.MAC == "" {
			continue
		}
		if set[strings.ToLower(c.MAC)] {
			c.Pending, c.Denied = true, false
		} else {
			c.Pending = false
		}
	}
}

// evict drops the least recently seen eighth of the clients.
func (cs *clientSet) evict() {
	byAge := append([]*client(nil), cs.order...)
	sort.Slice(byAge, func(i, j int) bool { return byAge[i].LastSeen.Before(byAge[j].LastSeen) })
	gone := map[*client]bool{}
	for _, c := range byAge[:max(1, len(byAge)/8)] {
		gone[c] = true
		delete(cs.byKey, c.Key)
	}
	kept := cs.order[:0]
	for _, c := range cs.order {
		if !gone[c] {
			kept = append(kept, c)
		}
	}
	cs.order = kept
}

// current follows a key through merges to the key it has now.
func (cs *clientSet) current(key string) string {
	for range 4 {
		next, ok := cs.renamed[key]
		if !ok {
			break
		}
		key = next
	}
	return key
}
