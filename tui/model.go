package tui

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/progress"
	"github.com/charmbracelet/bubbles/table"
	"github.com/charmbracelet/bubbles/textinput"
	"github.com/charmbracelet/bubbles/viewport"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"github.com/netdeploy/netdeploy/server/tracker"
	"github.com/netdeploy/netdeploy/server/udprange"
)

type screen int

const (
	screenClients screen = iota
	screenPorts
	screenSettings
	screenLogs
	screenDetail
)

var screenNames = [...]string{"Clients", "Ports", "Settings", "Logs"}

// Minimum terminal size the layout is made for.
const (
	MinWidth  = 80
	MinHeight = 24
)

// DefaultRefresh is how often the console folds new events and redraws:
// updates are coalesced to this rate however fast events arrive.
const DefaultRefresh = 80 * time.Millisecond

// maxLogLines caps the log pane's memory.
const maxLogLines = 5000

// Options configure a console Model.
type Options struct {
	// Refresh is the redraw interval (DefaultRefresh when zero).
	Refresh time.Duration
	// Renderer styles the output (nil: the terminal's default).
	Renderer *lipgloss.Renderer
	// Profile is the colour profile of the progress bars (the renderer's
	// when zero-valued and Renderer is set, else the terminal's).
	Profile *termenv.Profile
}

// Typed messages.
type (
	// tickMsg asks for the next coalesced refresh.
	tickMsg struct{}
	// refreshMsg carries everything new since the last refresh.
	refreshMsg struct {
		snap   Snapshot
		events []tracker.Event
		logs   []LogLine
		// settled: no action was queued or running when the snapshot
		// was asked for, and done actions had completed by then.
		settled bool
		done    int
	}
	// actionMsg reports what an operator action did.
	actionMsg struct {
		text      string
		err       error
		offerSave bool
	}
)

// settings rows.
const (
	setAuthz = iota
	setMode
	setRange
	setPolicy
	setSave
	setFirstPending
)

// Model is the console.
type Model struct {
	be     Backend
	keys   KeyMap
	st     Styles
	opts   Options
	width  int
	height int

	screen   screen
	snap     Snapshot
	clients  *clientSet
	sel      int    // selected client's row
	selKey   string // and its key
	top      int    // first visible client row
	detail   string
	detailVP viewport.Model

	ports      table.Model
	recent     map[string]portRate
	setSel     int
	editing    bool
	rangeInput textinput.Model

	logs        []LogLine
	logsTrimmed int // times m.logs was trimmed (invalidates logView)
	logView     logView
	logLevel    slog.Level
	logVP       viewport.Model
	logFollow   bool

	help        help.Model
	bar         progress.Model
	status      string
	statusErr   bool
	quitting    bool
	dropped     int64
	busy        bool // an action is running
	actionsDone int  // actions completed
	want        wanted
	queue       []action // actions waiting for it
}

// New returns a console on be.
func New(be Backend, opts Options) *Model {
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultRefresh
	}
	st := NewStyles(opts.Renderer)
	ti := textinput.New()
	ti.Prompt = "UDP range: "
	ti.Placeholder = "64001-65000"
	ti.CharLimit = 11
	ti.Width = 14
	ti.Cursor.SetMode(cursor.CursorStatic)
	popts := []progress.Option{progress.WithSolidFill(st.BarFull), progress.WithoutPercentage(), progress.WithFillCharacters('█', '░')}
	if opts.Profile != nil {
		popts = append(popts, progress.WithColorProfile(*opts.Profile))
	} else if opts.Renderer != nil {
		popts = append(popts, progress.WithColorProfile(opts.Renderer.ColorProfile()))
	}
	h := help.New()
	h.Styles.ShortKey = st.Value
	h.Styles.FullKey = st.Value
	h.Styles.ShortDesc = st.Muted
	h.Styles.FullDesc = st.Muted
	h.Styles.ShortSeparator = st.Muted
	h.Styles.FullSeparator = st.Muted
	t := table.New(table.WithFocused(true))
	ts := table.DefaultStyles()
	ts.Header = st.ColHeader.PaddingRight(1)
	ts.Cell = lipgloss.NewStyle().PaddingRight(1)
	ts.Selected = st.Selected
	t.SetStyles(ts)
	return &Model{
		be:         be,
		keys:       DefaultKeyMap(),
		st:         st,
		opts:       opts,
		width:      MinWidth,
		height:     MinHeight,
		clients:    newClientSet(),
		recent:     map[string]portRate{},
		ports:      t,
		rangeInput: ti,
		logLevel:   slog.LevelInfo,
		logFollow:  true,
		logVP:      viewport.New(MinWidth, 10),
		detailVP:   viewport.New(MinWidth, 10),
		help:       h,
		bar:        progress.New(popts...),
	}
}

