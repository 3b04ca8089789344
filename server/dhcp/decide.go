package dhcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
	"unicode"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/netdeploy/netdeploy/server/boot"
	"github.com/netdeploy/netdeploy/server/policy"
)

// This file holds the pure decisions: what a request says, what a client
// boots, and what the reply looks like. Nothing here opens a socket or reads
// the clock; the lease store and the sockets live elsewhere.

// Mode is how the DHCP server answers (config key dhcp.mode).
type Mode string

// Modes.
const (
	// Authoritative leases addresses from Pool and adds boot information
	// for PXE clients.
	Authoritative Mode = "authoritative"
	// Proxy never assigns addresses: it answers PXE clients next to an
	// existing DHCP server (proxyDHCP, PXE 2.1 / RFC 4578).
	Proxy Mode = "proxy"
	// Off means the DHCP server is not started.
	Off Mode = "off"
)

// ParseMode checks a dhcp.mode value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case Authoritative, Proxy, Off:
		return m, nil
	}
	return "", fmt.Errorf("dhcp: unknown mode %q (want authoritative, proxy or off)", s)
}

// Fixed-size parts of a BOOTP/DHCP message.
const (
	bootpHeaderLen = 236 // op .. file
	minMessageLen  = bootpHeaderLen + 4
	maxHWAddrLen   = 16
	maxFileField   = 127 // file field is 128 bytes with its NUL
	maxHostname    = 63
)

// Vendor class prefixes (option 60).
const (
	vendorPXE  = "PXEClient"
	vendorHTTP = "HTTPClient"
)

// pxeVendorOptions is option 43 with PXE sub-option 6 (PXE_DISCOVERY_CONTROL)
// = 0x08: boot the file in the reply directly, no boot server discovery or
// menu; then the end marker.
var pxeVendorOptions = []byte{6, 1, 0x08, 0xff}

// precheck rejects what dhcpv4.FromBytes accepts silently: it clamps hlen
// to 16 and does not look at the op code.
func precheck(b []byte) error {
	switch {
	case len(b) < minMessageLen:
		return fmt.Errorf("short message (%d bytes)", len(b))
	case b[0] != byte(dhcpv4.OpcodeBootRequest):
		return fmt.Errorf("op %d is not BOOTREQUEST", b[0])
	case b[2] == 0:
		return errors.New("hlen 0")
	case b[2] > maxHWAddrLen:
		return fmt.Errorf("hlen %d > %d", b[2], maxHWAddrLen)
	}
	return nil
}

// settings is the part of the Server configuration that decisions read.
type settings struct {
	mode      Mode
	serverIP  net.IP // 4-byte form
	netmask   net.IPMask
	router    net.IP
	dns       []net.IP
	leaseTime time.Duration
	scriptURL string
	has       func(name string) bool
	policy    policy.Policy
}

// client is what one request says about its sender.
type client struct {
	typ       dhcpv4.MessageType
	mac       string // chaddr, net.HardwareAddr.String() form
	pxe       bool   // option 60 PXEClient/HTTPClient, or user class iPXE
	httpBoot  bool   // option 60 HTTPClient (UEFI HTTP boot)
	ipxe      bool   // option 77 user class iPXE
	arch      boot.Arch
	requested net.IP // option 50, nil when absent
	serverID  net.IP // option 54, nil when absent
	ciaddr    net.IP // nil when 0.0.0.0
	giaddr    net.IP // nil when 0.0.0.0
	hostname  string // option 12, sanitized
}

// archName is the architecture as events carry it; empty for non-PXE
// clients.
func (c client) archName() string {
	if !c.pxe {
		return ""
	}
	return c.arch.String()
}

// inspect reads a decoded request. It fails for what cannot be answered:
// not a request, no message type, an unusable client hardware address or a
// malformed option 93.
func inspect(m *dhcpv4.DHCPv4) (client, error) {
	var c client
	if m.OpCode != dhcpv4.OpcodeBootRequest {
		return c, fmt.Errorf("op %d is not BOOTREQUEST", m.OpCode)
	}
	c.typ = m.MessageType()
	if c.typ == dhcpv4.MessageTypeNone {
		return c, errors.New("no DHCP message type (option 53)")
	}
	n := len(m.ClientHWAddr)
	if n == 0 || n > maxHWAddrLen {
		return c, fmt.Errorf("client hardware address of %d bytes", n)
	}
	if m.HWType == iana.HWTypeEthernet && n != 6 {
		return c, fmt.Errorf("ethernet client hardware address of %d bytes", n)
	}
	c.mac = m.ClientHWAddr.String()

	vendor := string(m.Options.Get(dhcpv4.OptionClassIdentifier))
	c.ipxe = hasIPXEUserClass(m.Options.Get(dhcpv4.OptionUserClassInformation))
	c.httpBoot = strings.HasPrefix(vendor, vendorHTTP)
	c.pxe = strings.HasPrefix(vendor, vendorPXE) || c.httpBoot || c.ipxe
	if v := m.Options.Get(dhcpv4.OptionClientSystemArchitectureType); v != nil {
		// A list of 16-bit types; the first is the one the firmware runs.
		if len(v) < 2 || len(v)%2 != 0 {
			return c, fmt.Errorf("malformed option 93 (%d bytes)", len(v))
		}
		c.arch = boot.Arch(binary.BigEndian.Uint16(v))
	}
	c.requested = ip4Option(m.Options.Get(dhcpv4.OptionRequestedIPAddress))
	c.serverID = ip4Option(m.Options.Get(dhcpv4.OptionServerIdentifier))
	c.ciaddr = nonZero(m.ClientIPAddr)
	c.giaddr = nonZero(m.GatewayIPAddr)
	c.hostname = sanitizeHostname(m.Options.Get(dhcpv4.OptionHostName))
	return c, nil
}

