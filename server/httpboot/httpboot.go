// Package httpboot serves the boot file system over HTTP (RFC 9110/9112):
// the generated iPXE script, the boot entry's kernel and initrd, the iPXE
// binaries and the TFTP root, with byte ranges, so iPXE loads big files
// fast.
package httpboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/netutil"

	"github.com/netdeploy/netdeploy/server/boot"
	"github.com/netdeploy/netdeploy/server/stats"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// Opener opens boot files by the name a client asked for.
type Opener interface {
	Open(name string) (boot.File, error)
}

// Server is the HTTP boot server.
type Server struct {
	// FS serves every file but the script. Required.
	FS Opener
	// Script returns the iPXE script for a client (mac may be ""). Nil:
	// boot.ipxe comes from FS.
	Script func(mac string) []byte
	// MACForIP names the client at an address when its request carries
	// no "mac" parameter (iPXE fetching the DHCP-given script URL); nil or
	// "" leaves the client anonymous.
	MACForIP func(ip string) string
	// Port is reported in events (the listener decides the real port).
	Port int
	// MaxConns caps concurrent connections; 0 means 256.
	MaxConns int
	// ProgressEvery is the interval between progress events; 0 means 250ms.
	ProgressEvery time.Duration
	Events        tracker.Emitter // nil: tracker.Nop{}
	Log           *slog.Logger    // nil: discard

	once  sync.Once
	srv   *http.Server
	stats stats.Counter
}

// Stats returns the traffic counters: requests in (BytesIn counts request
// bodies, which a boot server hardly ever gets), responses out with the
// body bytes written (headers not counted), and Active, the requests being
// served now.
func (s *Server) Stats() stats.Snapshot { return s.stats.Snapshot() }

// countingWriter counts the body bytes of a response.
type countingWriter struct {
	http.ResponseWriter
	c *stats.Counter
}

func (w countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.c.OutBytes(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) init() {
	s.once.Do(func() {
		if s.Events == nil {
			s.Events = tracker.Nop{}
		}
		if s.Log == nil {
			s.Log = slog.New(slog.DiscardHandler)
		}
		if s.MaxConns == 0 {
			s.MaxConns = 256
		}
		if s.ProgressEvery == 0 {
			s.ProgressEvery = 250 * time.Millisecond
		}
		s.srv = &http.Server{
			Handler:           s,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       60 * time.Second,
			ErrorLog:          slog.NewLogLogger(s.Log.Handler(), slog.LevelDebug),
		}
	})
}

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	err := s.srv.Serve(netutil.LimitListener(l, s.MaxConns))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("httpboot: %w", err)
}

// ListenAndServe listens on addr and serves.
func (s *Server) ListenAndServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("httpboot: %w", err)
	}
	return s.Serve(l)
}

// Shutdown stops accepting and waits for downloads to finish or ctx to
// end, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	return err
}

// macFromQuery reads the "mac" parameter iPXE adds (${mac:hexhyp}).
func macFromQuery(r *http.Request) string {
	m := strings.ReplaceAll(r.URL.Query().Get("mac"), "-", ":")
	hw, err := net.ParseMAC(m)
	if err != nil {
		return ""
	}
	return hw.String()
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	s.stats.In(int(r.ContentLength))
	s.stats.Open()
	defer func() {
		s.stats.Out(0) // the body bytes are counted as they are written
		s.stats.Close()
	}()
	w = countingWriter{ResponseWriter: w, c: &s.stats}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "read-only server", http.StatusMethodNotAllowed)
		return
	}
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	mac := macFromQuery(r)
	if mac == "" && s.MACForIP != nil {
		mac = s.MACForIP(ip)
	}
	ev := tracker.Event{MAC: mac, IP: ip, Stage: tracker.StageHTTP, Port: s.Port, Proto: "tcp", Peer: r.RemoteAddr}
	log := s.Log.With("mac", mac, "ip", ip, "port", s.Port, "proto", "tcp")

	name, err := boot.Clean(r.URL.Path)
	if err != nil {
		ev.Event, ev.File, ev.Detail = tracker.KindError, r.URL.Path, "refused: "+err.Error()
		s.Events.Emit(ev)
		log.Info("refused request", "path", r.URL.Path, "err", err)
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	ev.File = name
	var f boot.File
	if name == boot.ScriptName && s.Script != nil {
		f = boot.MemFile(s.Script(mac))
	} else {
		f, err = s.FS.Open(name)
	}
	if err != nil {
		code, text := http.StatusInternalServerError, "internal error"
		switch {
		case errors.Is(err, fs.ErrNotExist):
			code, text = http.StatusNotFound, "file not found"
		case errors.Is(err, boot.ErrInvalidPath), errors.Is(err, fs.ErrPermission):
			code, text = http.StatusForbidden, "access denied"
		}
		ev.Event, ev.Detail = tracker.KindError, text
		s.Events.Emit(ev)
		log.Info("request failed", "file", name, "err", err)
		http.Error(w, text, code)
		return
	}
	defer f.Close()
	ev.Total = f.Size()
	if r.Method == http.MethodHead {
		http.ServeContent(w, r, name, f.ModTime(), f)
		return
	}
	// A known type spares ServeContent from sniffing the content.
	if name == boot.ScriptName {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	} else if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	start := ev
	start.Event = tracker.KindStart
	s.Events.Emit(start)
	cr := &countingReader{f: f, s: s, ev: ev, last: time.Now()}
	http.ServeContent(w, r, name, f.ModTime(), cr)
	done := ev
	done.Bytes = cr.n
	// ServeContent answers a range request with part of the file; a
	// download is complete when it delivered everything it was asked for.
	if r.Context().Err() != nil {
		done.Event, done.Detail = tracker.KindError, fmt.Sprintf("client went away after %d bytes", cr.n)
	} else {
		done.Event = tracker.KindDone
		if rg := r.Header.Get("Range"); rg != "" {
			done.Detail = "range " + rg
		}
	}
	s.Events.Emit(done)
	log.Debug("served", "file", name, "bytes", strconv.FormatInt(cr.n, 10))
}

// countingReader counts what ServeContent reads and emits progress.
type countingReader struct {
	f    boot.File
	s    *Server
	ev   tracker.Event
	n    int64
	last time.Time
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.f.Read(p)
	c.n += int64(n)
	if now := time.Now(); now.Sub(c.last) >= c.s.ProgressEvery {
		c.last = now
		e := c.ev
		e.Event, e.Bytes = tracker.KindProgress, c.n
		c.s.Events.Emit(e)
	}
	return n, err
}

// Seek restarts the count: ServeContent seeks to the start of what it
// sends (after sniffing, or to a range's first byte).
func (c *countingReader) Seek(off int64, whence int) (int64, error) {
	c.n = 0
	return c.f.Seek(off, whence)
}

var _ io.ReadSeeker = (*countingReader)(nil)
