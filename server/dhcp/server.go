// Package dhcp is netdeploy's DHCP server and PXE boot server. On one
// interface it answers DHCP on UDP 67, either leasing addresses from a pool
// (authoritative) or only telling PXE clients what to boot next to an
// existing DHCP server (proxy), answers PXE boot requests on UDP 4011, and,
// with DHCP authorization on, probes from UDP 68 for other DHCP servers and
// stays silent while an unauthorized one answers.
//
// The package keeps the wire, the decisions and the sockets apart:
// decide.go decides replies without sockets, leases.go is the lease store,
// authz.go the authorization check, frame.go the AF_PACKET frame decoder,
// and this file with sock_*.go the sockets.
package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/net/ipv4"

	"github.com/netdeploy/netdeploy/server/policy"
	"github.com/netdeploy/netdeploy/server/stats"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// Defaults.
const (
	DefaultPort       = 67
	DefaultPXEPort    = 4011
	DefaultClientPort = 68
	DefaultLeaseTime  = time.Hour
)

// ErrServerClosed is returned by Listen, Serve and SetMode after Shutdown.
var ErrServerClosed = errors.New("dhcp: server closed")

// ErrNoPool is returned when authoritative mode is asked of a server built
// without a Pool.
var ErrNoPool = errors.New("dhcp: authoritative mode needs an address pool (dhcp.pool), and this server has none")

// ListenError is a socket the server could not open: Port on Interface.
// Err is the cause (errors.Is works for syscall.EACCES, EADDRINUSE...).
type ListenError struct {
	Port      int
	Interface string
	Err       error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("dhcp: listen udp port %d on %s: %v", e.Port, e.Interface, e.Err)
}

// Unwrap returns the cause.
func (e *ListenError) Unwrap() error { return e.Err }

// Server is a DHCP and PXE boot server for one interface. Set the fields,
// then call ListenAndServe (or Listen and Serve); the fields must not be
// changed after that. The mode changes at run time through SetMode,
// authorization and its servers through SetAuthorization and
// SetAuthorizedServers.
type Server struct {
	// Interface is the served interface (required). Every socket is bound
	// to it (SO_BINDTODEVICE): packets from other interfaces are never
	// seen or answered.
	Interface string
	// ServerIP is this server's address on Interface (required): server
	// identifier, siaddr and TFTP server.
	ServerIP net.IP
	// Mode is the initial mode: Authoritative, Proxy or Off (the sockets
	// are open but nothing is answered). SetMode changes the mode at run
	// time and CurrentMode reports it; this field is not updated.
	Mode Mode
	// Pool is the range leased in authoritative mode. Set it in every mode
	// if the server may be switched to authoritative at run time.
	Pool Pool
	// Netmask is the served subnet's mask (option 1); nil: taken from
	// the interface address that equals ServerIP.
	Netmask net.IPMask
	// Router (option 3) and DNS (option 6) are sent when set.
	Router net.IP
	DNS    []net.IP
	// LeaseTime is the lease length (option 51); 0: DefaultLeaseTime.
	LeaseTime time.Duration
	// LeaseDir is where leases.json lives (authoritative; read when the
	// server first becomes authoritative); "" keeps leases in memory only.
	LeaseDir string
	// ScriptURL is the iPXE script URL given to clients that are already
	// iPXE (and the base for UEFI HTTP boot).
	ScriptURL string
	// Has reports whether a boot file exists (boot.FS.Has); nil: none
	// does.
	Has func(name string) bool
	// Policy decides which clients may boot; nil allows all.
	Policy policy.Policy
	// Authorization is the initial state of the DHCP authorization check
	// and AuthorizedServers the other DHCP servers allowed on the link.
	Authorization     bool
	AuthorizedServers []net.IP
	// AuthInterval is the time between probes (0: DefaultAuthInterval);
	// ProbeWait how long a probe collects answers (0: DefaultProbeWait,
	// long enough for servers that ping an address before offering it, as
	// dnsmasq does for about 3 s).
	AuthInterval, ProbeWait time.Duration
	// Events receives client and service events; nil drops them.
	Events tracker.Emitter
	// Log receives log lines; nil: slog.Default().
	Log *slog.Logger
	// Port, PXEPort and ClientPort are 67, 4011 and 68 when 0.
	Port, PXEPort, ClientPort int

	authMu  sync.Mutex // serializes SetAuthorization
	modeMu  sync.Mutex // serializes SetMode
	probeMu sync.Mutex // one probe at a time

	// h answers requests in the current mode; nil before Listen. Every
	// packet loads it once, so a mode change applies to the next packet.
	h atomic.Pointer[handler]
	// probeStats counts the authorization probe's traffic (client port),
	// across reopenings of its sockets.
	probeStats stats.Counter

	mu        sync.Mutex
	auth      *authorizer
	listening bool
	serving   bool
	closed    bool
	syncing   bool          // syncLoop runs
	mode      Mode          // current mode; "": Mode
	leases    *leaseStore   // loaded once authoritative, kept across mode changes
	done      chan struct{} // closed by Shutdown
	conns     []listener
	probe     *probeSockets // nil while authorization is off
	probeStop chan struct{}
	probeDone chan struct{}
	kick      chan struct{}
	ifIndex   int
	ifMAC     net.HardwareAddr
	ns        *netns
	wg        sync.WaitGroup
}

