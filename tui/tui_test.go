package tui

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/muesli/termenv"

	"github.com/netdeploy/netdeploy/server/tracker"
)

// plain returns options for output without colours, as goldens want.
func plain() Options {
	r := lipgloss.NewRenderer(&bytes.Buffer{})
	r.SetColorProfile(termenv.Ascii)
	return Options{Renderer: r, Refresh: 10 * time.Millisecond}
}

func keys(s string) tea.KeyMsg { return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)} }

var (
	enterKey = tea.KeyMsg{Type: tea.KeyEnter}
	escKey   = tea.KeyMsg{Type: tea.KeyEsc}
	downKey  = tea.KeyMsg{Type: tea.KeyDown}
)

// run starts the console on be at w x h, waits until the scripted stream
// is on screen, sends msgs and returns the final model after quitting.
func run(t *testing.T, be Backend, w, h int, msgs ...tea.Msg) *Model {
	t.Helper()
	return runUntil(t, be, w, h, "", msgs...)
}

// runUntil is run that also waits for until to appear on screen before
// quitting (an action's result).
func runUntil(t *testing.T, be Backend, w, h int, until string, msgs ...tea.Msg) *Model {
	t.Helper()
	tm := teatest.NewTestModel(t, New(be, plain()), teatest.WithInitialTermSize(w, h))
	teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte("52:54:00:00:00:0a")) },
		teatest.WithDuration(5*time.Second), teatest.WithCheckInterval(5*time.Millisecond))
	for _, m := range msgs {
		tm.Send(m)
	}
	if until != "" {
		teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte(until)) },
			teatest.WithDuration(5*time.Second), teatest.WithCheckInterval(5*time.Millisecond))
	}
	tm.Send(tea.KeyMsg{Type: tea.KeyCtrlC})
	return tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second)).(*Model)
}

// TestGoldenScreens renders every screen at 80x24 and 120x40 from the
// scripted stream and compares with testdata/ (go test -update rewrites).
func TestGoldenScreens(t *testing.T) {
	screens := []struct {
		name string
		msgs []tea.Msg
	}{
		{"clients", nil},
		{"detail", []tea.Msg{enterKey}},
		{"ports", []tea.Msg{keys("2")}},
		{"settings", []tea.Msg{keys("3")}},
		{"settings-edit", []tea.Msg{keys("r"), tea.KeyMsg{Type: tea.KeyBackspace}, keys("x")}},
		{"logs", []tea.Msg{keys("4")}},
		{"logs-debug", []tea.Msg{keys("4"), keys("l"), keys("l"), keys("l")}},
		{"help", []tea.Msg{keys("?")}},
	}
	for _, size := range [][2]int{{80, 24}, {120, 40}} {
		for _, s := range screens {
			t.Run(fmt.Sprintf("%s-%dx%d", s.name, size[0], size[1]), func(t *testing.T) {
				m := run(t, scripted(), size[0], size[1], s.msgs...)
				view := m.View()
				lines := strings.Split(view, "\n")
				if len(lines) != size[1] {
					t.Errorf("view has %d lines, want %d", len(lines), size[1])
				}
				for i, l := range lines {
					if w := lipgloss.Width(l); w > size[0] {
						t.Errorf("line %d is %d cells wide (> %d): %q", i, w, size[0], l)
					}
				}
				golden.RequireEqual(t, []byte(view))
			})
		}
	}
}

func TestClientStates(t *testing.T) {
	m := run(t, scripted(), 120, 40)
	view := m.View()
	for _, want := range []string{
		"52:54:00:00:00:0a", "198.18.0.100", "bios", // a row with IP and arch
		"D·Th", // a: DHCP and TFTP done, no PXE step, HTTP in progress
		"33%",  // 16 of 48 MiB
		"NEEDS APPROVAL",
		"FAILED checksum",
		"DONE image verified",
		"(no MAC)", "198.18.0.77",
		"AUTHORIZED", "64001-65000", "approve", "3 images",
	} {
		if !strings.Contains(view, want) {
			t.Errorf("clients screen lacks %q:\n%s", want, view)
		}
	}
	a := m.clients.byKey["52:54:00:00:00:0a"]
	if a == nil || a.Xfer.Bytes != 16<<20 || a.Xfer.Total != 48<<20 || !a.Xfer.Active {
		t.Fatalf("transfer of a = %+v", a.Xfer)
	}
	// 8 MiB/s measured twice: the rate and the time left follow.
	if r := a.Xfer.Rate; r < 8<<20-1 || r > 8<<20+1 {
		t.Errorf("rate = %.0f, want 8 MiB/s", r)
	}
	if left := a.Xfer.Left(); left != 4*time.Second {
		t.Errorf("time left = %s, want 4s", left)
	}
	if !strings.Contains(view, "0:04") {
		t.Errorf("time left not shown")
	}
	if len(a.Logs) != 1 || !strings.Contains(a.Logs[0].Detail, "/dev/vda") {
		t.Errorf("client log = %+v", a.Logs)
	}
}