// Init starts the refresh loop.
func (m *Model) Init() tea.Cmd { return m.refresh() }

// refresh drains the backend; it runs as a command, off the UI loop.
func (m *Model) refresh() tea.Cmd {
	be, settled, done := m.be, !m.busy, m.actionsDone
	return func() tea.Msg {
		return refreshMsg{snap: be.Snapshot(), events: be.Events(), logs: be.Logs(), settled: settled, done: done}
	}
}

// wanted is what the operator just set and the backend may not show yet:
// kept over snapshots until one is taken after the actions completed.
type wanted struct {
	authz        *bool
	mode, policy *string
}

func (w wanted) apply(s *Snapshot) {
	if w.authz != nil {
		s.Authorization = *w.authz
	}
	if w.mode != nil {
		s.DHCPMode = *w.mode
	}
	if w.policy != nil {
		s.Policy = *w.policy
	}
}

func (m *Model) tick() tea.Cmd {
	return tea.Tick(m.opts.Refresh, func(time.Time) tea.Msg { return tickMsg{} })
}

// action is one operator change, run against the backend in a command.
type action struct {
	fn        func() (string, error)
	offerSave bool
}

func (a action) cmd() tea.Cmd {
	return func() tea.Msg {
		text, err := a.fn()
		return actionMsg{text: text, err: err, offerSave: a.offerSave}
	}
}

// act queues an operator action: actions run one at a time, in the order
// the keys were pressed.
func (m *Model) act(fn func() (string, error), offerSave bool) tea.Cmd {
	a := action{fn: fn, offerSave: offerSave}
	if m.busy {
		m.queue = append(m.queue, a)
		return nil
	}
	m.busy = true
	return a.cmd()
}

// Update implements tea.Model.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.layout()
		return m, nil
	case tickMsg:
		return m, m.refresh()
	case refreshMsg:
		m.fold(msg)
		return m, m.tick()
	case actionMsg:
		m.actionsDone++
		m.statusErr = msg.err != nil
		switch {
		case msg.err != nil:
			m.status = msg.err.Error()
		case msg.offerSave:
			m.status = msg.text + " — press s to save to the config file"
		default:
			m.status = msg.text
		}
		if len(m.queue) > 0 {
			next := m.queue[0]
			m.queue = m.queue[1:]
			return m, next.cmd()
		}
		m.busy = false
		return m, nil
	case tea.KeyMsg:
		return m.key(msg)
	}
	return m, nil
}

// fold takes in one refresh.
func (m *Model) fold(r refreshMsg) {
	if r.settled && r.done == m.actionsDone && !m.busy {
		m.want = wanted{}
	}
	m.want.apply(&r.snap)
	m.snap = r.snap
	updateRates(m.recent, r.snap.Ports, r.snap.At)
	for _, e := range r.events {
		if e.Event == tracker.KindDropped && e.MAC == "" {
			m.dropped += e.Bytes
			continue
		}
		m.clients.apply(e)
	}
	m.clients.syncPending(r.snap.Pending)
	if len(r.logs) > 0 {
		m.logs = append(m.logs, r.logs...)
		if len(m.logs) > maxLogLines+maxLogLines/4 {
			// Trim in steps, so that the rendered pane is rebuilt rarely.
			m.logs = append(m.logs[:0:0], m.logs[len(m.logs)-maxLogLines:]...)
			m.logsTrimmed++
		}
	}
	// The selection and the open detail follow their client, wherever
	// new clients sort in and whatever key it has now.
	m.detail = m.clients.current(m.detail)
	if m.selKey != "" {
		m.selKey = m.clients.current(m.selKey)
		for i, c := range m.clients.sorted() {
			if c.Key == m.selKey {
				m.sel = i
			}
		}
	}
	if n := len(m.clients.order); m.sel >= n {
		m.sel = max(0, n-1)
	}
	m.layout()
}

