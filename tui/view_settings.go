package tui

import (
	"fmt"
	"strings"

	"github.com/netdeploy/netdeploy/server/udprange"
)

func (m *Model) viewSettings(h int) string {
	s := m.snap
	var b strings.Builder
	row := func(i int, label, value, hint string) {
		mark := "  "
		if i == m.setSel && !m.editing {
			mark = "▶ "
			label = m.st.Selected.Render(fit(label, 20))
		} else {
			label = m.st.Label.Render(fit(label, 20))
		}
		b.WriteString(mark + label + " " + value)
		if hint != "" {
			b.WriteString("  " + m.st.Muted.Render(hint))
		}
		b.WriteString("\n")
	}
	authz := m.st.Value.Render("off")
	if s.Authorization {
		authz = m.st.Value.Render("on") + "  "
		if s.Authorized {
			authz += m.st.Good.Render("AUTHORIZED")
		} else {
			authz += m.st.Bad.Render("UNAUTHORIZED: " + orDash(s.Reason))
		}
	}
	row(setAuthz, "DHCP authorization", authz, "[a] toggles")
	row(setMode, "DHCP mode", m.st.Value.Render(orDash(s.DHCPMode)), "[m] authoritative → proxy → off")
	if m.editing {
		b.WriteString("▶ " + m.st.Selected.Render(fit("UDP range", 20)) + " " + m.rangeInput.View() + "\n")
	} else {
		info := ""
		if r, err := udprange.Parse(s.UDPRange); err == nil {
			info = fmt.Sprintf("(%d ports, %d in use)", r.Size(), len(s.Sessions))
		}
		row(setRange, "UDP range", m.st.Value.Render(orDash(s.UDPRange))+" "+m.st.Muted.Render(info), "[r] edits")
	}
	row(setPolicy, "PXE policy", m.st.Value.Render(orDash(s.Policy)), "[p] all → known → approve")
	row(setSave, "Save settings", m.st.Value.Render("to "+orDash(s.ConfigFile)), "[s] saves")
	b.WriteString("\n" + m.st.ColHeader.Render(fmt.Sprintf("Pending clients (%d)", len(s.Pending))))
	if len(s.Pending) > 0 {
		b.WriteString(m.st.Muted.Render("  [y] approves, [n] denies the selected one"))
	}
	b.WriteString("\n")
	if len(s.Pending) == 0 {
		hint := "  none"
		if s.Policy != "approve" {
			hint += " (policy " + orDash(s.Policy) + "; with approve, unknown clients wait here)"
		}
		b.WriteString(m.st.Muted.Render(hint) + "\n")
	}
	room := h - strings.Count(b.String(), "\n")
	for i, p := range s.Pending {
		if i >= room {
			break
		}
		mark := "  "
		mac := m.st.Pending.Render(p.MAC)
		if setFirstPending+i == m.setSel {
			mark = "▶ "
			mac = m.st.Selected.Render(p.MAC)
		}
		b.WriteString(fmt.Sprintf("%s%s  waiting %s\n", mark, mac, clock(s.At.Sub(p.Since))))
	}
	return strings.TrimRight(b.String(), "\n")
}
