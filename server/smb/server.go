// Package smb is an embedded SMB2/SMB3 file server ([MS-SMB2]) for
// serving deployment images: dialects 2.0.2 to 3.1.1 on TCP 445 (direct
// TCP transport, [MS-SMB2] 2.1) and through the NetBIOS session service
// on TCP 139 ([RFC 1002] 4.3), NTLMv2 logons in SPNEGO, signing and
// per-share encryption, and read-only disk shares plus IPC$.
//
// SMB1 is never spoken: an SMB1 multi-protocol NEGOTIATE is answered
// with an SMB2 NEGOTIATE response ([MS-SMB2] 3.3.5.3.1).
package smb

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netdeploy/netdeploy/server/dcerpc"
	"github.com/netdeploy/netdeploy/server/ntlmssp"
	"github.com/netdeploy/netdeploy/server/serving"
	"github.com/netdeploy/netdeploy/server/stats"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// Defaults for zero Server fields, and fixed limits.
const (
	DefaultName             = "NETDEPLOY"
	DefaultMaxConns         = 256
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultHandshakeTimeout = 15 * time.Second

	// MaxSessions caps the sessions of one connection, MaxTrees the tree
	// connects of one session and MaxOpens the open files of one
	// connection; beyond them requests fail with
	// STATUS_INSUFFICIENT_RESOURCES (sessions, trees) or
	// STATUS_TOO_MANY_OPENED_FILES.
	MaxSessions = 16
	MaxTrees    = 64
	MaxOpens    = 1024

	// maxReadSize is MaxReadSize and MaxTransactSize for the dialects
	// with large MTU support (8 MiB); 2.0.2 gets 64 KiB.
	maxReadSize = 8 << 20
	// maxWriteSize is MaxWriteSize: shares are read-only, so only pipe
	// writes and IOCTL input come in.
	maxWriteSize = 1 << 20
	// maxMessage caps a received message (one transport frame); the
	// longest request is a write or an IOCTL of maxWriteSize.
	maxMessage = maxWriteSize + 64<<10
	// maxCredits caps the credits a client holds ([MS-SMB2] 3.3.1.2).
	maxCredits = 512
	// readBudget caps the READ data held in memory by all connections
	// together; a READ waits until its buffer fits.
	readBudget = 256 << 20
)

// Account is a logon the server accepts: Name is "user" or
// "DOMAIN\user", NTHash the NT hash of the password (NTHash).
type Account = ntlmssp.Account

// NTHash returns the NT hash of a password for Account.NTHash.
func NTHash(password string) [16]byte { return ntlmssp.NTHash(password) }

// Share is a disk share.
type Share struct {
	// Name is the share name (\\server\Name), compared without case.
	// "IPC$" is reserved: the server always offers it.
	Name string
	// Path is the directory served, read-only, confined with os.Root.
	// Ignored when FS is set.
	Path string
	// FS serves the share instead of Path.
	FS FS
	// Comment is the share's remark in share listings.
	Comment string
	// Encrypt requires encryption on this share ([MS-SMB2] 3.3.5.7,
	// SMB2_SHAREFLAG_ENCRYPT_DATA): SMB 3.x clients must encrypt every
	// request to it, and clients of the 2.x dialects are refused.
	Encrypt bool
}