// layout sizes the components to the window and refreshes their content.
func (m *Model) layout() {
	bodyH := m.bodyHeight()
	m.bar.Width = m.barWidth()
	m.detailVP.Width, m.detailVP.Height = m.width, bodyH
	if m.screen == screenDetail {
		m.detailVP.SetContent(m.detailContent())
	}
	m.logVP.Width, m.logVP.Height = m.width, bodyH-1
	if m.screen == screenLogs {
		m.logVP.SetContent(m.logContent())
		if m.logFollow {
			m.logVP.GotoBottom()
		}
	}
	if m.screen == screenPorts {
		m.layoutPorts(bodyH)
	}
}

func (m *Model) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	if m.editing {
		switch {
		case k.Type == tea.KeyCtrlC:
			m.quitting = true
			return m, tea.Quit
		case key.Matches(k, m.keys.Submit):
			return m, m.submitRange()
		case key.Matches(k, m.keys.Cancel):
			m.editing = false
			m.rangeInput.Blur()
			m.status, m.statusErr = "range unchanged", false
			return m, nil
		}
		var cmd tea.Cmd
		m.rangeInput, cmd = m.rangeInput.Update(k)
		return m, cmd
	}
	switch {
	case key.Matches(k, m.keys.Quit):
		m.quitting = true
		return m, tea.Quit
	case key.Matches(k, m.keys.Help):
		m.help.ShowAll = !m.help.ShowAll
		m.layout()
		return m, nil
	case key.Matches(k, m.keys.Next):
		m.setScreen((m.tabScreen() + 1) % screen(len(screenNames)))
		return m, nil
	case key.Matches(k, m.keys.Prev):
		m.setScreen((m.tabScreen() + screen(len(screenNames)) - 1) % screen(len(screenNames)))
		return m, nil
	case key.Matches(k, m.keys.Clients):
		m.setScreen(screenClients)
		return m, nil
	case key.Matches(k, m.keys.Ports):
		m.setScreen(screenPorts)
		return m, nil
	case key.Matches(k, m.keys.Settings):
		m.setScreen(screenSettings)
		return m, nil
	case key.Matches(k, m.keys.Logs):
		m.setScreen(screenLogs)
		return m, nil
	case key.Matches(k, m.keys.Authorization):
		return m, m.toggleAuthz()
	case key.Matches(k, m.keys.StartMulticast):
		be := m.be
		return m, m.act(func() (string, error) {
			n, err := be.StartMulticast()
			if err != nil {
				return "", fmt.Errorf("multicast not started: %w", err)
			}
			return fmt.Sprintf("started %d multicast sessions", n), nil
		}, false)
	case key.Matches(k, m.keys.Mode):
		return m, m.nextMode()
	case key.Matches(k, m.keys.Policy):
		return m, m.nextPolicy()
	case key.Matches(k, m.keys.Range):
		m.startRangeEdit()
		return m, textinput.Blink
	case key.Matches(k, m.keys.Save):
		be := m.be
		return m, m.act(func() (string, error) {
			p, err := be.Save()
			if err != nil {
				return "", fmt.Errorf("settings not saved: %w", err)
			}
			return "settings saved to " + p, nil
		}, false)
	}
	switch m.screen {
	case screenClients:
		return m.keyClients(k)
	case screenDetail:
		if key.Matches(k, m.keys.Back) {
			m.screen = screenClients
			return m, nil
		}
		var cmd tea.Cmd
		m.detailVP, cmd = m.detailVP.Update(k)
		return m, cmd
	case screenPorts:
		var cmd tea.Cmd
		m.ports, cmd = m.ports.Update(k)
		return m, cmd
	case screenSettings:
		return m.keySettings(k)
	case screenLogs:
		if key.Matches(k, m.keys.Level) {
			m.logLevel = nextLevel(m.logLevel)
			m.logFollow = true
			m.layout()
			return m, nil
		}
		if key.Matches(k, m.keys.Follow) {
			m.logFollow = true
			m.logVP.GotoBottom()
			return m, nil
		}
		var cmd tea.Cmd
		m.logVP, cmd = m.logVP.Update(k)
		m.logFollow = m.logVP.AtBottom()
		return m, cmd
	}
	return m, nil
}

