package multicast

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

const testSession = 0x5eed0001

// samplePackets returns one encoded packet of every type (several NACK
// shapes) and what it decodes to.
func samplePackets(t testing.TB) (encoded [][]byte, want []Packet) {
	c := mustCodec(t, testSession)
	payload := bytes.Repeat([]byte{0xab}, DefaultBlockSize)
	add := func(b []byte, p Packet) {
		p.Session = testSession
		encoded = append(encoded, b)
		want = append(want, p)
	}
	d := Data{Round: 3, Seq: 77, Block: 12345, Sweep: true, Payload: payload}
	add(c.AppendData(nil, &d), Packet{Type: TypeData, Data: d})
	d2 := Data{Round: 1 << 31, Seq: ^uint32(0), Block: 0, Payload: []byte{1}}
	add(c.AppendData(nil, &d2), Packet{Type: TypeData, Data: d2})
	a := Announce{State: StateSending, BlockSize: DefaultBlockSize, Round: 2, Seq: 1000, Blocks: 93728, Size: 134217728 + 1, Rate: 12_500_000}
	add(c.AppendAnnounce(nil, &a), Packet{Type: TypeAnnounce, Announce: a})
	n := Nack{Client: 7, Round: 4, Entries: []NackEntry{
		{Start: 0, Count: 5000},
		{Start: 6000, Count: 12, Bits: []byte{0x81, 0x0a}},
		{Start: ^uint32(0), Count: 1},
	}}
	add(c.AppendNack(nil, &n), Packet{Type: TypeNack, Nack: n})
	s := Status{Client: 7, Round: 4, Held: 90000, Received: 91000, Lost: 1234, Done: true}
	add(c.AppendStatus(nil, &s), Packet{Type: TypeStatus, Status: s})
	s2 := Status{Client: 9, Leave: true}
	add(c.AppendStatus(nil, &s2), Packet{Type: TypeStatus, Status: s2})
	f := Notice{Client: 7, Reason: ReasonSlow}
	add(c.AppendNotice(nil, &f), Packet{Type: TypeFallback, Notice: f})
	e := Notice{Client: 0}
	add(c.AppendNotice(nil, &e), Packet{Type: TypeEnd, Notice: e})
	return encoded, want
}

func TestWireRoundTrip(t *testing.T) {
	c := mustCodec(t, testSession)
	enc, want := samplePackets(t)
	var p Packet
	for i, b := range enc {
		p = Packet{}
		if err := c.Decode(b, &p); err != nil {
			t.Fatalf("%s: %v", want[i].Type, err)
		}
		if !reflect.DeepEqual(p, want[i]) {
			t.Errorf("%s: decoded\n%+v\nwant\n%+v", want[i].Type, p, want[i])
		}
		if again := reencode(c, &p); !bytes.Equal(again, b) {
			t.Errorf("%s: re-encoding differs", p.Type)
		}
	}
	// A full DATA packet fits a 1500-byte MTU exactly.
	if len(enc[0]) != 1500-28 {
		t.Errorf("DATA of a default block is %d bytes, want %d", len(enc[0]), 1500-28)
	}
	if got := NackSize(want[3].Nack.Entries); got != len(enc[3]) {
		t.Errorf("NackSize %d, encoded %d", got, len(enc[3]))
	}
}

// reencode encodes a decoded packet again.
func reencode(c *Codec, p *Packet) []byte {
	switch p.Type {
	case TypeData:
		return c.AppendData(nil, &p.Data)
	case TypeAnnounce:
		return c.AppendAnnounce(nil, &p.Announce)
	case TypeNack:
		return c.AppendNack(nil, &p.Nack)
	case TypeStatus:
		return c.AppendStatus(nil, &p.Status)
	default:
		return c.AppendNotice(nil, &p.Notice)
	}
}

// resign replaces b's tag with a valid one, so that a malformed body
// reaches the body checks.
func resign(c *Codec, b []byte) []byte {
	body := b[:len(b)-TagLen]
	return append(append([]byte(nil), body...), c.tag(body)...)
}

// raw builds a signed packet from a header and a body.
func raw(c *Codec, t Type, flags uint16, body []byte) []byte {
	b := c.header(nil, t, flags)
	b = append(b, body...)
	return c.seal(b, 0)
}

