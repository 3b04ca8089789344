// Package tftp is a read-only TFTP server for network boot: RFC 1350 read
// requests in octet and netascii mode, option negotiation (RFC 2347),
// blksize (RFC 2348), tsize and timeout (RFC 2349), windowsize (RFC 7440)
// and Microsoft's variable window. Every transfer runs on its own UDP
// port taken from the operator's udp_range.
package tftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/netdeploy/netdeploy/server/boot"
	"github.com/netdeploy/netdeploy/server/serving"
	"github.com/netdeploy/netdeploy/server/stats"
	"github.com/netdeploy/netdeploy/server/tracker"
	"github.com/netdeploy/netdeploy/server/udprange"
)

// Defaults for zero Server fields.
const (
	DefaultTimeout     = time.Second
	DefaultRetries     = 5
	DefaultMaxSessions = 256
)

// maxBatch bounds the bytes of one segmented send (a UDP datagram's
// limit, less headers).
const maxBatch = 65000

// eventPort is the Port of every event: the TFTP service port.
const eventPort = 69

// Opener opens the files the server sends; *boot.FS satisfies it. Open
// gets the name as the client sent it and must do its own confinement:
// errors matching boot.ErrInvalidPath are answered with ERROR 2,
// fs.ErrNotExist with ERROR 1.
type Opener interface {
	Open(name string) (boot.File, error)
}

// Server is a read-only TFTP server. Set the fields before calling Serve;
// zero fields take the documented defaults. A Server must not be copied
// after first use.
//
// On Linux, windows of DATA leave in one system call each (UDP
// segmentation offload, falling back to one call per packet), and a
// session may busy-poll briefly for its ACK where that measurably
// shortens the round trip (at most half the CPUs spin at once).
type Server struct {
	// FS is where files come from. Required.
	FS Opener
	// Ports is the range session ports are taken from, read at every new
	// request. Nil: udprange.Default().
	Ports *udprange.Live
	// MaxBlockSize caps the negotiated blksize (set it to the interface
	// MTU minus 32). 0: 65464, the RFC 2348 maximum.
	MaxBlockSize int
	// Timeout is the per-packet retransmission timeout unless the client
	// negotiates one (RFC 2349). 0: DefaultTimeout.
	Timeout time.Duration
	// Retries is how many retransmissions a session makes before it gives
	// up. 0: DefaultRetries.
	Retries int
	// MaxSessions caps concurrent transfers. 0: DefaultMaxSessions.
	MaxSessions int
	// Events receives client events. Nil: tracker.Nop{}.
	Events tracker.Emitter
	// Log receives diagnostics. Nil: discarded.
	Log *slog.Logger

	listeners serving.Listeners // and whether Shutdown began
	mu        sync.Mutex
	forced    bool                        // Shutdown's context ended: sessions are being closed
	conns     map[*session]struct{}       // sessions with a socket
	peers     map[netip.AddrPort]*session // running sessions by client
	active    int                         // requests being served
	spinGate  spinGate                    // sessions busy-polling for ACKs
	wg        sync.WaitGroup

	// Traffic counters (atomics): the service port, and every session
	// port together.
	listenStats, sessionStats stats.Counter
}

// SessionInfo is a transfer in progress, for the console.
type SessionInfo struct {
	Client    string    `json:"client"`     // the client's ip:port
	LocalPort int       `json:"local_port"` // the session's port from udp_range
	File      string    `json:"file"`
	Bytes     int64     `json:"bytes"` // acknowledged by the client so far
	Total     int64     `json:"total"` // size sent (netascii: after conversion)
	Started   time.Time `json:"started"`
}

// Stats returns the traffic counters. listen is the service port (69):
// requests in, ERRORs sent from it out. sessions covers every session
// port: datagrams and bytes sent and received, and Active, the transfers
// in progress (those with a session port).
func (s *Server) Stats() (listen stats.Snapshot, sessions stats.Snapshot) {
	return s.listenStats.Snapshot(), s.sessionStats.Snapshot()
}

// Sessions lists the transfers in progress, oldest first.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	out := make([]SessionInfo, 0, len(s.conns))
	for sess := range s.conns {
		in := sess.info
		in.Bytes = sess.acked.Load()
		out = append(out, in)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b SessionInfo) int {
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		return strings.Compare(a.Client, b.Client)
	})
	return out
}