type listener struct {
	c    *net.UDPConn
	port int
	pxe  bool
	st   *stats.Counter
}

// probeSockets are the authorization probe's sockets: UDP on the client
// port to send from, and the capture socket that sees who answers.
type probeSockets struct {
	udp    *net.UDPConn
	frames *frameConn
	dst    *net.UDPAddr
	st     *stats.Counter
}

func (p *probeSockets) send(b []byte) error {
	n, err := p.udp.WriteToUDP(b, p.dst)
	if err == nil {
		p.st.Out(n)
	}
	return err
}

func (p *probeSockets) setReadDeadline(t time.Time) error { return p.frames.setReadDeadline(t) }

// readFrame reads a captured frame and counts it (its UDP payload) when
// it came in.
func (p *probeSockets) readFrame(buf []byte) (int, net.HardwareAddr, bool, error) {
	n, src, outgoing, err := p.frames.readFrame(buf)
	if err == nil && !outgoing {
		size := n
		if d, err := parseFrame(buf[:n]); err == nil {
			size = len(d.payload)
		}
		p.st.In(size)
	}
	return n, src, outgoing, err
}

func (p *probeSockets) drain() {
	drainUDP(p.udp)
	p.frames.drain()
}

func (p *probeSockets) close() {
	p.udp.Close()
	p.frames.Close()
}

func (s *Server) port() int       { return orDefault(s.Port, DefaultPort) }
func (s *Server) pxePort() int    { return orDefault(s.PXEPort, DefaultPXEPort) }
func (s *Server) clientPort() int { return orDefault(s.ClientPort, DefaultClientPort) }

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func (s *Server) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func (s *Server) emit(e tracker.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if s.Events != nil {
		s.Events.Emit(e)
	}
}

// authz returns the authorizer, creating it from the fields on first use.
func (s *Server) authz() *authorizer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authzLocked()
}

func (s *Server) authzLocked() *authorizer {
	if s.auth == nil {
		s.auth = newAuthorizer(s.Interface, s.ServerIP.To4(), s.port(), s.Authorization, s.AuthorizedServers, s.logger(), s.emit)
		s.done = make(chan struct{})
		s.kick = make(chan struct{}, 1)
	}
	return s.auth
}

// checkMode accepts the three modes.
func checkMode(m Mode) error {
	switch m {
	case Authoritative, Proxy, Off:
		return nil
	}
	return fmt.Errorf("dhcp: unknown mode %q (want authoritative, proxy or off)", m)
}