// tabScreen is the tab a screen belongs to (details belong to Clients).
func (m *Model) tabScreen() screen {
	if m.screen == screenDetail {
		return screenClients
	}
	return m.screen
}

func (m *Model) setScreen(s screen) {
	m.screen = s
	m.layout()
}

func (m *Model) keyClients(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	list := m.clients.sorted()
	defer func() {
		if m.sel < len(list) {
			m.selKey = list[m.sel].Key
		}
	}()
	switch {
	case key.Matches(k, m.keys.Up):
		m.sel = max(0, m.sel-1)
	case key.Matches(k, m.keys.Down):
		m.sel = min(max(0, len(list)-1), m.sel+1)
	case key.Matches(k, m.keys.PageUp):
		m.sel = max(0, m.sel-m.listHeight())
	case key.Matches(k, m.keys.PageDown):
		m.sel = min(max(0, len(list)-1), m.sel+m.listHeight())
	case key.Matches(k, m.keys.Open):
		if m.sel < len(list) {
			m.detail = list[m.sel].Key
			m.screen = screenDetail
			m.detailVP.GotoTop()
			m.layout()
		}
	case key.Matches(k, m.keys.Approve), key.Matches(k, m.keys.Deny):
		if m.sel >= len(list) {
			return m, nil
		}
		c := list[m.sel]
		switch {
		case c.MAC == "":
			m.status, m.statusErr = "this client has no MAC yet: nothing to approve", true
		case !c.Pending && !c.Denied && m.snap.Policy == "all":
			m.status, m.statusErr = c.MAC+" is not waiting for approval (policy all)", true
		default:
			return m, m.decide(c.MAC, key.Matches(k, m.keys.Approve))
		}
	}
	return m, nil
}

func (m *Model) keySettings(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	n := setFirstPending + len(m.snap.Pending)
	switch {
	case key.Matches(k, m.keys.Up):
		m.setSel = max(0, m.setSel-1)
	case key.Matches(k, m.keys.Down):
		m.setSel = min(n-1, m.setSel+1)
	case key.Matches(k, m.keys.Open):
		switch m.setSel {
		case setAuthz:
			return m, m.toggleAuthz()
		case setMode:
			return m, m.nextMode()
		case setRange:
			m.startRangeEdit()
			return m, textinput.Blink
		case setPolicy:
			return m, m.nextPolicy()
		case setSave:
			return m.key(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{'s'}})
		}
	case key.Matches(k, m.keys.Approve), key.Matches(k, m.keys.Deny):
		if i := m.setSel - setFirstPending; i >= 0 && i < len(m.snap.Pending) {
			return m, m.decide(m.snap.Pending[i].MAC, key.Matches(k, m.keys.Approve))
		}
	}
	return m, nil
}

func (m *Model) decide(mac string, approve bool) tea.Cmd {
	be := m.be
	if approve {
		return m.act(func() (string, error) { return "approved " + mac, be.Approve(mac) }, false)
	}
	return m.act(func() (string, error) { return "denied " + mac, be.Deny(mac) }, false)
}

