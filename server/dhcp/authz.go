package dhcp

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/netdeploy/netdeploy/server/tracker"
)

// DHCP authorization, as in Windows Deployment Services: before answering,
// and then every AuthInterval, the server broadcasts a DHCPDISCOVER of its
// own and listens for other DHCP servers. While one answers that is not in
// AuthorizedServers the server answers nothing at all.

// Authorization defaults.
const (
	DefaultAuthInterval = 60 * time.Second
	DefaultProbeWait    = 8 * time.Second
	maxSeenServers      = 64 // foreign servers remembered from one probe
)

// seenServer is a DHCP server that answered a probe.
type seenServer struct {
	IP  net.IP
	MAC net.HardwareAddr
}

func (s seenServer) String() string {
	if len(s.MAC) == 0 {
		return s.IP.String()
	}
	return fmt.Sprintf("%s (%s)", s.IP, s.MAC)
}

// offenders returns the servers in seen whose address is not in allowed.
func offenders(seen []seenServer, allowed []net.IP) []seenServer {
	var out []seenServer
	for _, s := range seen {
		if !slices.ContainsFunc(allowed, s.IP.Equal) {
			out = append(out, s)
		}
	}
	return out
}

// probeMessage is the DHCPDISCOVER the server sends to find other servers:
// broadcast flag set, our interface's MAC as chaddr.
func probeMessage(hw net.HardwareAddr, xid dhcpv4.TransactionID) *dhcpv4.DHCPv4 {
	m := &dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootRequest,
		HWType:        1, // Ethernet
		TransactionID: xid,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		ServerIPAddr:  net.IPv4zero,
		GatewayIPAddr: net.IPv4zero,
		ClientHWAddr:  append(net.HardwareAddr(nil), hw...),
		Options:       dhcpv4.Options{},
	}
	m.SetBroadcast()
	m.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeDiscover))
	m.UpdateOption(dhcpv4.OptParameterRequestList(
		dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
		dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionServerIdentifier))
	return m
}

// probeAnswer reads a captured frame (from the IPv4 header on) and returns
// the server that sent it if it is an OFFER or ACK to our probe xid from a
// server other than ours.
func probeAnswer(frame []byte, srcMAC net.HardwareAddr, xid dhcpv4.TransactionID, ourIP net.IP, clientPort int) (seenServer, bool) {
	d, err := parseFrame(frame)
	if err != nil || int(d.dstPort) != clientPort {
		return seenServer{}, false
	}
	m, err := dhcpv4.FromBytes(d.payload)
	if err != nil || m.OpCode != dhcpv4.OpcodeBootReply || m.TransactionID != xid {
		return seenServer{}, false
	}
	if t := m.MessageType(); t != dhcpv4.MessageTypeOffer && t != dhcpv4.MessageTypeAck {
		return seenServer{}, false
	}
	ip := ip4Option(m.Options.Get(dhcpv4.OptionServerIdentifier))
	if ip == nil {
		ip = nonZero(d.src)
	}
	if ip == nil || ip.Equal(ourIP) {
		return seenServer{}, false
	}
	mac := append(net.HardwareAddr(nil), srcMAC...)
	if len(mac) > maxHWAddrLen {
		mac = mac[:maxHWAddrLen]
	}
	return seenServer{IP: ip, MAC: mac}, true
}

// probeTransport is what a probe needs from the sockets: send a broadcast
// DHCPDISCOVER from the client port, and read captured IPv4 frames with the
// sender's MAC.
type probeTransport interface {
	send(b []byte) error
	setReadDeadline(t time.Time) error
	readFrame(buf []byte) (n int, src net.HardwareAddr, outgoing bool, err error)
	drain()
}