// check validates the configuration for mode and returns the decision
// settings. iface may be nil when Netmask is set.
func (s *Server) check(iface *net.Interface, mode Mode) (settings, *net.IPNet, error) {
	var st settings
	ip := s.ServerIP.To4()
	if ip == nil || ip.IsUnspecified() {
		return st, nil, fmt.Errorf("dhcp: server ip %q is not an IPv4 address", s.ServerIP)
	}
	if err := checkMode(mode); err != nil {
		return st, nil, err
	}
	mask := s.Netmask
	if mask == nil {
		mask = ifaceMask(iface, ip)
	}
	if mask != nil {
		if len(mask) == net.IPv6len {
			mask = mask[12:]
		}
		if len(mask) != net.IPv4len {
			return st, nil, fmt.Errorf("dhcp: netmask %s is not an IPv4 mask", s.Netmask)
		}
	}
	if mode == Authoritative && mask == nil {
		return st, nil, fmt.Errorf("dhcp: netmask not set and %s has no address %s to take it from", s.Interface, ip)
	}
	lt := s.LeaseTime
	if lt == 0 {
		lt = DefaultLeaseTime
	}
	if lt < time.Minute {
		return st, nil, fmt.Errorf("dhcp: lease time %s is shorter than a minute", lt)
	}
	if lt/time.Second > 0xfffffffe {
		return st, nil, fmt.Errorf("dhcp: lease time %s is too long", lt)
	}
	var router net.IP
	if s.Router != nil {
		if router = s.Router.To4(); router == nil {
			return st, nil, fmt.Errorf("dhcp: router %s is not IPv4", s.Router)
		}
	}
	var dns []net.IP
	for _, d := range s.DNS {
		d4 := d.To4()
		if d4 == nil {
			return st, nil, fmt.Errorf("dhcp: dns server %s is not IPv4", d)
		}
		dns = append(dns, d4)
	}
	st = settings{mode: mode, serverIP: ip, netmask: mask, router: router, dns: dns, leaseTime: lt, scriptURL: s.ScriptURL, has: s.Has, policy: s.Policy}
	var subnet *net.IPNet
	if mask != nil {
		subnet = &net.IPNet{IP: ip.Mask(mask), Mask: mask}
	}
	return st, subnet, nil
}

func ifaceMask(iface *net.Interface, ip net.IP) net.IPMask {
	if iface == nil {
		return nil
	}
	addrs, err := iface.Addrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return n.Mask
		}
	}
	return nil
}

// Listen checks the configuration, loads the leases and opens every socket
// now, so "permission denied" or "address already in use" surface at
// start.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.authzLocked()
	switch {
	case s.closed:
		return ErrServerClosed
	case s.listening:
		return errors.New("dhcp: already listening")
	case s.Interface == "":
		return errors.New("dhcp: no interface set")
	}
	if err := checkPlatform(); err != nil {
		return err
	}
	log := s.logger()
	iface, err := net.InterfaceByName(s.Interface)
	if err != nil {
		return fmt.Errorf("dhcp: interface %s: %w", s.Interface, err)
	}
	h, err := s.prepareLocked(iface)
	if err != nil {
		return err
	}
	if !hasAddr(iface, h.s.serverIP) {
		log.Warn("dhcp: server ip is not an address of the interface", "iface", s.Interface, "ip", h.s.serverIP.String())
	}
	if ns, err := captureNetns(); err == nil {
		s.ns = ns
	} else {
		log.Debug("dhcp: network namespace not recorded", "err", err)
	}
	s.ifIndex, s.ifMAC = iface.Index, iface.HardwareAddr

	var conns []listener
	closeAll := func() {
		for _, l := range conns {
			l.c.Close()
		}
		s.ns.close()
		s.ns = nil
	}
	for _, p := range []struct {
		port int
		pxe  bool
	}{{s.port(), false}, {s.pxePort(), true}} {
		c, err := listenUDP(s.Interface, p.port)
		if err != nil {
			closeAll()
			return &ListenError{Port: p.port, Interface: s.Interface, Err: err}
		}
		conns = append(conns, listener{c: c, port: p.port, pxe: p.pxe, st: new(stats.Counter)})
	}
	if _, on := a.generation(); on {
		if err := s.openProbeLocked(); err != nil {
			closeAll()
			return err
		}
	}
	s.installLocked(h)
	s.conns, s.listening = conns, true
	mode := h.s.mode
	for _, l := range conns {
		what := fmt.Sprintf("dhcp %s on %s", mode, s.Interface)
		if l.pxe {
			what = "pxe boot server on " + s.Interface
		}
		if mode == Off {
			what += " (mode off: not answering)"
		}
		log.Info("dhcp: listening", "port", l.port, "proto", "udp", "iface", s.Interface, "mode", string(mode))
		s.emit(tracker.Event{Stage: tracker.StageDHCP, Event: tracker.KindListening, Port: l.port, Proto: "udp", Detail: what})
	}
	return nil
}

