package multicast

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/tracker"
)

// memTarget is an in-memory io.WriterAt.
type memTarget struct {
	mu sync.Mutex
	b  []byte
}

func newMemTarget(n int64) *memTarget { return &memTarget{b: make([]byte, n)} }

func (m *memTarget) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("write of %d bytes at %d past %d", len(p), off, len(m.b))
	}
	return copy(m.b[off:], p), nil
}

func (m *memTarget) bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.b
}

// eventLog keeps every event.
type eventLog struct {
	mu     sync.Mutex
	events []tracker.Event
}

func (l *eventLog) Emit(e tracker.Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) all() []tracker.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]tracker.Event(nil), l.events...)
}

// find returns the events of mac with kind.
func (l *eventLog) find(mac string, kind tracker.Kind) []tracker.Event {
	var out []tracker.Event
	for _, e := range l.all() {
		if e.MAC == mac && e.Event == kind {
			out = append(out, e)
		}
	}
	return out
}

// testLog logs to stderr when MULTICAST_TEST_LOG is set.
func testLog() *slog.Logger {
	var out io.Writer = io.Discard
	if os.Getenv("MULTICAST_TEST_LOG") != "" {
		out = os.Stderr
	}
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var testKey = []byte("0123456789abcdef0123456789abcdef")

func mustCodec(t testing.TB, session uint32) *Codec {
	t.Helper()
	c, err := NewCodec(testKey, session)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fakeClock is explicit time for the decision tests.
type fakeClock struct{ now time.Time }

func newClock() *fakeClock { return &fakeClock{now: time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC)} }

func (c *fakeClock) add(d time.Duration) time.Time {
	c.now = c.now.Add(d)
	return c.now
}