func TestWireRejects(t *testing.T) {
	c := mustCodec(t, testSession)
	enc, _ := samplePackets(t)
	data, ann, nack, status, fb := enc[0], enc[2], enc[3], enc[4], enc[6]
	be32 := binary.BigEndian.AppendUint32
	be16 := binary.BigEndian.AppendUint16
	nackBody := func(count uint16, entries ...byte) []byte {
		b := be32(be32(nil, 7), 1)
		b = be16(b, count)
		return append(append(b, 0, 0), entries...)
	}
	rng := func(start, count uint32) []byte { return be32(be32([]byte{entryRange}, start), count) }
	bm := func(start uint32, bits uint16, m ...byte) []byte {
		return append(be16(be32([]byte{entryBitmap}, start), bits), m...)
	}
	annBody := func(state byte, bs uint16, blocks uint32, size uint64) []byte {
		b := be16([]byte{state, 0}, bs)
		b = be32(be32(be32(b, 1), 0), blocks)
		return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(b, size), 0)
	}
	flip := func(b []byte, i int) []byte {
		b = append([]byte(nil), b...)
		b[i] ^= 0x01
		return b
	}
	other := mustCodec(t, testSession+1)
	otherKey, _ := NewCodec(bytes.Repeat([]byte{1}, KeyLen), testSession)
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"short", data[:HeaderLen+TagLen-1], ErrMalformed},
		{"magic", resign(c, flip(data, 0)), ErrMalformed},
		{"version", resign(c, flip(data, 4)), ErrMalformed},
		{"session", data, ErrSession}, // decoded by the other session's codec below
		{"type 0", raw(c, 0, 0, nil), ErrType},
		{"type 7", raw(c, 7, 0, nil), ErrType},
		{"tag flipped", flip(data, len(data)-1), ErrTag},
		{"body flipped", flip(data, 100), ErrTag},
		{"header flipped", flip(data, 6), ErrTag},
		{"other key", otherKey.AppendData(nil, &Data{Block: 1, Payload: []byte{1}}), ErrTag},
		{"truncated", data[:len(data)-1], ErrTag},
		{"DATA without payload", raw(c, TypeData, 0, make([]byte, DataHeaderLen)), ErrMalformed},
		{"DATA short", raw(c, TypeData, 0, make([]byte, 5)), ErrMalformed},
		{"DATA flags", raw(c, TypeData, 2, make([]byte, DataHeaderLen+1)), ErrMalformed},
		{"DATA payload too big", raw(c, TypeData, 0, make([]byte, DataHeaderLen+MaxBlockSize+1)), ErrMalformed},
		{"ANNOUNCE short", resign(c, append(ann[:len(ann)-TagLen-1:len(ann)-TagLen-1], make([]byte, TagLen)...)), ErrMalformed},
		{"ANNOUNCE long", raw(c, TypeAnnounce, 0, append(annBody(2, 1432, 1, 1), 0)), ErrMalformed},
		{"ANNOUNCE state", raw(c, TypeAnnounce, 0, annBody(9, 1432, 1, 1)), ErrMalformed},
		{"ANNOUNCE state 0", raw(c, TypeAnnounce, 0, annBody(0, 1432, 1, 1)), ErrMalformed},
		{"ANNOUNCE block size", raw(c, TypeAnnounce, 0, annBody(2, 8, 1, 1)), ErrMalformed},
		{"ANNOUNCE size 0", raw(c, TypeAnnounce, 0, annBody(2, 1432, 0, 0)), ErrMalformed},
		{"ANNOUNCE block count", raw(c, TypeAnnounce, 0, annBody(2, 1432, 3, 1432*2)), ErrMalformed},
		{"ANNOUNCE flags", raw(c, TypeAnnounce, 1, annBody(2, 1432, 1, 1)), ErrMalformed},
		{"NACK short", raw(c, TypeNack, 0, make([]byte, nackFixed-1)), ErrMalformed},
		{"NACK no entries", raw(c, TypeNack, 0, nackBody(0)), ErrMalformed},
		{"NACK too many entries", raw(c, TypeNack, 0, nackBody(MaxNackEntries+1, bytes.Repeat(rng(0, 1), MaxNackEntries+1)...)), ErrMalformed},
		{"NACK fewer entries than counted", raw(c, TypeNack, 0, nackBody(2, rng(0, 1)...)), ErrMalformed},
		{"NACK trailing bytes", raw(c, TypeNack, 0, nackBody(1, append(rng(0, 1), 0)...)), ErrMalformed},
		{"NACK reserved", raw(c, TypeNack, 0, append(nackBody(1)[:10], append([]byte{0, 1}, rng(0, 1)...)...)), ErrMalformed},
		{"NACK entry kind", raw(c, TypeNack, 0, nackBody(1, 3, 0, 0, 0, 0, 0, 0, 0, 1)), ErrMalformed},
		{"NACK range empty", raw(c, TypeNack, 0, nackBody(1, rng(5, 0)...)), ErrMalformed},
		{"NACK range wraps", raw(c, TypeNack, 0, nackBody(1, rng(^uint32(0), 2)...)), ErrMalformed},
		{"NACK range truncated", raw(c, TypeNack, 0, nackBody(1, rng(0, 1)[:6]...)), ErrMalformed},
		{"NACK bitmap empty", raw(c, TypeNack, 0, nackBody(1, bm(0, 0)...)), ErrMalformed},
		{"NACK bitmap too long", raw(c, TypeNack, 0, nackBody(1, bm(0, MaxBitmapBits+8, make([]byte, MaxBitmapBits/8+1)...)...)), ErrMalformed},
		{"NACK bitmap truncated", raw(c, TypeNack, 0, nackBody(1, bm(0, 16, 1)...)), ErrMalformed},
		{"NACK bitmap past its bits", raw(c, TypeNack, 0, nackBody(1, bm(0, 3, 0x08)...)), ErrMalformed},
		{"NACK bitmap wraps", raw(c, TypeNack, 0, nackBody(1, bm(^uint32(0), 8, 1)...)), ErrMalformed},
		{"NACK bitmap header truncated", raw(c, TypeNack, 0, nackBody(1, bm(0, 8)[:4]...)), ErrMalformed},
		{"NACK flags", raw(c, TypeNack, 1, nackBody(1, rng(0, 1)...)), ErrMalformed},
		{"STATUS short", raw(c, TypeStatus, 0, make([]byte, statusLen-1)), ErrMalformed},
		{"STATUS long", resign(c, append(status[:len(status)-TagLen:len(status)-TagLen], make([]byte, 1+TagLen)...)), ErrMalformed},
		{"STATUS flags", raw(c, TypeStatus, 4, make([]byte, statusLen)), ErrMalformed},
		{"FALLBACK without reason", raw(c, TypeFallback, 0, make([]byte, noticeLen)), ErrMalformed},
		{"END with reason", raw(c, TypeEnd, 0, []byte{0, 0, 0, 0, 0, 1}), ErrMalformed},
		{"FALLBACK long", resign(c, append(fb[:len(fb)-TagLen:len(fb)-TagLen], make([]byte, 1+TagLen)...)), ErrMalformed},
		{"END flags", raw(c, TypeEnd, 1, make([]byte, noticeLen)), ErrMalformed},
	} {
		dec := c
		if tc.name == "session" {
			dec = other
		}
		var p Packet
		err := dec.Decode(tc.b, &p)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// The samples themselves pass.
	var p Packet
	for _, b := range [][]byte{data, ann, nack, status, fb} {
		if err := c.Decode(b, &p); err != nil {
			t.Errorf("sample %s: %v", p.Type, err)
		}
	}
}

