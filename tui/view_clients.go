package tui

import (
	"fmt"
	"strings"

	"github.com/netdeploy/netdeploy/server/tracker"
)

// Client list column widths. The bar and the information columns take
// what the terminal has left; the last-event column appears from wideAt.
const (
	colMark  = 2
	colMAC   = 17
	colArch  = 7
	colStrip = 8
	colTime  = 6
	wideAt   = 110
)

func (m *Model) colIP() int {
	if m.width >= wideAt {
		return 15
	}
	return 13
}

// rest is the width left for the bar, the information and (wide) the last
// event columns.
func (m *Model) rest() int {
	return m.width - (colMark + colMAC + 1 + m.colIP() + 1 + colArch + 1 + colStrip + 1 + colTime)
}

func (m *Model) barWidth() int {
	if m.width >= wideAt {
		return 16
	}
	return 6
}

func (m *Model) colInfo() int {
	if m.width >= wideAt {
		return 22
	}
	return m.rest() - m.barWidth() - 2
}

func (m *Model) colLast() int {
	if m.width < wideAt {
		return 0
	}
	return m.rest() - m.barWidth() - 1 - m.colInfo() - 2
}

// listHeight is how many client rows fit under the column header.
func (m *Model) listHeight() int { return max(1, m.bodyHeight()-1) }

func (m *Model) viewClients(h int) string {
	list := m.clients.sorted()
	var b strings.Builder
	hdr := strings.Repeat(" ", colMark) + fit("MAC", colMAC) + " " + fit("IP", m.colIP()) + " " + fit("ARCH", colArch) + " " +
		fit("STAGES", colStrip) + " " + fit("PROGRESS", m.barWidth()+1+m.colInfo()) + " "
	if m.colLast() > 0 {
		hdr += fit("LAST EVENT", m.colLast()) + " "
	}
	hdr += fit("TIME", colTime)
	b.WriteString(m.st.ColHeader.Render(clip(hdr, m.width)))
	if len(list) == 0 {
		b.WriteString("\n\n" + m.st.Muted.Render("  No clients yet. Machines that PXE-boot on "+orDash(m.snap.Interface)+" appear here as they send DHCP."))
		return b.String()
	}
	rows := h - 1
	if m.sel < m.top {
		m.top = m.sel
	}
	if m.sel >= m.top+rows {
		m.top = m.sel - rows + 1
	}
	m.top = max(0, min(m.top, len(list)-rows))
	for i := m.top; i < len(list) && i < m.top+rows; i++ {
		b.WriteString("\n" + m.clientRow(list[i], i == m.sel))
	}
	return b.String()
}

func (m *Model) clientRow(c *client, selected bool) string {
	mark := "  "
	macStyle := m.st.Value
	switch {
	case c.Failed:
		macStyle = m.st.Failed
	case c.Pending:
		macStyle = m.st.Pending
	}
	mac := c.MAC
	if mac == "" {
		mac = "(no MAC)"
	}
	macCell := macStyle.Render(fit(mac, colMAC))
	if selected {
		mark = "▶ "
		macCell = m.st.Selected.Inherit(macStyle).Render(fit(mac, colMAC))
	}
	var row strings.Builder
	row.WriteString(mark + macCell + " ")
	row.WriteString(fit(c.IP, m.colIP()) + " ")
	row.WriteString(fit(c.Arch, colArch) + " ")
	row.WriteString(m.strip(c) + " ")
	row.WriteString(m.progressCells(c) + " ")
	if w := m.colLast(); w > 0 {
		row.WriteString(fit(m.lastEvent(c), w) + " ")
	}
	row.WriteString(fit(clock(c.elapsed(m.snap.At)), colTime))
	return clip(row.String(), m.width)
}

// strip draws the stage strip: a done stage as its letter, the stage in
// progress in lower case, a failed one as "!", the rest as dots.
func (m *Model) strip(c *client) string {
	const (
		todo = iota
		now
		done
		failed
	)
	var state [len(stripStages)]int
	for i, s := range stripStages {
		for _, st := range s.stages {
			current := c.Stage == st && c.Last.Event != tracker.KindDone
			if c.Complete[st] && !current {
				state[i] = done
			} else if current {
				state[i] = now
				if c.Failed || c.Last.Event == tracker.KindError {
					state[i] = failed
				}
			}
		}
	}
	last := len(stripStages) - 1
	state[last] = todo
	if c.Stage == tracker.StageDone {
		state[last] = done
	}
	if c.Stage == tracker.StageFailed {
		// Failed outside a stage: mark the first step not completed.
		for i := range state {
			if state[i] == todo {
				state[i] = failed
				break
			}
		}
	}
	var b strings.Builder
	for i, s := range stripStages {
		switch state[i] {
		case failed:
			b.WriteString(m.st.StageFail.Render("!"))
		case now:
			b.WriteString(m.st.StageNow.Render(strings.ToLower(s.letter)))
		case done:
			b.WriteString(m.st.StageDone.Render(s.letter))
		default:
			b.WriteString(m.st.StageTodo.Render("·"))
		}
	}
	return b.String()
}

