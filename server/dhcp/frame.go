package dhcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
)

// udpDatagram is an IPv4/UDP packet as captured from an AF_PACKET
// (SOCK_DGRAM) socket: the frame starts at the IPv4 header.
type udpDatagram struct {
	src, dst         net.IP
	srcPort, dstPort uint16
	payload          []byte // aliases the input
}

const (
	ipv4MinHeader = 20
	udpHeaderLen  = 8
	protoUDP      = 17
)

// parseFrame decodes an IPv4 header and the UDP header behind it. Every
// length is checked against the bytes actually there; fragments, IP
// options beyond the header length and bad header checksums are refused.
// The UDP checksum is not checked: a sender on the same host (a veth peer)
// leaves it to offload and the capture sees it unfinished.
func parseFrame(b []byte) (udpDatagram, error) {
	var d udpDatagram
	if len(b) < ipv4MinHeader {
		return d, fmt.Errorf("short IPv4 header (%d bytes)", len(b))
	}
	if v := b[0] >> 4; v != 4 {
		return d, fmt.Errorf("IP version %d", v)
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < ipv4MinHeader || ihl > len(b) {
		return d, fmt.Errorf("IPv4 header length %d of %d bytes", ihl, len(b))
	}
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if total < ihl || total > len(b) {
		return d, fmt.Errorf("IPv4 total length %d (header %d, captured %d)", total, ihl, len(b))
	}
	if frag := binary.BigEndian.Uint16(b[6:8]); frag&0x3fff != 0 {
		return d, errors.New("IPv4 fragment")
	}
	if b[9] != protoUDP {
		return d, fmt.Errorf("IP protocol %d is not UDP", b[9])
	}
	if ipChecksum(b[:ihl]) != 0 {
		return d, errors.New("bad IPv4 header checksum")
	}
	udp := b[ihl:total]
	if len(udp) < udpHeaderLen {
		return d, fmt.Errorf("short UDP header (%d bytes)", len(udp))
	}
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if ulen < udpHeaderLen || ulen > len(udp) {
		return d, fmt.Errorf("UDP length %d of %d bytes", ulen, len(udp))
	}
	d.src = net.IP(append([]byte(nil), b[12:16]...))
	d.dst = net.IP(append([]byte(nil), b[16:20]...))
	d.srcPort = binary.BigEndian.Uint16(udp[0:2])
	d.dstPort = binary.BigEndian.Uint16(udp[2:4])
	d.payload = udp[udpHeaderLen:ulen]
	return d, nil
}

// ipChecksum is the Internet checksum of b; 0 over a header whose checksum
// field is right.
func ipChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