func TestNewCodecKeyLength(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := NewCodec(make([]byte, n), 1); err == nil {
			t.Errorf("key of %d bytes accepted", n)
		}
	}
}

func TestBlockSizeForMTU(t *testing.T) {
	for _, tc := range []struct{ mtu, want int }{
		{1500, DefaultBlockSize}, {9000, 9000 - 28 - Overhead}, {100, MinBlockSize}, {1 << 20, MaxBlockSize},
	} {
		if got := BlockSizeForMTU(tc.mtu); got != tc.want {
			t.Errorf("BlockSizeForMTU(%d) = %d, want %d", tc.mtu, got, tc.want)
		}
	}
	if DefaultBlockSize+Overhead+28 != 1500 {
		t.Errorf("default DATA packet is %d bytes on the wire", DefaultBlockSize+Overhead+28)
	}
}

// TestWireNackBounds: the largest NACK the receiver builds fits the
// control packet limit and decodes.
func TestWireNackBounds(t *testing.T) {
	c := mustCodec(t, testSession)
	have := newBitmap(200000)
	for i := uint32(0); i < have.n; i += 2 {
		have.set(i) // every other block missing: worst case for ranges
	}
	entries, next := missingEntries(have, 0, have.n, nackBudget)
	b := c.AppendNack(nil, &Nack{Client: 1, Round: 1, Entries: entries})
	if len(b) > MaxControlPacket || len(b) != NackSize(entries) {
		t.Fatalf("NACK of %d bytes (NackSize %d), limit %d", len(b), NackSize(entries), MaxControlPacket)
	}
	var p Packet
	if err := c.Decode(b, &p); err != nil {
		t.Fatal(err)
	}
	if next == 0 || next >= have.n {
		t.Errorf("next %d", next)
	}
}