// Server is an SMB2/SMB3 server. Set the fields before calling Serve;
// zero fields take the documented defaults. A Server must not be copied
// after first use.
type Server struct {
	// Shares are the disk shares served (IPC$ is added).
	Shares []Share
	// Accounts are the logons accepted (NTLMv2 in SPNEGO only).
	Accounts []Account
	// AccountLookup, if set, finds logons beyond Accounts by user name.
	AccountLookup func(user string) (Account, bool)
	// Guest lets anonymous logons and unknown accounts in as guests
	// (unsigned, unencrypted sessions). Off: they fail with
	// STATUS_LOGON_FAILURE.
	Guest bool
	// RequireSigning makes the server require signed messages on every
	// authenticated session ([MS-SMB2] 3.3.1.5 RequireMessageSigning).
	// Signing is also required when the client requires it.
	RequireSigning bool
	// Name is the server's NetBIOS name in the NTLM CHALLENGE. "":
	// DefaultName.
	Name string
	// Port is reported in events. 0: the port a connection arrived on.
	Port int
	// MaxConns caps concurrent connections; connections beyond it are
	// closed at once. 0: DefaultMaxConns.
	MaxConns int
	// IdleTimeout closes a connection that sends nothing for this long.
	// 0: DefaultIdleTimeout.
	IdleTimeout time.Duration
	// LogonLimit failed logons from one address within a minute refuse
	// that address's logons for LogonBlock. 0: DefaultLogonLimit,
	// DefaultLogonBlock.
	LogonLimit int
	LogonBlock time.Duration
	// HandshakeTimeout closes a connection that has no authenticated
	// session this long after it was accepted. 0: DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// Events receives client events (Stage smb). Nil: tracker.Nop{}.
	Events tracker.Emitter
	// Log receives diagnostics. Nil: discarded.
	Log *slog.Logger

	once      sync.Once
	shares    []*share
	initErr   error
	guid      [16]byte
	startTime time.Time
	nextSess  atomic.Uint64

	listeners serving.Listeners // and whether Shutdown began
	mu        sync.Mutex
	conns     map[*conn]struct{}
	wg        sync.WaitGroup
	lastFull  time.Time

	readFree chan *[]byte // idle READ buffers
	limiter  ntlmssp.LogonLimiter
	bufMu    sync.Mutex
	bufCond  *sync.Cond
	bufUsed  int64

	rpcOnce sync.Once
	rpc     *dcerpc.Server // srvsvc on IPC$

	stats stats.Counter
}

// share is a configured share, opened.
type share struct {
	name    string
	comment string
	fs      FS
	encrypt bool
	ipc     bool
}

func (s *Server) init() {
	s.once.Do(func() {
		s.readFree = make(chan *[]byte, readFreeMax)
		s.limiter.Limit = orDefaultInt(s.LogonLimit, DefaultLogonLimit)
		s.limiter.Block = orDefaultDuration(s.LogonBlock, DefaultLogonBlock)
		s.bufCond = sync.NewCond(&s.bufMu)
		rand.Read(s.guid[:])
		s.startTime = time.Now()
		var b [8]byte
		rand.Read(b[:])
		s.nextSess.Store(uint64(b[0])<<40 | uint64(b[1])<<32 | 1)
		s.shares = append(s.shares, &share{name: "IPC$", comment: "IPC Service", ipc: true})
		for i := range s.Shares {
			sh := &s.Shares[i]
			if sh.Name == "" || strings.EqualFold(sh.Name, "IPC$") || strings.ContainsAny(sh.Name, `\/`) {
				s.initErr = errors.Join(s.initErr, fmt.Errorf("smb: share name %q not allowed", sh.Name))
				continue
			}
			fsys := sh.FS
			if fsys == nil {
				var err error
				if fsys, err = DirFS(sh.Path); err != nil {
					s.initErr = errors.Join(s.initErr, fmt.Errorf("smb: share %s: %w", sh.Name, err))
					continue
				}
			}
			s.shares = append(s.shares, &share{name: sh.Name, comment: sh.Comment, fs: fsys, encrypt: sh.Encrypt})
		}
	})
}

// takeBuffer waits until n more bytes of READ data fit in readBudget
// and takes them. Each connection holds at most one message's worth
// (8 MiB), so the wait always ends.
func (s *Server) takeBuffer(n int64) {
	s.bufMu.Lock()
	for s.bufUsed > 0 && s.bufUsed+n > readBudget {
		s.bufCond.Wait()
	}
	s.bufUsed += n
	s.bufMu.Unlock()
}

// pooledRead is the smallest READ whose buffer comes from the pool.
const pooledRead = 64 << 10

// getReadBuf returns a pooled buffer of length n (a READ response: header
// and data).
// The free list is a channel rather than a sync.Pool: a pool is emptied
// by every garbage collection, and with 8 MiB buffers that happens often
// enough that each transfer would start by allocating again.
func (s *Server) getReadBuf(n int) *[]byte {
	select {
	case bp := <-s.readFree:
		if cap(*bp) >= n {
			*bp = (*bp)[:n]
			return bp
		}
	default:
	}
	b := make([]byte, n, max(n, maxReadSize+256))
	return &b
}

// putReadBuf gives a READ buffer back once its response is written; the
// free list keeps at most readFreeMax of them.
func (s *Server) putReadBuf(bp *[]byte) {
	select {
	case s.readFree <- bp:
	default:
	}
}

