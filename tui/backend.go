// Package tui is the technician's console: a bubbletea program that shows
// every client's progress through the boot stages, the service ports and
// the logs, and lets the operator steer the running services. It reads the
// same tracker event stream that headless mode prints; everything it does
// to the services goes through the Backend interface, called only from
// commands.
package tui

import (
	"time"

	"github.com/netdeploy/netdeploy/server/tracker"
	"github.com/netdeploy/netdeploy/server/udprange"
)

// Backend is the console's view of the running services. The console calls
// it only from tea.Cmd functions, never from Update or View.
type Backend interface {
	// Snapshot returns the services' state now.
	Snapshot() Snapshot
	// Events drains the client events that arrived since the last call.
	Events() []tracker.Event
	// Logs drains the log lines that arrived since the last call.
	Logs() []LogLine

	SetAuthorization(on bool) error
	SetDHCPMode(mode string) error
	SetUDPRange(r udprange.Range) error
	SetPolicy(mode string) error
	Approve(mac string) error
	Deny(mac string) error
	// Save writes the current settings to the configuration file and
	// returns its path.
	Save() (string, error)
	// StartMulticast starts the multicast sessions waiting for a manual
	// start and returns how many sessions run.
	StartMulticast() (int, error)
}

// Snapshot is the state the header, the Ports screen and the Settings
// screen show.
type Snapshot struct {
	At            time.Time
	Started       time.Time
	Interface     string
	ServerIP      string
	DHCPMode      string // authoritative, proxy or off
	Authorization bool   // authorization checking enabled
	Authorized    bool
	Reason        string // why not authorized (names the other server)
	UDPRange      string
	Policy        string // all, known or approve
	Images        string // image store summary
	ConfigFile    string // where Save writes
	Ports         []PortState
	Sessions      []Session
	Pending       []Pending
}

// Port states.
const (
	PortListening = "listening"
	PortError     = "error"
	PortOff       = "off"
	PortMissing   = "not built" // the service does not exist in this build yet
)

// PortState is one service port and its traffic so far.
type PortState struct {
	Service    string
	Proto      string // udp or tcp
	Port       string // "67", or a range "64001-65000"
	State      string
	Reason     string
	PacketsIn  uint64
	PacketsOut uint64
	BytesIn    uint64
	BytesOut   uint64
	Active     int64 // sessions or connections in progress
}

// Session is a transfer in progress on a port (a TFTP session on its
// range port, an HTTP download).
type Session struct {
	Proto     string
	Client    string // ip:port
	LocalPort int
	File      string
	Bytes     int64
	Total     int64
	Started   time.Time
}

// Pending is a client waiting for the operator's approval.
type Pending struct {
	MAC   string
	Since time.Time
}
