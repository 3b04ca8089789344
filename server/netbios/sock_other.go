//go:build !linux

package netbios

import (
	"errors"
	"fmt"
	"net"
)

// ListenUDP opens UDP 0.0.0.0:port, the socket Serve wants. Binding to an
// interface needs Linux: iface must be "" elsewhere.
func ListenUDP(iface string, port int) (*net.UDPConn, error) {
	if iface != "" {
		return nil, errors.New("netbios: binding to an interface needs Linux")
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero, Port: port})
	if err != nil {
		return nil, fmt.Errorf("netbios: listen udp port %d: %w", port, err)
	}
	return c, nil
}
