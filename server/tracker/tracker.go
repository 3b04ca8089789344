package tracker

import (
	"sort"
	"sync"
	"time"
)

// Defaults for New.
const (
	DefaultHistory    = 256   // events kept per client
	DefaultQueue      = 65536 // events buffered per subscriber
	DefaultMaxClients = 4096  // client records kept; the oldest idle one goes first
)

// Step is one entry of a client's history.
type Step struct {
	Time   time.Time `json:"time"`
	Stage  Stage     `json:"stage"`
	Event  Kind      `json:"event"`
	Port   int       `json:"port"`
	File   string    `json:"file,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// Client is the tracker's record of one client, keyed by MAC (or by "ip:"
// and the address when only the address is known).
type Client struct {
	MAC       string    `json:"mac"`
	IP        string    `json:"ip,omitempty"`
	Arch      string    `json:"arch,omitempty"`
	Stage     Stage     `json:"stage"`
	LastEvent Kind      `json:"last_event"`
	File      string    `json:"file,omitempty"`
	Bytes     int64     `json:"bytes"`
	Total     int64     `json:"total"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	History   []Step    `json:"history"`
}

// Tracker folds events into client records and fans them out to
// subscribers. It is safe for concurrent use; Emit never blocks.
type Tracker struct {
	now        func() time.Time
	history    int
	queue      int
	maxClients int

	mu      sync.Mutex
	clients map[string]*Client
	byIP    map[string]string // ip -> mac
	subs    map[*Subscription]struct{}
}

// New returns an empty tracker.
func New() *Tracker {
	return &Tracker{
		now:        time.Now,
		history:    DefaultHistory,
		queue:      DefaultQueue,
		maxClients: DefaultMaxClients,
		clients:    map[string]*Client{},
		byIP:       map[string]string{},
		subs:       map[*Subscription]struct{}{},
	}
}

// Emit records e and hands it to every subscriber without waiting.
func (t *Tracker) Emit(e Event) {
	if e.Time.IsZero() {
		e.Time = t.now()
	}
	t.mu.Lock()
	if e.MAC == "" && e.IP != "" {
		e.MAC = t.byIP[e.IP]
	}
	if e.MAC != "" && e.IP != "" {
		t.byIP[e.IP] = e.MAC
	}
	if (e.MAC != "" || e.IP != "") && !e.Service() {
		t.record(e)
	}
	subs := make([]*Subscription, 0, len(t.subs))
	for s := range t.subs {
		subs = append(subs, s)
	}
	t.mu.Unlock()
	for _, s := range subs {
		s.push(e)
	}
}

func (t *Tracker) record(e Event) {
	key := e.MAC
	if key == "" {
		key = "ip:" + e.IP
	}
	c := t.clients[key]
	if c == nil && e.MAC != "" && e.IP != "" {
		// The client was known by its address only (a TFTP request
		// before anything named its MAC): it is this one.
		if old := t.clients["ip:"+e.IP]; old != nil {
			delete(t.clients, "ip:"+e.IP)
			old.MAC = e.MAC
			c = old
			t.clients[key] = c
		}
	}
	if c == nil {
		if len(t.clients) >= t.maxClients {
			t.evictOldest()
		}
		c = &Client{MAC: e.MAC, FirstSeen: e.Time}
		t.clients[key] = c
	}
	if e.IP != "" {
		c.IP = e.IP
	}
	if e.Arch != "" {
		c.Arch = e.Arch
	}
	c.LastSeen = e.Time
	if e.Event == KindLog {
		// A client's own log line is history; it does not move the
		// client to another stage (an agent logs while it applies).
		c.History = append(c.History, Step{Time: e.Time, Stage: e.Stage, Event: e.Event, Port: e.Port, Detail: e.Detail})
		if len(c.History) > t.history {
			c.History = append(c.History[:0:0], c.History[len(c.History)-t.history:]...)
		}
		return
	}
	c.LastEvent = e.Event
	// An error inside a stage is recorded but is not terminal by itself:
	// the client may retry (firmware often does). StageFailed is.
	c.Stage = e.Stage
	switch e.Event {
	case KindStart:
		c.File, c.Bytes, c.Total = e.File, 0, e.Total
	case KindProgress, KindDone:
		if e.File != "" {
			c.File = e.File
		}
		c.Bytes = e.Bytes
		if e.Total > 0 {
			c.Total = e.Total
		}
	}
	if e.Event == KindProgress {
		return // progress updates the record, not the history
	}
	c.History = append(c.History, Step{Time: e.Time, Stage: e.Stage, Event: e.Event, Port: e.Port, File: e.File, Detail: e.Detail})
	if len(c.History) > t.history {
		c.History = append(c.History[:0:0], c.History[len(c.History)-t.history:]...)
	}
}

