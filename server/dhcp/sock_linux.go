//go:build linux

package dhcp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func checkPlatform() error { return nil }

// listenUDP opens 0.0.0.0:port bound to one interface (SO_BINDTODEVICE),
// so datagrams from any other interface are never seen, with SO_REUSEADDR
// (one server per interface on the same port) and SO_BROADCAST.
func listenUDP(iface string, port int) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				serr = fmt.Errorf("SO_REUSEADDR: %w", serr)
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				serr = fmt.Errorf("SO_BROADCAST: %w", serr)
				return
			}
			if serr = unix.BindToDevice(int(fd), iface); serr != nil {
				serr = fmt.Errorf("SO_BINDTODEVICE %s: %w", iface, serr)
			}
		})
		if err != nil {
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

// drainUDP discards whatever is queued on c without blocking.
func drainUDP(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	drainRaw(rc)
}

func drainRaw(rc syscall.RawConn) {
	buf := make([]byte, 2048)
	rc.Control(func(fd uintptr) {
		for i := 0; i < 4096; i++ {
			if _, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT); err != nil {
				return
			}
		}
	})
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// frameConn is an AF_PACKET SOCK_DGRAM socket for IPv4 on one interface,
// filtered in the kernel to unfragmented UDP to one port. Frames start at
// the IPv4 header; the link-layer address says who sent them.
type frameConn struct {
	f      *os.File
	rc     syscall.RawConn
	closed atomic.Bool
}

// udpPortFilter is a classic BPF program run on the IPv4 header: accept
// UDP datagrams to port, drop everything else.
func udpPortFilter(port int) []unix.SockFilter {
	return []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 9},                    // A = protocol
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: protoUDP, Jf: 6},     // not UDP: drop
		{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 6},                    // A = flags/fragment offset
		{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: 0x1fff, Jt: 4},      // a later fragment: drop
		{Code: unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH, K: 0},                   // X = header length
		{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_IND, K: 2},                    // A = UDP destination port
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: uint32(port), Jf: 1}, // not port: drop
		{Code: unix.BPF_RET | unix.BPF_K, K: 0xffff},                             // accept
		{Code: unix.BPF_RET | unix.BPF_K, K: 0},                                  // drop
	}
}

// openFrameConn opens the capture socket on interface ifindex for UDP
// datagrams to port. It needs CAP_NET_RAW.
func openFrameConn(ifindex, port int) (*frameConn, error) {
	// Protocol 0 receives nothing until bind, so no unfiltered frame from
	// another interface is queued before the filter is in place.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	filter := udpPortFilter(port)
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("packet socket filter: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind packet socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "packet")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	return &frameConn{f: f, rc: rc}, nil
}

func (c *frameConn) setReadDeadline(t time.Time) error { return c.f.SetReadDeadline(t) }

// readFrame reads one frame into buf. outgoing is true for frames this host
// sent.
func (c *frameConn) readFrame(buf []byte) (n int, src net.HardwareAddr, outgoing bool, err error) {
	var from unix.Sockaddr
	var rerr error
	err = c.rc.Read(func(fd uintptr) bool {
		n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
		return rerr != unix.EAGAIN && rerr != unix.EWOULDBLOCK
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		if c.closed.Load() {
			err = net.ErrClosed
		}
		return 0, nil, false, err
	}
	if ll, ok := from.(*unix.SockaddrLinklayer); ok {
		hl := min(int(ll.Halen), len(ll.Addr))
		src = append(net.HardwareAddr(nil), ll.Addr[:hl]...)
		outgoing = ll.Pkttype == unix.PACKET_OUTGOING
	}
	return n, src, outgoing, nil
}

func (c *frameConn) drain() { drainRaw(c.rc) }

func (c *frameConn) Close() error {
	c.closed.Store(true)
	return c.f.Close()
}

// netns remembers the network namespace the server was started in, so
// sockets opened later (the authorization probe, turned on at run time
// from any goroutine) live beside the others.
type netns struct {
	f *os.File
}

func captureNetns() (*netns, error) {
	f, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, err
	}
	return &netns{f: f}, nil
}

func sameFile(a, b *os.File) bool {
	x, err1 := a.Stat()
	y, err2 := b.Stat()
	return err1 == nil && err2 == nil && os.SameFile(x, y)
}

// run calls fn on an OS thread inside the namespace.
func (n *netns) run(fn func() error) error {
	if n == nil || n.f == nil {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		cur, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("network namespace: %w", err)
			return
		}
		defer cur.Close()
		if sameFile(cur, n.f) {
			err := fn()
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		if err := unix.Setns(int(n.f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(cur.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime drops it when this
			// goroutine ends, so nothing else runs in the wrong namespace.
			errc <- errors.Join(ferr, fmt.Errorf("leave network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func (n *netns) close() {
	if n != nil && n.f != nil {
		n.f.Close()
	}
}
