//go:build !linux || 386

package tftp

import (
	"net/netip"
	"time"
)

// readFrom reads one datagram from the session socket until deadline.
func (s *session) readFrom(b []byte, deadline time.Time) (int, netip.AddrPort, error) {
	if err := s.conn.SetReadDeadline(deadline); err != nil {
		return 0, netip.AddrPort{}, err
	}
	return s.conn.ReadFromUDPAddrPort(b)
}
