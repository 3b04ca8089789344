package tui

import (
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/table"
)

// portColumns are the Ports table's columns for a terminal width.
func (m *Model) portColumns() []table.Column {
	cols := []table.Column{
		{Title: "SERVICE", Width: 9},
		{Title: "PORT", Width: 15},
		{Title: "STATE", Width: 9},
		{Title: "PKTS IN/OUT", Width: 11},
		{Title: "BYTES IN/OUT", Width: 12},
		{Title: "RECENT", Width: 8},
		{Title: "ACTIVE", Width: 6},
	}
	if m.width >= wideAt {
		cols = append(cols, table.Column{Title: "REASON", Width: max(10, m.width-len(cols)-sumWidths(cols)-2)})
	}
	return cols
}

func sumWidths(cols []table.Column) int {
	n := 0
	for _, c := range cols {
		n += c.Width
	}
	return n
}

func (m *Model) layoutPorts(bodyH int) {
	cols := m.portColumns()
	rows := make([]table.Row, 0, len(m.snap.Ports))
	for _, p := range m.snap.Ports {
		r := table.Row{p.Service, p.Proto + " " + p.Port, p.State,
			humanCount(p.PacketsIn) + "/" + humanCount(p.PacketsOut),
			humanBytes(int64(p.BytesIn)) + "/" + humanBytes(int64(p.BytesOut)),
			m.recent[portKey(p)].String(), fmt.Sprint(p.Active)}
		if p.State == PortOff || p.State == PortMissing {
			r = table.Row{p.Service, p.Proto + " " + p.Port, p.State, "-", "-", "-", "-"}
		}
		if len(cols) > 7 {
			r = append(r, p.Reason)
		}
		rows = append(rows, r)
	}
	// Rows and columns must agree whenever the table renders: clear the
	// rows, set the columns, then the rows; and keep the cursor on a row
	// (an empty table resets it to -1).
	cur := m.ports.Cursor()
	m.ports.SetRows(nil)
	m.ports.SetColumns(cols)
	m.ports.SetRows(rows)
	m.ports.SetCursor(min(max(cur, 0), max(len(rows)-1, 0)))
	m.ports.SetWidth(m.width)
	// The table takes at most half the body when sessions run, the rest
	// lists them.
	th := min(len(rows)+1, bodyH)
	if len(m.snap.Sessions) > 0 {
		th = min(th, max(4, bodyH/2+2))
	}
	m.ports.SetHeight(th)
}

func (m *Model) viewPorts(h int) string {
	var b strings.Builder
	b.WriteString(m.ports.View())
	used := strings.Count(b.String(), "\n") + 1
	var errs []string
	if m.width < wideAt {
		for _, p := range m.snap.Ports {
			if p.State == PortError {
				errs = append(errs, m.st.Error.Render(fmt.Sprintf("%s %s %s: %s", p.Service, p.Proto, p.Port, p.Reason)))
			}
		}
	}
	for _, e := range errs {
		if used >= h {
			break
		}
		b.WriteString("\n" + e)
		used++
	}
	if used+2 > h {
		return b.String()
	}
	b.WriteString("\n\n" + m.st.ColHeader.Render(fmt.Sprintf("Sessions in progress (%d)", len(m.snap.Sessions))))
	used += 2
	if len(m.snap.Sessions) == 0 {
		b.WriteString("\n" + m.st.Muted.Render("  none"))
		return b.String()
	}
	for i, s := range m.snap.Sessions {
		if used >= h {
			break
		}
		if used == h-1 && i < len(m.snap.Sessions)-1 {
			b.WriteString("\n" + m.st.Muted.Render(fmt.Sprintf("  … and %d more", len(m.snap.Sessions)-i)))
			break
		}
		done := humanBytes(s.Bytes)
		if s.Total > 0 {
			done += "/" + humanBytes(s.Total)
		}
		b.WriteString("\n" + fmt.Sprintf("  %-4s %-21s → port %-5d %s %s", s.Proto, s.Client, s.LocalPort, done, s.File))
		used++
	}
	return b.String()
}

func portKey(p PortState) string { return p.Service + "/" + p.Proto + "/" + p.Port }

// portRate is a port's recent traffic: packets and bytes per second, both
// directions, smoothed over the last seconds.
type portRate struct {
	pps, bps float64
	last     PortState
	at       time.Time
}

func (r portRate) String() string {
	if r.pps < 0.05 {
		return "idle"
	}
	if r.bps >= 1024 {
		return humanBytes(int64(r.bps)) + "/s"
	}
	return fmt.Sprintf("%.0fp/s", r.pps)
}

// updateRates folds a new snapshot's counters into the recent rates.
func updateRates(rates map[string]portRate, ports []PortState, at time.Time) {
	seen := make(map[string]bool, len(ports))
	for _, p := range ports {
		k := portKey(p)
		seen[k] = true
		r, ok := rates[k]
		if ok {
			dt := at.Sub(r.at).Seconds()
			if dt < 0.2 {
				continue // too short a window to say anything
			}
			pk := float64(p.PacketsIn+p.PacketsOut) - float64(r.last.PacketsIn+r.last.PacketsOut)
			by := float64(p.BytesIn+p.BytesOut) - float64(r.last.BytesIn+r.last.BytesOut)
			if pk < 0 || by < 0 {
				pk, by = 0, 0 // counters reset
			}
			const keep = 0.5 // half of the old rate per window: a few seconds of memory
			r.pps = keep*r.pps + (1-keep)*pk/dt
			r.bps = keep*r.bps + (1-keep)*by/dt
		}
		r.last, r.at = p, at
		rates[k] = r
	}
	for k := range rates {
		if !seen[k] {
			delete(rates, k)
		}
	}
}
