package dhcp

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/netdeploy/netdeploy/server/tracker"
)

// handler joins the decisions to the lease store: one request in, at most
// one reply and some events out. It touches no socket.
//
// A handler serves one mode and never changes: the server swaps in
// another (withMode) to change the mode at run time.
type handler struct {
	s          settings
	leases     *leaseStore // nil unless authoritative
	ownMAC     net.HardwareAddr
	subnet     *net.IPNet // served subnet, for relayed requests (may be nil)
	port       int        // server port (67)
	pxePort    int        // PXE boot server port (4011)
	clientPort int        // client port (68)
	log        *slog.Logger

	mu      sync.Mutex
	refused map[string]time.Time // last Info log per MAC for refused clients
}

// refusedLogEvery limits the Info line about a client we cannot boot.
const (
	refusedLogEvery = time.Minute
	maxRefusedMACs  = 4096
)

// outcome is what one request produced.
type outcome struct {
	reply  *dhcpv4.DHCPv4 // nil: no answer
	dest   *net.UDPAddr
	events []tracker.Event
	drop   string // why there is no answer, for the Debug log
}

func (o *outcome) event(e tracker.Event) { o.events = append(o.events, e) }

// handle decides the answer to req, received on the server port or (pxe)
// on the PXE port from src, at now.
func (h *handler) handle(req *dhcpv4.DHCPv4, pxe bool, src *net.UDPAddr, now time.Time) outcome {
	var o outcome
	if h.s.mode == Off {
		o.drop = "mode off"
		return o
	}
	c, err := inspect(req)
	if err != nil {
		o.drop = err.Error()
		return o
	}
	if len(h.ownMAC) > 0 && c.mac == h.ownMAC.String() {
		o.drop = "our own authorization probe"
		return o
	}
	port := h.port
	if pxe {
		port = h.pxePort
	}
	ev := func(stage tracker.Stage, kind tracker.Kind, ip net.IP, detail string) tracker.Event {
		e := tracker.Event{Time: now, MAC: c.mac, Stage: stage, Event: kind, Port: port, Proto: "udp", Arch: c.archName(), Detail: detail}
		if ip != nil {
			e.IP = ip.String()
		}
		return e
	}

	switch {
	case pxe:
		h.pxeServer(req, c, &o, ev, now)
	case h.s.mode == Proxy:
		h.proxy(req, c, &o, ev, now)
	default:
		h.authoritative(req, c, &o, ev, now)
	}
	if o.reply != nil {
		o.dest = replyDest(c, o.reply.MessageType(), pxe, src, h.port, h.clientPort)
	}
	return o
}

// withMode returns a handler like h serving mode m with leases (used in
// authoritative mode only). The refusal log's rate limit starts afresh.
func (h *handler) withMode(m Mode, leases *leaseStore) *handler {
	n := &handler{s: h.s, ownMAC: h.ownMAC, subnet: h.subnet, port: h.port, pxePort: h.pxePort, clientPort: h.clientPort, log: h.log}
	n.s.mode = m
	if m == Authoritative {
		n.leases = leases
	}
	return n
}

type evFunc func(stage tracker.Stage, kind tracker.Kind, ip net.IP, detail string) tracker.Event

// bootInfo decides the boot answer and records refusals and holds.
func (h *handler) bootInfo(c client, o *outcome, ev evFunc, now time.Time) bootAnswer {
	b := decideBoot(c, &h.s)
	switch b.kind {
	case bootRefused:
		o.event(ev(tracker.StagePXE, tracker.KindError, c.ciaddr, b.reason))
		if h.logRefusal(c.mac, now) {
			h.log.Info("dhcp: not answering PXE client: no boot program", "mac", c.mac, "arch", c.arch.String(), "reason", b.reason)
		}
	case bootHeld:
		o.event(ev(tracker.StagePXE, tracker.KindError, c.ciaddr, b.reason))
		h.log.Debug("dhcp: no boot information", "mac", c.mac, "reason", b.reason)
	}
	return b
}

// logRefusal reports whether to log a refusal for mac now (once a minute).
func (h *handler) logRefusal(mac string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refused == nil {
		h.refused = map[string]time.Time{}
	}
	if last, ok := h.refused[mac]; ok && now.Sub(last) < refusedLogEvery && now.Sub(last) >= 0 {
		return false
	}
	if len(h.refused) >= maxRefusedMACs {
		for m, t := range h.refused {
			if now.Sub(t) >= refusedLogEvery || now.Sub(t) < 0 {
				delete(h.refused, m)
			}
		}
		if len(h.refused) >= maxRefusedMACs {
			clear(h.refused)
		}
	}
	h.refused[mac] = now
	return true
}

// pxeServer answers on port 4011 (both modes): a PXE client that already
// has its address asks for boot information with DHCPREQUEST (or INFORM);
// the ACK carries yiaddr 0.0.0.0 and goes back to the sender.
func (h *handler) pxeServer(req *dhcpv4.DHCPv4, c client, o *outcome, ev evFunc, now time.Time) {
	if c.typ != dhcpv4.MessageTypeRequest && c.typ != dhcpv4.MessageTypeInform {
		o.drop = fmt.Sprintf("%s on the PXE port", c.typ)
		return
	}
	if !c.pxe {
		o.drop = "not a PXE client"
		return
	}
	b := h.bootInfo(c, o, ev, now)
	if b.kind != bootOK {
		o.drop = b.reason
		return
	}
	o.reply = bootReply(req, c, &h.s, dhcpv4.MessageTypeAck, b)
	o.event(withFile(ev(tracker.StagePXE, tracker.KindDone, c.ciaddr, "boot "+b.choice.File), b.choice.File))
}

