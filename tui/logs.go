package tui

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// LogLine is one log record as the console shows it.
type LogLine struct {
	Time  time.Time
	Level slog.Level
	Msg   string
	Attrs string // key=value pairs
	MAC   string // the record's "mac" attribute, if any
}

// LogBuffer is a slog.Handler that keeps records for the console: the
// console drains it with Drain, and it never blocks the logger (beyond a
// short lock). When the console falls behind, the oldest lines go first.
type LogBuffer struct {
	level slog.Leveler
	max   int
	attrs []slog.Attr
	group string
	s     *logStore
}

type logStore struct {
	mu    sync.Mutex
	lines []LogLine
	lost  int
}

// NewLogBuffer returns a handler keeping at most max undrained lines at
// level and above.
func NewLogBuffer(level slog.Leveler, max int) *LogBuffer {
	if max <= 0 {
		max = 10000
	}
	return &LogBuffer{level: level, max: max, s: &logStore{}}
}

// Enabled implements slog.Handler.
func (b *LogBuffer) Enabled(_ context.Context, l slog.Level) bool {
	return b.level == nil || l >= b.level.Level()
}

// Handle implements slog.Handler.
func (b *LogBuffer) Handle(_ context.Context, r slog.Record) error {
	line := LogLine{Time: r.Time, Level: r.Level, Msg: sanitize(r.Message)}
	var sb strings.Builder
	add := func(a slog.Attr) {
		if a.Equal(slog.Attr{}) {
			return
		}
		key := a.Key
		if b.group != "" {
			key = b.group + "." + key
		}
		if key == "mac" {
			line.MAC = sanitize(a.Value.String())
		}
		if sb.Len() > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(key)
		sb.WriteByte('=')
		v := sanitize(a.Value.Resolve().String())
		if strings.ContainsAny(v, " \"") {
			v = `"` + strings.ReplaceAll(v, `"`, `\"`) + `"`
		}
		sb.WriteString(v)
	}
	for _, a := range b.attrs {
		add(a)
	}
	r.Attrs(func(a slog.Attr) bool { add(a); return true })
	line.Attrs = sb.String()
	b.s.mu.Lock()
	if len(b.s.lines) >= b.max {
		drop := len(b.s.lines) - b.max + 1
		b.s.lines = append(b.s.lines[:0], b.s.lines[drop:]...)
		b.s.lost += drop
	}
	b.s.lines = append(b.s.lines, line)
	b.s.mu.Unlock()
	return nil
}

// WithAttrs implements slog.Handler.
func (b *LogBuffer) WithAttrs(as []slog.Attr) slog.Handler {
	c := *b
	c.attrs = append(append([]slog.Attr(nil), b.attrs...), as...)
	return &c
}

// WithGroup implements slog.Handler.
func (b *LogBuffer) WithGroup(name string) slog.Handler {
	c := *b
	if c.group != "" {
		name = c.group + "." + name
	}
	c.group = name
	return &c
}

// Drain returns the lines logged since the last call, oldest first, and
// how many were dropped because nobody drained them in time.
func (b *LogBuffer) Drain() ([]LogLine, int) {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	out, lost := b.s.lines, b.s.lost
	b.s.lines, b.s.lost = nil, 0
	return out, lost
}