// modeLocked is the current mode: the last SetMode, else the Mode field.
func (s *Server) modeLocked() Mode {
	if s.mode != "" {
		return s.mode
	}
	return s.Mode
}

// prepareLocked checks the configuration and builds the handler for the
// current mode, loading the leases when it is authoritative. It opens no
// socket and changes nothing; installLocked puts the result in place.
// iface may be nil when Netmask is set.
func (s *Server) prepareLocked(iface *net.Interface) (*handler, error) {
	mode := s.modeLocked()
	if mode == Authoritative && !s.hasPool() {
		return nil, ErrNoPool
	}
	st, subnet, err := s.check(iface, mode)
	if err != nil {
		return nil, err
	}
	var own net.HardwareAddr
	if iface != nil {
		own = iface.HardwareAddr
	}
	h := &handler{s: st, ownMAC: own, subnet: subnet, port: s.port(), pxePort: s.pxePort(), clientPort: s.clientPort(), log: s.logger()}
	if mode == Authoritative {
		if h.leases, err = s.openLeases(st); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// installLocked makes h the handler that answers.
func (s *Server) installLocked(h *handler) {
	s.mode = h.s.mode
	if h.leases != nil {
		s.leases = h.leases
	}
	s.h.Store(h)
}

func (s *Server) hasPool() bool { return s.Pool.Start != nil && s.Pool.End != nil }

// openLeases loads the lease store for the pool, with the settings st.
func (s *Server) openLeases(st settings) (*leaseStore, error) {
	if !s.hasPool() {
		return nil, ErrNoPool
	}
	if st.netmask == nil {
		return nil, fmt.Errorf("dhcp: authoritative mode needs the subnet mask: netmask not set and %s has no address %s to take it from", s.Interface, st.serverIP)
	}
	ls, err := newLeaseStore(s.Pool, st.serverIP, st.netmask, []net.IP{st.router}, st.leaseTime, s.LeaseDir, time.Now())
	if err != nil {
		return nil, fmt.Errorf("dhcp: %w", err)
	}
	log := s.logger()
	ls.saveFailed = func(err error) {
		log.Error("dhcp: leases not saved", "dir", s.LeaseDir, "err", err)
	}
	return ls, nil
}

func hasAddr(iface *net.Interface, ip net.IP) bool {
	addrs, err := iface.Addrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// openProbeLocked opens the probe's sockets in the server's namespace.
func (s *Server) openProbeLocked() error {
	if s.probe != nil {
		return nil
	}
	port := s.clientPort()
	var ps probeSockets
	err := s.ns.run(func() error {
		c, err := listenUDP(s.Interface, port)
		if err != nil {
			return &ListenError{Port: port, Interface: s.Interface, Err: err}
		}
		f, err := openFrameConn(s.ifIndex, port)
		if err != nil {
			c.Close()
			return &ListenError{Port: port, Interface: s.Interface, Err: fmt.Errorf("authorization probe: %w", err)}
		}
		ps = probeSockets{udp: c, frames: f, dst: &net.UDPAddr{IP: net.IPv4bcast, Port: s.port()}, st: &s.probeStats}
		return nil
	})
	if err != nil {
		if ps.udp != nil {
			ps.close()
		}
		return err
	}
	s.probe = &ps
	s.logger().Info("dhcp: authorization probe ready", "port", port, "proto", "udp", "iface", s.Interface)
	s.emit(tracker.Event{Stage: tracker.StageDHCP, Event: tracker.KindListening, Port: port, Proto: "udp", Detail: "dhcp authorization probe on " + s.Interface})
	return nil
}

// Serve answers requests until Shutdown or until ctx is done, and returns
// nil then. It calls Listen first if that has not been done.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	s.authzLocked()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.serving {
		s.mu.Unlock()
		return errors.New("dhcp: already serving")
	}
	if !s.listening {
		s.mu.Unlock()
		if err := s.Listen(); err != nil {
			return err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return ErrServerClosed
		}
		if s.serving {
			s.mu.Unlock()
			return errors.New("dhcp: already serving")
		}
	}
	s.serving = true
	// Several readers per socket, one per CPU: decoding and answering
	// run in parallel while the lease store keeps its own lock.
	for _, l := range s.conns {
		for range max(1, runtime.GOMAXPROCS(0)) {
			s.wg.Add(1)
			go s.readLoop(l)
		}
	}
	if gen, on := s.auth.generation(); on && s.probe != nil {
		s.startProbeLoopLocked(gen)
	}
	done := s.done
	s.startSyncLocked()
	s.mu.Unlock()

	select {
	case <-ctx.Done():
		s.Shutdown(context.Background())
	case <-done:
	}
	s.wg.Wait()
	return nil
}

// startSyncLocked starts syncLoop once the server serves and has leases.
func (s *Server) startSyncLocked() {
	if s.syncing || !s.serving || s.closed || s.leases == nil {
		return
	}
	s.syncing = true
	s.wg.Add(1)
	go s.syncLoop(s.leases, s.done)
}

// syncLoop flushes the lease journal to disk every syncEvery until done.
func (s *Server) syncLoop(l *leaseStore, done <-chan struct{}) {
	defer s.wg.Done()
	t := time.NewTicker(syncEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.sync()
		case <-done:
			return
		}
	}
}

