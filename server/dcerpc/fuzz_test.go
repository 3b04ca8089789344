package dcerpc

import (
	"bytes"
	"context"
	"encoding/asn1"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/oiweiwei/go-msrpc/ssp/credential"
	"github.com/oiweiwei/go-msrpc/ssp/ntlm"
	"github.com/oiweiwei/go-msrpc/ssp/spnego"

	"github.com/netdeploy/netdeploy/server/ntlmssp"
)

// ntlmClient is go-msrpc's NTLM initiator.
func ntlmClient(user, password string, cfg *ntlm.Config) *ntlm.Authentifier {
	if cfg == nil {
		cfg = ntlm.NewConfig()
	}
	cfg.Credential = credential.NewFromPassword(user, password)
	cfg.Confidentiality = true
	return &ntlm.Authentifier{Config: cfg}
}

// fakeConn is a net.Conn that reads a fixed input and discards writes.
type fakeConn struct {
	r       *bytes.Reader
	written int
}

func (c *fakeConn) Read(b []byte) (int, error) { return c.r.Read(b) }
func (c *fakeConn) Write(b []byte) (int, error) {
	c.written += len(b)
	return len(b), nil
}
func (c *fakeConn) Close() error        { return nil }
func (c *fakeConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 135} }
func (c *fakeConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 50000}
}
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// seedStreams are client byte streams for the PDU fuzzer: binds (plain,
// NTLM, SPNEGO), requests (whole, fragmented, with an object UUID and a
// verification trailer), auth3, alter_context, co_cancel and orphaned.
func seedStreams(t testing.TB) [][]byte {
	ctx := context.Background()
	neg, err := ntlmClient(testUser, testPassword, nil).Negotiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// An AUTHENTICATE answering some challenge (not the fuzzed
	// server's: it exercises parsing and a failed logon).
	cli := ntlmClient(testUser, testPassword, nil)
	neg2, _ := cli.Negotiate(ctx)
	ch, _, err := ntlmssp.NewAcceptor(ctx, ntlmssp.Config{Computer: DefaultComputerName, Accounts: testAccounts()}).Step(neg2)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := cli.Authenticate(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	init, err := (&spnego.NegTokenInit{MechTypes: []asn1.ObjectIdentifier{ntlmssp.OIDNTLM}, MechToken: neg}).Marshal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp := ntlmssp.NegTokenResp(ntlmssp.NegAcceptIncomplete, nil, auth, make([]byte, 16))

	ctxs := []testCtx{{0, syntaxWDS, []syntaxID{syntaxNDR20}}, {1, syntaxRaw, []syntaxID{syntaxNDR20, syntaxNDR64}}, {2, syntaxWDS, []syntaxID{featureSyntax(3)}}}
	bind := buildBind(ptypeBind, 1, 5840, ctxs, nil)
	bindNTLM := buildBind(ptypeBind, 1, 5840, ctxs, &authOut{authType: AuthTypeNTLM, level: AuthLevelPrivacy, ctxID: 7, token: neg})
	bindSPNEGO := buildBind(ptypeBind, 1, 5840, ctxs, &authOut{authType: AuthTypeSPNEGO, level: AuthLevelIntegrity, ctxID: 7, token: init})
	alter := buildBind(ptypeAlterContext, 2, 5840, ctxs[:1], &authOut{authType: AuthTypeSPNEGO, level: AuthLevelIntegrity, ctxID: 7, token: resp})
	auth3 := make([]byte, headerLen+4)
	auth3 = append(auth3, AuthTypeNTLM, AuthLevelPrivacy, 0, 0, 7, 0, 0, 0)
	auth3 = append(auth3, auth...)
	putHeader(auth3, 0, ptypeAuth3, pfcFirstFrag|pfcLastFrag, len(auth3), len(auth), 3)

	stub := []byte{5, 0, 0, 0, 5, 0, 0, 0, 'h', 'e', 'l', 'l', 'o', 0, 0, 0}
	vt := append(append(bytes.Clone(stub), verificationTrailerSignature[:]...), 0x01, 0x40, 4, 0, 1, 0, 0, 0)
	obj := [16]byte{1, 2, 3}
	req := buildRequest(4, pfcFirstFrag|pfcLastFrag, 0, 0, uint32(len(stub)), nil, stub)
	reqObj := buildRequest(5, pfcFirstFrag|pfcLastFrag, 1, 0, uint32(len(vt)), &obj, vt)
	frag1 := buildRequest(6, pfcFirstFrag, 0, 0, uint32(len(stub)), nil, stub[:6])
	frag2 := buildRequest(6, pfcLastFrag, 0, 0, uint32(len(stub)-6), nil, stub[6:])
	cancel := make([]byte, headerLen)
	putHeader(cancel, 0, ptypeCoCancel, pfcFirstFrag|pfcLastFrag, headerLen, 0, 6)
	orphaned := make([]byte, headerLen)
	putHeader(orphaned, 0, ptypeOrphaned, pfcFirstFrag|pfcLastFrag, headerLen, 0, 6)

	cat := func(pdus ...[]byte) []byte { return bytes.Join(pdus, nil) }
	return [][]byte{
		bind,
		cat(bind, req, reqObj, frag1, cancel, frag2, orphaned),
		cat(bind, frag1, orphaned, req),
		cat(bindNTLM, auth3, req),
		cat(bindSPNEGO, alter, req),
		cat(bind, alter, req),
		cat(bind, buildRequest(9, pfcFirstFrag|pfcLastFrag, 0, 7, 0xffffffff, nil, nil)),
	}
}

// fuzzServer is the server the fuzzers run connections against.
var fuzzServer = sync.OnceValue(func() *Server {
	release := make(chan struct{})
	close(release)
	s := &Server{Interfaces: []Interface{wdsInterface(), rawInterface(release, nil)}, Accounts: testAccounts(), MaxFrag: 4096, MaxCallSize: 64 << 10}
	s.init()
	return s
})

// FuzzReadPDU feeds a byte stream to the PDU reader and parsers, checking
// their invariants, and then to a whole connection of the server.
func FuzzReadPDU(f *testing.F) {
	for _, s := range seedStreams(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxFrag = 4096
		r := bytes.NewReader(data)
		var buf []byte
		for range 64 {
			h, frag, err := readPDU(r, &buf, maxFrag)
			if err != nil {
				break
			}
			if len(frag) != int(h.fragLen) || len(frag) > maxFrag || len(frag) < headerLen {
				t.Fatalf("PDU of %d bytes for frag_length %d", len(frag), h.fragLen)
			}
			v, err := decodePDU(h, frag)
			if err != nil {
				continue
			}
			switch p := v.(type) {
			case *requestPDU:
				if p.stubOff > p.bodyEnd || p.bodyEnd > len(frag) {
					t.Fatalf("stub %d..%d in %d bytes", p.stubOff, p.bodyEnd, len(frag))
				}
				if a := p.auth; a != nil && (a.trailerOff != p.bodyEnd || a.trailerOff+secTrailerLen+len(a.token) != len(frag)) {
					t.Fatalf("verifier at %d, %d bytes, in %d", a.trailerOff, len(a.token), len(frag))
				}
				stripVerificationTrailer(frag[p.stubOff:p.bodyEnd])
			case *bindPDU:
				if len(p.contexts) > 255 {
					t.Fatalf("%d contexts", len(p.contexts))
				}
			}
		}

		s := fuzzServer()
		c := s.newConn(&fakeConn{r: bytes.NewReader(data)})
		c.serve()
		c.cancel()
		if _, ok := io.Reader(c.nc).(*fakeConn); !ok {
			t.Fatal("connection replaced")
		}
	})
}

// TestSeedStreamsServed checks a fuzz seed reaches the server's
// handlers (the seeds are meaningful, not just parsed).
func TestSeedStreamsServed(t *testing.T) {
	var out bytes.Buffer
	c := fuzzServer().newConn(&recordConn{fakeConn: fakeConn{r: bytes.NewReader(seedStreams(t)[1])}, out: &out})
	c.serve()
	var types []uint8
	var buf []byte
	for r := bytes.NewReader(out.Bytes()); ; {
		h, _, err := readPDU(r, &buf, 8192)
		if err != nil {
			break
		}
		types = append(types, h.ptype)
	}
	// bind_ack, then responses to the whole request, the one with an
	// object UUID and a verification trailer, and the fragmented one.
	want := []uint8{ptypeBindAck, ptypeResponse, ptypeResponse, ptypeResponse}
	if !bytes.Equal(types, want) {
		t.Errorf("PDU types answered %v, want %v", types, want)
	}
}

type recordConn struct {
	fakeConn
	out *bytes.Buffer
}

func (c *recordConn) Write(b []byte) (int, error) { return c.out.Write(b) }
