// Package multicast is netdeploy's reliable multicast file transfer: one
// Sender streams an image to many Receivers at once over UDP multicast on
// ports from the operator's udp_range. Receivers ask for what they lack
// with NACKs; the sender sends each requested block once per round, keeps
// looping over blocks some active client still lacks (a carousel for late
// joiners), paces itself by the receivers' loss (AIMD) and drops clients
// that go silent or, by policy, are too slow.
//
// The package has three layers: the wire format (wire.go: pure encoding),
// the decisions (session.go, rate.go, recvstate.go: state machines driven
// by explicit time) and the serving (sender.go, receiver.go: sockets).
package multicast

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
)

// Wire constants.
const (
	// Version is the protocol version every packet carries.
	Version = 1
	// KeyLen is the length of a session key.
	KeyLen = 32
	// TagLen is the length of the truncated HMAC-SHA256 tag ending every
	// packet.
	TagLen = 16
	// HeaderLen is the common header: magic, version, type, flags,
	// session ID.
	HeaderLen = 12
	// DataHeaderLen is DATA's fixed part after the header: round, seq,
	// block.
	DataHeaderLen = 12
	// Overhead is what a DATA packet adds to its payload.
	Overhead = HeaderLen + DataHeaderLen + TagLen
	// MaxPacket is the largest UDP payload over IPv4.
	MaxPacket = 65507
	// MinBlockSize and MaxBlockSize bound a session's block size.
	MinBlockSize = 64
	MaxBlockSize = MaxPacket - Overhead
	// DefaultBlockSize fills a 1500-byte MTU without IP fragmentation.
	DefaultBlockSize = 1500 - ipUDPHeaders - Overhead
	// MaxNackEntries bounds the entries of one NACK.
	MaxNackEntries = 256
	// MaxBitmapBits bounds one bitmap entry of a NACK (1024 bytes).
	MaxBitmapBits = 8192
	// MaxControlPacket bounds the packets receivers send (NACK, STATUS):
	// they fit a 1500-byte MTU.
	MaxControlPacket = 1500 - ipUDPHeaders

	ipUDPHeaders = 28
	magic        = "NDMC"
)

// BlockSizeForMTU returns the largest block size whose DATA packets fit an
// interface MTU without fragmentation, within MinBlockSize-MaxBlockSize.
func BlockSizeForMTU(mtu int) int {
	return min(max(mtu-ipUDPHeaders-Overhead, MinBlockSize), MaxBlockSize)
}

// Type is a packet type.
type Type uint8

// Packet types. DATA, ANNOUNCE, FALLBACK and END go from the sender (DATA
// and ANNOUNCE to the group, FALLBACK and END to one receiver or, END with
// client 0, to the group); NACK and STATUS go from a receiver to the
// sender.
const (
	TypeData     Type = 1 // a block of the image
	TypeAnnounce Type = 2 // heartbeat: session parameters, state, rate
	TypeNack     Type = 3 // blocks a receiver lacks
	TypeStatus   Type = 4 // a receiver's progress and counters
	TypeFallback Type = 5 // the sender dropped a receiver: fetch by SMB
	TypeEnd      Type = 6 // done acknowledged (client set) or session over (client 0)
)