// progressCells is the bar and the information beside it.
func (m *Model) progressCells(c *client) string {
	bw, iw := m.barWidth(), m.colInfo()
	bar := strings.Repeat(" ", bw)
	var info string
	switch {
	case c.Failed:
		info = m.st.Failed.Render("FAILED " + orDash(c.Result))
	case c.Pending:
		info = m.st.Pending.Render("NEEDS APPROVAL")
	case c.Denied:
		info = m.st.Failed.Render("DENIED")
	case c.Stage == tracker.StageDone:
		bar = m.bar.ViewAs(1)
		info = m.st.Good.Render("DONE ") + c.Result
	case c.HasXfer && c.Xfer.Active:
		x := c.Xfer
		if x.Total > 0 {
			bar = m.bar.ViewAs(x.Percent())
			info = fmt.Sprintf("%.0f%% %s/s %s", x.Percent()*100, humanBytes(int64(x.Rate)), clock(x.Left()))
		} else {
			info = fmt.Sprintf("%s %s/s", humanBytes(x.Bytes), humanBytes(int64(x.Rate)))
		}
	case c.HasXfer && c.Xfer.Stage == c.Stage && c.Last.Event == tracker.KindDone:
		bar = m.bar.ViewAs(1)
		info = humanBytes(c.Xfer.Bytes)
		if c.Xfer.Rate > 0 {
			info += " " + humanBytes(int64(c.Xfer.Rate)) + "/s"
		}
	default:
		info = string(c.Stage) + " " + string(c.Last.Event)
		if c.Last.Event == tracker.KindError {
			info = m.st.Warn.Render(info + " " + c.Last.Detail)
		}
	}
	return fit(bar, bw) + " " + fit(info, iw)
}

// lastEvent describes the client's latest event in a few words.
func (m *Model) lastEvent(c *client) string {
	e := c.Last
	s := string(e.Stage) + " " + string(e.Event)
	if e.File != "" {
		s += " " + e.File
	}
	if e.Detail != "" {
		s += " " + e.Detail
	}
	return s
}

// detailContent is the client's detail page: its record, whole history,
// own log lines and result.
func (m *Model) detailContent() string {
	c := m.clients.byKey[m.detail]
	if c == nil {
		return "client gone"
	}
	var b strings.Builder
	lv := func(label, value string) string {
		return m.st.Label.Render(label+" ") + m.st.Value.Render(orDash(value))
	}
	mac := c.MAC
	if mac == "" {
		mac = "(no MAC)"
	}
	fmt.Fprintf(&b, "%s  %s  %s  %s  %s\n", m.st.Title.Render("Client"), m.st.Value.Render(mac), lv("ip", c.IP), lv("arch", c.Arch), m.strip(c))
	fmt.Fprintf(&b, "%s  %s  %s  %s\n", lv("stage", string(c.Stage)), lv("first seen", c.FirstSeen.Format("15:04:05")),
		lv("last", c.LastSeen.Format("15:04:05")), lv("elapsed", clock(c.elapsed(m.snap.At))))
	if c.HasXfer {
		x := c.Xfer
		state := "done"
		if x.Active {
			state = fmt.Sprintf("%.0f%%, %s left", x.Percent()*100, clock(x.Left()))
		}
		rate := ""
		if x.Rate > 0 {
			rate = " at " + humanBytes(int64(x.Rate)) + "/s"
		}
		fmt.Fprintf(&b, "%s %s %s  %s of %s%s (%s)\n", m.st.Label.Render("transfer"), x.Stage, x.File,
			humanBytes(x.Bytes), humanBytes(x.Total), rate, state)
	}
	result := c.Result
	switch {
	case c.Pending:
		result = "waiting for approval (y approves, n denies on the Clients screen)"
	case c.Denied:
		result = "denied by the operator"
	}
	res := m.st.Value.Render(orDash(result))
	if c.Failed {
		res = m.st.Failed.Render("FAILED: " + orDash(c.Result))
	}
	fmt.Fprintf(&b, "%s %s\n\n", m.st.Label.Render("result"), res)
	b.WriteString(m.st.ColHeader.Render(fmt.Sprintf("History (%d events)", len(c.History))) + "\n")
	b.WriteString(m.st.ColHeader.Render(fmt.Sprintf("%-12s %-9s %-11s %-6s %s", "TIME", "STAGE", "EVENT", "PORT", "FILE / DETAIL")) + "\n")
	for _, e := range c.History {
		what := e.File
		if e.Detail != "" {
			what = strings.TrimSpace(what + " " + e.Detail)
		}
		if e.Bytes > 0 {
			what += " " + humanBytes(e.Bytes)
		}
		port := "-"
		if e.Port > 0 {
			port = fmt.Sprint(e.Port)
			if e.LocalPort > 0 && e.LocalPort != e.Port {
				port = fmt.Sprint(e.LocalPort)
			}
		}
		line := fmt.Sprintf("%-12s %-9s %-11s %-6s %s", e.Time.Format("15:04:05.000"), e.Stage, e.Event, port, what)
		switch {
		case e.Stage == tracker.StageFailed || e.Event == tracker.KindError:
			line = m.st.Error.Render(line)
		case e.Event == tracker.KindPending:
			line = m.st.Pending.Render(line)
		}
		b.WriteString(line + "\n")
	}
	b.WriteString("\n" + m.st.ColHeader.Render(fmt.Sprintf("Client log (%d lines)", len(c.Logs))) + "\n")
	if len(c.Logs) == 0 {
		b.WriteString(m.st.Muted.Render("  none yet: the imaging agent's LOG_MSG lines appear here") + "\n")
	}
	for _, e := range c.Logs {
		b.WriteString(e.Time.Format("15:04:05.000") + "  " + e.Detail + "\n")
	}
	var own []LogLine
	for _, l := range m.logs {
		if c.MAC != "" && strings.EqualFold(l.MAC, c.MAC) {
			own = append(own, l)
		}
	}
	if len(own) > 0 {
		b.WriteString("\n" + m.st.ColHeader.Render(fmt.Sprintf("Server log about this client (%d lines)", len(own))) + "\n")
		for _, l := range own {
			b.WriteString(m.logLine(l) + "\n")
		}
	}
	return strings.TrimRight(b.String(), "\n")
}
