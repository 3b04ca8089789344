package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/netdeploy/netdeploy/config"
	"github.com/netdeploy/netdeploy/imaging"
	"github.com/netdeploy/netdeploy/server/control"
	"github.com/netdeploy/netdeploy/server/multicast"
	"github.com/netdeploy/netdeploy/server/tracker"
	"github.com/netdeploy/netdeploy/server/wds"
)

// mcLinger keeps a finished session open for late joiners.
const mcLinger = 10 * time.Second

// mcast runs the multicast sessions: one multicast.Sender per image, made
// when its first client joins over RPC and gone once it has served
// everyone. Only uncompressed raw images go by multicast (the blocks are
// written at their offsets); the rest go by SMB.
type mcast struct {
	o      *Orchestrator
	group  *net.IPNet // multicast.group
	start  multicast.StartPolicy
	slow   multicast.SlowPolicy
	split  bool  // multicast.slow_client split: slow clients move to a slow lane
	rate   int64 // bytes per second; 0: the sender's default
	ttl    int
	events tracker.Emitter
	log    *slog.Logger

	mu       sync.Mutex
	sessions map[string]*mcSession // by the image's file
	next     uint32                // the next group in the block
	closed   bool
	wg       sync.WaitGroup
}

type mcSession struct {
	s       *multicast.Sender
	image   string // share path
	size    int64
	started time.Time
}

func newMcast(o *Orchestrator, rt *config.Runtime, events tracker.Emitter, log *slog.Logger) (*mcast, error) {
	_, group, err := net.ParseCIDR(rt.Multicast.Group)
	if err != nil {
		return nil, fmt.Errorf("server: multicast.group: %w", err)
	}
	sp, err := config.ParseStart(rt.Multicast.Start)
	if err != nil {
		return nil, fmt.Errorf("server: multicast.start: %w", err)
	}
	split := rt.Multicast.SlowClient == "split"
	slow := multicast.SlowDrop // split: the main session drops a slow client, which rejoins the slow lane
	if !split {
		if slow, err = multicast.ParseSlowPolicy(rt.Multicast.SlowClient); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	return &mcast{o: o, group: group, slow: slow, split: split, ttl: rt.Multicast.TTL, events: events, log: log,
		start: multicast.StartPolicy{Clients: sp.Clients, Delay: sp.Delay, Manual: sp.Manual},
		rate:  int64(rt.Multicast.MaxRate) * 1000 * 1000 / 8, sessions: map[string]*mcSession{}}, nil
}

// groupIP is the n-th address of the group block, skipping its first
// (network) address.
func (m *mcast) groupIP(n uint32) net.IP {
	ones, bits := m.group.Mask.Size()
	size := uint32(1) << (bits - ones)
	base := binary.BigEndian.Uint32(m.group.IP.To4())
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, base+1+n%(size-1))
	return ip
}

// Join implements wds.State.Join.
func (m *mcast) Join(r wds.JoinRequest) (wds.MulticastJoin, error) {
	image, mac, ip := r.Image, r.MAC, r.IP
	list, err := m.o.Catalog.List()
	if err != nil {
		return wds.MulticastJoin{}, err
	}
	im, ok := findImage(list, image)
	if !ok {
		return wds.MulticastJoin{}, fmt.Errorf("%w: no such image", wds.ErrNoMulticast)
	}
	if im.Kind != imaging.KindRaw || im.Compression != "" {
		return wds.MulticastJoin{}, fmt.Errorf("%w: only uncompressed raw images are multicast", wds.ErrNoMulticast)
	}
	if r.Slow && !m.split {
		return wds.MulticastJoin{}, fmt.Errorf("%w: no slow lane (multicast.slow_client is not split)", wds.ErrNoMulticast)
	}
	for attempt := 0; ; attempt++ {
		sess, err := m.session(im, r.Slow)
		if err != nil {
			return wds.MulticastJoin{}, err
		}
		p, err := sess.s.Join(mac, ip)
		if err != nil && attempt == 0 {
			// The session ended between the lookup and the join: a new one.
			m.forget(sessionKey(im.File, r.Slow), sess)
			continue
		}
		if err != nil {
			return wds.MulticastJoin{}, err
		}
		return wds.MulticastJoin{Path: im.Path, Group: p.Group, Server: p.Server, SessionID: p.SessionID,
			ClientID: p.ClientID, Key: p.Key, Size: p.Size, BlockSize: p.BlockSize}, nil
	}
}

// sessionKey names a session: the image's file, and its lane.
func sessionKey(file string, slow bool) string {
	if slow {
		return file + "\x00slow"
	}
	return file
}