// readFreeMax caps the idle READ buffers kept (8 MiB each).
const readFreeMax = 8

func (s *Server) releaseBuffer(n int64) {
	if n == 0 {
		return
	}
	s.bufMu.Lock()
	s.bufUsed -= n
	s.bufMu.Unlock()
	s.bufCond.Broadcast()
}

func (s *Server) findShare(name string) *share {
	for _, sh := range s.shares {
		if strings.EqualFold(sh.name, name) {
			return sh
		}
	}
	return nil
}

// Stats returns the traffic counters: messages and bytes in and out, and
// Active, the open connections.
func (s *Server) Stats() stats.Snapshot { return s.stats.Snapshot() }

func (s *Server) logger() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Server) emitter() tracker.Emitter {
	if s.Events == nil {
		return tracker.Nop{}
	}
	return s.Events
}

func (s *Server) name() string {
	if s.Name == "" {
		return DefaultName
	}
	return s.Name
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout <= 0 {
		return DefaultIdleTimeout
	}
	return s.IdleTimeout
}

func (s *Server) handshakeTimeout() time.Duration {
	if s.HandshakeTimeout <= 0 {
		return DefaultHandshakeTimeout
	}
	return s.HandshakeTimeout
}

// Serve accepts direct-TCP connections (port 445, [MS-SMB2] 2.1) on l
// until Shutdown, and then returns nil. Serve closes l. If l is closed
// by someone else it returns an error wrapping net.ErrClosed. A share
// that cannot be opened makes Serve fail at once.
func (s *Server) Serve(l net.Listener) error { return s.serve(l, false) }

// ServeNetBIOS is Serve for the NetBIOS session service (port 139,
// [RFC 1002] 4.3): each connection starts with a SESSION REQUEST, which
// gets a POSITIVE SESSION RESPONSE, and then carries the same messages.
func (s *Server) ServeNetBIOS(l net.Listener) error { return s.serve(l, true) }

func (s *Server) serve(l net.Listener, netbios bool) error {
	s.init()
	if s.initErr != nil {
		l.Close()
		return s.initErr
	}
	if !s.listeners.Add(l) {
		l.Close()
		return nil
	}
	defer s.listeners.Remove(l)
	s.logger().Info("smb listening", "addr", l.Addr().String(), "netbios", netbios)
	var backoff serving.Backoff
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.listeners.Closing() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("smb: serve: %w", err)
			}
			pause := backoff.Next() // transient, e.g. EMFILE
			s.logger().Warn("smb accept error", "err", err, "retry_in", pause)
			time.Sleep(pause)
			continue
		}
		backoff.Reset()
		c := newConn(s, nc, netbios)
		if !s.admit(c) {
			nc.Close()
			continue
		}
		go func() {
			defer s.wg.Done()
			defer s.remove(c)
			c.serve()
		}()
	}
}

// admit registers a connection, or refuses it beyond MaxConns.
func (s *Server) admit(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listeners.Closing() {
		return false
	}
	maxConns := s.MaxConns
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	if len(s.conns) >= maxConns {
		if time.Since(s.lastFull) > 10*time.Second {
			s.lastFull = time.Now()
			s.logger().Warn("smb too many connections; refusing", "ip", c.ip, "port", c.port, "proto", "tcp", "max", maxConns)
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

func (s *Server) remove(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.stats.Close()
}

// Shutdown stops accepting connections (Serve returns nil), closes idle
// connections, lets requests in progress finish, and returns nil. When
// ctx ends first it closes every connection and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.listeners.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.closeIfIdle()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	defer func() {
		// Every connection has ended (Shutdown returns after done), and
		// with them their pipes: the RPC server has nothing left.
		if s.rpc != nil {
			s.rpc.Shutdown(ctx)
		}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return nil
		case <-tick.C:
			s.mu.Lock()
			for c := range s.conns {
				c.closeIfIdle()
			}
			s.mu.Unlock()
		case <-ctx.Done():
			s.mu.Lock()
			for c := range s.conns {
				c.nc.Close()
			}
			s.mu.Unlock()
			<-done
			return fmt.Errorf("smb: shutdown: %w", ctx.Err())
		}
	}
}

// Defaults for the failed-logon limit, as the RPC service has them.
const (
	DefaultLogonLimit = 5
	DefaultLogonBlock = 5 * time.Minute
)

func orDefaultInt(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}

func orDefaultDuration(v, d time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return d
}
