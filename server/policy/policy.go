// Package policy decides which clients may boot: every client, only known
// MACs, or unknown clients after the operator approves them.
package policy

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Mode is the PXE policy (config key pxe.policy).
type Mode string

// Modes.
const (
	All     Mode = "all"     // every client boots
	Known   Mode = "known"   // only listed MACs boot
	Approve Mode = "approve" // unknown clients wait for the operator
)

// ParseMode checks a pxe.policy value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(s)); m {
	case All, Known, Approve:
		return m, nil
	}
	return "", fmt.Errorf("unknown policy %q (want all, known or approve)", s)
}

// Decision is the answer for one client.
type Decision int

// Decisions.
const (
	Allow   Decision = iota
	Deny             // not known (policy known) or refused by the operator
	Pending          // waiting for the operator
)

func (d Decision) String() string {
	switch d {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return "pending"
}

// Policy decides whether a client (by MAC, in net.HardwareAddr.String()
// form) may boot.
type Policy interface {
	Decide(mac string) Decision
}

// PendingClient is a client waiting for approval.
type PendingClient struct {
	MAC   string    `json:"mac"`
	Since time.Time `json:"since"`
}

// Static is the simple Policy: a mode, a list of known MACs, and the
// operator's approvals and denials. Safe for concurrent use.
type Static struct {
	// OnPending, if set, is called (outside the lock) the first time a
	// client is put on the pending list.
	OnPending func(mac string)

	mu       sync.Mutex
	mode     Mode
	known    map[string]bool
	approved map[string]bool
	denied   map[string]bool
	pending  map[string]time.Time
}

// NewStatic returns a policy in mode with the given known MACs.
func NewStatic(mode Mode, known []string) *Static {
	s := &Static{mode: mode, known: map[string]bool{}, approved: map[string]bool{}, denied: map[string]bool{}, pending: map[string]time.Time{}}
	for _, m := range known {
		s.known[strings.ToLower(m)] = true
	}
	return s
}

// Decide implements Policy.
func (s *Static) Decide(mac string) Decision {
	mac = strings.ToLower(mac)
	s.mu.Lock()
	var d Decision
	first := false
	switch {
	case s.mode == All || s.known[mac] || s.approved[mac]:
		d = Allow
	case s.denied[mac] || s.mode == Known:
		d = Deny
	default:
		d = Pending
		if _, ok := s.pending[mac]; !ok {
			s.pending[mac] = time.Now()
			first = true
		}
	}
	cb := s.OnPending
	s.mu.Unlock()
	if first && cb != nil {
		cb(mac)
	}
	return d
}

// Mode returns the current mode.
func (s *Static) Mode() Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// SetMode changes the mode at once.
func (s *Static) SetMode(m Mode) {
	s.mu.Lock()
	s.mode = m
	s.mu.Unlock()
}

// Approve lets mac boot from now on.
func (s *Static) Approve(mac string) {
	mac = strings.ToLower(mac)
	s.mu.Lock()
	delete(s.pending, mac)
	delete(s.denied, mac)
	s.approved[mac] = true
	s.mu.Unlock()
}

// Deny refuses mac from now on.
func (s *Static) Deny(mac string) {
	mac = strings.ToLower(mac)
	s.mu.Lock()
	delete(s.pending, mac)
	delete(s.approved, mac)
	s.denied[mac] = true
	s.mu.Unlock()
}

// Pending lists the clients waiting for approval, oldest first.
func (s *Static) Pending() []PendingClient {
	s.mu.Lock()
	out := make([]PendingClient, 0, len(s.pending))
	for m, t := range s.pending {
		out = append(out, PendingClient{MAC: m, Since: t})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b PendingClient) int { return a.Since.Compare(b.Since) })
	return out
}