// errShutdown ends a request that arrives while Shutdown closes sessions.
var errShutdown = errors.New("tftp: server shutting down")

// request is a read request handed from the listener to its goroutine.
type request struct {
	listener *net.UDPConn
	peer     netip.AddrPort
	filename string
	mode     string
	options  []option
	sess     *session
}

// ListenAndServe listens on the UDP address addr (":69" if empty) and
// calls Serve.
func (s *Server) ListenAndServe(addr string) error {
	if addr == "" {
		addr = ":69"
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return fmt.Errorf("tftp: listen: %w", err)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return fmt.Errorf("tftp: listen: %w", err)
	}
	return s.Serve(conn)
}

// Serve answers requests arriving on conn until Shutdown, and then
// returns nil. Serve closes conn. If conn is closed by someone else it
// returns an error wrapping net.ErrClosed.
//
// Session sockets bind to conn's local IP: bind conn to the interface
// address, so that replies leave from the address the client sent to
// (with an unspecified address the kernel picks the source).
func (s *Server) Serve(conn *net.UDPConn) error {
	if s.FS == nil {
		conn.Close()
		return errors.New("tftp: Server.FS is nil")
	}
	if !s.listeners.Add(conn) {
		conn.Close()
		return nil
	}
	defer s.listeners.Remove(conn)
	s.logger().Info("tftp listening", "addr", conn.LocalAddr().String())
	buf := make([]byte, 65536)
	var backoff serving.Backoff
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if s.listeners.Closing() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("tftp: serve: %w", err)
			}
			pause := backoff.Next() // transient, e.g. ENOBUFS
			s.logger().Warn("tftp read error", "err", err, "retry_in", pause)
			time.Sleep(pause)
			continue
		}
		backoff.Reset()
		s.handle(conn, buf[:n], from)
	}
}

// Shutdown stops accepting requests (Serve returns nil), waits for the
// running transfers to end and returns nil. When ctx ends first it closes
// the remaining sessions and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.listeners.Close()
	// A request being admitted holds mu while it checks Closing and adds
	// to wg: once mu is free, every session begun is in wg.
	s.mu.Lock()
	s.mu.Unlock()
	err := serving.Drain(ctx, &s.wg, func() {
		s.mu.Lock()
		s.forced = true
		for sess := range s.conns {
			sess.conn.Close()
		}
		s.mu.Unlock()
	})
	if err != nil {
		return fmt.Errorf("tftp: shutdown: %w", err)
	}
	return nil
}

func (s *Server) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) emitter() tracker.Emitter {
	if s.Events != nil {
		return s.Events
	}
	return tracker.Nop{}
}