func (m *Model) toggleAuthz() tea.Cmd {
	be, on := m.be, !m.snap.Authorization
	m.snap.Authorization = on // shown at once; a later refresh confirms
	m.want.authz = &on
	return m.act(func() (string, error) {
		if err := be.SetAuthorization(on); err != nil {
			return "", fmt.Errorf("authorization unchanged: %w", err)
		}
		if on {
			return "DHCP authorization on: answering only while no other DHCP server is seen", nil
		}
		return "DHCP authorization off: answering regardless of other servers", nil
	}, true)
}

var dhcpModes = [...]string{"authoritative", "proxy", "off"}
var policies = [...]string{"all", "known", "approve"}

func nextOf(list []string, cur string) string {
	for i, v := range list {
		if v == cur {
			return list[(i+1)%len(list)]
		}
	}
	return list[0]
}

func (m *Model) nextMode() tea.Cmd {
	be, mode := m.be, nextOf(dhcpModes[:], m.snap.DHCPMode)
	m.snap.DHCPMode = mode
	m.want.mode = &mode
	return m.act(func() (string, error) {
		if err := be.SetDHCPMode(mode); err != nil {
			return "", fmt.Errorf("DHCP mode unchanged: %w", err)
		}
		return "DHCP mode is now " + mode, nil
	}, true)
}

func (m *Model) nextPolicy() tea.Cmd {
	be, p := m.be, nextOf(policies[:], m.snap.Policy)
	m.snap.Policy = p
	m.want.policy = &p
	return m.act(func() (string, error) {
		if err := be.SetPolicy(p); err != nil {
			return "", fmt.Errorf("PXE policy unchanged: %w", err)
		}
		return "PXE policy is now " + p, nil
	}, true)
}

func (m *Model) startRangeEdit() {
	m.screen = screenSettings
	m.setSel = setRange
	m.editing = true
	m.rangeInput.SetValue(m.snap.UDPRange)
	m.rangeInput.CursorEnd()
	m.rangeInput.Focus()
	m.status, m.statusErr = "type FIRST-LAST (1024-65535), enter applies, esc keeps the old range", false
	m.layout()
}

// ValidateRange checks an edited UDP range: the format, 1024-65535, first
// at most last, and room for the sessions in progress.
func ValidateRange(s string, active int) (udprange.Range, error) {
	r, err := udprange.Parse(s)
	if err != nil {
		return r, err
	}
	if active > 0 && r.Size() < active {
		return r, fmt.Errorf("%s has %d ports but %d sessions are in progress", r, r.Size(), active)
	}
	return r, nil
}

func (m *Model) submitRange() tea.Cmd {
	old := m.snap.UDPRange
	r, err := ValidateRange(m.rangeInput.Value(), len(m.snap.Sessions))
	if err != nil {
		// Keep the field open so the operator can fix it.
		m.status, m.statusErr = fmt.Sprintf("invalid range: %v; keeping %s", err, old), true
		return nil
	}
	m.editing = false
	m.rangeInput.Blur()
	be := m.be
	return m.act(func() (string, error) {
		if err := be.SetUDPRange(r); err != nil {
			return "", fmt.Errorf("range unchanged (%s): %w", old, err)
		}
		return "UDP range is now " + r.String() + " (next session)", nil
	}, true)
}

func nextLevel(l slog.Level) slog.Level {
	switch l {
	case slog.LevelDebug:
		return slog.LevelInfo
	case slog.LevelInfo:
		return slog.LevelWarn
	case slog.LevelWarn:
		return slog.LevelError
	}
	return slog.LevelDebug
}

// Quitting reports whether the operator asked to stop.
func (m *Model) Quitting() bool { return m.quitting }

// View implements tea.Model.
func (m *Model) View() string {
	if m.width < MinWidth || m.height < MinHeight {
		return block(fmt.Sprintf("netdeploy needs a terminal of at least %dx%d (this one is %dx%d).\nServices keep running; q quits.", MinWidth, MinHeight, m.width, m.height), m.width, m.height)
	}
	header := m.viewHeader()
	tabs := m.viewTabs()
	var body string
	h := m.bodyHeight()
	switch m.screen {
	case screenClients:
		body = m.viewClients(h)
	case screenDetail:
		body = m.detailVP.View()
	case screenPorts:
		body = m.viewPorts(h)
	case screenSettings:
		body = m.viewSettings(h)
	case screenLogs:
		body = m.viewLogs(h)
	}
	return strings.Join([]string{header, tabs, block(body, m.width, h), m.viewStatus(), m.viewHelp()}, "\n")
}

