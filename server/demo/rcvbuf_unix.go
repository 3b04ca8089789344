//go:build unix

package demo

import "syscall"

// ethernetMSS is the TCP segment size on a 1500-byte MTU.
const ethernetMSS = 1460

// smallWindow sets SO_RCVBUF to n and the MSS to Ethernet's on a socket
// before it connects. The advertised window then stays small from the
// start, and the MSS option keeps the server's send buffer (which the
// kernel sizes from the MSS; on loopback the MSS is ~64 KiB) small too:
// together they bound how far the server can run ahead of a paced reader.
func smallWindow(c syscall.RawConn, n int) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n)
		if serr == nil {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, ethernetMSS)
		}
	})
	if err != nil {
		return err
	}
	return serr
}
