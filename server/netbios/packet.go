package netbios

import (
	"encoding/binary"
	"fmt"
)

// Name service opcodes (RFC 1002 section 4.2.1.1).
const (
	opQuery        = 0x0
	opRegistration = 0x5
	opRelease      = 0x6
	opWACK         = 0x7
	opRefresh      = 0x8
	opRefreshAlt   = 0x9 // RFC 1002's typo for refresh, still sent by some
	opMultiHomed   = 0xf // multi-homed name registration (Windows)
)

func opName(op uint8) string {
	switch op {
	case opQuery:
		return "query"
	case opRegistration:
		return "registration"
	case opRelease:
		return "release"
	case opWACK:
		return "wait for acknowledgement"
	case opRefresh, opRefreshAlt:
		return "refresh"
	case opMultiHomed:
		return "multi-homed registration"
	}
	return fmt.Sprintf("opcode %d", op)
}

// NM_FLAGS bits, within their 7 bits (RFC 1002 section 4.2.1.1).
const (
	flagB  = 0x01 // broadcast
	flagRA = 0x08 // recursion available
	flagRD = 0x10 // recursion desired
	flagTC = 0x20 // truncation
	flagAA = 0x40 // authoritative answer
)

// Question and resource record types and the class (RFC 1002 sections
// 4.2.1.2 and 4.2.1.3).
const (
	typeNB     = 0x0020
	typeNBSTAT = 0x0021
	classIN    = 0x0001
)

// NB_FLAGS (RFC 1002 section 4.2.1.3) and NAME_FLAGS (section 4.2.18).
const (
	nbGroup    = 0x8000 // G: a group name
	nameActive = 0x0400 // ACT: the name is active
	// ONT (owner node type) is 00, a B node, in both: the server answers
	// broadcasts itself and registers with no name server.
)

// headerLen is the fixed header (RFC 1002 section 4.2.1.1).
const headerLen = 12

// header is a name service packet's header. The section counts are not
// kept: they are the lengths of the packet's slices.
type header struct {
	id       uint16
	response bool
	opcode   uint8 // 4 bits
	flags    uint8 // NM_FLAGS, 7 bits
	rcode    uint8 // 4 bits
}

func (h header) word() uint16 {
	var w uint16
	if h.response {
		w = 1 << 15
	}
	return w | uint16(h.opcode&0xf)<<11 | uint16(h.flags&0x7f)<<4 | uint16(h.rcode&0xf)
}

// question is a QUESTION_NAME with its type and class (section 4.2.1.2).
type question struct {
	name   name
	qtype  uint16
	qclass uint16
}

// resource is a resource record (section 4.2.1.3); rdata aliases the
// decoded buffer.
type resource struct {
	name   name
	rtype  uint16
	rclass uint16
	ttl    uint32
	rdata  []byte
}

// packet is a name service packet (RFC 1002 section 4.2.1).
type packet struct {
	header
	questions  []question
	answers    []resource
	authority  []resource
	additional []resource
}

// minQuestion and minResource are the smallest encodings: a 2-byte
// pointer as the name and the fixed fields. They bound what a count can
// claim before anything is allocated.
const (
	minQuestion = 2 + 4
	minResource = 2 + 10
)

