package dcerpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	msdcerpc "github.com/oiweiwei/go-msrpc/dcerpc"

	"github.com/netdeploy/netdeploy/server/ntlmssp"
	"github.com/netdeploy/netdeploy/server/serving"
	"github.com/netdeploy/netdeploy/server/stats"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// Defaults for zero Server fields.
const (
	DefaultMaxConns         = 256
	DefaultMaxFrag          = 5840
	DefaultMaxCallSize      = 4 << 20 // [MS-RPCE]: a request carries at most 4 MB of stub
	DefaultIdleTimeout      = 2 * time.Minute
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultLogonLimit       = 5
	DefaultLogonBlock       = 5 * time.Minute
	DefaultComputerName     = "NETDEPLOY"

	// reassemblyBudget bounds the memory of all requests being
	// reassembled together (MaxCallSize if that is larger).
	reassemblyBudget = 64 << 20
)

// Interface is an RPC interface the server exports.
type Interface struct {
	// Name names the interface in events and logs, e.g. "WdsRpcInterface".
	Name string
	// Syntax is the abstract syntax: interface UUID and version, e.g.
	// *wdsrpcinterface.InterfaceSyntaxV1_0. A client binding to the same
	// major version and a minor version not above it gets the interface.
	Syntax msdcerpc.SyntaxID
	// Handle serves the calls, e.g. wdsrpcinterface.NewInterfaceServerHandle.
	// It gets the request stub and the caller in ctx (CallerFrom). A nil
	// operation with no error means an unknown opnum; a nil operation
	// with an error, a stub that did not unmarshal. Return Fault(status)
	// to fail a call with a given status.
	Handle msdcerpc.ServerHandle
}

// Server is a connection-oriented DCE/RPC server (ncacn_ip_tcp). Set the
// fields before calling Serve; zero fields take the documented defaults.
// A Server must not be copied after first use.
type Server struct {
	// Interfaces are the interfaces served.
	Interfaces []Interface
	// Accounts are the logons accepted over NTLM and SPNEGO (NTLMv2
	// only). Empty: nobody can authenticate (NTLM anonymous logons still
	// work unless RefuseAnonymous; they are unauthenticated callers).
	Accounts []Account
	// AccountLookup, if set, finds logons beyond Accounts by user name
	// (the one-time credentials of booting clients).
	AccountLookup func(user string) (Account, bool)
	// RefuseAnonymous refuses NTLM anonymous (null session) logons.
	RefuseAnonymous bool
	// ComputerName is the NetBIOS name in the NTLM CHALLENGE.
	// "": DefaultComputerName.
	ComputerName string
	// Port is reported in events and as the bind_ack secondary address.
	// 0: the port the connection arrived on.
	Port int
	// MaxConns caps concurrent connections; connections beyond it are
	// closed at once. 0: DefaultMaxConns.
	MaxConns int
	// MaxFrag is the largest fragment accepted and sent (the client may
	// negotiate it down, never below 1432). 0: DefaultMaxFrag.
	MaxFrag int
	// MaxCallSize is the largest reassembled request stub; larger calls
	// fail with access denied, as [MS-RPCE] has it. 0: DefaultMaxCallSize.
	// The requests being reassembled on all connections share 64 MiB (or
	// MaxCallSize if larger); beyond it calls fail with
	// nca_s_server_too_busy.
	MaxCallSize int
	// IdleTimeout closes a connection that completes no PDU for this
	// long. 0: DefaultIdleTimeout.
	IdleTimeout time.Duration
	// HandshakeTimeout closes a new connection that completes no PDU for
	// this long. 0: DefaultHandshakeTimeout (or IdleTimeout if shorter).
	HandshakeTimeout time.Duration
	// LogonLimit failed logons from one address within a minute make the
	// server refuse that address's binds for LogonBlock. 0:
	// DefaultLogonLimit, DefaultLogonBlock.
	LogonLimit int
	LogonBlock time.Duration
	// Events receives client events. Nil: tracker.Nop{}.
	Events tracker.Emitter
	// Log receives diagnostics. Nil: discarded.
	Log *slog.Logger

	// noTimestamp leaves MsvAvTimestamp out of the CHALLENGE, so that
	// clients send no MIC (tests).
	noTimestamp bool
	// budget overrides the reassembly budget (tests).
	budget int64

	once      sync.Once
	ifaces    []serverIface
	limiter   ntlmssp.LogonLimiter
	baseCtx   context.Context
	cancel    context.CancelFunc
	assocNext atomic.Uint32
	pending   atomic.Int64 // bytes held by requests in reassembly

	listeners serving.Listeners // and whether Shutdown began

	mu       sync.Mutex
	conns    map[*conn]struct{}
	wg       sync.WaitGroup
	lastFull time.Time // last "too many connections" warning

	stats stats.Counter
}

// serverIface is an Interface with its syntax in wire form.
type serverIface struct {
	syntax syntaxID
	iface  *Interface
}

