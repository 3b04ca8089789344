package multicast

import (
	"bytes"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode: it must never panic, and
// what decodes must encode to the same bytes.
func FuzzDecode(f *testing.F) {
	enc, _ := samplePackets(f)
	for _, b := range enc {
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{})
	f.Add([]byte(magic + "\x01\x01\x00\x00\x5e\xed\x00\x01"))
	c := mustCodec(f, testSession)
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Packet
		if err := c.Decode(b, &p); err != nil {
			return
		}
		if again := reencode(c, &p); !bytes.Equal(again, b) {
			t.Fatalf("%s re-encodes differently:\n%x\n%x", p.Type, b, again)
		}
	})
}

// FuzzDecodeSigned signs arbitrary bytes as a packet before decoding, so
// that the body checks are reached: no panic, canonical re-encoding, and
// a decoded NACK lists only blocks within its entries' bounds.
func FuzzDecodeSigned(f *testing.F) {
	enc, _ := samplePackets(f)
	for _, b := range enc {
		f.Add(b[:len(b)-TagLen])
	}
	f.Add([]byte(magic + "\x01\x03\x00\x00\x5e\xed\x00\x01"))
	c := mustCodec(f, testSession)
	f.Fuzz(func(t *testing.T, body []byte) {
		b := c.seal(append([]byte(nil), body...), 0)
		var p Packet
		if err := c.Decode(b, &p); err != nil {
			return
		}
		if again := reencode(c, &p); !bytes.Equal(again, b) {
			t.Fatalf("%s re-encodes differently:\n%x\n%x", p.Type, b, again)
		}
		if p.Type == TypeNack {
			for _, e := range p.Nack.Entries {
				if e.Count == 0 || uint64(e.Start)+uint64(e.Count) > 1<<32 || (e.Bits != nil && len(e.Bits) != int(e.Count+7)/8) {
					t.Fatalf("bad entry %+v", e)
				}
			}
		}
	})
}

// FuzzMissingEntries checks the receiver's NACK encoding on arbitrary
// sets of held blocks: within the packet budget, decodable, and listing
// exactly the missing blocks of [from, next).
func FuzzMissingEntries(f *testing.F) {
	f.Add([]byte{0xff, 0x00, 0x0f, 0xaa}, uint16(0), uint16(32))
	f.Add(bytes.Repeat([]byte{0x55}, 4000), uint16(3), uint16(32000))
	f.Add(append(make([]byte, 100), bytes.Repeat([]byte{0xfe}, 100)...), uint16(0), uint16(1600))
	c := mustCodec(f, testSession)
	f.Fuzz(func(t *testing.T, held []byte, from, to uint16) {
		n := uint32(len(held) * 8)
		have := newBitmap(n)
		for i := range n {
			if held[i/8]&(1<<(i%8)) != 0 {
				have.set(i)
			}
		}
		lo, hi := min(uint32(from), n), min(uint32(to), n)
		if lo > hi {
			lo, hi = hi, lo
		}
		entries, next := missingEntries(have, lo, hi, nackBudget)
		if next < lo || next > hi || (next < hi && len(entries) == 0) {
			t.Fatalf("next %d for [%d, %d) with %d entries", next, lo, hi, len(entries))
		}
		listed := newBitmap(n)
		if len(entries) > 0 {
			b := c.AppendNack(nil, &Nack{Client: 1, Entries: entries})
			if len(b) > MaxControlPacket {
				t.Fatalf("NACK of %d bytes", len(b))
			}
			var p Packet
			if err := c.Decode(b, &p); err != nil {
				t.Fatalf("own NACK does not decode: %v", err)
			}
			for _, e := range p.Nack.Entries {
				for i := range e.Count {
					if e.Bits == nil || e.Bits[i/8]&(1<<(i%8)) != 0 {
						if blk := e.Start + i; blk >= n || have.get(blk) || listed.get(blk) {
							t.Fatalf("entry %+v lists block %d: held, listed twice or past the end", e, blk)
						} else {
							listed.set(blk)
						}
					}
				}
			}
		}
		for i := lo; i < next; i++ {
			if !have.get(i) && !listed.get(i) {
				t.Fatalf("missing block %d in [%d, %d) not listed", i, lo, next)
			}
		}
	})
}