// parseUserClass reads option 77. RFC 3004 encodes a list of
// length-prefixed classes; iPXE and some firmware send one bare string
// instead, so anything that is not a well-formed list is taken whole.
func parseUserClass(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	var out []string
	for rest := b; len(rest) > 0; {
		n := int(rest[0])
		if n == 0 || n > len(rest)-1 {
			return []string{string(b)}
		}
		out = append(out, string(rest[1:1+n]))
		rest = rest[1+n:]
	}
	return out
}

func hasIPXEUserClass(b []byte) bool {
	for _, c := range parseUserClass(b) {
		if strings.Contains(c, "iPXE") {
			return true
		}
	}
	return false
}

func ip4Option(b []byte) net.IP {
	if len(b) != net.IPv4len {
		return nil
	}
	return nonZero(net.IP(b))
}

// nonZero returns ip in 4-byte form, or nil for nil, 0.0.0.0 and non-IPv4.
func nonZero(ip net.IP) net.IP {
	ip4 := ip.To4()
	if ip4 == nil || ip4.IsUnspecified() {
		return nil
	}
	return append(net.IP(nil), ip4...)
}

func sanitizeHostname(b []byte) string {
	var sb strings.Builder
	for _, r := range string(b) {
		if sb.Len() >= maxHostname {
			break
		}
		if r < 0x80 && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '.' || r == '_') {
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

// bootKind is the outcome of the boot decision.
type bootKind int

const (
	bootNone    bootKind = iota // not a network-boot client: no boot information
	bootOK                      // send choice
	bootHeld                    // policy says pending or deny: no boot information
	bootRefused                 // no boot program for it: do not answer at all
)

type bootAnswer struct {
	kind   bootKind
	choice boot.Choice
	reason string // for bootHeld and bootRefused
}

// Policy details, as events carry them.
const (
	detailPending = "waiting for approval"
	detailDenied  = "denied by policy"
)

// decideBoot says what a client boots. It calls s.has and s.policy, which
// are the caller's; nothing else is read.
func decideBoot(c client, s *settings) bootAnswer {
	if !c.pxe {
		return bootAnswer{kind: bootNone}
	}
	if (c.ipxe || c.arch == boot.ArchHTTPX64) && s.scriptURL == "" {
		return bootAnswer{kind: bootRefused, reason: "no iPXE script URL configured"}
	}
	if !c.ipxe && c.arch == boot.ArchHTTPX64 && !strings.HasSuffix(s.scriptURL, boot.ScriptName) {
		// boot.Choose derives the HTTP base from the script URL.
		return bootAnswer{kind: bootRefused, reason: fmt.Sprintf("script URL %q does not end in %s", s.scriptURL, boot.ScriptName)}
	}
	has := s.has
	if has == nil {
		has = func(string) bool { return false }
	}
	ch, err := boot.Choose(c.arch, c.ipxe, s.scriptURL, has)
	if err != nil {
		return bootAnswer{kind: bootRefused, reason: err.Error()}
	}
	if s.policy != nil {
		switch s.policy.Decide(c.mac) {
		case policy.Allow:
		case policy.Deny:
			return bootAnswer{kind: bootHeld, reason: detailDenied}
		default:
			return bootAnswer{kind: bootHeld, reason: detailPending}
		}
	}
	return bootAnswer{kind: bootOK, choice: ch}
}

// newReply starts a reply of type typ to req from this server.
func newReply(req *dhcpv4.DHCPv4, s *settings, typ dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	r := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        req.HWType,
		TransactionID: req.TransactionID,
		Flags:         req.Flags,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		ClientHWAddr:  append(net.HardwareAddr(nil), req.ClientHWAddr...),
		Options:       dhcpv4.Options{},
	}
	if gi := nonZero(req.GatewayIPAddr); gi != nil {
		r.GatewayIPAddr = gi
	}
	r.UpdateOption(dhcpv4.OptMessageType(typ))
	r.UpdateOption(dhcpv4.OptServerIdentifier(s.serverIP))
	// RFC 6842: echo the client identifier; RFC 3046: echo relay info.
	for _, code := range []dhcpv4.OptionCode{dhcpv4.OptionClientIdentifier, dhcpv4.OptionRelayAgentInformation} {
		if v := req.Options.Get(code); v != nil {
			r.UpdateOption(dhcpv4.OptGeneric(code, append([]byte(nil), v...)))
		}
	}
	return r
}

// addBoot puts boot information for ch into r.
func addBoot(r, req *dhcpv4.DHCPv4, c client, s *settings, ch boot.Choice) {
	r.ServerIPAddr = s.serverIP
	if len(ch.File) <= maxFileField {
		r.BootFileName = ch.File
	}
	r.UpdateOption(dhcpv4.OptBootFileName(ch.File))
	r.UpdateOption(dhcpv4.OptTFTPServerName(s.serverIP.String()))
	if c.httpBoot {
		// UEFI HTTP boot wants its own class echoed and no PXE options.
		r.UpdateOption(dhcpv4.OptClassIdentifier(vendorHTTP))
	} else {
		r.UpdateOption(dhcpv4.OptClassIdentifier(vendorPXE))
		r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, append([]byte(nil), pxeVendorOptions...)))
	}
	if v := req.Options.Get(dhcpv4.OptionClientMachineIdentifier); v != nil {
		r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte(nil), v...)))
	}
}

