//go:build !linux

package multicast

import "net"

// listenReuse binds UDP 0.0.0.0:port (without SO_REUSEADDR off Linux).
func listenReuse(port int) (*net.UDPConn, error) {
	return net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero, Port: port})
}

// onlyJoinedGroups is Linux's IP_MULTICAST_ALL; elsewhere a socket gets
// only the groups it joined already.
func onlyJoinedGroups(*net.UDPConn) error { return nil }

// setReadBuffer sets the receive buffer within the system's limit.
func setReadBuffer(c *net.UDPConn, n int) { c.SetReadBuffer(n) }
