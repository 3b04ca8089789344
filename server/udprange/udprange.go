// Package udprange holds the operator's UDP port range (config key
// udp_range), used for TFTP transfer sessions and multicast.
package udprange

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
)

// Range is an inclusive range of UDP ports.
type Range struct {
	First, Last int
}

// Default is the deployment service's default range.
func Default() Range { return Range{First: 64001, Last: 65000} }

// Parse reads "FIRST-LAST". Ports must lie in 1024-65535 and FIRST must not
// exceed LAST.
func Parse(s string) (Range, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return Range{}, fmt.Errorf("%q is not FIRST-LAST", s)
	}
	first, err1 := strconv.Atoi(strings.TrimSpace(a))
	last, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil {
		return Range{}, fmt.Errorf("%q is not FIRST-LAST with numeric ports", s)
	}
	r := Range{First: first, Last: last}
	return r, r.Validate()
}

// Validate checks the range.
func (r Range) Validate() error {
	switch {
	case r.First < 1024 || r.Last < 1024:
		return fmt.Errorf("%s includes ports below 1024", r)
	case r.First > 65535 || r.Last > 65535:
		return fmt.Errorf("%s includes ports above 65535", r)
	case r.First > r.Last:
		return fmt.Errorf("%s is inverted (first port above last)", r)
	}
	return nil
}

// Size is the number of ports in the range.
func (r Range) Size() int { return r.Last - r.First + 1 }

// Contains reports whether port lies in the range.
func (r Range) Contains(port int) bool { return port >= r.First && port <= r.Last }

func (r Range) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last) }

// Live is a range that can change while servers run; readers see the new
// value at their next session.
type Live struct {
	v atomic.Pointer[Range]
}

// NewLive returns a Live holding r.
func NewLive(r Range) *Live {
	l := &Live{}
	l.v.Store(&r)
	return l
}

// Get returns the current range.
func (l *Live) Get() Range { return *l.v.Load() }

// Set validates and installs r.
func (l *Live) Set(r Range) error {
	if err := r.Validate(); err != nil {
		return err
	}
	l.v.Store(&r)
	return nil
}