func (t Type) String() string {
	switch t {
	case TypeData:
		return "DATA"
	case TypeAnnounce:
		return "ANNOUNCE"
	case TypeNack:
		return "NACK"
	case TypeStatus:
		return "STATUS"
	case TypeFallback:
		return "FALLBACK"
	case TypeEnd:
		return "END"
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// State is the sender's state in an ANNOUNCE.
type State uint8

// Sender states.
const (
	// StateWaiting: the session has not started (start policy).
	StateWaiting State = 1
	// StateSending: round Round is being sent.
	StateSending State = 2
	// StateRoundEnd: round Round has ended and nothing is being sent;
	// receivers lacking blocks answer with NACKs.
	StateRoundEnd State = 3
)

func (s State) String() string {
	switch s {
	case StateWaiting:
		return "waiting"
	case StateSending:
		return "sending"
	case StateRoundEnd:
		return "round-end"
	}
	return fmt.Sprintf("state-%d", uint8(s))
}

// Reason says why a receiver got FALLBACK.
type Reason uint16

// Fallback reasons.
const (
	ReasonSlow    Reason = 1 // too slow for the group (slow-client policy drop)
	ReasonSilent  Reason = 2 // dropped after a silence, now heard again
	ReasonUnknown Reason = 3 // client ID not in the session
	ReasonLossy   Reason = 4 // loses too much whatever the rate
)

func (r Reason) String() string {
	switch r {
	case ReasonSlow:
		return "too slow"
	case ReasonSilent:
		return "dropped after silence"
	case ReasonUnknown:
		return "unknown client"
	case ReasonLossy:
		return "too much loss"
	}
	return fmt.Sprintf("reason-%d", uint16(r))
}

// Flag bits of the header, by type.
const (
	flagSweep uint16 = 1 << 0 // DATA: the round carries every block, in order
	flagDone  uint16 = 1 << 0 // STATUS: every block held
	flagLeave uint16 = 1 << 1 // STATUS: the receiver is leaving
)

// Data is a DATA packet: block Block of the image.
type Data struct {
	Round uint32 // the round it belongs to
	Seq   uint32 // the sender's DATA sequence number (loss counting)
	Block uint32
	// Sweep is set when the round sends every block in ascending order:
	// a receiver may then NACK the gaps it sees at once.
	Sweep bool
	// Payload aliases the decoded buffer.
	Payload []byte
}

// Announce is the sender's heartbeat.
type Announce struct {
	State     State
	BlockSize uint16
	Round     uint32 // current round (StateSending) or the one that ended
	Seq       uint32 // the next DATA sequence number
	Blocks    uint32
	Size      uint64
	Rate      uint64 // current send rate, bytes per second
}

// NackEntry is one part of a NACK: Count blocks from Start when Bits is
// nil, else a bitmap of Count bits (bit i, LSB first in byte i/8, set when
// block Start+i is missing).
type NackEntry struct {
	Start, Count uint32
	Bits         []byte
}

// Nack lists blocks a receiver lacks, as seen after round Round.
type Nack struct {
	Client  uint32
	Round   uint32
	Entries []NackEntry
}

// Status is a receiver's report.
type Status struct {
	Client   uint32
	Round    uint32 // latest round seen
	Held     uint32 // blocks held
	Received uint32 // DATA packets accepted, duplicates included (cumulative)
	Lost     uint32 // DATA packets missed by sequence number (cumulative)
	Done     bool   // every block held and written
	Leave    bool   // the receiver is giving up
}

// Notice is FALLBACK (Reason set) or END (Reason 0).
type Notice struct {
	Client uint32 // 0 in an END: the session is over for everyone
	Reason Reason
}

// Packet is one decoded packet; the field matching Type is set.
type Packet struct {
	Type     Type
	Session  uint32
	Data     Data
	Announce Announce
	Nack     Nack
	Status   Status
	Notice   Notice
}

// Decode errors; every one is wrapped with detail.
var (
	ErrMalformed = errors.New("multicast: malformed packet")
	ErrTag       = errors.New("multicast: bad packet tag")
	ErrSession   = errors.New("multicast: wrong session")
	ErrType      = errors.New("multicast: unknown packet type")
)

// Codec encodes and decodes the packets of one session, signing and
// checking them with the session key. It is not safe for concurrent use.
type Codec struct {
	session uint32
	mac     hash.Hash
	sum     [sha256.Size]byte
}

// NewCodec returns a codec for session with a KeyLen-byte key.
func NewCodec(key []byte, session uint32) (*Codec, error) {
	if len(key) != KeyLen {
		return nil, fmt.Errorf("multicast: key is %d bytes, want %d", len(key), KeyLen)
	}
	return &Codec{session: session, mac: hmac.New(sha256.New, key)}, nil
}

// Session returns the codec's session ID.
func (c *Codec) Session() uint32 { return c.session }

func (c *Codec) header(dst []byte, t Type, flags uint16) []byte {
	dst = append(dst, magic...)
	dst = append(dst, Version, byte(t))
	dst = binary.BigEndian.AppendUint16(dst, flags)
	return binary.BigEndian.AppendUint32(dst, c.session)
}

// seal appends the tag over dst[start:].
func (c *Codec) seal(dst []byte, start int) []byte {
	return append(dst, c.tag(dst[start:])...)
}

func (c *Codec) tag(b []byte) []byte {
	c.mac.Reset()
	c.mac.Write(b)
	return c.mac.Sum(c.sum[:0])[:TagLen]
}

// AppendData appends a signed DATA packet.
func (c *Codec) AppendData(dst []byte, d *Data) []byte {
	start := len(dst)
	var f uint16
	if d.Sweep {
		f = flagSweep
	}
	dst = c.header(dst, TypeData, f)
	dst = binary.BigEndian.AppendUint32(dst, d.Round)
	dst = binary.BigEndian.AppendUint32(dst, d.Seq)
	dst = binary.BigEndian.AppendUint32(dst, d.Block)
	dst = append(dst, d.Payload...)
	return c.seal(dst, start)
}

// AppendAnnounce appends a signed ANNOUNCE packet.
func (c *Codec) AppendAnnounce(dst []byte, a *Announce) []byte {
	start := len(dst)
	dst = c.header(dst, TypeAnnounce, 0)
	dst = append(dst, byte(a.State), 0)
	dst = binary.BigEndian.AppendUint16(dst, a.BlockSize)
	dst = binary.BigEndian.AppendUint32(dst, a.Round)
	dst = binary.BigEndian.AppendUint32(dst, a.Seq)
	dst = binary.BigEndian.AppendUint32(dst, a.Blocks)
	dst = binary.BigEndian.AppendUint64(dst, a.Size)
	dst = binary.BigEndian.AppendUint64(dst, a.Rate)
	return c.seal(dst, start)
}

// AppendNack appends a signed NACK packet. Entries beyond MaxNackEntries
// are not written; NackSize tells what fits a packet.
func (c *Codec) AppendNack(dst []byte, n *Nack) []byte {
	start := len(dst)
	entries := n.Entries[:min(len(n.Entries), MaxNackEntries)]
	dst = c.header(dst, TypeNack, 0)
	dst = binary.BigEndian.AppendUint32(dst, n.Client)
	dst = binary.BigEndian.AppendUint32(dst, n.Round)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(entries)))
	dst = append(dst, 0, 0)
	for _, e := range entries {
		if e.Bits == nil {
			dst = append(dst, entryRange)
			dst = binary.BigEndian.AppendUint32(dst, e.Start)
			dst = binary.BigEndian.AppendUint32(dst, e.Count)
			continue
		}
		dst = append(dst, entryBitmap)
		dst = binary.BigEndian.AppendUint32(dst, e.Start)
		dst = binary.BigEndian.AppendUint16(dst, uint16(e.Count))
		dst = append(dst, e.Bits...)
	}
	return c.seal(dst, start)
}