// TestColours checks that failed and waiting clients have their own colours.
func TestColours(t *testing.T) {
	r := lipgloss.NewRenderer(&bytes.Buffer{})
	r.SetColorProfile(termenv.ANSI256)
	r.SetHasDarkBackground(true)
	m := New(scripted(), Options{Renderer: r})
	m.Update(tea.WindowSizeMsg{Width: 120, Height: 40})
	be := scripted()
	m.Update(refreshMsg{snap: be.Snapshot(), events: be.Events(), logs: be.Logs()})
	red := r.NewStyle().Foreground(lipgloss.Color("#f85149")).Bold(true).Render("X")
	yellow := r.NewStyle().Foreground(lipgloss.Color("#d29922")).Bold(true).Render("X")
	redSeq, yellowSeq := red[:strings.Index(red, "X")], yellow[:strings.Index(yellow, "X")]
	if redSeq == "" || yellowSeq == "" || redSeq == yellowSeq {
		t.Fatalf("test colours not distinct: %q %q", redSeq, yellowSeq)
	}
	var failed, waiting string
	for _, l := range strings.Split(m.View(), "\n") {
		if strings.Contains(l, "0d") && strings.Contains(l, "FAILED") {
			failed = l
		}
		if strings.Contains(l, "NEEDS APPROVAL") {
			waiting = l
		}
	}
	if !strings.Contains(failed, redSeq+"FAILED") {
		t.Errorf("failed row not red: %q", failed)
	}
	if !strings.Contains(waiting, yellowSeq+"NEEDS APPROVAL") {
		t.Errorf("waiting row not yellow: %q", waiting)
	}
}

func TestSettingsActions(t *testing.T) {
	be := scripted()
	m := runUntil(t, be, 80, 24, "settings saved",
		keys("a"), // authorization off
		keys("m"), // authoritative -> proxy
		keys("p"), // approve -> all
		keys("r"), tea.KeyMsg{Type: tea.KeyCtrlU}, keys("64100-64199"), enterKey,
		keys("s"),
	)
	calls := strings.Join(be.Calls(), ", ")
	want := "authorization off, mode proxy, policy all, range 64100-64199, save"
	if calls != want {
		t.Fatalf("calls = %q, want %q", calls, want)
	}
	if m.snap.UDPRange != "64100-64199" || !strings.Contains(m.status, "saved to /etc/netdeploy.yaml") {
		t.Errorf("status after save = %q", m.status)
	}
}

func TestRangeValidation(t *testing.T) {
	for _, tc := range []struct {
		in      string
		active  int
		wantErr string
	}{
		{"64001-65000", 0, ""},
		{"2000-2000", 1, ""},
		{"65000-64001", 0, "inverted"},
		{"80-90", 0, "below 1024"},
		{"64001-70000", 0, "above 65535"},
		{"abc", 0, "FIRST-LAST"},
		{"64001-64002", 3, "3 sessions are in progress"},
	} {
		_, err := ValidateRange(tc.in, tc.active)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("ValidateRange(%q, %d) = %v, want %q", tc.in, tc.active, err, tc.wantErr)
		}
	}
}

// TestInvalidRangeKeepsOld types an inverted range: nothing is applied, the
// field stays open and the status says why; esc then keeps the old range.
func TestInvalidRangeKeepsOld(t *testing.T) {
	be := scripted()
	m := run(t, be, 80, 24, keys("r"), tea.KeyMsg{Type: tea.KeyCtrlU}, keys("65000-64000"), enterKey)
	if len(be.Calls()) != 0 {
		t.Fatalf("backend called: %v", be.Calls())
	}
	if !m.editing || !strings.Contains(m.status, "inverted") || !strings.Contains(m.status, "keeping 64001-65000") {
		t.Fatalf("editing=%v status=%q", m.editing, m.status)
	}
	m.Update(escKey)
	if m.editing || m.snap.UDPRange != "64001-65000" {
		t.Fatalf("after esc: editing=%v range=%s", m.editing, m.snap.UDPRange)
	}
}

func TestApproveDeny(t *testing.T) {
	be := scripted()
	// Clients in order of first sight: e(50ms) a(100) b(200) c(700) d(800) ip(3200).
	runUntil(t, be, 80, 24, "approved 52:54:00:00:00:0c", downKey, downKey, downKey, keys("y"), downKey, keys("n"), keys("3"), downKey, downKey, downKey, downKey, downKey, keys("y"))
	want := "approve 52:54:00:00:00:0c, deny 52:54:00:00:00:0d, approve 52:54:00:00:00:0c"
	if got := strings.Join(be.Calls(), ", "); got != want {
		t.Fatalf("calls = %q, want %q", got, want)
	}
}