// ListenAndServe is Listen and Serve until Shutdown.
func (s *Server) ListenAndServe() error {
	if err := s.Listen(); err != nil {
		return err
	}
	return s.Serve(context.Background())
}

// Shutdown closes every socket and waits for the server's goroutines, or
// until ctx is done. Leases are on disk: a final snapshot is written.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.authzLocked()
	if !s.closed {
		s.closed = true
		close(s.done)
		for _, l := range s.conns {
			l.c.Close()
		}
		if s.probe != nil {
			s.probe.close()
			s.probe = nil
		}
		if s.probeStop != nil {
			close(s.probeStop)
			s.probeStop, s.probeDone = nil, nil
		}
	}
	s.mu.Unlock()

	waited := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	s.ns.close()
	s.ns = nil
	ls := s.leases
	s.mu.Unlock()
	if ls != nil {
		// A last snapshot: leases.json holds every lease, the journal is empty.
		if err := ls.close(); err != nil {
			return fmt.Errorf("dhcp: save leases: %w", err)
		}
	}
	return nil
}

// Read batching: requests taken per system call, and the largest datagram
// read (a jumbo frame; DHCP messages are far smaller).
const (
	readBatch    = 32
	maxPacket    = 9216
	socketBuffer = 4 << 20
)

// readLoop serves one socket until it is closed. Under load one system
// call reads many requests and one sends their replies (recvmmsg and
// sendmmsg through golang.org/x/net/ipv4).
func (s *Server) readLoop(l listener) {
	defer s.wg.Done()
	log := s.logger()
	// Room for bursts (a switch full of machines powered on at once).
	l.c.SetReadBuffer(socketBuffer)
	l.c.SetWriteBuffer(socketBuffer)
	pc := ipv4.NewPacketConn(l.c)
	in := make([]ipv4.Message, readBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, maxPacket)}
	}
	for {
		n, err := pc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Debug("dhcp: read", "port", l.port, "proto", "udp", "err", err)
			select {
			case <-s.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		// Replies go out one by one as they are ready: a burst of them
		// could overflow a client's receive buffer (perfdhcp, simulating
		// thousands of clients on one socket, shows it).
		for _, m := range in[:n] {
			l.st.In(m.N)
			src, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			if reply, dest := s.serveOne(l, m.Buffers[0][:m.N], src); reply != nil {
				if sent, err := l.c.WriteToUDP(reply, dest); err != nil {
					log.Warn("dhcp: send reply", "ip", dest.IP.String(), "port", l.port, "proto", "udp", "err", err)
				} else {
					l.st.Out(sent)
				}
			}
		}
	}
}

