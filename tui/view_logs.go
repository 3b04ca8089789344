package tui

import (
	"fmt"
	"log/slog"
	"strings"
)

func (m *Model) logLine(l LogLine) string {
	lvl := m.st.LevelInfo
	switch {
	case l.Level >= slog.LevelError:
		lvl = m.st.LevelError
	case l.Level >= slog.LevelWarn:
		lvl = m.st.LevelWarn
	case l.Level < slog.LevelInfo:
		lvl = m.st.LevelDebug
	}
	s := l.Time.Format("15:04:05") + " " + lvl.Render(fmt.Sprintf("%-5s", l.Level.String())) + " " + l.Msg
	if l.Attrs != "" {
		s += " " + m.st.Muted.Render(l.Attrs)
	}
	return s
}

// logView keeps the log pane's rendered lines, so a refresh renders only
// the lines that arrived since the last one.
type logView struct {
	lines []string   // rendered lines at level and width
	level slog.Level // what lines was built for
	width int
	upTo  int // how many of Model.logs went into lines
	base  int // Model.logs trimmed so far (to follow trimming)
}

// logContent is the log pane's text at the current level filter.
func (m *Model) logContent() string {
	v := &m.logView
	if v.level != m.logLevel || v.width != m.width || v.base != m.logsTrimmed || v.upTo > len(m.logs) {
		*v = logView{level: m.logLevel, width: m.width, base: m.logsTrimmed}
	}
	for _, l := range m.logs[v.upTo:] {
		if l.Level >= m.logLevel {
			v.lines = append(v.lines, clip(m.logLine(l), m.width))
		}
	}
	v.upTo = len(m.logs)
	return strings.Join(v.lines, "\n")
}

func (m *Model) viewLogs(h int) string {
	shown := 0
	for _, l := range m.logs {
		if l.Level >= m.logLevel {
			shown++
		}
	}
	title := m.st.ColHeader.Render(fmt.Sprintf("Logs: %s and above, %d of %d lines", m.logLevel, shown, len(m.logs))) +
		m.st.Muted.Render("  [l] changes the level")
	if !m.logFollow {
		title += m.st.Warn.Render("  (scrolled; G or end follows)")
	}
	if shown == 0 {
		return title + "\n" + m.st.Muted.Render("  nothing at this level yet")
	}
	return title + "\n" + m.logVP.View()
}