func (s *Server) ports() udprange.Range {
	if s.Ports != nil {
		return s.Ports.Get()
	}
	return udprange.Default()
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// handle deals with one datagram on the listening socket. It must not
// block: transfers run in their own goroutines.
func (s *Server) handle(conn *net.UDPConn, b []byte, from netip.AddrPort) {
	s.listenStats.In(len(b))
	peerKey := addrKey(from)
	ip := peerKey.Addr().String()
	log := s.logger().With("ip", ip, "port", from.Port(), "proto", "udp")
	if len(b) < 2 {
		log.Debug("tftp ignoring runt packet", "len", len(b))
		return
	}
	op := opcode(uint16(b[0])<<8 | uint16(b[1]))
	switch op {
	case opRRQ, opWRQ:
	case opDATA, opACK, opERROR, opOACK:
		log.Debug("tftp ignoring stray packet on the service port", "op", op.String())
		return
	default:
		log.Debug("tftp unknown opcode", "op", uint16(op))
		s.reply(conn, from, errIllegalOp, "illegal TFTP operation")
		return
	}
	ev := tracker.Event{Stage: tracker.StageTFTP, Port: eventPort, Proto: "udp", IP: ip, Peer: peerKey.String()}
	pkt, err := decodeRequest(b)
	if err != nil {
		log.Debug("tftp malformed request", "err", err)
		s.reply(conn, from, errIllegalOp, "malformed request")
		s.fail(ev, "malformed request")
		return
	}
	ev.File = displayName(pkt.filename)
	log = log.With("file", ev.File)
	if op == opWRQ {
		log.Info("tftp write request refused")
		s.reply(conn, from, errAccess, "read-only server")
		s.fail(ev, "access violation: read-only server")
		return
	}
	mode := strings.ToLower(pkt.mode)
	if mode != "octet" && mode != "netascii" {
		log.Info("tftp unsupported mode", "mode", pkt.mode)
		s.reply(conn, from, errIllegalOp, "unsupported mode "+pkt.mode)
		s.fail(ev, "unsupported mode "+pkt.mode)
		return
	}

	maxSessions := orDefault(s.MaxSessions, DefaultMaxSessions)
	sess := &session{peer: from, peerKey: peerKey, ev: ev, log: log, emit: s.emitter(), spin: spinner{gate: &s.spinGate}, st: &s.sessionStats}
	s.mu.Lock()
	if s.listeners.Closing() {
		s.mu.Unlock()
		return
	}
	if old := s.peers[peerKey]; old != nil && !old.replied.Load() {
		s.mu.Unlock()
		log.Debug("tftp ignoring repeated request; the session answers it")
		return
	}
	if s.active >= maxSessions {
		s.mu.Unlock()
		log.Warn("tftp too many sessions", "max", maxSessions)
		s.reply(conn, from, errUndefined, "server busy, try again")
		s.fail(ev, fmt.Sprintf("server busy: %d sessions", maxSessions))
		return
	}
	if s.peers == nil {
		s.peers = map[netip.AddrPort]*session{}
	}
	s.peers[peerKey] = sess
	s.active++
	s.wg.Add(1)
	s.mu.Unlock()
	go s.serve(request{listener: conn, peer: from, filename: pkt.filename, mode: mode, options: pkt.options, sess: sess})
}

// serve opens the file, binds a session port and runs the transfer.
func (s *Server) serve(r request) {
	sess := r.sess
	defer func() {
		s.mu.Lock()
		if s.peers[sess.peerKey] == sess {
			delete(s.peers, sess.peerKey)
		}
		s.active--
		s.mu.Unlock()
		s.wg.Done()
	}()

	f, err := s.FS.Open(r.filename)
	if err != nil {
		code, msg, det := openError(err)
		sess.log.Info("tftp open failed", "err", err)
		s.reply(r.listener, r.peer, code, msg)
		s.fail(sess.ev, det)
		return
	}
	defer f.Close()
	var src io.ReaderAt = f
	size := f.Size()
	if r.mode == "netascii" {
		data, err := readNetascii(f, size)
		if err != nil {
			sess.log.Info("tftp netascii failed", "err", err)
			s.reply(r.listener, r.peer, errUndefined, detail(err))
			s.fail(sess.ev, detail(err))
			return
		}
		src, size = bytes.NewReader(data), int64(len(data))
	}
	sess.src, sess.size = src, size
	sess.ev.Total = size
	sess.maxWin = maxWindowSize
	sess.p = negotiate(r.options, size, limits{maxBlockSize: s.MaxBlockSize, maxWindow: sess.maxWin})
	sess.timeout = orDefault(s.Timeout, DefaultTimeout)
	if sess.p.timeout > 0 {
		sess.timeout = sess.p.timeout
	}
	sess.retries = orDefault(s.Retries, DefaultRetries)

	conn, rng, err := s.bind(r.listener, sess)
	if errors.Is(err, errShutdown) {
		s.reply(r.listener, r.peer, errUndefined, "server shutting down")
		s.fail(sess.ev, "server shutting down")
		return
	}
	if err != nil {
		msg := fmt.Sprintf("no free port in udp_range %s", rng)
		sess.log.Warn("tftp "+msg, "err", err)
		s.reply(r.listener, r.peer, errUndefined, msg)
		s.fail(sess.ev, msg)
		return
	}
	defer s.closeSession(sess)
	sess.ev.LocalPort = conn.LocalAddr().(*net.UDPAddr).Port
	sess.log = sess.log.With("local_port", sess.ev.LocalPort)
	sess.pkt = make([]byte, 4+sess.p.blksize)
	if seg := 4 + sess.p.blksize; gsoSupported && (sess.p.window > 1 || sess.p.msft) && size >= 2*int64(sess.p.blksize) && 2*seg <= maxBatch {
		sess.batch = make([]byte, 0, min(gsoMaxSegments, maxBatch/seg)*seg)
		sess.oob = gsoOOB()
	}
	sess.rbuf = make([]byte, 1024)
	sess.chunk = make([]byte, 0, chunkSize(sess.p.blksize, size))
	sess.run()
}

// bind opens a session socket on the listener's IP and a free port of the
// current range, probing upwards (wrapping) from a random start.
func (s *Server) bind(listener *net.UDPConn, sess *session) (*net.UDPConn, udprange.Range, error) {
	rng := s.ports()
	la, _ := listener.LocalAddr().(*net.UDPAddr)
	var ip net.IP
	var zone string
	if la != nil {
		ip, zone = la.IP, la.Zone
	}
	size := rng.Size()
	if size <= 0 {
		return nil, rng, fmt.Errorf("tftp: empty port range %s", rng)
	}
	start := rand.IntN(size)
	var lastErr error
	for i := range size {
		port := rng.First + (start+i)%size
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port, Zone: zone})
		if err == nil {
			sess.conn = conn
			if sess.raw, err = conn.SyscallConn(); err != nil {
				conn.Close()
				return nil, rng, fmt.Errorf("tftp: session socket: %w", err)
			}
			sess.info = SessionInfo{Client: sess.peerKey.String(), LocalPort: conn.LocalAddr().(*net.UDPAddr).Port,
				File: sess.ev.File, Total: sess.size, Started: time.Now()}
			if !s.track(sess) {
				conn.Close()
				return nil, rng, errShutdown
			}
			return conn, rng, nil
		}
		lastErr = err
	}
	return nil, rng, fmt.Errorf("tftp: bind session port: %w", lastErr)
}

