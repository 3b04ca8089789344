package netbios

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeNameServicePacket feeds arbitrary bytes to the name service
// decoder and the decisions. It must never panic; what decodes must
// encode and decode again to the same packet; every reply must decode,
// be a response with the query's ID and one answer, and never go to a
// packet that is itself a response or not a query.
func FuzzDecodeNameServicePacket(f *testing.F) {
	tb := testTable(f)
	seeds := [][]byte{
		bcastQuery, statusQuery, registration, dgmAnnouncement,
		query(1, opQuery, flagB, makeName("WORKGROUP", 0), typeNB, classIN),
		query(2, opQuery, 0, makeName("*", 0x20), typeNB, classIN),
		query(3, opQuery, 0, name{raw: makeName("NETDEPLOY", 0).raw, scope: "CORP.EXAMPLE"}, typeNB, classIN),
		query(4, opRelease, flagB, makeName("NETDEPLOY", 0x20), typeNB, classIN),
		[]byte("\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x02\xc0\x0c\xc0\x0c\x00\x20\x00\x01"), // pointer loop
		[]byte("\x00\x01\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff"),                                     // huge counts
		{},
	}
	for _, s := range seeds {
		f.Add(s)
		f.Add(s[:len(s)/2])
	}
	if _, out := tb.answer(statusQuery); out != nil {
		f.Add(out) // a response, with an answer section
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePacket(b)
		if err == nil {
			out, err := appendPacket(nil, p)
			if err != nil {
				t.Fatalf("decoded packet does not encode: %v", err)
			}
			q, err := decodePacket(out)
			if err != nil {
				t.Fatalf("encoded packet does not decode: %v", err)
			}
			if !reflect.DeepEqual(normalize(p), normalize(q)) {
				t.Fatalf("round trip:\n%+v\n%+v", p, q)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
		for off := range min(len(b), 64) {
			decodeName(b, off, true)
			decodeName(b, off, false)
		}
		decodeDatagram(b)
		v, out := tb.answer(b)
		if out == nil {
			return
		}
		if err != nil || p.response || p.opcode != opQuery {
			t.Fatalf("answered %q (%v): %s", b, err, v.detail)
		}
		r, err := decodePacket(out)
		if err != nil {
			t.Fatalf("reply does not decode: %v", err)
		}
		if !r.response || r.id != p.id || len(r.answers) != 1 || len(r.questions) != 0 {
			t.Fatalf("reply %+v", r)
		}
	})
}

// normalize makes empty and nil slices alike for comparison.
func normalize(p *packet) *packet {
	c := *p
	for _, s := range []*[]resource{&c.answers, &c.authority, &c.additional} {
		out := make([]resource, len(*s))
		for i, r := range *s {
			r.rdata = append([]byte{}, r.rdata...)
			out[i] = r
		}
		*s = out
	}
	c.questions = append([]question{}, c.questions...)
	return &c
}

// FuzzSessionFrame feeds arbitrary streams to ReadSessionRequest and
// ReadFrame in both framings. It must never panic, never return more than
// the limit, and every error must be io.EOF or wrap io.ErrUnexpectedEOF,
// ErrMalformed or ErrTooLarge; a frame read must write and read back the
// same.
func FuzzSessionFrame(f *testing.F) {
	for _, s := range []string{
		sessionRequest,
		"\x85\x00\x00\x00" + sessionRequest,
		"\x00\x00\x00\x05hello",
		"\x00\x01\x00\x00" + strings.Repeat("x", 100),
		"\x85\x00\x00\x00\x00\x00\x00\x02hi",
		"\x00\xff\xff\xff",
		"\x81\x01\xff\xff",
		"\x82\x00\x00\x00",
		"\x83\x00\x00\x01\x80",
		"",
	} {
		f.Add([]byte(s))
	}
	const limit = 4096
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(what string, err error) {
			if err == nil || err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLarge) {
				return
			}
			t.Fatalf("%s: unexpected error %v", what, err)
		}
		_, _, err := ReadSessionRequest(bytes.NewReader(b))
		check("session request", err)
		for _, fr := range []Framing{NetBIOS, Direct} {
			r := bytes.NewReader(b)
			for range 8 {
				msg, err := ReadFrame(r, fr, limit)
				check(fr.String(), err)
				if err != nil {
					break
				}
				if len(msg) > limit {
					t.Fatalf("%s: %d bytes over the limit", fr, len(msg))
				}
				var w bytes.Buffer
				if err := WriteFrame(&w, fr, msg); err != nil {
					t.Fatal(err)
				}
				back, err := ReadFrame(&w, fr, limit)
				if err != nil || !bytes.Equal(back, msg) {
					t.Fatalf("%s: round trip %v", fr, err)
				}
			}
		}
	})
}