// evictOldest drops the least recently seen eighth of the records in one
// pass, so that a stream of new clients costs amortized O(log n) each.
func (t *Tracker) evictOldest() {
	type aged struct {
		key string
		at  time.Time
	}
	all := make([]aged, 0, len(t.clients))
	for k, c := range t.clients {
		all = append(all, aged{k, c.LastSeen})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })
	for _, a := range all[:max(1, len(all)/8)] {
		if c := t.clients[a.key]; c != nil && c.IP != "" && t.byIP[c.IP] == c.MAC {
			delete(t.byIP, c.IP)
		}
		delete(t.clients, a.key)
	}
}

// MACForIP returns the MAC last seen with ip, or "".
func (t *Tracker) MACForIP(ip string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byIP[ip]
}

// Len is the number of client records.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.clients)
}

// Clients returns a copy of every client record, ordered by first sight.
func (t *Tracker) Clients() []Client {
	t.mu.Lock()
	out := make([]Client, 0, len(t.clients))
	for _, c := range t.clients {
		cc := *c
		cc.History = append([]Step(nil), c.History...)
		out = append(out, cc)
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].FirstSeen.Equal(out[j].FirstSeen) {
			return out[i].FirstSeen.Before(out[j].FirstSeen)
		}
		return out[i].MAC < out[j].MAC
	})
	return out
}

// Client returns the record for mac.
func (t *Tracker) Client(mac string) (Client, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, ok := t.clients[mac]
	if !ok {
		return Client{}, false
	}
	cc := *c
	cc.History = append([]Step(nil), c.History...)
	return cc, true
}

// Subscribe returns a subscription that receives every event emitted from
// now on. Close it when done.
func (t *Tracker) Subscribe() *Subscription {
	s := &Subscription{t: t, max: t.queue, ready: make(chan struct{}, 1)}
	t.mu.Lock()
	t.subs[s] = struct{}{}
	t.mu.Unlock()
	return s
}

// Subscription is a bounded queue of events for one reader. When the
// reader falls behind by more than the queue size, the newest events are
// dropped and the reader is told how many with a KindDropped event.
type Subscription struct {
	t     *Tracker
	max   int
	ready chan struct{}

	mu      sync.Mutex
	q       []Event
	dropped int
	closed  bool
}

func (s *Subscription) push(e Event) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if len(s.q) >= s.max {
		s.dropped++
	} else {
		s.q = append(s.q, e)
	}
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Ready is signalled whenever events may be waiting; call Next after it.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Next returns the queued events (oldest first) and empties the queue. A
// KindDropped service event ends the batch when events were lost.
func (s *Subscription) Next() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.q
	s.q = nil
	if s.dropped > 0 {
		out = append(out, Event{Time: s.t.now(), Event: KindDropped, Bytes: int64(s.dropped), Detail: "subscriber fell behind; events dropped"})
		s.dropped = 0
	}
	return out
}

// Close stops delivery to s.
func (s *Subscription) Close() {
	s.t.mu.Lock()
	delete(s.t.subs, s)
	s.t.mu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.q = nil
	s.mu.Unlock()
}
