//go:build linux

package multicast

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// GroupConn is a receiver's socket (ListenGroup). On Linux it is a
// non-blocking UDP socket read with recvmmsg(2) outside Go's netpoller:
// the receiver takes packets in batches and waits in poll(2) only when
// none are queued, instead of the runtime waking for nearly every packet.
// Its methods other than Close belong to one goroutine (Receiver.Run);
// Close may come from any, and a read in progress returns within
// pollSlice.
type GroupConn struct {
	port int

	mu     sync.Mutex
	fd     int
	closed bool
	busy   bool // a system call on fd is in progress

	// The message headers of recvmmsg and the buffers they point at
	// (Receiver.Run's goroutine only).
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
}

// listenGroup opens the socket: UDP 0.0.0.0:port with SO_REUSEADDR,
// IP_MULTICAST_ALL off (only the groups it joined), the receive buffer,
// and a member of group on iface (IP_ADD_MEMBERSHIP, ip_mreqn).
func listenGroup(iface *net.Interface, group *net.UDPAddr, readBuffer int) (*GroupConn, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("multicast: socket: %w", err)
	}
	fail := func(what string, err error) (*GroupConn, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("multicast: %s: %w", what, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("SO_REUSEADDR", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: group.Port}); err != nil {
		return fail(fmt.Sprintf("listen on port %d", group.Port), err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0); err != nil {
		return fail("IP_MULTICAST_ALL", err)
	}
	// SO_RCVBUFFORCE passes net.core.rmem_max; it needs CAP_NET_ADMIN.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, readBuffer) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, readBuffer)
	}
	m := &unix.IPMreqn{Ifindex: int32(iface.Index)}
	copy(m.Multiaddr[:], group.IP.To4())
	if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, m); err != nil {
		return fail(fmt.Sprintf("join %v on %s", group.IP, iface.Name), err)
	}
	return &GroupConn{fd: fd, port: group.Port}, nil
}

// LocalPort is the port the socket is bound to.
func (c *GroupConn) LocalPort() int { return c.port }

// Close closes the socket; a read waiting in poll(2) returns
// net.ErrClosed within pollSlice, and closes the descriptor then.
func (c *GroupConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	c.closed = true
	if !c.busy {
		return unix.Close(c.fd)
	}
	return nil // the reader closes fd when its system call returns
}

// acquire marks fd in use; release ends that and closes fd if Close came
// meanwhile. Closing fd under a running system call could let another
// socket take its number.
func (c *GroupConn) acquire() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	c.busy = true
	return nil
}

func (c *GroupConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *GroupConn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy = false
	if c.closed {
		unix.Close(c.fd)
	}
}

// readBatch reads up to len(bufs) packets into bufs, their lengths into
// ns. It waits until deadline at most, and never longer than pollSlice
// (os.ErrDeadlineExceeded; a zero deadline is pollSlice). Its caller
// looks at its context in between.
func (c *GroupConn) readBatch(bufs [][]byte, ns []int, deadline time.Time) (int, error) {
	if err := c.acquire(); err != nil {
		return 0, err
	}
	defer c.release()
	c.prepare(bufs)
	if until := time.Now().Add(pollSlice); deadline.IsZero() || until.Before(deadline) {
		deadline = until
	}
	for {
		// recvmmsg(2) with MSG_DONTWAIT: whatever is queued, at once.
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(c.fd), uintptr(unsafe.Pointer(&c.hdrs[0])),
			uintptr(len(bufs)), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case e == 0:
			n := int(r)
			for i := range n {
				ns[i] = int(c.hdrs[i].Len)
			}
			return n, nil
		case e != unix.EAGAIN && e != unix.EINTR:
			return 0, fmt.Errorf("recvmmsg: %w", e)
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return 0, os.ErrDeadlineExceeded
		}
		fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
		ms := int((wait + time.Millisecond - 1) / time.Millisecond)
		if _, err := unix.Poll(fds, ms); err != nil && !errors.Is(err, unix.EINTR) {
			return 0, fmt.Errorf("poll: %w", err)
		}
		if c.isClosed() {
			return 0, net.ErrClosed
		}
	}
}

// prepare points the message headers at bufs (again when they changed).
func (c *GroupConn) prepare(bufs [][]byte) {
	if len(c.iovs) == len(bufs) {
		same := true
		for i := range bufs {
			same = same && c.iovs[i].Base == &bufs[i][0] && int(c.iovs[i].Len) == len(bufs[i])
		}
		if same {
			return
		}
	}
	c.hdrs = make([]unix.Mmsghdr, len(bufs))
	c.iovs = make([]unix.Iovec, len(bufs))
	for i, b := range bufs {
		c.iovs[i].Base = &b[0]
		c.iovs[i].SetLen(len(b))
		c.hdrs[i].Hdr.Iov = &c.iovs[i]
		c.hdrs[i].Hdr.SetIovlen(1)
	}
}

// writeTo sends b to addr (a NACK or STATUS); a full send buffer drops it
// (EAGAIN), as a lost datagram would be.
func (c *GroupConn) writeTo(b []byte, addr netip.AddrPort) error {
	if err := c.acquire(); err != nil {
		return err
	}
	defer c.release()
	return unix.Sendto(c.fd, b, 0, &unix.SockaddrInet4{Addr: addr.Addr().As4(), Port: int(addr.Port())})
}