// probeOnce sends one DHCPDISCOVER (again halfway through wait, in case a
// server ignored the first) and collects the other servers that answer
// within wait.
func probeOnce(t probeTransport, hw net.HardwareAddr, ourIP net.IP, clientPort int, wait time.Duration) ([]seenServer, error) {
	var xid dhcpv4.TransactionID
	if _, err := rand.Read(xid[:]); err != nil {
		return nil, fmt.Errorf("probe xid: %w", err)
	}
	msg := probeMessage(hw, xid).ToBytes()
	t.drain()
	start := time.Now()
	if err := t.send(msg); err != nil {
		return nil, fmt.Errorf("send probe: %w", err)
	}
	resent := false
	buf := make([]byte, 1<<16)
	var seen []seenServer
	for {
		until := start.Add(wait)
		if !resent {
			until = start.Add(wait / 2)
		}
		if err := t.setReadDeadline(until); err != nil {
			return nil, fmt.Errorf("probe: %w", err)
		}
		n, mac, outgoing, err := t.readFrame(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if resent {
				return seen, nil
			}
			resent = true
			if err := t.send(msg); err != nil {
				return nil, fmt.Errorf("send probe: %w", err)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("probe: %w", err)
		}
		if outgoing {
			continue
		}
		srv, ok := probeAnswer(buf[:n], mac, xid, ourIP, clientPort)
		if !ok || len(seen) >= maxSeenServers || slices.ContainsFunc(seen, func(s seenServer) bool { return s.IP.Equal(srv.IP) }) {
			continue
		}
		seen = append(seen, srv)
	}
}

// authorizer holds the authorization state. It decides whether the server
// answers and reports changes as events and log lines. Safe for concurrent
// use.
type authorizer struct {
	iface string
	ourIP net.IP
	port  int
	log   *slog.Logger
	emit  func(tracker.Event)

	mu        sync.Mutex
	enabled   bool
	gen       uint64 // bumped on every enable/disable; stale probe results are dropped
	probed    bool   // a probe finished since enabling
	probeErr  error  // why no probe finished yet
	allowed   []net.IP
	seen      []seenServer
	reported  string // state last reported
	answering bool   // answer state last reported
}

func newAuthorizer(iface string, ourIP net.IP, port int, enabled bool, allowed []net.IP, log *slog.Logger, emit func(tracker.Event)) *authorizer {
	a := &authorizer{iface: iface, ourIP: ourIP, port: port, log: log, emit: emit, enabled: enabled, allowed: cloneIPs(allowed)}
	a.answering, a.reported = a.stateLocked()
	return a
}

func cloneIPs(ips []net.IP) []net.IP {
	out := make([]net.IP, 0, len(ips))
	for _, ip := range ips {
		if ip != nil {
			out = append(out, append(net.IP(nil), ip...))
		}
	}
	return out
}

// stateLocked returns whether the server answers and a key naming the
// state.
func (a *authorizer) stateLocked() (bool, string) {
	switch {
	case !a.enabled:
		return true, "off"
	case !a.probed && a.probeErr != nil:
		return false, "error:" + a.probeErr.Error()
	case !a.probed:
		return false, "checking"
	}
	off := offenders(a.seen, a.allowed)
	if len(off) == 0 {
		return true, fmt.Sprint("ok", a.seen)
	}
	return false, fmt.Sprint("unauthorized", off)
}

// allowsAnswers reports whether the server may answer now.
func (a *authorizer) allowsAnswers() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	ok, _ := a.stateLocked()
	return ok
}

// status is Server.Authorized.
func (a *authorizer) status() (bool, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ok, _ := a.stateLocked()
	return ok, a.reasonLocked()
}

func (a *authorizer) reasonLocked() string {
	switch {
	case !a.enabled:
		return "DHCP authorization check is off"
	case !a.probed && a.probeErr != nil:
		return fmt.Sprintf("cannot check for other DHCP servers on %s: %v", a.iface, a.probeErr)
	case !a.probed:
		return fmt.Sprintf("checking for other DHCP servers on %s", a.iface)
	}
	off := offenders(a.seen, a.allowed)
	if len(off) > 0 {
		names := make([]string, len(off))
		for i, s := range off {
			names[i] = s.String()
		}
		return fmt.Sprintf("unauthorized DHCP server %s answers on %s; not answering DHCP or PXE until it is authorized: add it to dhcp.authorized_servers",
			strings.Join(names, ", "), a.iface)
	}
	if len(a.seen) == 0 {
		return fmt.Sprintf("no other DHCP server answered on %s", a.iface)
	}
	names := make([]string, len(a.seen))
	for i, s := range a.seen {
		names[i] = s.String()
	}
	return fmt.Sprintf("other DHCP servers on %s are authorized: %s", a.iface, strings.Join(names, ", "))
}

