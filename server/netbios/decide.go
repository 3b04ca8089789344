package netbios

import (
	"fmt"
	"net"
)

// answerTTL is the TTL of a positive name query response, in seconds:
// Samba's default "max ttl" for names it owns permanently (3 days).
const answerTTL = 3 * 24 * 60 * 60

// table is what the name service answers for: the server's names, its
// address and its MAC.
type table struct {
	name      string // upper case
	workgroup string // upper case
	ip        [4]byte
	mac       [6]byte
}

// newTable validates the configuration. mac may be nil (the node status
// then carries zeros).
func newTable(nm, workgroup string, ip net.IP, mac net.HardwareAddr) (*table, error) {
	t := &table{}
	var err error
	if t.name, err = checkName("name", nm); err != nil {
		return nil, err
	}
	if workgroup == "" {
		workgroup = DefaultWorkgroup
	}
	if t.workgroup, err = checkName("workgroup", workgroup); err != nil {
		return nil, err
	}
	if t.name == t.workgroup {
		return nil, fmt.Errorf("netbios: name and workgroup are both %q; they must differ", t.name)
	}
	ip4 := ip.To4()
	if ip4 == nil || ip4.IsUnspecified() {
		return nil, fmt.Errorf("netbios: ip %q is not an IPv4 address", ip)
	}
	copy(t.ip[:], ip4)
	switch len(mac) {
	case 0:
	case 6:
		copy(t.mac[:], mac)
	default:
		return nil, fmt.Errorf("netbios: mac %s is not 6 bytes", mac)
	}
	return t, nil
}

// owned lists the names of the node status response, in Samba's order:
// NAME<00>, NAME<20> and the workgroup's group name WORKGROUP<00>, all
// active on a B node.
func (t *table) owned() []statusName {
	return []statusName{
		{makeName(t.name, SuffixWorkstation), nameActive},
		{makeName(t.name, SuffixFileServer), nameActive},
		{makeName(t.workgroup, SuffixWorkstation), nbGroup | nameActive},
	}
}

// lookup returns the NB_FLAGS to answer a name query for n with, and
// whether the server answers it at all: its own names (the base name
// compared without case), and, as Samba's nmbd does, the wildcard *<00>
// and *<20> (so that `nmblookup '*'` finds the server).
func (t *table) lookup(n name) (uint16, bool) {
	if n.scope != "" {
		return 0, false
	}
	s := n.suffix()
	if n.wildcard() {
		return 0, s == SuffixWorkstation || s == SuffixFileServer
	}
	base := asciiUpper(n.base())
	switch {
	case base == t.name && (s == SuffixWorkstation || s == SuffixFileServer):
		return 0, true // unique, B node
	case base == t.workgroup && s == SuffixWorkstation:
		return nbGroup, true
	}
	return 0, false
}

// verdict is the decision on one name service packet: a reply to send
// (nil: none) and a detail, the event's text for an answer, the reason
// (logged at debug) for anything ignored.
type verdict struct {
	reply  *packet
	detail string
}

func ignore(format string, args ...any) verdict {
	return verdict{detail: fmt.Sprintf(format, args...)}
}

// decide answers a NAME QUERY REQUEST (RFC 1002 section 4.2.12) for one
// of the server's names with a POSITIVE NAME QUERY RESPONSE (section
// 4.2.13), and a NODE STATUS REQUEST (section 4.2.17) for "*" or one of
// its names with a NODE STATUS RESPONSE (section 4.2.18). Everything else
// is ignored: responses, registrations, releases, refreshes, queries for
// other names (a B node never sends a negative answer, section 5.1.1.4),
// and names in a NetBIOS scope.
func (t *table) decide(p *packet) verdict {
	if p.response {
		return ignore("%s response from another node", opName(p.opcode))
	}
	if p.opcode != opQuery {
		if len(p.questions) == 1 {
			return ignore("name %s request for %s", opName(p.opcode), p.questions[0].name)
		}
		return ignore("name %s request", opName(p.opcode))
	}
	if len(p.questions) != 1 {
		return ignore("query with %d questions", len(p.questions))
	}
	q := p.questions[0]
	if q.qclass != classIN {
		return ignore("query for %s of class %d", q.name, q.qclass)
	}
	if q.name.scope != "" {
		return ignore("query for %s in a NetBIOS scope", q.name)
	}
	switch q.qtype {
	case typeNB:
		flags, ok := t.lookup(q.name)
		if !ok {
			return ignore("name query for %s, not ours", q.name)
		}
		return verdict{reply: &packet{
			// RFC 1002 section 4.2.13: AA and RD set, not broadcast.
			header:  header{id: p.id, response: true, opcode: opQuery, flags: flagAA | flagRD},
			answers: []resource{{name: q.name, rtype: typeNB, rclass: classIN, ttl: answerTTL, rdata: addrEntry(flags, t.ip)}},
		}, detail: "name query " + q.name.String()}
	case typeNBSTAT:
		if _, ok := t.lookup(q.name); !ok || (q.name.wildcard() && q.name.suffix() != SuffixWorkstation) {
			return ignore("node status request for %s, not ours", q.name)
		}
		return verdict{reply: &packet{
			// RFC 1002 section 4.2.18: AA set, TTL 0.
			header:  header{id: p.id, response: true, opcode: opQuery, flags: flagAA},
			answers: []resource{{name: q.name, rtype: typeNBSTAT, rclass: classIN, rdata: nodeStatus(t.owned(), t.mac)}},
		}, detail: "node status " + q.name.String()}
	}
	return ignore("query for %s of type %d", q.name, q.qtype)
}

// answer decodes one datagram and decides; the verdict of a packet that
// does not decode carries the decode error as its detail.
func (t *table) answer(b []byte) (verdict, []byte) {
	p, err := decodePacket(b)
	if err != nil {
		return ignore("%v", err), nil
	}
	v := t.decide(p)
	if v.reply == nil {
		return v, nil
	}
	out, err := appendPacket(nil, v.reply)
	if err != nil {
		// Only a name that cannot be encoded again gets here, and every
		// decoded name can be: report it rather than send half a packet.
		return ignore("reply not encoded: %v", err), nil
	}
	return v, out
}