// decodePacket decodes a name service packet. Names may use compression
// pointers; bytes after the last record are ignored.
func decodePacket(b []byte) (*packet, error) {
	if len(b) < headerLen {
		return nil, malformed("name service packet of %d bytes, shorter than its %d-byte header", len(b), headerLen)
	}
	w := binary.BigEndian.Uint16(b[2:])
	p := &packet{header: header{
		id:       binary.BigEndian.Uint16(b),
		response: w&0x8000 != 0,
		opcode:   uint8(w>>11) & 0xf,
		flags:    uint8(w>>4) & 0x7f,
		rcode:    uint8(w) & 0xf,
	}}
	qd := int(binary.BigEndian.Uint16(b[4:]))
	an := int(binary.BigEndian.Uint16(b[6:]))
	ns := int(binary.BigEndian.Uint16(b[8:]))
	ar := int(binary.BigEndian.Uint16(b[10:]))
	rest := len(b) - headerLen
	if need := qd*minQuestion + (an+ns+ar)*minResource; need > rest {
		return nil, malformed("counts %d/%d/%d/%d need at least %d bytes, %d present", qd, an, ns, ar, need, rest)
	}
	off := headerLen
	if qd > 0 {
		p.questions = make([]question, 0, qd)
	}
	for i := range qd {
		n, next, err := decodeName(b, off, true)
		if err != nil {
			return nil, fmt.Errorf("question %d: %w", i, err)
		}
		if next+4 > len(b) {
			return nil, malformed("question %d truncated", i)
		}
		p.questions = append(p.questions, question{
			name:   n,
			qtype:  binary.BigEndian.Uint16(b[next:]),
			qclass: binary.BigEndian.Uint16(b[next+2:]),
		})
		off = next + 4
	}
	var err error
	for _, s := range []struct {
		n   int
		out *[]resource
		sec string
	}{{an, &p.answers, "answer"}, {ns, &p.authority, "authority record"}, {ar, &p.additional, "additional record"}} {
		if *s.out, off, err = decodeResources(b, off, s.n, s.sec); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func decodeResources(b []byte, off, count int, sec string) ([]resource, int, error) {
	if count == 0 {
		return nil, off, nil
	}
	out := make([]resource, 0, count)
	for i := range count {
		n, next, err := decodeName(b, off, true)
		if err != nil {
			return nil, 0, fmt.Errorf("%s %d: %w", sec, i, err)
		}
		if next+10 > len(b) {
			return nil, 0, malformed("%s %d truncated", sec, i)
		}
		r := resource{
			name:   n,
			rtype:  binary.BigEndian.Uint16(b[next:]),
			rclass: binary.BigEndian.Uint16(b[next+2:]),
			ttl:    binary.BigEndian.Uint32(b[next+4:]),
		}
		rdlen := int(binary.BigEndian.Uint16(b[next+8:]))
		start := next + 10
		if start+rdlen > len(b) {
			return nil, 0, malformed("%s %d: RDLENGTH %d past the end (%d bytes left)", sec, i, rdlen, len(b)-start)
		}
		r.rdata = b[start : start+rdlen : start+rdlen]
		out = append(out, r)
		off = start + rdlen
	}
	return out, off, nil
}

// appendPacket encodes p after b, names uncompressed.
func appendPacket(b []byte, p *packet) ([]byte, error) {
	counts := []int{len(p.questions), len(p.answers), len(p.authority), len(p.additional)}
	b = binary.BigEndian.AppendUint16(b, p.id)
	b = binary.BigEndian.AppendUint16(b, p.word())
	for _, c := range counts {
		if c > 0xffff {
			return b, fmt.Errorf("netbios: %d records in one section", c)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(c))
	}
	var err error
	for _, q := range p.questions {
		if b, err = appendName(b, q.name); err != nil {
			return b, err
		}
		b = binary.BigEndian.AppendUint16(b, q.qtype)
		b = binary.BigEndian.AppendUint16(b, q.qclass)
	}
	for _, sec := range [][]resource{p.answers, p.authority, p.additional} {
		for _, r := range sec {
			if b, err = appendName(b, r.name); err != nil {
				return b, err
			}
			if len(r.rdata) > 0xffff {
				return b, fmt.Errorf("netbios: RDATA of %d bytes", len(r.rdata))
			}
			b = binary.BigEndian.AppendUint16(b, r.rtype)
			b = binary.BigEndian.AppendUint16(b, r.rclass)
			b = binary.BigEndian.AppendUint32(b, r.ttl)
			b = binary.BigEndian.AppendUint16(b, uint16(len(r.rdata)))
			b = append(b, r.rdata...)
		}
	}
	return b, nil
}

// addrEntry is one NB_FLAGS and NB_ADDRESS pair of a positive name query
// response (RFC 1002 section 4.2.13).
func addrEntry(flags uint16, ip [4]byte) []byte {
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 6), flags)
	return append(b, ip[:]...)
}

// statusName is one entry of a node status response's NODE_NAME array
// (RFC 1002 section 4.2.18).
type statusName struct {
	name  name // raw bytes only; no scope
	flags uint16
}

// statsLen is the STATISTICS field of a node status response (RFC 1002
// section 4.2.18): UNIT_ID (the MAC) then 40 bytes of counters, sent as
// zeros as Samba and Windows do.
const statsLen = 46

// nodeStatus builds a node status response's RDATA: NUM_NAMES, the
// NODE_NAME array, STATISTICS.
func nodeStatus(names []statusName, mac [6]byte) []byte {
	b := make([]byte, 0, 1+18*len(names)+statsLen)
	b = append(b, byte(len(names)))
	for _, n := range names {
		b = append(b, n.name.raw[:]...)
		b = binary.BigEndian.AppendUint16(b, n.flags)
	}
	b = append(b, mac[:]...)
	return append(b, make([]byte, statsLen-6)...)
}

// parseNodeStatus decodes a node status RDATA (for tests and the fuzz
// target: the server never reads one).
func parseNodeStatus(rdata []byte) ([]statusName, [6]byte, error) {
	var mac [6]byte
	if len(rdata) < 1 {
		return nil, mac, malformed("empty node status")
	}
	n := int(rdata[0])
	if len(rdata) < 1+18*n+6 {
		return nil, mac, malformed("node status of %d names in %d bytes", n, len(rdata))
	}
	out := make([]statusName, n)
	for i := range out {
		e := rdata[1+18*i:]
		copy(out[i].name.raw[:], e[:16])
		out[i].flags = binary.BigEndian.Uint16(e[16:])
	}
	copy(mac[:], rdata[1+18*n:])
	return out, mac, nil
}
