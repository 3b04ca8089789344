//go:build !linux

package dhcp

import (
	"errors"
	"net"
	"time"
)

// errNeedsLinux is returned by every socket operation off Linux: the server
// binds its sockets to one interface and captures probe answers with
// AF_PACKET.
var errNeedsLinux = errors.New("dhcp: needs Linux")

func checkPlatform() error { return errNeedsLinux }

func listenUDP(iface string, port int) (*net.UDPConn, error) { return nil, errNeedsLinux }

func drainUDP(c *net.UDPConn) {}

type frameConn struct{}

func openFrameConn(ifindex, port int) (*frameConn, error) { return nil, errNeedsLinux }

func (c *frameConn) setReadDeadline(t time.Time) error { return errNeedsLinux }

func (c *frameConn) readFrame(buf []byte) (int, net.HardwareAddr, bool, error) {
	return 0, nil, false, errNeedsLinux
}

func (c *frameConn) drain() {}

func (c *frameConn) Close() error { return nil }

type netns struct{}

func captureNetns() (*netns, error) { return nil, errNeedsLinux }

func (n *netns) run(fn func() error) error { return fn() }

func (n *netns) close() {}