// proxy answers on port 67 beside another DHCP server: PXE clients get an
// OFFER with no address and the boot information; nobody else gets
// anything.
func (h *handler) proxy(req *dhcpv4.DHCPv4, c client, o *outcome, ev evFunc, now time.Time) {
	if !c.pxe {
		o.drop = "not a PXE client (proxy mode)"
		return
	}
	var typ dhcpv4.MessageType
	switch {
	case c.typ == dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
		o.event(ev(tracker.StageDHCP, tracker.KindStart, nil, "discover"))
	case c.typ == dhcpv4.MessageTypeRequest && c.serverID != nil && c.serverID.Equal(h.s.serverIP),
		c.typ == dhcpv4.MessageTypeInform:
		// Firmware that picked the proxy's offer anyway, or asks for
		// configuration: boot information, still no address.
		typ = dhcpv4.MessageTypeAck
	default:
		o.drop = fmt.Sprintf("%s is for the DHCP server (proxy mode)", c.typ)
		return
	}
	b := h.bootInfo(c, o, ev, now)
	if b.kind != bootOK {
		o.drop = b.reason
		return
	}
	o.reply = bootReply(req, c, &h.s, typ, b)
	o.event(withFile(ev(tracker.StagePXE, tracker.KindDone, c.ciaddr, "boot "+b.choice.File), b.choice.File))
}

// authoritative leases addresses.
func (h *handler) authoritative(req *dhcpv4.DHCPv4, c client, o *outcome, ev evFunc, now time.Time) {
	if h.leases == nil {
		o.drop = "no lease store"
		return
	}
	if c.giaddr != nil && (h.subnet == nil || !h.subnet.Contains(c.giaddr)) {
		o.drop = fmt.Sprintf("relayed from %s, outside the served subnet", c.giaddr)
		return
	}
	switch c.typ {
	case dhcpv4.MessageTypeDiscover:
		o.event(ev(tracker.StageDHCP, tracker.KindStart, nil, "discover"))
		b := h.bootInfo(c, o, ev, now)
		if b.kind == bootRefused {
			o.drop = b.reason
			return
		}
		ip, err := h.leases.offer(c.mac, c.requested, now)
		if err != nil {
			o.drop = err.Error()
			o.event(ev(tracker.StageDHCP, tracker.KindError, nil, err.Error()))
			h.log.Warn("dhcp: no address to offer", "mac", c.mac, "err", err)
			return
		}
		o.reply = leaseReply(req, c, &h.s, dhcpv4.MessageTypeOffer, ip, b)
		o.event(ev(tracker.StageDHCP, tracker.KindProgress, ip, "offer "+ip.String()))

	case dhcpv4.MessageTypeRequest:
		if c.serverID != nil && !c.serverID.Equal(h.s.serverIP) {
			h.leases.cancelOffer(c.mac)
			o.drop = fmt.Sprintf("client chose server %s", c.serverID)
			return
		}
		ip := c.requested
		if ip == nil {
			ip = c.ciaddr
		}
		if ip == nil {
			o.drop = "request names no address"
			return
		}
		b := h.bootInfo(c, o, ev, now)
		if b.kind == bootRefused {
			o.drop = b.reason
			return
		}
		l, err := h.leases.ack(c.mac, ip, c.hostname, now)
		if err != nil {
			why := fmt.Sprintf("%s: %v", ip, err)
			o.reply = nakReply(req, &h.s, why)
			o.event(ev(tracker.StageDHCP, tracker.KindError, ip, "nak: "+why))
			h.log.Info("dhcp: nak", "mac", c.mac, "ip", ip.String(), "reason", err)
			return
		}
		o.reply = leaseReply(req, c, &h.s, dhcpv4.MessageTypeAck, l.IP, b)
		o.event(ev(tracker.StageDHCP, tracker.KindDone, l.IP, "lease "+h.s.leaseTime.String()))
		h.log.Info("dhcp: lease", "mac", c.mac, "ip", l.IP.String(), "expires", l.Expires.Format(time.RFC3339))
		if b.kind == bootOK {
			o.event(withFile(ev(tracker.StagePXE, tracker.KindDone, l.IP, "boot "+b.choice.File), b.choice.File))
		}

	case dhcpv4.MessageTypeRelease:
		if c.serverID != nil && !c.serverID.Equal(h.s.serverIP) {
			o.drop = "release for another server"
			return
		}
		if h.leases.release(c.mac, c.ciaddr, now) {
			h.log.Info("dhcp: released", "mac", c.mac, "ip", c.ciaddr.String())
		}
		o.drop = "release (no reply)"

	case dhcpv4.MessageTypeDecline:
		if c.serverID != nil && !c.serverID.Equal(h.s.serverIP) {
			o.drop = "decline for another server"
			return
		}
		if h.leases.decline(c.mac, c.requested, now) {
			h.log.Warn("dhcp: client declined its address (in use by another host?)", "mac", c.mac, "ip", c.requested.String())
			o.event(ev(tracker.StageDHCP, tracker.KindError, c.requested, "declined "+c.requested.String()+": address in use"))
		}
		o.drop = "decline (no reply)"

	case dhcpv4.MessageTypeInform:
		b := h.bootInfo(c, o, ev, now)
		if b.kind == bootRefused {
			o.drop = b.reason
			return
		}
		o.reply = informReply(req, c, &h.s, b)
		if b.kind == bootOK {
			o.event(withFile(ev(tracker.StagePXE, tracker.KindDone, c.ciaddr, "boot "+b.choice.File), b.choice.File))
		}

	default:
		o.drop = fmt.Sprintf("%s ignored", c.typ)
	}
}

func withFile(e tracker.Event, file string) tracker.Event {
	e.File = file
	return e
}
