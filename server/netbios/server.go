// Package netbios is netdeploy's NetBIOS over TCP/IP (RFC 1001, RFC
// 1002), what Windows setup and Samba's tools use to find the deployment
// server by name:
//
//   - the name service on UDP 137 (Server): it answers name queries for
//     the server's name and node status requests, as a B node that owns
//     its names and registers them nowhere;
//   - the datagram service on UDP 138 (DatagramServer): it holds the port
//     and drops what arrives (browser announcements and the like);
//   - the session service framing of TCP 139 and SMB2's direct TCP on 445
//     (ReadSessionRequest, WritePositiveResponse, WriteNegativeResponse,
//     ReadFrame, WriteFrame), for the SMB server.
//
// The wire format (name.go, packet.go, dgram.go, session.go) is pure,
// the decisions (decide.go) are made without sockets, and this file with
// sock_*.go serves them.
package netbios

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/netdeploy/netdeploy/server/serving"
	"github.com/netdeploy/netdeploy/server/stats"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// Defaults.
const (
	DefaultNamePort     = 137
	DefaultDatagramPort = 138
	DefaultSessionPort  = 139
	DefaultWorkgroup    = "WORKGROUP"
)

// Server is the NetBIOS name service (RFC 1002 section 4.2) on UDP 137.
// It answers a NAME QUERY REQUEST for NAME<00>, NAME<20>, WORKGROUP<00>
// (a group name) and the wildcard *<00> and *<20> with the server's IPv4
// address, and a NODE STATUS REQUEST (`nmblookup -A`, `nbtstat -A`) with
// its names and MAC. The reply goes by unicast to the address and port
// the query came from, broadcast or not. Registrations, releases,
// refreshes, responses of other nodes and queries for other names are
// ignored (logged at debug).
//
// Set the fields, then call ListenAndServe, or Serve with a socket from
// ListenUDP; the fields must not change after that.
type Server struct {
	// Name is the server's NetBIOS name (required): 1 to 15 printable
	// ASCII bytes without . \ / : * ? " < > |, matched without case and
	// announced in upper case.
	Name string
	// Workgroup is announced in node status as a group name; "":
	// DefaultWorkgroup. Same rules as Name, and it must differ from it.
	Workgroup string
	// IP is the IPv4 address given in answers (required).
	IP net.IP
	// MAC is the node status response's unit ID; nil: zeros.
	MAC net.HardwareAddr
	// Interface is the interface ListenAndServe binds to
	// (SO_BINDTODEVICE, Linux only); "": every interface.
	Interface string
	// Port is where ListenAndServe listens; 0: DefaultNamePort.
	Port int
	// Events receives a done event (stage smb) for every answered query;
	// nil: none.
	Events tracker.Emitter
	// Log receives diagnostics; nil: discarded.
	Log *slog.Logger

	svc udpService
}

// ListenAndServe opens 0.0.0.0 on Port (bound to Interface when set) and
// calls Serve.
func (s *Server) ListenAndServe() error {
	if _, err := newTable(s.Name, s.Workgroup, s.IP, s.MAC); err != nil {
		return err
	}
	conn, err := ListenUDP(s.Interface, orDefault(s.Port, DefaultNamePort))
	if err != nil {
		return err
	}
	return s.Serve(conn)
}

// Serve answers the queries arriving on conn until Shutdown, and then
// returns nil. Serve closes conn. If conn is closed by someone else it
// returns an error wrapping net.ErrClosed. A configuration error is
// returned at once (conn closed).
//
// conn must receive broadcasts: bind it to 0.0.0.0 (ListenUDP), not to
// the interface's unicast address.
func (s *Server) Serve(conn *net.UDPConn) error {
	t, err := newTable(s.Name, s.Workgroup, s.IP, s.MAC)
	if err != nil {
		conn.Close()
		return err
	}
	return s.svc.serve(conn, "name service", s.logger(), func(b []byte, from netip.AddrPort) {
		s.handle(conn, t, b, from)
	})
}

// Shutdown stops Serve (which then returns nil) and waits for it, or for
// ctx to end.
func (s *Server) Shutdown(ctx context.Context) error { return s.svc.shutdown(ctx) }