// NACK layout.
const (
	nackFixed   = 12 // client, round, entry count, reserved
	entryRange  = 1  // kind, start u32, count u32
	entryBitmap = 2  // kind, start u32, bits u16, ceil(bits/8) bytes
	rangeLen    = 9
	bitmapFixed = 7
)

// NackSize is the encoded size of a NACK with these entries.
func NackSize(entries []NackEntry) int {
	n := HeaderLen + nackFixed + TagLen
	for _, e := range entries {
		n += EntrySize(e)
	}
	return n
}

// EntrySize is the encoded size of one NACK entry.
func EntrySize(e NackEntry) int {
	if e.Bits == nil {
		return rangeLen
	}
	return bitmapFixed + len(e.Bits)
}

// AppendStatus appends a signed STATUS packet.
func (c *Codec) AppendStatus(dst []byte, s *Status) []byte {
	start := len(dst)
	var f uint16
	if s.Done {
		f |= flagDone
	}
	if s.Leave {
		f |= flagLeave
	}
	dst = c.header(dst, TypeStatus, f)
	for _, v := range []uint32{s.Client, s.Round, s.Held, s.Received, s.Lost} {
		dst = binary.BigEndian.AppendUint32(dst, v)
	}
	return c.seal(dst, start)
}

// AppendNotice appends a signed FALLBACK (n.Reason != 0) or END packet.
func (c *Codec) AppendNotice(dst []byte, n *Notice) []byte {
	start := len(dst)
	t := TypeEnd
	if n.Reason != 0 {
		t = TypeFallback
	}
	dst = c.header(dst, t, 0)
	dst = binary.BigEndian.AppendUint32(dst, n.Client)
	dst = binary.BigEndian.AppendUint16(dst, uint16(n.Reason))
	return c.seal(dst, start)
}