func TestActionErrorShown(t *testing.T) {
	be := scripted()
	be.fail = errRefused
	m := runUntil(t, be, 80, 24, "refused by the fake", keys("a"))
	if !m.statusErr || !strings.Contains(m.status, "refused by the fake") {
		t.Fatalf("status = %q (err %v)", m.status, m.statusErr)
	}
}

func TestResizeAndSmall(t *testing.T) {
	m := New(scripted(), plain())
	be := scripted()
	m.Update(refreshMsg{snap: be.Snapshot(), events: be.Events(), logs: be.Logs()})
	for _, sz := range [][2]int{{80, 24}, {100, 30}, {200, 60}, {60, 20}} {
		m.Update(tea.WindowSizeMsg{Width: sz[0], Height: sz[1]})
		lines := strings.Split(m.View(), "\n")
		if len(lines) != sz[1] {
			t.Errorf("%dx%d: %d lines", sz[0], sz[1], len(lines))
		}
		for _, l := range lines {
			if lipgloss.Width(l) > sz[0] {
				t.Errorf("%dx%d: line too wide: %q", sz[0], sz[1], l)
			}
		}
	}
	if v := m.View(); !strings.Contains(v, "at least 80x24") {
		t.Errorf("small terminal view: %q", v)
	}
}

// TestManyClients folds 200 clients with progress and checks the screen
// stays one page with a scroll position that follows the cursor.
func TestManyClients(t *testing.T) {
	m := New(scripted(), plain())
	m.Update(tea.WindowSizeMsg{Width: 120, Height: 40})
	var evs []tracker.Event
	for i := range 200 {
		mac := fmt.Sprintf("52:54:01:00:%02x:%02x", i/256, i%256)
		for j := range 20 {
			evs = append(evs, tracker.Event{Time: at(i + j*100), MAC: mac, IP: fmt.Sprintf("198.18.1.%d", i), Stage: tracker.StageHTTP, Event: tracker.KindProgress, File: "netdeploy/kernel", Bytes: int64(j) << 20, Total: 48 << 20})
		}
	}
	m.Update(refreshMsg{snap: Snapshot{At: at(5000)}, events: evs})
	if n := len(m.clients.order); n != 200 {
		t.Fatalf("%d clients", n)
	}
	for range 150 {
		m.Update(downKey)
	}
	v := m.View()
	if len(strings.Split(v, "\n")) != 40 {
		t.Fatalf("view not 40 lines")
	}
	if !strings.Contains(v, "52:54:01:00:00:96") { // the 151st client, selected
		t.Errorf("selected client not visible")
	}
}

func TestLogBuffer(t *testing.T) {
	b := NewLogBuffer(nil, 3)
	l := slogNew(b)
	for i := range 5 {
		l.Info("line", "n", i, "mac", "52:54:00:00:00:01")
	}
	got, lost := b.Drain()
	if len(got) != 3 || lost != 2 || got[0].Attrs != "n=2 mac=52:54:00:00:00:01" || got[0].MAC != "52:54:00:00:00:01" {
		t.Fatalf("drain = %+v lost %d", got, lost)
	}
	if again, _ := b.Drain(); len(again) != 0 {
		t.Fatalf("second drain = %v", again)
	}
}

// TestAddressOnlyMerges: a client first seen by address joins its MAC's
// row when an event names both.
func TestAddressOnlyMerges(t *testing.T) {
	cs := newClientSet()
	cs.apply(tracker.Event{Time: at(0), IP: "127.0.0.10", Stage: tracker.StageTFTP, Event: tracker.KindDone, File: "undionly.kpxe", Bytes: 1000})
	cs.apply(tracker.Event{Time: at(10), IP: "127.0.0.10", MAC: "02:de:7f:00:00:01", Stage: tracker.StageHTTP, Event: tracker.KindStart, File: "boot.ipxe"})
	if len(cs.order) != 1 || cs.order[0].MAC != "02:de:7f:00:00:01" || !cs.order[0].Complete[tracker.StageTFTP] || cs.byKey["ip:127.0.0.10"] != nil {
		t.Fatalf("not merged: %+v", cs.order)
	}
}

func TestPortRates(t *testing.T) {
	rates := map[string]portRate{}
	p := PortState{Service: "tftp-data", Proto: "udp", Port: "64001-65000"}
	updateRates(rates, []PortState{p}, at(0))
	if got := rates[portKey(p)].String(); got != "idle" {
		t.Fatalf("first snapshot: %q", got)
	}
	p.PacketsOut, p.BytesOut = 1000, 1<<20
	updateRates(rates, []PortState{p}, at(1000))
	r := rates[portKey(p)]
	if r.pps != 500 || r.bps != 1<<19 || r.String() != "512K/s" {
		t.Fatalf("after 1 s: %+v %q", r, r.String())
	}
	updateRates(rates, []PortState{p}, at(1100)) // too short a window: unchanged
	if rates[portKey(p)].pps != 500 {
		t.Fatalf("short window changed the rate")
	}
	updateRates(rates, nil, at(2000))
	if len(rates) != 0 {
		t.Fatalf("a port that went away keeps a rate")
	}
}

