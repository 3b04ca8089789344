package tui

import (
	"fmt"
	"log/slog"
	"testing"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/netdeploy/netdeploy/server/tracker"
)

// BenchmarkRefresh200 is one console refresh with 200 clients downloading:
// fold a batch of progress events (one per client) and draw the screen.
// The console refreshes at most every DefaultRefresh, so this must stay far
// below that on a loaded laptop.
func BenchmarkRefresh200(b *testing.B) {
	m := New(scripted(), plain())
	m.Update(tea.WindowSizeMsg{Width: 120, Height: 40})
	batch := func(step int) []tracker.Event {
		evs := make([]tracker.Event, 0, 200)
		for i := range 200 {
			evs = append(evs, tracker.Event{Time: at(step * 100), MAC: fmt.Sprintf("52:54:01:00:%02x:%02x", i/256, i%256),
				IP: fmt.Sprintf("198.18.1.%d", i), Stage: tracker.StageHTTP, Event: tracker.KindProgress,
				File: "netdeploy/kernel", Bytes: int64(step) << 16, Total: 48 << 20})
		}
		return evs
	}
	snap := scripted().Snapshot()
	m.Update(refreshMsg{snap: snap, events: batch(0)})
	b.ResetTimer()
	for i := range b.N {
		m.Update(refreshMsg{snap: snap, events: batch(i + 1)})
		_ = m.View()
	}
}

// BenchmarkLogPane is one refresh of the Logs screen holding 5000 lines
// while 20 new ones arrive.
func BenchmarkLogPane(b *testing.B) {
	m := New(scripted(), plain())
	m.Update(tea.WindowSizeMsg{Width: 120, Height: 40})
	m.Update(keys("4"))
	line := func(i int) LogLine {
		return LogLine{Time: at(i), Level: slog.LevelInfo, Msg: "tftp transfer done", Attrs: fmt.Sprintf("ip=198.18.0.%d file=undionly.kpxe bytes=74833", i%250)}
	}
	var first []LogLine
	for i := range 5000 {
		first = append(first, line(i))
	}
	snap := scripted().Snapshot()
	m.Update(refreshMsg{snap: snap, logs: first})
	b.ResetTimer()
	for i := range b.N {
		batch := make([]LogLine, 20)
		for j := range batch {
			batch[j] = line(5000 + i*20 + j)
		}
		m.Update(refreshMsg{snap: snap, logs: batch})
		_ = m.View()
	}
}
