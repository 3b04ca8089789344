//go:build !linux

package multicast

import (
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/ipv4"
)

// GroupConn is a receiver's socket (ListenGroup); off Linux, a
// net.UDPConn read in batches where the system has them.
type GroupConn struct {
	conn *net.UDPConn
	pc   *ipv4.PacketConn
	msgs []ipv4.Message
	port int
}

// listenGroup opens the socket: UDP 0.0.0.0:port (without SO_REUSEADDR
// off Linux), the receive buffer within the system's limit, and a member
// of group on iface.
func listenGroup(iface *net.Interface, group *net.UDPAddr, readBuffer int) (*GroupConn, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero, Port: group.Port})
	if err != nil {
		return nil, err
	}
	conn.SetReadBuffer(readBuffer)
	pc := ipv4.NewPacketConn(conn)
	if err := pc.JoinGroup(iface, &net.UDPAddr{IP: group.IP}); err != nil {
		conn.Close()
		return nil, err
	}
	return &GroupConn{conn: conn, pc: pc, port: group.Port}, nil
}

// LocalPort is the port the socket is bound to.
func (c *GroupConn) LocalPort() int { return c.port }

// Close closes the socket; a read in progress returns net.ErrClosed.
func (c *GroupConn) Close() error { return c.conn.Close() }

// readBatch reads up to len(bufs) packets into bufs, their lengths into
// ns. It waits until deadline at most, and never longer than pollSlice
// (os.ErrDeadlineExceeded; a zero deadline is pollSlice).
func (c *GroupConn) readBatch(bufs [][]byte, ns []int, deadline time.Time) (int, error) {
	if len(c.msgs) != len(bufs) {
		c.msgs = make([]ipv4.Message, len(bufs))
	}
	for i := range bufs {
		c.msgs[i].Buffers = bufs[i : i+1]
	}
	if until := time.Now().Add(pollSlice); deadline.IsZero() || until.Before(deadline) {
		deadline = until
	}
	c.conn.SetReadDeadline(deadline)
	n, err := c.pc.ReadBatch(c.msgs, 0)
	for i := range n {
		ns[i] = c.msgs[i].N
	}
	return n, err
}

// writeTo sends b to addr (a NACK or STATUS).
func (c *GroupConn) writeTo(b []byte, addr netip.AddrPort) error {
	_, err := c.conn.WriteToUDPAddrPort(b, addr)
	return err
}
