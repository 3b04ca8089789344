//go:build linux

package netbios

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// ListenUDP opens the socket Serve wants: UDP 0.0.0.0:port, so that
// broadcast queries arrive as well as unicast ones, bound to the interface
// iface (SO_BINDTODEVICE) when it is not "", so that nothing from another
// interface is seen or answered. Another socket holding the port on the
// same interface, or on none (Samba's nmbd), makes it fail with
// EADDRINUSE. Binding to a device needs CAP_NET_RAW before Linux 5.7.
func ListenUDP(iface string, port int) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		if iface == "" {
			return nil
		}
		var serr error
		if err := c.Control(func(fd uintptr) {
			if serr = unix.BindToDevice(int(fd), iface); serr != nil {
				serr = fmt.Errorf("SO_BINDTODEVICE %s: %w", iface, serr)
			}
		}); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("netbios: listen udp port %d%s: %w", port, onIface(iface), err)
	}
	return pc.(*net.UDPConn), nil
}

func onIface(iface string) string {
	if iface == "" {
		return ""
	}
	return " on " + iface
}
