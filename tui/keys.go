package tui

import "github.com/charmbracelet/bubbles/key"

// KeyMap is every key the console answers, with its help text.
type KeyMap struct {
	Next, Prev                     key.Binding
	Clients, Ports, Settings, Logs key.Binding
	Up, Down, PageUp, PageDown     key.Binding
	Open, Back                     key.Binding
	Authorization, Mode, Range     key.Binding
	Policy, Approve, Deny, Save    key.Binding
	StartMulticast                 key.Binding
	Level, Follow, Help, Quit      key.Binding
	Submit, Cancel                 key.Binding
}

// DefaultKeyMap is the console's key map.
func DefaultKeyMap() KeyMap {
	b := func(help string, keys ...string) key.Binding {
		return key.NewBinding(key.WithKeys(keys...), key.WithHelp(keys[0], help))
	}
	k := KeyMap{
		Next:           b("next screen", "tab"),
		Prev:           b("previous screen", "shift+tab"),
		Clients:        b("clients", "1"),
		Ports:          b("ports", "2"),
		Settings:       b("settings", "3"),
		Logs:           b("logs", "4"),
		Up:             b("up", "up", "k"),
		Down:           b("down", "down", "j"),
		PageUp:         b("page up", "pgup"),
		PageDown:       b("page down", "pgdown"),
		Open:           b("open", "enter"),
		Back:           b("back", "esc"),
		Authorization:  b("toggle DHCP authorization", "a"),
		Mode:           b("switch DHCP mode", "m"),
		Range:          b("edit UDP range", "r"),
		Policy:         b("switch PXE policy", "p"),
		Approve:        b("approve client", "y"),
		Deny:           b("deny client", "n"),
		Save:           b("save settings", "s"),
		StartMulticast: b("start multicast sessions", "g"),
		Level:          b("log level filter", "l"),
		Follow:         b("follow the newest", "G", "end"),
		Help:           b("more keys", "?"),
		Quit:           b("quit", "q", "ctrl+c"),
		Submit:         b("apply", "enter"),
		Cancel:         b("cancel", "esc"),
	}
	k.Up.SetHelp("↑/k", "up")
	k.Down.SetHelp("↓/j", "down")
	k.Quit.SetHelp("q", "quit")
	return k
}

// keyHelp adapts the key map to bubbles/help for one screen.
type keyHelp struct {
	short []key.Binding
	full  [][]key.Binding
}

func (h keyHelp) ShortHelp() []key.Binding  { return h.short }
func (h keyHelp) FullHelp() [][]key.Binding { return h.full }

// helpFor returns the keys worth showing on a screen.
func (k KeyMap) helpFor(s screen, editing bool) keyHelp {
	if editing {
		return keyHelp{short: []key.Binding{k.Submit, k.Cancel}}
	}
	global := []key.Binding{k.Authorization, k.Mode, k.Range, k.Policy, k.Save, k.StartMulticast}
	nav := []key.Binding{k.Next, k.Clients, k.Ports, k.Settings, k.Logs}
	var local []key.Binding
	switch s {
	case screenClients:
		local = []key.Binding{k.Up, k.Down, k.Open, k.Approve, k.Deny}
	case screenDetail:
		local = []key.Binding{k.Up, k.Down, k.Back}
	case screenPorts:
		local = []key.Binding{k.Up, k.Down}
	case screenSettings:
		local = []key.Binding{k.Up, k.Down, k.Open, k.Approve, k.Deny}
	case screenLogs:
		local = []key.Binding{k.Up, k.Down, k.Level, k.Follow}
	}
	short := append(append([]key.Binding{}, local...), k.Next, k.Authorization, k.Help, k.Quit)
	return keyHelp{short: short, full: [][]key.Binding{local, global, append(nav, k.Help, k.Quit)}}
}