// serveOne decides the answer to one datagram: the reply's bytes and
// where they go, or nil. Nothing in it stops the server.
func (s *Server) serveOne(l listener, b []byte, src *net.UDPAddr) ([]byte, *net.UDPAddr) {
	log := s.logger()
	if err := precheck(b); err != nil {
		log.Debug("dhcp: ignored malformed packet", "port", l.port, "proto", "udp", "from", src.String(), "reason", err)
		return nil, nil
	}
	// One handler for the whole packet: a mode change applies to the next.
	h := s.h.Load()
	if h.s.mode == Off {
		if log.Enabled(context.Background(), slog.LevelDebug) {
			// precheck made sure chaddr is there.
			log.Debug("dhcp: not answering: mode off", "mac", net.HardwareAddr(b[28:28+int(b[2])]).String(), "port", l.port, "proto", "udp")
		}
		return nil, nil
	}
	m, err := dhcpv4.FromBytes(b)
	if err != nil {
		log.Debug("dhcp: ignored malformed packet", "port", l.port, "proto", "udp", "from", src.String(), "reason", err)
		return nil, nil
	}
	mac := m.ClientHWAddr.String()
	if !s.auth.allowsAnswers() {
		log.Debug("dhcp: not answering: not authorized", "mac", mac, "port", l.port, "proto", "udp")
		return nil, nil
	}
	out := h.handle(m, l.pxe, src, time.Now())
	for _, e := range out.events {
		s.emit(e)
	}
	if out.reply == nil {
		if log.Enabled(context.Background(), slog.LevelDebug) {
			log.Debug("dhcp: no reply", "mac", mac, "port", l.port, "proto", "udp", "type", m.MessageType().String(), "reason", out.drop)
		}
		return nil, nil
	}
	if log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("dhcp: reply", "mac", mac, "ip", out.reply.YourIPAddr.String(), "port", l.port, "proto", "udp",
			"type", out.reply.MessageType().String(), "to", out.dest.String(), "file", out.reply.BootFileName)
	}
	return out.reply.ToBytes(), out.dest
}

func (s *Server) authInterval() time.Duration {
	if s.AuthInterval > 0 {
		return s.AuthInterval
	}
	return DefaultAuthInterval
}

func (s *Server) probeWait() time.Duration {
	if s.ProbeWait > 0 {
		return s.ProbeWait
	}
	return DefaultProbeWait
}

func (s *Server) startProbeLoopLocked(gen uint64) {
	stop, done := make(chan struct{}), make(chan struct{})
	s.probeStop, s.probeDone = stop, done
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		s.probeLoop(gen, stop)
	}()
}

// probeLoop probes at once, then every AuthInterval and when kicked.
func (s *Server) probeLoop(gen uint64, stop <-chan struct{}) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-s.kick:
		}
		s.runProbe(gen)
		t.Reset(s.authInterval())
	}
}

// runProbe probes once and hands the result to the authorizer.
func (s *Server) runProbe(gen uint64) error {
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	s.mu.Lock()
	ps, mac, closed := s.probe, s.ifMAC, s.closed
	s.mu.Unlock()
	if cur, on := s.auth.generation(); closed || !on || cur != gen || ps == nil {
		return errors.New("dhcp: authorization is off")
	}
	seen, err := probeOnce(ps, mac, s.ServerIP.To4(), s.clientPort(), s.probeWait())
	if err != nil {
		if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
			return errors.New("dhcp: authorization probe stopped")
		}
		s.auth.failed(gen, err)
		return fmt.Errorf("dhcp: %w", err)
	}
	s.auth.record(gen, seen)
	return nil
}