func (m *Model) headerLines() int { return 2 }

func (m *Model) helpLines() int {
	if !m.help.ShowAll {
		return 1
	}
	n := 0
	for _, col := range m.keys.helpFor(m.screen, m.editing).FullHelp() {
		n = max(n, len(col))
	}
	return n
}

// bodyHeight is what is left for the screen between the header, the tab
// bar, the status line and the help.
func (m *Model) bodyHeight() int {
	return max(1, m.height-m.headerLines()-1-1-m.helpLines())
}

func (m *Model) viewHelp() string {
	m.help.Width = m.width
	return block(m.help.View(m.keys.helpFor(m.screen, m.editing)), m.width, m.helpLines())
}

func (m *Model) viewStatus() string {
	s := m.status
	if m.dropped > 0 && s == "" {
		s = fmt.Sprintf("console fell behind: %d events dropped", m.dropped)
	}
	if m.statusErr {
		return clip(m.st.Error.Render(s), m.width)
	}
	return clip(m.st.Notice.Render(s), m.width)
}

func (m *Model) viewTabs() string {
	n := m.clients.counts()
	var parts []string
	for i, name := range screenNames {
		label := fmt.Sprintf("%d %s", i+1, name)
		if screen(i) == screenClients {
			label += fmt.Sprintf(" (%d)", n.All)
		}
		if screen(i) == screenSettings && len(m.snap.Pending) > 0 {
			label += fmt.Sprintf(" (%d pending)", len(m.snap.Pending))
		}
		if screen(i) == m.tabScreen() {
			parts = append(parts, m.st.TabActive.Render(label))
		} else {
			parts = append(parts, m.st.Tab.Render(label))
		}
	}
	return clip(strings.Join(parts, m.st.Muted.Render("│")), m.width)
}

// viewHeader is two lines: the server, then the state of things.
func (m *Model) viewHeader() string {
	s := m.snap
	lv := func(label, value string) string { return m.st.Label.Render(label+" ") + m.st.Value.Render(value) }
	authz := m.st.Muted.Render("authorization off")
	if s.Authorization {
		if s.Authorized {
			authz = m.st.Good.Render("AUTHORIZED")
		} else {
			authz = m.st.Bad.Render("UNAUTHORIZED: " + orDash(s.Reason))
		}
	}
	mode := s.DHCPMode
	if mode == "" {
		mode = "-"
	}
	up := "-"
	if !s.Started.IsZero() && !s.At.IsZero() {
		up = clock(s.At.Sub(s.Started))
	}
	n := m.clients.counts()
	segs := []string{
		m.st.Title.Render("netdeploy"),
		lv("on", orDash(s.Interface)+" "+orDash(s.ServerIP)),
		lv("dhcp", mode),
		authz,
		lv("udp", orDash(s.UDPRange)),
		lv("policy", orDash(s.Policy)),
		lv("images", orDash(s.Images)),
		lv("up", up),
		lv("clients", fmt.Sprint(n.All)) + m.st.Muted.Render(fmt.Sprintf(" %d active %d waiting %d failed", n.Active, n.Pending, n.Failed)),
	}
	// Flow the segments over the header's lines; what does not fit is cut.
	lines := make([]string, m.headerLines())
	i := 0
	for _, seg := range segs {
		for i < len(lines) && lines[i] != "" && lipgloss.Width(lines[i])+2+lipgloss.Width(seg) > m.width {
			i++
		}
		if i == len(lines) {
			i--
			lines[i] = clip(lines[i]+"  "+seg, m.width)
			continue
		}
		if lines[i] != "" {
			lines[i] += "  "
		}
		lines[i] += seg
	}
	for j := range lines {
		lines[j] = clip(lines[j], m.width)
	}
	return strings.Join(lines, "\n")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