// Stats returns the traffic counters: datagrams received, replies sent.
func (s *Server) Stats() stats.Snapshot { return s.svc.st.Snapshot() }

func (s *Server) logger() *slog.Logger { return logger(s.Log) }

// handle answers one datagram. It never blocks for long: a reply is one
// send on the same socket.
func (s *Server) handle(conn *net.UDPConn, t *table, b []byte, from netip.AddrPort) {
	s.svc.st.In(len(b))
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	ip := from.Addr().String()
	log := s.logger().With("ip", ip, "port", int(from.Port()), "proto", "udp")
	v, out := t.answer(b)
	if out == nil {
		log.Debug("netbios: name service packet ignored", "reason", v.detail, "len", len(b))
		return
	}
	if !replyable(from) {
		log.Debug("netbios: no reply to this source", "detail", v.detail)
		return
	}
	n, err := conn.WriteToUDPAddrPort(out, from)
	if err != nil {
		log.Warn("netbios: reply not sent", "detail", v.detail, "err", err)
		return
	}
	s.svc.st.Out(n)
	log.Debug("netbios: answered", "detail", v.detail)
	if s.Events != nil {
		// A name lookup is a step towards SMB, not a finished SMB stage.
		s.Events.Emit(tracker.Event{Time: time.Now(), IP: ip, Stage: tracker.StageSMB, Event: tracker.KindProgress,
			Port: DefaultNamePort, Proto: "udp", Peer: from.String(), Detail: v.detail})
	}
}

// replyable reports whether a reply may go to from: a unicast IPv4
// address and a port (no answers to spoofed broadcast or multicast
// sources).
func replyable(from netip.AddrPort) bool {
	a := from.Addr()
	return a.Is4() && from.Port() != 0 && !a.IsUnspecified() && !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

func logger(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// udpService is the serving loop both UDP servers share: the sockets in
// use, shutdown, and the traffic counter.
type udpService struct {
	st      stats.Counter
	mu      sync.Mutex
	closing bool
	conns   map[*net.UDPConn]struct{}
	wg      sync.WaitGroup
}

// serve reads datagrams from conn and hands each to handle (with buf
// reused: handle must not keep it) until shutdown or a closed socket.
func (u *udpService) serve(conn *net.UDPConn, what string, log *slog.Logger, handle func([]byte, netip.AddrPort)) error {
	if !u.add(conn) {
		conn.Close()
		return nil
	}
	defer u.remove(conn)
	la, _ := conn.LocalAddr().(*net.UDPAddr)
	port := 0
	if la != nil {
		port = la.Port
	}
	log.Info("netbios: "+what+" listening", "port", port, "proto", "udp", "addr", conn.LocalAddr().String())
	buf := make([]byte, 65536)
	var backoff serving.Backoff
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if u.isClosing() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("netbios: serve: %w", err)
			}
			// Transient (ENOBUFS, an ICMP error reported on the socket):
			// back off as net/http does.
			pause := backoff.Next()
			log.Warn("netbios: read error", "port", port, "proto", "udp", "err", err, "retry_in", pause)
			time.Sleep(pause)
			continue
		}
		backoff.Reset()
		safely(log, func() { handle(buf[:n], from) })
	}
}

// safely runs fn and logs a panic instead of letting it end the server:
// no datagram may stop it, even one that hits a bug.
func safely(log *slog.Logger, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("netbios: panic handling a datagram", "panic", fmt.Sprint(r))
		}
	}()
	fn()
}

func (u *udpService) add(conn *net.UDPConn) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closing {
		return false
	}
	if u.conns == nil {
		u.conns = map[*net.UDPConn]struct{}{}
	}
	u.conns[conn] = struct{}{}
	u.wg.Add(1)
	return true
}

func (u *udpService) remove(conn *net.UDPConn) {
	u.mu.Lock()
	delete(u.conns, conn)
	u.mu.Unlock()
	conn.Close()
	u.wg.Done()
}

func (u *udpService) isClosing() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.closing
}

// shutdown closes every socket and waits for the serve loops to return.
func (u *udpService) shutdown(ctx context.Context) error {
	u.mu.Lock()
	u.closing = true
	for c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	done := make(chan struct{})
	go func() {
		u.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("netbios: shutdown: %w", ctx.Err())
	}
}
