package netbios

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/netdeploy/netdeploy/server/stats"
)

// DatagramServer holds the NetBIOS datagram service port (UDP 138, RFC
// 1002 section 4.4) and drops every datagram, logging it at debug: the
// deployment server takes no part in browsing, but the port shows as
// served and its traffic is counted. Same shape and rules as Server.
type DatagramServer struct {
	// Interface is the interface ListenAndServe binds to
	// (SO_BINDTODEVICE, Linux only); "": every interface.
	Interface string
	// Port is where ListenAndServe listens; 0: DefaultDatagramPort.
	Port int
	// Log receives diagnostics; nil: discarded.
	Log *slog.Logger

	svc udpService
}

// ListenAndServe opens 0.0.0.0 on Port (bound to Interface when set) and
// calls Serve.
func (s *DatagramServer) ListenAndServe() error {
	conn, err := ListenUDP(s.Interface, orDefault(s.Port, DefaultDatagramPort))
	if err != nil {
		return err
	}
	return s.Serve(conn)
}

// Serve drops the datagrams arriving on conn until Shutdown, and then
// returns nil. Serve closes conn. If conn is closed by someone else it
// returns an error wrapping net.ErrClosed.
func (s *DatagramServer) Serve(conn *net.UDPConn) error {
	log := logger(s.Log)
	return s.svc.serve(conn, "datagram service", log, func(b []byte, from netip.AddrPort) {
		s.svc.st.In(len(b))
		l := log.With("ip", from.Addr().Unmap().String(), "port", int(from.Port()), "proto", "udp")
		d, err := decodeDatagram(b)
		if err != nil {
			l.Debug("netbios: datagram dropped", "reason", err, "len", len(b))
			return
		}
		l.Debug("netbios: datagram dropped", "type", d.typeName(), "source", d.src.String(), "destination", d.dst.String(), "len", len(b))
	})
}

// Shutdown stops Serve (which then returns nil) and waits for it, or for
// ctx to end.
func (s *DatagramServer) Shutdown(ctx context.Context) error { return s.svc.shutdown(ctx) }

// Stats returns the traffic counters: datagrams received (none are sent).
func (s *DatagramServer) Stats() stats.Snapshot { return s.svc.st.Snapshot() }

// Datagram message types (RFC 1002 section 4.4.1).
const (
	dgmDirectUnique = 0x10
	dgmDirectGroup  = 0x11
	dgmBroadcast    = 0x12
	dgmError        = 0x13
	dgmQuery        = 0x14
	dgmPositive     = 0x15
	dgmNegative     = 0x16
)

// dgmHeaderLen is MSG_TYPE, FLAGS, DGM_ID, SOURCE_IP and SOURCE_PORT.
const dgmHeaderLen = 10

// datagram is the part of a datagram service packet the server logs.
type datagram struct {
	typ      byte
	sourceIP [4]byte
	port     uint16
	src, dst name // set as the type has them
	data     int  // USER_DATA bytes
}

func (d datagram) typeName() string {
	switch d.typ {
	case dgmDirectUnique:
		return "direct unique"
	case dgmDirectGroup:
		return "direct group"
	case dgmBroadcast:
		return "broadcast"
	case dgmError:
		return "error"
	case dgmQuery:
		return "query request"
	case dgmPositive:
		return "positive query response"
	case dgmNegative:
		return "negative query response"
	}
	return fmt.Sprintf("type 0x%02x", d.typ)
}

// decodeDatagram decodes a datagram service packet's header and names
// (RFC 1002 sections 4.4.2 to 4.4.4). A fragment after the first has no
// names; DGM_LENGTH must fit the datagram.
func decodeDatagram(b []byte) (datagram, error) {
	var d datagram
	if len(b) < dgmHeaderLen {
		return d, malformed("datagram of %d bytes, shorter than its header", len(b))
	}
	d.typ = b[0]
	copy(d.sourceIP[:], b[4:8])
	d.port = binary.BigEndian.Uint16(b[8:])
	switch d.typ {
	case dgmDirectUnique, dgmDirectGroup, dgmBroadcast:
		if len(b) < dgmHeaderLen+4 {
			return d, malformed("datagram of %d bytes, shorter than its header", len(b))
		}
		length := int(binary.BigEndian.Uint16(b[10:]))
		offset := int(binary.BigEndian.Uint16(b[12:]))
		body := b[14:]
		if length > len(body) {
			return d, malformed("DGM_LENGTH %d past the end (%d bytes)", length, len(body))
		}
		body = body[:length]
		const first = 0x02 // FLAGS: F, the first fragment
		if b[1]&first == 0 || offset != 0 {
			d.data = len(body) // a later fragment: user data only
			return d, nil
		}
		var next int
		var err error
		if d.src, next, err = decodeName(body, 0, false); err != nil {
			return d, fmt.Errorf("source name: %w", err)
		}
		if d.dst, next, err = decodeName(body, next, false); err != nil {
			return d, fmt.Errorf("destination name: %w", err)
		}
		d.data = len(body) - next
	case dgmError:
		if len(b) < dgmHeaderLen+1 {
			return d, malformed("datagram error of %d bytes", len(b))
		}
	case dgmQuery, dgmPositive, dgmNegative:
		var err error
		if d.dst, _, err = decodeName(b, dgmHeaderLen, false); err != nil {
			return d, fmt.Errorf("destination name: %w", err)
		}
	default:
		return d, malformed("datagram type 0x%02x", d.typ)
	}
	return d, nil
}
