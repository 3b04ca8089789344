//go:build linux

package multicast

import (
	"context"
	"net"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenReuse binds UDP 0.0.0.0:port with SO_REUSEADDR, so that several
// receivers on one host can share the group port.
func listenReuse(port int) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// onlyJoinedGroups clears IP_MULTICAST_ALL: the socket gets the groups it
// joined, not every group some socket of the host joined on its port.
func onlyJoinedGroups(c *net.UDPConn) error {
	return setsockopt(c, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0)
}

// setReadBuffer sets the receive buffer, past net.core.rmem_max when
// allowed (SO_RCVBUFFORCE needs CAP_NET_ADMIN).
func setReadBuffer(c *net.UDPConn, n int) {
	if setsockopt(c, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) != nil {
		c.SetReadBuffer(n)
	}
}

func setsockopt(c *net.UDPConn, level, opt, v int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, v) }); err != nil {
		return err
	}
	return serr
}