// setEnabled turns the check on or off and returns the generation probes
// must carry. Turning it on silences the server until a probe finishes.
func (a *authorizer) setEnabled(on bool) uint64 {
	a.mu.Lock()
	if a.enabled != on {
		a.enabled = on
		a.gen++
		a.probed, a.probeErr, a.seen = false, nil, nil
	}
	gen := a.gen
	evs := a.reportLocked()
	a.mu.Unlock()
	a.send(evs)
	return gen
}

// generation returns the current generation and whether the check is on.
func (a *authorizer) generation() (uint64, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gen, a.enabled
}

// setAllowed replaces the authorized servers and re-judges the last probe.
func (a *authorizer) setAllowed(ips []net.IP) {
	a.mu.Lock()
	a.allowed = cloneIPs(ips)
	evs := a.reportLocked()
	a.mu.Unlock()
	a.send(evs)
}

// record takes a probe's result.
func (a *authorizer) record(gen uint64, seen []seenServer) {
	a.mu.Lock()
	if gen != a.gen || !a.enabled {
		a.mu.Unlock()
		return
	}
	a.probed, a.probeErr, a.seen = true, nil, seen
	evs := a.reportLocked()
	a.mu.Unlock()
	a.send(evs)
}

// failed takes a probe's error. Before the first good probe it keeps the
// server silent and says why; after one, the last result stands.
func (a *authorizer) failed(gen uint64, err error) {
	a.mu.Lock()
	if gen != a.gen || !a.enabled {
		a.mu.Unlock()
		return
	}
	a.log.Warn("dhcp: authorization probe failed", "iface", a.iface, "err", err)
	if !a.probed {
		a.probeErr = err
	}
	evs := a.reportLocked()
	a.mu.Unlock()
	a.send(evs)
}

// reportLocked logs a state change and returns its events.
func (a *authorizer) reportLocked() []tracker.Event {
	ok, key := a.stateLocked()
	if key == a.reported {
		return nil
	}
	was := a.answering
	a.reported, a.answering = key, ok
	reason := a.reasonLocked()
	ev := func(kind tracker.Kind, ip, detail string) tracker.Event {
		return tracker.Event{Time: time.Now(), Stage: tracker.StageDHCP, Event: kind, Port: a.port, Proto: "udp", IP: ip, Detail: detail}
	}
	var evs []tracker.Event
	switch {
	case ok && !was:
		a.log.Info("dhcp: authorized; answering DHCP and PXE", "iface", a.iface, "reason", reason)
		evs = append(evs, ev(tracker.KindAuthorized, "", reason))
	case ok:
		a.log.Info("dhcp: authorization", "iface", a.iface, "reason", reason)
	case !a.probed && a.probeErr == nil:
		a.log.Info("dhcp: not answering until the check for other DHCP servers finishes", "iface", a.iface)
	case !a.probed:
		a.log.Warn("dhcp: not answering", "iface", a.iface, "reason", reason)
		evs = append(evs, ev(tracker.KindUnauthorized, "", reason))
	default:
		for _, s := range offenders(a.seen, a.allowed) {
			detail := fmt.Sprintf("another DHCP server answers on %s: %s, mac %s; netdeploy does not answer DHCP or PXE while it runs unauthorized: add it to dhcp.authorized_servers",
				a.iface, s.IP, s.MAC)
			a.log.Warn("dhcp: unauthorized DHCP server on the network; not answering", "iface", a.iface, "ip", s.IP.String(), "mac", s.MAC.String(),
				"fix", "add it to dhcp.authorized_servers")
			evs = append(evs, ev(tracker.KindUnauthorized, s.IP.String(), detail))
		}
	}
	return evs
}

func (a *authorizer) send(evs []tracker.Event) {
	for _, e := range evs {
		a.emit(e)
	}
}