// Body lengths of the fixed-size types.
const (
	announceLen = 32
	statusLen   = 20
	noticeLen   = 6
)

// Decode checks and decodes b into p, reusing p's NACK entries. Data
// payloads and NACK bitmaps alias b. The checks run in order: length,
// magic, version, session, type, tag, then the body's lengths and values.
func (c *Codec) Decode(b []byte, p *Packet) error {
	if len(b) < HeaderLen+TagLen {
		return fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	if string(b[:4]) != magic {
		return fmt.Errorf("%w: bad magic", ErrMalformed)
	}
	if b[4] != Version {
		return fmt.Errorf("%w: version %d", ErrMalformed, b[4])
	}
	t := Type(b[5])
	flags := binary.BigEndian.Uint16(b[6:])
	session := binary.BigEndian.Uint32(b[8:])
	if session != c.session {
		return fmt.Errorf("%w: %#x", ErrSession, session)
	}
	if t < TypeData || t > TypeEnd {
		return fmt.Errorf("%w: %d", ErrType, uint8(t))
	}
	body, tag := b[HeaderLen:len(b)-TagLen], b[len(b)-TagLen:]
	if !hmac.Equal(tag, c.tag(b[:len(b)-TagLen])) {
		return ErrTag
	}
	p.Type, p.Session = t, session
	switch t {
	case TypeData:
		return decodeData(body, flags, &p.Data)
	case TypeAnnounce:
		return decodeAnnounce(body, flags, &p.Announce)
	case TypeNack:
		return decodeNack(body, flags, &p.Nack)
	case TypeStatus:
		return decodeStatus(body, flags, &p.Status)
	default:
		return decodeNotice(body, flags, t, &p.Notice)
	}
}

func decodeData(b []byte, flags uint16, d *Data) error {
	if flags&^flagSweep != 0 {
		return fmt.Errorf("%w: DATA flags %#x", ErrMalformed, flags)
	}
	if len(b) <= DataHeaderLen || len(b)-DataHeaderLen > MaxBlockSize {
		return fmt.Errorf("%w: DATA body of %d bytes", ErrMalformed, len(b))
	}
	*d = Data{
		Round:   binary.BigEndian.Uint32(b),
		Seq:     binary.BigEndian.Uint32(b[4:]),
		Block:   binary.BigEndian.Uint32(b[8:]),
		Sweep:   flags&flagSweep != 0,
		Payload: b[DataHeaderLen:],
	}
	return nil
}

func decodeAnnounce(b []byte, flags uint16, a *Announce) error {
	if flags != 0 || len(b) != announceLen {
		return fmt.Errorf("%w: ANNOUNCE of %d bytes, flags %#x", ErrMalformed, len(b), flags)
	}
	*a = Announce{
		State:     State(b[0]),
		BlockSize: binary.BigEndian.Uint16(b[2:]),
		Round:     binary.BigEndian.Uint32(b[4:]),
		Seq:       binary.BigEndian.Uint32(b[8:]),
		Blocks:    binary.BigEndian.Uint32(b[12:]),
		Size:      binary.BigEndian.Uint64(b[16:]),
		Rate:      binary.BigEndian.Uint64(b[24:]),
	}
	switch {
	case a.State < StateWaiting || a.State > StateRoundEnd || b[1] != 0:
		return fmt.Errorf("%w: ANNOUNCE state %d", ErrMalformed, b[0])
	case a.BlockSize < MinBlockSize || a.Size == 0:
		return fmt.Errorf("%w: ANNOUNCE block size %d, size %d", ErrMalformed, a.BlockSize, a.Size)
	case uint64(a.Blocks) != (a.Size+uint64(a.BlockSize)-1)/uint64(a.BlockSize):
		return fmt.Errorf("%w: ANNOUNCE %d blocks for %d bytes", ErrMalformed, a.Blocks, a.Size)
	}
	return nil
}

func decodeNack(b []byte, flags uint16, n *Nack) error {
	if flags != 0 || len(b) < nackFixed {
		return fmt.Errorf("%w: NACK of %d bytes, flags %#x", ErrMalformed, len(b), flags)
	}
	count := int(binary.BigEndian.Uint16(b[8:]))
	if count == 0 || count > MaxNackEntries || b[10] != 0 || b[11] != 0 {
		return fmt.Errorf("%w: NACK with %d entries", ErrMalformed, count)
	}
	n.Client = binary.BigEndian.Uint32(b)
	n.Round = binary.BigEndian.Uint32(b[4:])
	n.Entries = n.Entries[:0]
	b = b[nackFixed:]
	for range count {
		if len(b) < 1 {
			return fmt.Errorf("%w: NACK truncated", ErrMalformed)
		}
		switch b[0] {
		case entryRange:
			if len(b) < rangeLen {
				return fmt.Errorf("%w: NACK range truncated", ErrMalformed)
			}
			e := NackEntry{Start: binary.BigEndian.Uint32(b[1:]), Count: binary.BigEndian.Uint32(b[5:])}
			if e.Count == 0 || uint64(e.Start)+uint64(e.Count) > 1<<32 {
				return fmt.Errorf("%w: NACK range %d+%d", ErrMalformed, e.Start, e.Count)
			}
			n.Entries = append(n.Entries, e)
			b = b[rangeLen:]
		case entryBitmap:
			if len(b) < bitmapFixed {
				return fmt.Errorf("%w: NACK bitmap truncated", ErrMalformed)
			}
			start := binary.BigEndian.Uint32(b[1:])
			bits := int(binary.BigEndian.Uint16(b[5:]))
			nb := (bits + 7) / 8
			if bits == 0 || bits > MaxBitmapBits || uint64(start)+uint64(bits) > 1<<32 || len(b) < bitmapFixed+nb {
				return fmt.Errorf("%w: NACK bitmap of %d bits", ErrMalformed, bits)
			}
			m := b[bitmapFixed : bitmapFixed+nb]
			if bits%8 != 0 && m[nb-1]>>(bits%8) != 0 {
				return fmt.Errorf("%w: NACK bitmap has bits past its end", ErrMalformed)
			}
			n.Entries = append(n.Entries, NackEntry{Start: start, Count: uint32(bits), Bits: m})
			b = b[bitmapFixed+nb:]
		default:
			return fmt.Errorf("%w: NACK entry kind %d", ErrMalformed, b[0])
		}
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d bytes after the NACK entries", ErrMalformed, len(b))
	}
	return nil
}

func decodeStatus(b []byte, flags uint16, s *Status) error {
	if flags&^(flagDone|flagLeave) != 0 || len(b) != statusLen {
		return fmt.Errorf("%w: STATUS of %d bytes, flags %#x", ErrMalformed, len(b), flags)
	}
	*s = Status{
		Client:   binary.BigEndian.Uint32(b),
		Round:    binary.BigEndian.Uint32(b[4:]),
		Held:     binary.BigEndian.Uint32(b[8:]),
		Received: binary.BigEndian.Uint32(b[12:]),
		Lost:     binary.BigEndian.Uint32(b[16:]),
		Done:     flags&flagDone != 0,
		Leave:    flags&flagLeave != 0,
	}
	return nil
}

func decodeNotice(b []byte, flags uint16, t Type, n *Notice) error {
	if flags != 0 || len(b) != noticeLen {
		return fmt.Errorf("%w: %s of %d bytes, flags %#x", ErrMalformed, t, len(b), flags)
	}
	*n = Notice{Client: binary.BigEndian.Uint32(b), Reason: Reason(binary.BigEndian.Uint16(b[4:]))}
	if (t == TypeEnd) != (n.Reason == 0) {
		return fmt.Errorf("%w: %s with reason %d", ErrMalformed, t, n.Reason)
	}
	return nil
}