// addNetwork puts the subnet options into r (1, 3, 6).
func addNetwork(r *dhcpv4.DHCPv4, s *settings) {
	if len(s.netmask) == net.IPv4len {
		r.UpdateOption(dhcpv4.OptSubnetMask(s.netmask))
	}
	if s.router != nil {
		r.UpdateOption(dhcpv4.OptRouter(s.router))
	}
	if len(s.dns) > 0 {
		r.UpdateOption(dhcpv4.OptDNS(s.dns...))
	}
}

// leaseReply is an authoritative OFFER or ACK for address ip, with boot
// information when b says so.
func leaseReply(req *dhcpv4.DHCPv4, c client, s *settings, typ dhcpv4.MessageType, ip net.IP, b bootAnswer) *dhcpv4.DHCPv4 {
	r := newReply(req, s, typ)
	r.YourIPAddr = ip.To4()
	if typ == dhcpv4.MessageTypeAck && c.ciaddr != nil {
		r.ClientIPAddr = c.ciaddr
	}
	addNetwork(r, s)
	r.UpdateOption(dhcpv4.OptIPAddressLeaseTime(s.leaseTime))
	r.UpdateOption(dhcpv4.OptRenewTimeValue(s.leaseTime / 2))
	r.UpdateOption(dhcpv4.OptRebindingTimeValue(s.leaseTime / 8 * 7))
	if b.kind == bootOK {
		addBoot(r, req, c, s, b.choice)
	}
	return r
}

// informReply is the ACK to a DHCPINFORM: configuration, no lease.
func informReply(req *dhcpv4.DHCPv4, c client, s *settings, b bootAnswer) *dhcpv4.DHCPv4 {
	r := newReply(req, s, dhcpv4.MessageTypeAck)
	if c.ciaddr != nil {
		r.ClientIPAddr = c.ciaddr
	}
	if s.mode == Authoritative {
		addNetwork(r, s)
	}
	if b.kind == bootOK {
		addBoot(r, req, c, s, b.choice)
	}
	return r
}

// bootReply is a proxyDHCP OFFER or ACK: yiaddr 0.0.0.0, no lease, boot
// information only (b.kind must be bootOK).
func bootReply(req *dhcpv4.DHCPv4, c client, s *settings, typ dhcpv4.MessageType, b bootAnswer) *dhcpv4.DHCPv4 {
	r := newReply(req, s, typ)
	if c.ciaddr != nil && typ == dhcpv4.MessageTypeAck {
		r.ClientIPAddr = c.ciaddr
	}
	addBoot(r, req, c, s, b.choice)
	return r
}

// nakReply refuses a DHCPREQUEST.
func nakReply(req *dhcpv4.DHCPv4, s *settings, why string) *dhcpv4.DHCPv4 {
	r := newReply(req, s, dhcpv4.MessageTypeNak)
	if why != "" {
		r.UpdateOption(dhcpv4.OptMessage(why))
	}
	return r
}

// replyDest is where a reply goes (RFC 2131 section 4.1, PXE 2.1 for port
// 4011): a request to the PXE port goes back to its source; a relayed one
// to the relay's server port; a client that has an address (renewing,
// INFORM) gets it unicast; everyone else gets a broadcast on the link.
func replyDest(c client, typ dhcpv4.MessageType, pxePort bool, src *net.UDPAddr, serverPort, clientPort int) *net.UDPAddr {
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: clientPort}
	if pxePort {
		if src == nil || nonZero(src.IP) == nil || src.Port == 0 {
			return bcast
		}
		return &net.UDPAddr{IP: nonZero(src.IP), Port: src.Port}
	}
	switch {
	case c.giaddr != nil:
		return &net.UDPAddr{IP: c.giaddr, Port: serverPort}
	case typ == dhcpv4.MessageTypeNak:
		return bcast
	case c.ciaddr != nil:
		return &net.UDPAddr{IP: c.ciaddr, Port: clientPort}
	}
	return bcast
}
