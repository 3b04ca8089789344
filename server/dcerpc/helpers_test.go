package dcerpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	wdsrpcinterface "github.com/oiweiwei/go-msrpc/msrpc/wdsc/wdsrpcinterface/v1"

	"github.com/netdeploy/netdeploy/server/tracker"
)

// echoServer is a WdsRpcInterface that replies with the caller it saw,
// a '|', and the request bytes.
type echoServer struct{}

func (echoServer) Message(ctx context.Context, req *wdsrpcinterface.MessageRequest) (*wdsrpcinterface.MessageResponse, error) {
	c, ok := CallerFrom(ctx)
	if !ok {
		return nil, errors.New("no caller in ctx")
	}
	info := fmt.Sprintf("type=%d level=%d account=%s auth=%t ip=%s|", c.AuthType, c.AuthLevel, c.Account, c.Authenticated, c.IP())
	reply := append([]byte(info), req.RequestPacket...)
	return &wdsrpcinterface.MessageResponse{ReplyPacketSize: uint32(len(reply)), ReplyPacket: reply}, nil
}

// splitReply separates the caller description from the echoed bytes.
func splitReply(t *testing.T, reply []byte) (string, []byte) {
	t.Helper()
	i := bytes.IndexByte(reply, '|')
	if i < 0 {
		t.Fatalf("reply without caller: %q", reply[:min(len(reply), 80)])
	}
	return string(reply[:i]), reply[i+1:]
}

// events records emitted events.
type events struct {
	mu  sync.Mutex
	evs []tracker.Event
}

func (e *events) Emit(ev tracker.Event) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
}

func (e *events) find(kind tracker.Kind, detail string) (tracker.Event, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.evs {
		if ev.Event == kind && strings.Contains(ev.Detail, detail) {
			return ev, true
		}
	}
	return tracker.Event{}, false
}

func (e *events) count(kind tracker.Kind, detail string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.evs {
		if ev.Event == kind && strings.Contains(ev.Detail, detail) {
			n++
		}
	}
	return n
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("DCERPC_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// wdsInterface is the WdsRpcInterface served by echoServer.
func wdsInterface() Interface {
	return Interface{
		Name:   "WdsRpcInterface",
		Syntax: *wdsrpcinterface.InterfaceSyntaxV1_0,
		Handle: wdsrpcinterface.NewInterfaceServerHandle(echoServer{}),
	}
}

// startServer serves s on a random loopback port and shuts it down at
// the end of the test, checking that Serve returned nil.
func startServer(t *testing.T, s *Server) string {
	t.Helper()
	if s.Log == nil {
		s.Log = testLogger(t)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Serve returned %v after Shutdown", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after Shutdown")
		}
	})
	return l.Addr().String()
}

// recordingProxy forwards one TCP connection at a time to a server and
// records the bytes each way.
type recordingProxy struct {
	addr     string
	mu       sync.Mutex
	up, down bytes.Buffer
	// mutate, if set, may change each PDU the client sends.
	mutate func(pdu []byte)
}

func newRecordingProxy(t *testing.T, target string) *recordingProxy {
	return newMutatingProxy(t, target, nil)
}

func newMutatingProxy(t *testing.T, target string, mutate func([]byte)) *recordingProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &recordingProxy{addr: l.Addr().String(), mutate: mutate}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				return
			}
			if p.mutate != nil {
				go p.pipePDUs(c, s)
			} else {
				go p.pipe(c, s, &p.up)
			}
			go p.pipe(s, c, &p.down)
		}
	}()
	return p
}

func (p *recordingProxy) pipe(from, to net.Conn, rec *bytes.Buffer) {
	defer from.Close()
	defer to.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			p.mu.Lock()
			rec.Write(buf[:n])
			p.mu.Unlock()
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *recordingProxy) recorded() (up, down []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.up.Bytes()), bytes.Clone(p.down.Bytes())
}

// pipePDUs forwards PDU by PDU, letting mutate change each one.
func (p *recordingProxy) pipePDUs(from, to net.Conn) {
	defer from.Close()
	defer to.Close()
	var buf []byte
	for {
		_, pdu, err := readPDU(from, &buf, 0xffff)
		if err != nil {
			return
		}
		p.mutate(pdu)
		p.mu.Lock()
		p.up.Write(pdu)
		p.mu.Unlock()
		if _, err := to.Write(pdu); err != nil {
			return
		}
	}
}
