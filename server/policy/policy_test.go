package policy

import "testing"

func TestPolicy(t *testing.T) {
	var pendingSeen []string
	p := NewStatic(Approve, []string{"52:54:00:00:00:AA"})
	p.OnPending = func(mac string) { pendingSeen = append(pendingSeen, mac) }
	if d := p.Decide("52:54:00:00:00:aa"); d != Allow {
		t.Errorf("known MAC (other case): %v", d)
	}
	if d := p.Decide("52:54:00:00:00:01"); d != Pending {
		t.Errorf("unknown MAC: %v", d)
	}
	p.Decide("52:54:00:00:00:01")
	if len(pendingSeen) != 1 || len(p.Pending()) != 1 {
		t.Errorf("pending callback %v, list %v", pendingSeen, p.Pending())
	}
	p.Approve("52:54:00:00:00:01")
	if d := p.Decide("52:54:00:00:00:01"); d != Allow || len(p.Pending()) != 0 {
		t.Errorf("approved: %v, pending %v", d, p.Pending())
	}
	p.Deny("52:54:00:00:00:01")
	if d := p.Decide("52:54:00:00:00:01"); d != Deny {
		t.Errorf("denied: %v", d)
	}
	p.SetMode(Known)
	if d := p.Decide("52:54:00:00:00:02"); d != Deny || p.Mode() != Known {
		t.Errorf("known mode, unknown MAC: %v", d)
	}
	p.SetMode(All)
	if d := p.Decide("52:54:00:00:00:01"); d != Allow {
		t.Errorf("all mode: %v", d)
	}
	for _, s := range []string{"all", "KNOWN", "approve"} {
		if _, err := ParseMode(s); err != nil {
			t.Errorf("ParseMode(%q): %v", s, err)
		}
	}
	if _, err := ParseMode("some"); err == nil {
		t.Error("ParseMode accepted nonsense")
	}
}
