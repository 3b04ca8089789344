package tftp

import (
	"net"
	"net/netip"
	"syscall"
	"unsafe"
)

// udpSegment is UDP_SEGMENT (linux/udp.h): the socket option of UDP
// generic segmentation offload.
const udpSegment = 103

// gsoMaxSegments is the kernel's UDP_MAX_SEGMENTS on older kernels.
const gsoMaxSegments = 64

// writeSegments sends b as consecutive datagrams of seg bytes (the last
// may be shorter) in one sendmsg, using UDP GSO (Linux 4.18+). oob must
// have room for the control message; see gsoOOB.
func writeSegments(conn *net.UDPConn, b []byte, seg int, oob []byte, to netip.AddrPort) error {
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level = syscall.IPPROTO_UDP // SOL_UDP
	h.Type = udpSegment
	h.SetLen(syscall.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&oob[syscall.CmsgLen(0)])) = uint16(seg)
	_, _, err := conn.WriteMsgUDPAddrPort(b, oob[:syscall.CmsgSpace(2)], to)
	return err
}

// gsoOOB returns a buffer for writeSegments' control message.
func gsoOOB() []byte { return make([]byte, syscall.CmsgSpace(2)) }

const gsoSupported = true
