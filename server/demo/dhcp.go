package demo

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// ipxeUserClass is what iPXE puts in option 77: one bare string, not an
// RFC 3004 list (the server accepts both).
const ipxeUserClass = "iPXE"

// ipxeFeatures is option 175 (iPXE's encapsulated options) with the
// feature flags iPXE announces: HTTP (0x13), TFTP (0x15), DNS (0x17) and
// bzImage (0x18), each one byte set to 1.
const ipxeFeatures = "\x13\x01\x01\x15\x01\x01\x17\x01\x01\x18\x01\x01"

// optionIPXE is iPXE's encapsulated option space (175).
const optionIPXE = 175

// vendorClass is option 60 as PXE firmware sends it (PXE 2.1 spec,
// RFC 4578 section 2): "PXEClient:Arch:xxxxx:UNDI:yyyzzz".
func vendorClass(arch uint16) string {
	return fmt.Sprintf("PXEClient:Arch:%05d:UNDI:002001", arch)
}

// clientGUID is option 97 (RFC 4578 section 2.3): type 0 and a 16-byte
// UUID, derived from the MAC so a machine keeps it across runs (version 8,
// RFC 9562 variant bits).
func clientGUID(mac net.HardwareAddr) []byte {
	sum := sha256.Sum256(append([]byte("netdeploy demo "), mac...))
	u := sum[:16]
	u[6] = u[6]&0x0f | 0x80
	u[8] = u[8]&0x3f | 0x80
	return append([]byte{0}, u...)
}

// pxeModifiers are the options a PXE ROM (ipxe false) or iPXE (true)
// puts into DISCOVER and REQUEST.
func pxeModifiers(arch uint16, mac net.HardwareAddr, ipxe bool) []dhcpv4.Modifier {
	m := []dhcpv4.Modifier{
		dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vendorClass(arch))),
		// RFC 4578 section 2.1: client system architecture.
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(arch))),
		// RFC 4578 section 2.2: network interface identifier, UNDI 2.1.
		dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 2, 1}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, clientGUID(mac)),
		dhcpv4.WithRequestedOptions(
			dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
			dhcpv4.OptionVendorSpecificInformation, dhcpv4.OptionServerIdentifier,
			dhcpv4.OptionClassIdentifier, dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName,
			dhcpv4.OptionClientMachineIdentifier,
		),
	}
	if ipxe {
		m = append(m,
			dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte(ipxeUserClass)),
			dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(optionIPXE), []byte(ipxeFeatures)),
		)
	}
	return m
}

// lease is what a client takes from a DHCPACK.
type lease struct {
	IP       net.IP
	Mask     net.IPMask
	ServerID net.IP // option 54
	Next     net.IP // where to fetch the boot file by TFTP
	BootFile string // option 67, else the file field; "" when none
}

// prefixLen is the mask's length, 24 when it is missing or odd.
func (l lease) prefixLen() int {
	if ones, bits := l.Mask.Size(); bits == 32 {
		return ones
	}
	return 24
}

// readLease extracts the lease from an ACK (RFC 2131 section 4.3.1, RFC
// 2132 sections 9.4, 9.5, 9.7). The TFTP server is siaddr, else option 66
// when it is an address, else the server identifier.
func readLease(ack *dhcpv4.DHCPv4) (lease, error) {
	var l lease
	if ack == nil {
		return l, errors.New("no ACK")
	}
	l.IP = ack.YourIPAddr.To4()
	if l.IP == nil || l.IP.IsUnspecified() {
		return l, errors.New("ACK without an address (yiaddr 0.0.0.0)")
	}
	l.Mask = ack.SubnetMask()
	l.ServerID = ack.ServerIdentifier().To4()
	l.BootFile = ack.BootFileNameOption()
	if l.BootFile == "" {
		l.BootFile = strings.TrimRight(ack.BootFileName, "\x00")
	}
	switch {
	case ack.ServerIPAddr.To4() != nil && !ack.ServerIPAddr.IsUnspecified():
		l.Next = ack.ServerIPAddr.To4()
	case net.ParseIP(ack.TFTPServerName()).To4() != nil:
		l.Next = net.ParseIP(ack.TFTPServerName()).To4()
	default:
		l.Next = l.ServerID
	}
	return l, nil
}

// archUint is option 93 of a message, for tests.
func archUint(m *dhcpv4.DHCPv4) (uint16, bool) {
	v := m.Options.Get(dhcpv4.OptionClientSystemArchitectureType)
	if len(v) < 2 {
		return 0, false
	}
	return binary.BigEndian.Uint16(v), true
}

// bootFileOf is the boot file a reply names (option 67, else the file
// field).
func bootFileOf(m *dhcpv4.DHCPv4) string {
	if f := m.BootFileNameOption(); f != "" {
		return f
	}
	return strings.TrimRight(m.BootFileName, "\x00")
}
