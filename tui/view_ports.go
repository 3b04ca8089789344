package tui

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/bubbles/table"
)

// portColumns are the Ports table's columns for a terminal width.
func (m *Model) portColumns() []table.Column {
	cols := []table.Column{
		{Title: "SERVICE", Width: 9},
		{Title: "PORT", Width: 15},
		{Title: "STATE", Width: 9},
		{Title: "PKTS IN", Width: 7},
		{Title: "OUT", Width: 6},
		{Title: "BYTES IN", Width: 8},
		{Title: "OUT", Width: 6},
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
			humanCount(p.PacketsIn), humanCount(p.PacketsOut),
			humanBytes(int64(p.BytesIn)), humanBytes(int64(p.BytesOut)), fmt.Sprint(p.Active)}
		if p.State == PortOff || p.State == PortMissing {
			r = table.Row{p.Service, p.Proto + " " + p.Port, p.State, "-", "-", "-", "-", "-"}
		}
		if len(cols) > 8 {
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
		if i == h-used-1 && i < len(m.snap.Sessions)-1 {
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
