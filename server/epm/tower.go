// Package epm is the endpoint mapper (C706 appendix O / [MS-RPCE] 2.2.1.2):
// the service on TCP 135 that tells clients on which port an RPC
// interface listens (ept_map, ept_lookup).
package epm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/oiweiwei/go-msrpc/midl/uuid"
)

// Protocol identifiers of tower floors (C706 appendix I).
const (
	protoRPCCO = 0x0b
	protoUUID  = 0x0d
	protoTCP   = 0x07
	protoIP    = 0x09
)

// NDR 2.0 transfer syntax (C706 appendix I, 8a885d04-1ceb-11c9-9fe8-08002b104860 v2).
var ndr20 = uuid.UUID{TimeLow: 0x8a885d04, TimeMid: 0x1ceb, TimeHiAndVersion: 0x11c9, ClockSeqHiAndReserved: 0x9f, ClockSeqLow: 0xe8, Node: [6]byte{0x08, 0x00, 0x2b, 0x10, 0x48, 0x60}}

// floor is one level of a protocol tower: the left-hand side (protocol id
// and, for UUID floors, the UUID and major version) and the right-hand side
// (minor version, port, address).
type floor struct {
	proto byte
	id    uuid.UUID // UUID floors
	major uint16    // UUID floors
	rhs   []byte
}

// maxFloors caps a tower's floor count; real towers have five.
const maxFloors = 16

var errTower = errors.New("epm: malformed tower")

// parseTower decodes a tower octet string (C706 appendix L): a floor count,
// then per floor lhs length, lhs, rhs length, rhs, all little-endian.
func parseTower(b []byte) ([]floor, error) {
	if len(b) < 2 {
		return nil, errTower
	}
	n := int(binary.LittleEndian.Uint16(b))
	if n == 0 || n > maxFloors {
		return nil, fmt.Errorf("%w: %d floors", errTower, n)
	}
	b = b[2:]
	out := make([]floor, 0, n)
	for range n {
		if len(b) < 2 {
			return nil, errTower
		}
		ll := int(binary.LittleEndian.Uint16(b))
		b = b[2:]
		if ll < 1 || ll > len(b) {
			return nil, fmt.Errorf("%w: lhs length %d", errTower, ll)
		}
		lhs := b[:ll]
		b = b[ll:]
		if len(b) < 2 {
			return nil, errTower
		}
		rl := int(binary.LittleEndian.Uint16(b))
		b = b[2:]
		if rl > len(b) {
			return nil, fmt.Errorf("%w: rhs length %d", errTower, rl)
		}
		f := floor{proto: lhs[0], rhs: b[:rl]}
		b = b[rl:]
		if f.proto == protoUUID {
			if len(lhs) != 19 {
				return nil, fmt.Errorf("%w: uuid floor of %d bytes", errTower, len(lhs))
			}
			f.id = uuidFromLE(lhs[1:17])
			f.major = binary.LittleEndian.Uint16(lhs[17:19])
		}
		out = append(out, f)
	}
	return out, nil
}

// uuidFromLE reads a UUID in its NDR (little-endian fields) form.
func uuidFromLE(b []byte) uuid.UUID {
	u := uuid.UUID{
		TimeLow:               binary.LittleEndian.Uint32(b[0:4]),
		TimeMid:               binary.LittleEndian.Uint16(b[4:6]),
		TimeHiAndVersion:      binary.LittleEndian.Uint16(b[6:8]),
		ClockSeqHiAndReserved: b[8],
		ClockSeqLow:           b[9],
	}
	copy(u.Node[:], b[10:16])
	return u
}

func appendUUIDLE(b []byte, u uuid.UUID) []byte {
	b = binary.LittleEndian.AppendUint32(b, u.TimeLow)
	b = binary.LittleEndian.AppendUint16(b, u.TimeMid)
	b = binary.LittleEndian.AppendUint16(b, u.TimeHiAndVersion)
	b = append(b, u.ClockSeqHiAndReserved, u.ClockSeqLow)
	return append(b, u.Node[:]...)
}

// tcpTower builds the ncacn_ip_tcp tower of an interface at ip:port
// ([MS-RPCE] 2.2.1.2: interface, NDR, RPC connection-oriented v5.0, TCP
// port (big-endian), IPv4 address).
func tcpTower(iface uuid.UUID, major, minor uint16, ip net.IP, port int) []byte {
	b := binary.LittleEndian.AppendUint16(nil, 5)
	uuidFloor := func(id uuid.UUID, major, minor uint16) {
		b = binary.LittleEndian.AppendUint16(b, 19)
		b = append(b, protoUUID)
		b = appendUUIDLE(b, id)
		b = binary.LittleEndian.AppendUint16(b, major)
		b = binary.LittleEndian.AppendUint16(b, 2)
		b = binary.LittleEndian.AppendUint16(b, minor)
	}
	uuidFloor(iface, major, minor)
	uuidFloor(ndr20, 2, 0)
	b = append(b, 1, 0, protoRPCCO, 2, 0, 0, 0) // rpc v5 minor 0
	b = append(b, 1, 0, protoTCP, 2, 0, byte(port>>8), byte(port))
	ip4 := ip.To4()
	if ip4 == nil {
		ip4 = net.IPv4zero.To4()
	}
	b = append(b, 1, 0, protoIP, 4, 0)
	return append(b, ip4...)
}

// towerQuery is what a client asks ept_map for: an interface, and whether
// it wants TCP.
type towerQuery struct {
	iface        uuid.UUID
	major, minor uint16
	tcp          bool
}

func parseQuery(b []byte) (towerQuery, error) {
	fl, err := parseTower(b)
	if err != nil {
		return towerQuery{}, err
	}
	if len(fl) < 3 || fl[0].proto != protoUUID {
		return towerQuery{}, fmt.Errorf("%w: no interface floor", errTower)
	}
	q := towerQuery{iface: fl[0].id, major: fl[0].major}
	if len(fl[0].rhs) >= 2 {
		q.minor = binary.LittleEndian.Uint16(fl[0].rhs)
	}
	for _, f := range fl[1:] {
		if f.proto == protoTCP {
			q.tcp = true
		}
	}
	return q, nil
}
