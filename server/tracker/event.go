// Package tracker holds the typed client events every protocol server emits
// and the tracker that folds them into one record per client and fans them
// out to subscribers (the console and the headless JSON stream).
package tracker

import (
	"net"
	"time"
)

// Stage is a step of a client's deployment.
type Stage string

// Client stages, in boot order; StageFailed is terminal.
const (
	StageDHCP      Stage = "dhcp"
	StagePXE       Stage = "pxe"
	StageTFTP      Stage = "tftp"
	StageHTTP      Stage = "http"
	StageRPC       Stage = "rpc"
	StageSMB       Stage = "smb"
	StageMulticast Stage = "multicast"
	StageApply     Stage = "apply"
	StageDone      Stage = "done"
	StageFailed    Stage = "failed"
)

// Kind says what happened within a stage.
type Kind string

// Event kinds. Client events use start, progress, done and error; service
// events (empty MAC) use the service kinds.
const (
	KindStart    Kind = "start"
	KindProgress Kind = "progress"
	KindDone     Kind = "done"
	KindError    Kind = "error"
	// KindLog is a line the client itself logged (WDS LOG_MSG); Detail
	// holds the text.
	KindLog Kind = "log"

	// Service events: a listener came up, authorization changed, or
	// something needs the operator's attention.
	KindListening    Kind = "listening"
	KindAuthorized   Kind = "authorized"
	KindUnauthorized Kind = "unauthorized"
	KindPending      Kind = "pending"
	KindDropped      Kind = "dropped"
)

// Event is one thing that happened to a client (MAC set) or to a service
// (MAC empty). Its JSON form is the headless mode's output schema.
type Event struct {
	Time   time.Time `json:"time"`
	MAC    string    `json:"mac"`
	IP     string    `json:"ip"`
	Stage  Stage     `json:"stage"`
	Event  Kind      `json:"event"`
	Port   int       `json:"port"`
	Proto  string    `json:"proto,omitempty"`
	Arch   string    `json:"arch,omitempty"`
	File   string    `json:"file,omitempty"`
	Bytes  int64     `json:"bytes,omitempty"`
	Total  int64     `json:"total,omitempty"`
	Detail string    `json:"detail,omitempty"`
	// Peer is the remote address and port of the exchange (for a TFTP
	// session, the client's port; LocalPort is the session's own port).
	Peer      string `json:"peer,omitempty"`
	LocalPort int    `json:"local_port,omitempty"`
}

// Emitter receives events. Implementations must never block the caller.
type Emitter interface {
	Emit(Event)
}

// EmitterFunc adapts a function to Emitter.
type EmitterFunc func(Event)

// Emit calls f(e).
func (f EmitterFunc) Emit(e Event) { f(e) }

// Nop is an Emitter that drops every event.
type Nop struct{}

// Emit does nothing.
func (Nop) Emit(Event) {}

// MACString formats a hardware address the way events carry it.
func MACString(hw net.HardwareAddr) string {
	if len(hw) == 0 {
		return ""
	}
	return hw.String()
}

// Service reports whether e is about a service rather than a client (a
// listener, the authorization state, dropped events), even when it
// carries the server's own address.
func (e Event) Service() bool {
	switch e.Event {
	case KindListening, KindAuthorized, KindUnauthorized, KindDropped:
		return e.MAC == ""
	}
	return false
}