// Probe checks for other DHCP servers now and waits for the result (see
// Authorized). It fails when authorization is off or the server is not
// listening.
func (s *Server) Probe(ctx context.Context) error {
	a := s.authz()
	gen, on := a.generation()
	if !on {
		return errors.New("dhcp: authorization is off")
	}
	s.mu.Lock()
	if !s.listening || s.closed {
		s.mu.Unlock()
		return errors.New("dhcp: not listening")
	}
	s.wg.Add(1)
	s.mu.Unlock()
	res := make(chan error, 1)
	go func() {
		defer s.wg.Done()
		res <- s.runProbe(gen)
	}()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SetAuthorization turns the DHCP authorization check on or off at once.
// Turning it on opens the probe's sockets, probes immediately and answers
// nothing until that first probe has finished; turning it off closes them
// and the server answers as configured.
func (s *Server) SetAuthorization(on bool) {
	s.authMu.Lock()
	defer s.authMu.Unlock()
	a := s.authz()
	if _, was := a.generation(); was == on {
		return
	}
	if !on {
		s.mu.Lock()
		ps, stop, done := s.probe, s.probeStop, s.probeDone
		s.probe, s.probeStop, s.probeDone = nil, nil, nil
		s.mu.Unlock()
		a.setEnabled(false)
		if stop != nil {
			close(stop)
		}
		if ps != nil {
			ps.close()
		}
		if done != nil {
			<-done
		}
		s.logger().Info("dhcp: authorization check off", "iface", s.Interface)
		return
	}
	gen := a.setEnabled(true)
	s.mu.Lock()
	if !s.listening || s.closed {
		s.mu.Unlock()
		return
	}
	err := s.openProbeLocked()
	if err == nil && s.serving {
		s.startProbeLoopLocked(gen)
	}
	s.mu.Unlock()
	if err != nil {
		s.logger().Error("dhcp: authorization probe", "iface", s.Interface, "err", err)
		a.failed(gen, err)
	}
}

// SetAuthorizedServers replaces the list of other DHCP servers allowed on
// the link. The last probe is judged again at once, and a new probe is
// started when the server is serving.
func (s *Server) SetAuthorizedServers(ips []net.IP) {
	a := s.authz()
	a.setAllowed(ips)
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// AuthorizationEnabled reports whether the DHCP authorization check is on.
func (s *Server) AuthorizationEnabled() bool {
	_, on := s.authz().generation()
	return on
}

// Authorized reports whether the server answers now, and why, for the
// console.
func (s *Server) Authorized() (bool, string) {
	return s.authz().status()
}

// Leases returns the bound leases (active and expired), by address; nil
// until the server has been authoritative. Leases are kept when the mode
// changes away from authoritative, and returned then too.
func (s *Server) Leases() []Lease {
	s.mu.Lock()
	ls := s.leases
	s.mu.Unlock()
	if ls == nil {
		return nil
	}
	return ls.leases()
}

// CurrentMode reports the mode the server answers in now (before Listen:
// the mode it will start in).
func (s *Server) CurrentMode() Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.modeLocked()
}

// SetMode switches the server to mode m at once; the next packet is
// answered in m. The sockets stay open in every mode (and the
// authorization probe keeps running): in Off every request is ignored.
// Authoritative needs a Pool (ErrNoPool) and a netmask; the leases are
// loaded from LeaseDir the first time the server becomes authoritative
// and kept when it leaves that mode. Before Listen, SetMode chooses the
// mode Listen starts in. After Shutdown it returns ErrServerClosed.
func (s *Server) SetMode(m Mode) error {
	if err := checkMode(m); err != nil {
		return err
	}
	s.modeMu.Lock()
	defer s.modeMu.Unlock()
	s.mu.Lock()
	s.authzLocked()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if m == Authoritative && !s.hasPool() {
		s.mu.Unlock()
		return ErrNoPool
	}
	old := s.modeLocked()
	if old == m {
		s.mu.Unlock()
		return nil
	}
	cur := s.h.Load()
	if cur == nil {
		// Not listening yet: Listen starts in m.
		s.mode = m
		s.mu.Unlock()
		s.modeChanged(old, m)
		return nil
	}
	ls := s.leases
	s.mu.Unlock()

	loaded := false
	if m == Authoritative && ls == nil {
		// Reading the leases may take a while; packets keep being
		// answered in the old mode meanwhile.
		var err error
		if ls, err = s.openLeases(cur.s); err != nil {
			return err
		}
		loaded = true
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		if loaded {
			ls.close()
		}
		return ErrServerClosed
	}
	s.installLocked(cur.withMode(m, ls))
	s.startSyncLocked()
	s.mu.Unlock()
	s.modeChanged(old, m)
	return nil
}

// modeChanged logs and reports a mode change.
func (s *Server) modeChanged(old, m Mode) {
	s.logger().Info("dhcp: mode changed", "mode", string(m), "from", string(old), "iface", s.Interface)
	s.emit(tracker.Event{Stage: tracker.StageDHCP, Event: tracker.KindDone, Port: s.port(), Proto: "udp", Detail: "mode " + string(m)})
}

// Stats returns the traffic counters by port: the DHCP port (67) and the
// PXE boot server (4011) once listening, and the authorization probe's
// client port (68) while its sockets are open. Packets and bytes are UDP
// datagrams and their payloads; for the probe, "in" counts the answers
// captured while a probe listens.
func (s *Server) Stats() map[int]stats.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int]stats.Snapshot, 3)
	for _, l := range s.conns {
		out[l.port] = l.st.Snapshot()
	}
	if s.probe != nil {
		out[s.clientPort()] = s.probeStats.Snapshot()
	}
	return out
}