// session returns the image's running session (or its slow lane),
// starting one if needed.
func (m *mcast) session(im imaging.Image, slowLane bool) (*mcSession, error) {
	key := sessionKey(im.File, slowLane)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errors.New("server: shutting down")
	}
	if s := m.sessions[key]; s != nil {
		return s, nil
	}
	root, err := os.OpenRoot(m.o.RT.ImagesDir)
	if err != nil {
		return nil, fmt.Errorf("server: multicast: %w", err)
	}
	f, err := root.Open(im.File)
	root.Close()
	if err != nil {
		return nil, fmt.Errorf("server: multicast: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("server: multicast: %w", err)
	}
	conn, err := multicast.Listen(m.o.RT.ServerIP, m.o.Ports.Get())
	if err != nil {
		f.Close()
		return nil, err
	}
	ifi, err := net.InterfaceByName(m.o.RT.Iface.Name)
	if err != nil {
		f.Close()
		conn.Close()
		return nil, fmt.Errorf("server: multicast: %w", err)
	}
	port := conn.LocalAddr().(*net.UDPAddr).Port
	start, slow, name := m.start, m.slow, im.Path
	if slowLane {
		// The slow lane starts at once and goes at its slowest client's pace.
		start, slow, name = multicast.StartPolicy{}, multicast.SlowWait, im.Path+" (slow lane)"
	}
	s := &multicast.Sender{
		Conn:        conn,
		Group:       &net.UDPAddr{IP: m.groupIP(m.next), Port: port},
		Interface:   ifi,
		TTL:         m.ttl,
		Name:        im.Path,
		Image:       f,
		Size:        st.Size(),
		BlockSize:   multicast.BlockSizeForMTU(m.o.RT.Iface.MTU),
		StartPolicy: start,
		Slow:        slow,
		MaxRate:     m.rate,
		Linger:      mcLinger,
		Events:      m.events,
		Log:         m.log.With("image", name),
	}
	m.next++
	sess := &mcSession{s: s, image: name, size: st.Size(), started: time.Now()}
	m.sessions[key] = sess
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := s.Serve(context.Background()); err != nil && !errors.Is(err, net.ErrClosed) {
			m.log.Warn("multicast session ended with an error", "image", im.Path, "err", err)
		}
		m.forget(key, sess)
		f.Close()
	}()
	m.log.Info("multicast session", "image", name, "group", s.Group.String(), "port", port)
	return sess, nil
}

// forget drops a session that ended.
func (m *mcast) forget(file string, sess *mcSession) {
	m.mu.Lock()
	if m.sessions[file] == sess {
		delete(m.sessions, file)
	}
	m.mu.Unlock()
}

// Start starts every session waiting for a manual start.
func (m *mcast) Start() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.sessions {
		s.s.Start()
	}
	return len(m.sessions)
}

// McastSession is a running multicast session, for the console.
type McastSession struct {
	Image   string // share path
	Group   string // ip:port
	Port    int    // the session socket's port (in udp_range)
	Size    int64
	Started time.Time
	Stats   multicast.Stats
}

// sessions lists the running sessions by image.
func (m *mcast) list() []McastSession {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]McastSession, 0, len(m.sessions))
	for _, s := range m.sessions {
		out = append(out, McastSession{Image: s.image, Group: s.s.Group.String(), Port: s.s.Conn.LocalAddr().(*net.UDPAddr).Port,
			Size: s.size, Started: s.started, Stats: s.s.Stats()})
	}
	slices.SortFunc(out, func(a, b McastSession) int { return strings.Compare(a.Image, b.Image) })
	return out
}

// MulticastSessions lists the running multicast sessions (none when
// multicast.enabled is off).
func (o *Orchestrator) MulticastSessions() []McastSession {
	if o.mc == nil {
		return nil
	}
	return o.mc.list()
}

// StartMulticast starts the sessions waiting for a manual start and
// returns how many sessions run.
func (o *Orchestrator) StartMulticast() (int, error) {
	if o.mc == nil {
		return 0, errors.New("multicast is off (multicast.enabled)")
	}
	return o.mc.Start(), nil
}

// shutdown ends every session and waits for them.
func (m *mcast) shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	list := make([]*mcSession, 0, len(m.sessions))
	for _, s := range m.sessions {
		list = append(list, s)
	}
	m.mu.Unlock()
	var errs []error
	for _, s := range list {
		if err := s.s.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}

// service is the multicast sessions as one service: Serve waits for
// Shutdown.
func (m *mcast) service() Service {
	stop := make(chan struct{})
	var once sync.Once
	return Service{
		Name:  "multicast",
		Serve: func() error { <-stop; return nil },
		Shutdown: func(ctx context.Context) error {
			once.Do(func() { close(stop) })
			return m.shutdown(ctx)
		},
	}
}

// Multicast implements control.API.
func (o *Orchestrator) Multicast() []control.MulticastSession {
	var out []control.MulticastSession
	for _, s := range o.MulticastSessions() {
		cs := control.MulticastSession{Image: s.Image, Group: s.Group, Port: s.Port, Size: s.Size, Started: s.Started,
			State: s.Stats.State, Rate: s.Stats.Rate, BytesSent: s.Stats.Traffic.BytesOut, Clients: []control.MulticastClient{}}
		for _, c := range s.Stats.Clients {
			cs.Clients = append(cs.Clients, control.MulticastClient{MAC: c.MAC, IP: c.IP, State: c.State, Bytes: c.Bytes, Loss: c.Loss})
		}
		out = append(out, cs)
	}
	return out
}
