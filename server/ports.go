package server

import (
	"fmt"
	"strconv"

	"github.com/netdeploy/netdeploy/server/stats"
	"github.com/netdeploy/netdeploy/server/tftp"
)

// Port states for PortStatus.State.
const (
	PortListening = "listening"
	PortError     = "error"
	PortOff       = "off"
	PortNotBuilt  = "not built"
)

// PortStatus is one service port, its state and its traffic, for the
// console's Ports screen.
type PortStatus struct {
	Service string
	Proto   string
	Port    string // a number, or a range "64001-65000"
	State   string
	Reason  string
	Stats   stats.Snapshot
}

// PortTable lists every port of the product: those served now with their
// counters, those switched off, and those whose stage is not built yet.
func (o *Orchestrator) PortTable() []PortStatus {
	var out []PortStatus
	add := func(service, proto string, port int, state, reason string, st stats.Snapshot) {
		out = append(out, PortStatus{Service: service, Proto: proto, Port: strconv.Itoa(port), State: state, Reason: reason, Stats: st})
	}
	mode := o.DHCPMode()
	o.dhcpMu.Lock()
	live, derr := o.dhcpLive, o.dhcpErr
	o.dhcpMu.Unlock()
	dstats := o.dhcp.Stats()
	switch {
	case live:
		reason := "mode " + mode
		if mode == "off" {
			reason = "switched off: sockets open, nothing answered"
		}
		add("dhcp", "udp", PortDHCP, PortListening, reason, dstats[PortDHCP])
		add("pxe", "udp", PortPXE, PortListening, reason, dstats[PortPXE])
	case derr != nil:
		add("dhcp", "udp", PortDHCP, PortError, derr.Error(), stats.Snapshot{})
		add("pxe", "udp", PortPXE, PortError, derr.Error(), stats.Snapshot{})
	default:
		add("dhcp", "udp", PortDHCP, PortOff, "dhcp.mode off", stats.Snapshot{})
		add("pxe", "udp", PortPXE, PortOff, "dhcp.mode off", stats.Snapshot{})
	}
	if st, ok := dstats[68]; ok {
		add("dhcp-auth", "udp", 68, PortListening, "authorization probe", st)
	} else {
		add("dhcp-auth", "udp", 68, PortOff, "authorization off", stats.Snapshot{})
	}
	listen, sessions := o.tftp.Stats()
	add("tftp", "udp", o.RT.TFTP.Port, PortListening, "", listen)
	r := o.Ports.Get()
	out = append(out, PortStatus{Service: "tftp-data", Proto: "udp", Port: r.String(), State: PortListening,
		Reason: fmt.Sprintf("%d ports for sessions", r.Size()), Stats: sessions})
	add("http", "tcp", o.RT.HTTP.Port, PortListening, "", o.http.Stats())
	add("epmap", "tcp", o.RT.RPC.EPMPort, PortListening, "endpoint mapper", o.epm.Stats())
	add("wds-rpc", "tcp", o.RT.RPC.Port, PortListening, "WDS control service", o.rpc.Stats())
	if o.nbns != nil {
		add("nb-name", "udp", 137, PortListening, "answers for "+o.RT.SMB.Name, o.nbns.Stats())
		add("nb-dgram", "udp", 138, PortListening, "received and dropped", o.nbdg.Stats())
	} else {
		add("nb-name", "udp", 137, PortOff, "smb.netbios off", stats.Snapshot{})
		add("nb-dgram", "udp", 138, PortOff, "smb.netbios off", stats.Snapshot{})
	}
	smbStats := o.smb.Stats()
	add("nb-sess", "tcp", o.RT.SMB.SessionPort, PortListening, "SMB through NetBIOS (counted with "+strconv.Itoa(o.RT.SMB.Port)+")", stats.Snapshot{})
	add("smb", "tcp", o.RT.SMB.Port, PortListening, `image share \\`+o.RT.SMB.Name+`\images`, smbStats)
	if o.mc == nil {
		out = append(out, PortStatus{Service: "multicast", Proto: "udp", Port: r.String(), State: PortOff, Reason: "multicast.enabled off"})
	} else {
		var total stats.Snapshot
		clients := 0
		list := o.mc.list()
		for _, s := range list {
			t := s.Stats.Traffic
			total.PacketsIn += t.PacketsIn
			total.PacketsOut += t.PacketsOut
			total.BytesIn += t.BytesIn
			total.BytesOut += t.BytesOut
			clients += len(s.Stats.Clients)
		}
		total.Active = int64(clients)
		out = append(out, PortStatus{Service: "multicast", Proto: "udp", Port: r.String(), State: PortListening,
			Reason: fmt.Sprintf("%d sessions, %d clients", len(list), clients), Stats: total})
	}
	return out
}

// Sessions lists the TFTP transfers in progress with their range ports.
func (o *Orchestrator) Sessions() []tftp.SessionInfo { return o.tftp.Sessions() }