func (s *Server) init() {
	s.once.Do(func() {
		for i := range s.Interfaces {
			it := &s.Interfaces[i]
			s.ifaces = append(s.ifaces, serverIface{syntax: toSyntax(&it.Syntax), iface: it})
		}
		s.limiter.Limit = orDefault(s.LogonLimit, DefaultLogonLimit)
		s.limiter.Block = orDefault(s.LogonBlock, DefaultLogonBlock)
		s.limiter.Now = time.Now
		s.baseCtx, s.cancel = context.WithCancel(context.Background())
		s.assocNext.Store(uint32(time.Now().UnixNano()&0xffff) << 8)
	})
}

// Stats returns the traffic counters: PDUs and bytes in and out, and
// Active, the open connections.
func (s *Server) Stats() stats.Snapshot { return s.stats.Snapshot() }

// ListenAndServe listens on the TCP address addr (":135" if empty) and
// calls Serve.
func (s *Server) ListenAndServe(addr string) error {
	if addr == "" {
		addr = ":135"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("dcerpc: listen: %w", err)
	}
	return s.Serve(l)
}

// Serve accepts connections on l until Shutdown, and then returns nil.
// Serve closes l. If l is closed by someone else it returns an error
// wrapping net.ErrClosed.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	if !s.listeners.Add(l) {
		l.Close()
		return nil
	}
	defer s.listeners.Remove(l)
	s.logger().Info("dcerpc listening", "addr", l.Addr().String())
	var backoff serving.Backoff
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.listeners.Closing() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("dcerpc: serve: %w", err)
			}
			// Transient (e.g. EMFILE).
			pause := backoff.Next()
			s.logger().Warn("dcerpc accept error", "err", err, "retry_in", pause)
			time.Sleep(pause)
			continue
		}
		backoff.Reset()
		c := s.newConn(nc)
		if !s.admit(c) {
			nc.Close()
			continue
		}
		go s.serveConn(c)
	}
}

// Shutdown stops accepting connections (Serve returns nil), sends a
// shutdown PDU to idle connections and closes them, waits for calls in
// progress to finish, and returns nil. When ctx ends first it closes the
// remaining connections, cancels the handlers' context and returns ctx's
// error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.listeners.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.closeIfIdle()
	}
	s.mu.Unlock()
	err := serving.Drain(ctx, &s.wg, func() {
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		s.cancel()
	})
	if err != nil {
		return fmt.Errorf("dcerpc: shutdown: %w", err)
	}
	return nil
}

// admit registers a new connection unless the server is closing or full.
func (s *Server) admit(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listeners.Closing() {
		return false
	}
	if limit := orDefault(s.MaxConns, DefaultMaxConns); len(s.conns) >= limit {
		if now := time.Now(); now.Sub(s.lastFull) >= time.Minute {
			s.lastFull = now
			c.log.Warn("dcerpc too many connections; closing new ones", "max", limit)
		}
		return false
	}
	if s.conns == nil {
		s.conns = map[*conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.stats.Open()
	return true
}

// ServeConn serves one connection that is already established: an SMB
// named pipe (ncacn_np, [MS-RPCE] 2.1.1.2) presented as a net.Conn
// whose reads and writes carry whole PDUs. It returns when the
// connection ends and closes nc. The connection counts towards MaxConns
// and Shutdown closes it like the accepted ones; a server that is
// closing or full closes nc at once and returns an error.
func (s *Server) ServeConn(nc net.Conn) error {
	s.init()
	c := s.newConn(nc)
	if !s.admit(c) {
		nc.Close()
		return errors.New("dcerpc: serve conn: server closing or full")
	}
	s.serveConn(c)
	return nil
}

func (s *Server) serveConn(c *conn) {
	defer func() {
		c.cancel()
		c.nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.stats.Close()
		s.wg.Done()
	}()
	c.serve()
}

// lookup returns the interface a client binds to: same UUID and major
// version, minor version not above the server's (C706 12.6.3.1).
func (s *Server) lookup(abstract syntaxID) *Interface {
	for _, it := range s.ifaces {
		if it.syntax.uuid == abstract.uuid && it.syntax.major == abstract.major && abstract.minor <= it.syntax.minor {
			return it.iface
		}
	}
	return nil
}

// newAssocGroup returns a fresh association group id (never 0).
func (s *Server) newAssocGroup() uint32 {
	for {
		if id := s.assocNext.Add(1); id != 0 {
			return id
		}
	}
}

func (s *Server) maxFrag() int {
	return min(max(orDefault(s.MaxFrag, DefaultMaxFrag), mustRecvFragSize), 0xffff)
}

func (s *Server) maxCallSize() int { return orDefault(s.MaxCallSize, DefaultMaxCallSize) }

func (s *Server) maxPending() int64 {
	if s.budget > 0 {
		return s.budget
	}
	return int64(max(s.maxCallSize(), reassemblyBudget))
}

func (s *Server) idleTimeout() time.Duration { return orDefault(s.IdleTimeout, DefaultIdleTimeout) }

func (s *Server) handshakeTimeout() time.Duration {
	return min(orDefault(s.HandshakeTimeout, DefaultHandshakeTimeout), s.idleTimeout())
}

func (s *Server) computerName() string {
	if s.ComputerName != "" {
		return s.ComputerName
	}
	return DefaultComputerName
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

// portOf returns the port of a TCP address (0 if unknown).
func portOf(a net.Addr) int {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.Port
	}
	if a == nil {
		return 0
	}
	_, p, err := net.SplitHostPort(a.String())
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
