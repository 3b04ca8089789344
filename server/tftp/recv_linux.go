//go:build linux && !386

package tftp

import (
	"net/netip"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// readFrom reads one datagram from the session socket until deadline.
//
// Before parking in the runtime's network poller it may busy-poll the
// socket for a short while (see spinner): on a fast LAN the ACK often
// comes back within that time, and the sender then skips a sleep and a
// wake-up, which are much of a lock-step round trip. The spin yields the
// CPU between polls, so it does not starve whoever has to answer.
func (s *session) readFrom(b []byte, deadline time.Time) (n int, from netip.AddrPort, err error) {
	if err := s.conn.SetReadDeadline(deadline); err != nil {
		return 0, netip.AddrPort{}, err
	}
	start := time.Now()
	budget := s.spin.budget()
	until := start.Add(budget)
	spinning, hit := budget > 0, false
	rerr := s.raw.Read(func(fd uintptr) bool {
		for i := 1; ; i++ {
			n, from, err = recvfrom(fd, b)
			if err == syscall.EINTR {
				continue
			}
			if err != syscall.EAGAIN {
				hit = spinning
				return true
			}
			if !spinning || time.Now().After(until) {
				spinning = false // wait in the poller
				return false
			}
			// Stay polite: let other threads on this CPU (perhaps the
			// very client) and goroutines queued behind the spin run.
			syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0)
			if i%64 == 0 {
				runtime.Gosched()
			}
		}
	})
	if budget > 0 {
		s.spin.end()
	}
	if rerr != nil {
		return 0, netip.AddrPort{}, rerr
	}
	if err == nil {
		s.spin.observe(time.Since(start), hit)
	}
	return n, from, err
}

// recvfrom is a non-blocking recvfrom(2) that does not allocate.
func recvfrom(fd uintptr, b []byte) (int, netip.AddrPort, error) {
	var rsa syscall.RawSockaddrAny
	l := uint32(syscall.SizeofSockaddrAny)
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(p), uintptr(len(b)),
		syscall.MSG_DONTWAIT, uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)))
	if e != 0 {
		return 0, netip.AddrPort{}, e
	}
	var from netip.AddrPort
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		pp := (*[2]byte)(unsafe.Pointer(&sa.Port))
		from = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(pp[0])<<8|uint16(pp[1]))
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		pp := (*[2]byte)(unsafe.Pointer(&sa.Port))
		from = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(pp[0])<<8|uint16(pp[1]))
	}
	return int(r), from, nil
}