// TestHeldIsNotDenied: the DHCP server reports a held client as a PXE
// error "waiting for approval"; that is waiting, not denied. The pending
// list from the policy has the last word.
func TestHeldIsNotDenied(t *testing.T) {
	cs := newClientSet()
	mac := "02:de:00:00:00:01"
	cs.apply(tracker.Event{Time: at(0), MAC: mac, Stage: tracker.StagePXE, Event: tracker.KindError, Detail: "waiting for approval"})
	c := cs.byKey[mac]
	if !c.Pending || c.Denied {
		t.Fatalf("held client: pending %v denied %v", c.Pending, c.Denied)
	}
	cs.syncPending(nil) // approved elsewhere
	if c.Pending {
		t.Fatal("still pending after the policy dropped it")
	}
	cs.apply(tracker.Event{Time: at(1), MAC: mac, Stage: tracker.StagePXE, Event: tracker.KindError, Detail: "denied by policy"})
	if !c.Denied {
		t.Fatal("denied client not marked")
	}
	cs.syncPending([]Pending{{MAC: "02:DE:00:00:00:01"}})
	if !c.Pending || c.Denied {
		t.Fatalf("listed as pending again: pending %v denied %v", c.Pending, c.Denied)
	}
}

// TestQuickKeysFollowEachOther: two m presses in a row go authoritative ->
// proxy -> off even when a snapshot taken before the first action lands
// in between.
func TestQuickKeysFollowEachOther(t *testing.T) {
	be := scripted()
	runUntil(t, be, 80, 24, "DHCP mode is now off", keys("m"), keys("m"))
	if got := strings.Join(be.Calls(), ", "); got != "mode proxy, mode off" {
		t.Fatalf("calls = %q", got)
	}
}

// TestNetworkTextIsDefanged: a file name with terminal escapes from a TFTP
// request is drawn as text, and the row keeps its width.
func TestNetworkTextIsDefanged(t *testing.T) {
	m := New(scripted(), plain())
	m.Update(tea.WindowSizeMsg{Width: 120, Height: 40})
	evil := "boot\x1b]52;c;aGk=\x07\x1b[2J\tX"
	m.Update(refreshMsg{snap: Snapshot{At: at(100)}, events: []tracker.Event{{Time: at(0), MAC: "02:00:00:00:00:01", IP: "198.18.0.5", Stage: tracker.StageTFTP, Event: tracker.KindError, File: evil, Detail: "\x1b[31mred"}}})
	v := m.View()
	if strings.ContainsAny(v, "\x1b\x07\t") {
		t.Fatalf("control characters reached the screen: %q", v)
	}
	if !strings.Contains(v, `\x1b`) {
		t.Errorf("escaped text not shown")
	}
	for _, l := range strings.Split(v, "\n") {
		if lipgloss.Width(l) > 120 {
			t.Errorf("line too wide: %q", l)
		}
	}
	b := NewLogBuffer(nil, 10)
	slogNew(b).Info("x\x1b[2Jy", "file", "a\x1bb")
	lines, _ := b.Drain()
	if strings.ContainsRune(lines[0].Msg+lines[0].Attrs, 0x1b) {
		t.Fatalf("log line keeps escapes: %+v", lines[0])
	}
}

func TestClientCap(t *testing.T) {
	cs := newClientSet()
	for i := range maxClients + 10 {
		cs.apply(tracker.Event{Time: at(i), MAC: fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff), Stage: tracker.StageDHCP, Event: tracker.KindStart})
	}
	if n := len(cs.order); n > maxClients || n != len(cs.byKey) {
		t.Fatalf("%d clients kept (%d by key), cap %d", n, len(cs.byKey), maxClients)
	}
	if cs.byKey["02:00:00:00:00:00"] != nil {
		t.Errorf("the oldest client survived eviction")
	}
}

// TestStartMulticastKey: g starts the sessions waiting for a manual start
// and says how many run.
func TestStartMulticastKey(t *testing.T) {
	be := scripted()
	m := runUntil(t, be, 80, 24, "started 1 multicast sessions", keys("g"))
	if calls := strings.Join(be.Calls(), ", "); calls != "multicast start" {
		t.Fatalf("calls = %q", calls)
	}
	if !strings.Contains(m.status, "started 1 multicast sessions") {
		t.Errorf("status %q", m.status)
	}
}