// track registers a session so a forced Shutdown can close it.
func (s *Server) track(sess *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.forced {
		return false
	}
	if s.conns == nil {
		s.conns = map[*session]struct{}{}
	}
	s.conns[sess] = struct{}{}
	s.sessionStats.Open()
	return true
}

func (s *Server) closeSession(sess *session) {
	s.mu.Lock()
	delete(s.conns, sess)
	s.sessionStats.Close()
	s.mu.Unlock()
	sess.conn.Close()
}

// reply sends an ERROR from the listening socket.
func (s *Server) reply(conn *net.UDPConn, to netip.AddrPort, code errCode, msg string) {
	n, err := conn.WriteToUDPAddrPort(appendError(nil, code, msg), to)
	if err != nil {
		s.logger().Debug("tftp send error failed", "ip", to.Addr().Unmap().String(), "err", err)
		return
	}
	s.listenStats.Out(n)
}

func (s *Server) fail(ev tracker.Event, det string) {
	ev.Time = time.Now()
	ev.Event = tracker.KindError
	ev.Detail = det
	s.emitter().Emit(ev)
}

// openError maps an Open error to the ERROR code, message and event
// detail.
func openError(err error) (errCode, string, string) {
	switch {
	case errors.Is(err, boot.ErrInvalidPath):
		return errAccess, "access violation", "access violation: " + err.Error()
	case errors.Is(err, fs.ErrNotExist):
		return errNotFound, "file not found", "file not found"
	case errors.Is(err, fs.ErrPermission):
		return errAccess, "access violation", "access violation: permission denied"
	}
	return errUndefined, "cannot open file", "open: " + err.Error()
}

// readNetascii loads a file and converts it to netascii, within
// netasciiMax bytes.
func readNetascii(f boot.File, size int64) ([]byte, error) {
	if size > netasciiMax {
		return nil, fmt.Errorf("tftp: file too large for netascii (max %d bytes)", netasciiMax)
	}
	raw := make([]byte, size)
	if n, err := f.ReadAt(raw, 0); n != len(raw) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("tftp: read: %w", err)
	}
	out, err := toNetascii(raw, netasciiMax)
	if err != nil {
		return nil, fmt.Errorf("tftp: file too large for netascii (max %d bytes)", netasciiMax)
	}
	return out, nil
}

// addrKey is an address in the form sessions compare: IPv4 unmapped, no
// IPv6 zone.
func addrKey(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap().WithZone(""), a.Port())
}

// displayName is the name used in events and logs: cleaned like boot.FS
// does when possible, else the raw name with NULs made visible.
func displayName(name string) string {
	if clean, err := boot.Clean(name); err == nil {
		return clean
	}
	return strings.ReplaceAll(name, "\x00", `\x00`)
}
