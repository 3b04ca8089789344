package dcerpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	msdcerpc "github.com/oiweiwei/go-msrpc/dcerpc"
	"github.com/oiweiwei/go-msrpc/midl/uuid"
	wdsrpcinterface "github.com/oiweiwei/go-msrpc/msrpc/wdsc/wdsrpcinterface/v1"
	"github.com/oiweiwei/go-msrpc/ndr"

	"github.com/netdeploy/netdeploy/server/tracker"
)

// Raw-PDU tests: hand-built PDUs on a plain TCP connection.

var (
	syntaxWDS     = toSyntax(wdsrpcinterface.InterfaceSyntaxV1_0)
	syntaxNDR64   = toSyntax(msdcerpc.TransferNDR64SyntaxV1_0)
	syntaxUnknown = toSyntax(&msdcerpc.SyntaxID{IfUUID: uuid.MustParse("12345678-1234-abcd-ef00-0123456789ab"), IfVersionMajor: 1})
	syntaxRaw     = toSyntax(&msdcerpc.SyntaxID{IfUUID: uuid.MustParse("0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"), IfVersionMajor: 1})
)

func featureSyntax(bits uint8) syntaxID {
	s := syntaxID{major: 1}
	copy(s.uuid[:], featurePrefix[:])
	s.uuid[8] = bits
	return s
}

// rawOp is an operation whose response stub is given bytes.
type rawOp struct{ resp []byte }

func (rawOp) OpNum() int                                            { return 0 }
func (rawOp) OpName() string                                        { return "raw" }
func (rawOp) MarshalNDRRequest(context.Context, ndr.Writer) error   { return nil }
func (rawOp) UnmarshalNDRRequest(context.Context, ndr.Reader) error { return nil }
func (o rawOp) MarshalNDRResponse(_ context.Context, w ndr.Writer) error {
	_, err := w.Write(o.resp)
	return err
}
func (rawOp) UnmarshalNDRResponse(context.Context, ndr.Reader) error { return nil }

// rawInterface echoes the request stub as it reached the handler,
// prefixed by the object UUID when there is one. Opnum 1 blocks until
// release is closed (or the call's context ends).
func rawInterface(release chan struct{}, entered chan struct{}) Interface {
	return Interface{
		Name:   "Raw",
		Syntax: msdcerpc.SyntaxID{IfUUID: uuid.MustParse("0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"), IfVersionMajor: 1},
		Handle: func(ctx context.Context, opnum int, r ndr.Reader) (msdcerpc.Operation, error) {
			stub := bytes.Clone(r.Bytes())
			switch opnum {
			case 0:
				if u, ok := ObjectFrom(ctx); ok {
					stub = append([]byte("object="+u.String()+";"), stub...)
				}
				return rawOp{stub}, nil
			case 1:
				if entered != nil {
					entered <- struct{}{}
				}
				select {
				case <-release:
					return rawOp{[]byte("released")}, nil
				case <-ctx.Done():
					return nil, Fault(StatusFaultUnspec)
				}
			case 2:
				panic("handler bug")
			case 3:
				return rawOp{}, Fault(0x1234)
			}
			return nil, nil
		},
	}
}

type testCtx struct {
	id        uint16
	abstract  syntaxID
	transfers []syntaxID
}

// buildBind builds a bind or alter_context.
func buildBind(ptype uint8, callID uint32, maxFrag uint16, ctxs []testCtx, auth *authOut) []byte {
	b := make([]byte, headerLen)
	b = binary.LittleEndian.AppendUint16(b, maxFrag)
	b = binary.LittleEndian.AppendUint16(b, maxFrag)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = append(b, uint8(len(ctxs)), 0, 0, 0)
	for _, c := range ctxs {
		b = binary.LittleEndian.AppendUint16(b, c.id)
		b = append(b, uint8(len(c.transfers)), 0)
		b = appendSyntax(b, c.abstract)
		for _, t := range c.transfers {
			b = appendSyntax(b, t)
		}
	}
	authLen := 0
	if auth != nil {
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		b = append(b, auth.authType, auth.level, 0, 0)
		b = binary.LittleEndian.AppendUint32(b, auth.ctxID)
		b = append(b, auth.token...)
		authLen = len(auth.token)
	}
	putHeader(b, 0, ptype, pfcFirstFrag|pfcLastFrag, len(b), authLen, callID)
	return b
}

// buildRequest builds an unauthenticated request fragment.
func buildRequest(callID uint32, flags uint8, ctxID, opnum uint16, allocHint uint32, object *[16]byte, stub []byte) []byte {
	b := make([]byte, requestHeaderLen)
	binary.LittleEndian.PutUint32(b[16:], allocHint)
	binary.LittleEndian.PutUint16(b[20:], ctxID)
	binary.LittleEndian.PutUint16(b[22:], opnum)
	if object != nil {
		flags |= pfcObjectUUID
		b = append(b, object[:]...)
	}
	b = append(b, stub...)
	putHeader(b, 0, ptypeRequest, flags, len(b), 0, callID)
	return b
}

type rawClient struct {
	t   *testing.T
	c   net.Conn
	buf []byte
}

func rawDial(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c}
}

func (r *rawClient) send(b []byte) {
	r.t.Helper()
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// recv reads one PDU (failing the test on error).
func (r *rawClient) recv() (header, []byte) {
	r.t.Helper()
	h, frag, err := r.tryRecv(5 * time.Second)
	if err != nil {
		r.t.Fatalf("reading a PDU: %v", err)
	}
	return h, frag
}

func (r *rawClient) tryRecv(d time.Duration) (header, []byte, error) {
	r.c.SetReadDeadline(time.Now().Add(d))
	return readPDU(r.c, &r.buf, 8192)
}

// response reads the fragments of a response and returns its stub.
func (r *rawClient) response() []byte {
	r.t.Helper()
	var stub []byte
	for {
		h, frag := r.recv()
		if h.ptype != ptypeResponse {
			r.t.Fatalf("PDU type %d, want a response", h.ptype)
		}
		stub = append(stub, frag[requestHeaderLen:]...)
		if h.flags&pfcLastFrag != 0 {
			return stub
		}
	}
}

// expectClosed checks that the server closes the connection within d
// without sending anything.
func (r *rawClient) expectClosed(d time.Duration) {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(d))
	var b [1]byte
	n, err := r.c.Read(b[:])
	if n != 0 || !(errors.Is(err, io.EOF) || isReset(err)) {
		r.t.Fatalf("connection not closed: read %d bytes, %v", n, err)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

type bindAck struct {
	ptype            uint8
	flags            uint8
	maxXmit, maxRecv uint16
	assoc            uint32
	secAddr          string
	results          []ctxResult
	auth             *authVerifier
}

func parseBindAckPDU(t *testing.T, h header, frag []byte) bindAck {
	t.Helper()
	if h.ptype != ptypeBindAck && h.ptype != ptypeAlterContextResp {
		t.Fatalf("PDU type %d, want bind_ack or alter_context_resp", h.ptype)
	}
	a := bindAck{ptype: h.ptype, flags: h.flags}
	a.maxXmit = binary.LittleEndian.Uint16(frag[16:])
	a.maxRecv = binary.LittleEndian.Uint16(frag[18:])
	a.assoc = binary.LittleEndian.Uint32(frag[20:])
	n := int(binary.LittleEndian.Uint16(frag[24:]))
	p := 26
	if n > 0 {
		a.secAddr = string(frag[p : p+n-1])
		p += n
	}
	p = (p + 3) &^ 3
	count := int(frag[p])
	p += 4
	for range count {
		a.results = append(a.results, ctxResult{
			result:   binary.LittleEndian.Uint16(frag[p:]),
			reason:   binary.LittleEndian.Uint16(frag[p+2:]),
			transfer: readSyntax(frag[p+4:]),
		})
		p += 4 + syntaxLen
	}
	v, _, err := parseAuth(h, frag, p)
	if err != nil {
		t.Fatal(err)
	}
	a.auth = v
	return a
}

// bindAck reads a bind_ack or alter_context_resp.
func (r *rawClient) bindAck() bindAck {
	r.t.Helper()
	h, frag := r.recv()
	return parseBindAckPDU(r.t, h, frag)
}

func faultStatusOf(t *testing.T, h header, frag []byte) uint32 {
	t.Helper()
	if h.ptype != ptypeFault {
		t.Fatalf("PDU type %d, want a fault", h.ptype)
	}
	return binary.LittleEndian.Uint32(frag[24:])
}

func rawServer(t *testing.T, s *Server) string {
	if len(s.Interfaces) == 0 {
		s.Interfaces = []Interface{wdsInterface(), rawInterface(nil, nil)}
	}
	return startServer(t, s)
}

// bindRaw binds the raw interface as context 0 and WdsRpcInterface as 1.
func bindRaw(t *testing.T, rc *rawClient) {
	t.Helper()
	rc.send(buildBind(ptypeBind, 1, 4280, []testCtx{
		{0, syntaxRaw, []syntaxID{syntaxNDR20}},
		{1, syntaxWDS, []syntaxID{syntaxNDR20}},
	}, nil))
	a := rc.bindAck()
	if len(a.results) != 2 || a.results[0].result != resultAcceptance || a.results[1].result != resultAcceptance {
		t.Fatalf("bind results %+v", a.results)
	}
}

func TestRawBindNegotiation(t *testing.T) {
	ev := &events{}
	s := &Server{Events: ev, Port: 5040}
	addr := rawServer(t, s)
	rc := rawDial(t, addr)
	rc.send(buildBind(ptypeBind, 7, 2000, []testCtx{
		{0, syntaxWDS, []syntaxID{syntaxNDR64, syntaxNDR20}},
		{1, syntaxWDS, []syntaxID{syntaxNDR64}},
		{2, syntaxUnknown, []syntaxID{syntaxNDR20}},
		{3, syntaxWDS, []syntaxID{featureSyntax(0x03)}},
	}, nil))
	h, frag := rc.recv()
	if h.callID != 7 || h.flags&(pfcFirstFrag|pfcLastFrag) != pfcFirstFrag|pfcLastFrag {
		t.Errorf("bind_ack header %+v", h)
	}
	a := parseBindAckPDU(t, h, frag)
	want := []ctxResult{
		{result: resultAcceptance, transfer: syntaxNDR20},
		{result: resultProviderRejection, reason: reasonTransferSyntaxesNotSupported},
		{result: resultProviderRejection, reason: reasonAbstractSyntaxNotSupported},
		{result: resultNegotiateAck, reason: uint16(featureKeepConnOnOrphan)},
	}
	if len(a.results) != len(want) {
		t.Fatalf("results %+v, want %+v", a.results, want)
	}
	for i := range want {
		if a.results[i] != want[i] {
			t.Errorf("result %d: %+v, want %+v", i, a.results[i], want[i])
		}
	}
	if a.maxXmit != 2000 || a.maxRecv != 2000 {
		t.Errorf("max_xmit/max_recv %d/%d, want 2000", a.maxXmit, a.maxRecv)
	}
	if a.assoc == 0 {
		t.Error("assoc_group_id 0 for a new association")
	}
	if a.secAddr != "5040" {
		t.Errorf("secondary address %q", a.secAddr)
	}
	if n := ev.count(tracker.KindStart, "bind WdsRpcInterface"); n != 1 {
		t.Errorf("%d bind events, want 1", n)
	}

	// Fragment sizes: never above MaxFrag, never below 1432.
	for _, tc := range []struct{ offer, want uint16 }{{65535, DefaultMaxFrag}, {100, mustRecvFragSize}} {
		rc := rawDial(t, addr)
		rc.send(buildBind(ptypeBind, 1, tc.offer, []testCtx{{0, syntaxWDS, []syntaxID{syntaxNDR20}}}, nil))
		if a := rc.bindAck(); a.maxXmit != tc.want || a.maxRecv != tc.want {
			t.Errorf("offered %d: got %d/%d, want %d", tc.offer, a.maxXmit, a.maxRecv, tc.want)
		}
	}

	// alter_context adds a context on the same connection.
	rc.send(buildBind(ptypeAlterContext, 8, 2000, []testCtx{{5, syntaxRaw, []syntaxID{syntaxNDR20}}}, nil))
	a = rc.bindAck()
	if a.ptype != ptypeAlterContextResp || len(a.results) != 1 || a.results[0].result != resultAcceptance || a.secAddr != "" {
		t.Errorf("alter_context_resp %+v", a)
	}
	rc.send(buildRequest(9, pfcFirstFrag|pfcLastFrag, 5, 0, 3, nil, []byte("abc")))
	if h, frag := rc.recv(); h.ptype != ptypeResponse || string(frag[24:27]) != "abc" {
		t.Errorf("call on the altered context: type %d %q", h.ptype, frag)
	}
}

func TestRawBindRefused(t *testing.T) {
	addr := rawServer(t, &Server{})

	// Big-endian data representation: bind_nak, then closed.
	rc := rawDial(t, addr)
	b := buildBind(ptypeBind, 3, 4280, []testCtx{{0, syntaxWDS, []syntaxID{syntaxNDR20}}}, nil)
	b[4] = 0x00 // integer representation big-endian
	binary.BigEndian.PutUint16(b[8:], uint16(len(b)))
	binary.BigEndian.PutUint32(b[12:], 3)
	rc.send(b)
	if h, _ := rc.recv(); h.ptype != ptypeBindNak || h.callID != 3 {
		t.Errorf("big-endian bind answered with type %d call %d, want bind_nak 3", h.ptype, h.callID)
	}
	rc.expectClosed(2 * time.Second)

	// Unknown authentication type (Kerberos): bind_nak with reason 8.
	rc = rawDial(t, addr)
	rc.send(buildBind(ptypeBind, 1, 4280, []testCtx{{0, syntaxWDS, []syntaxID{syntaxNDR20}}},
		&authOut{authType: 16, level: AuthLevelPrivacy, ctxID: 1, token: []byte{1, 2, 3, 4}}))
	h, frag := rc.recv()
	if h.ptype != ptypeBindNak || binary.LittleEndian.Uint16(frag[16:]) != reasonAuthenticationTypeUnsupported {
		t.Errorf("kerberos bind: type %d reason %d", h.ptype, binary.LittleEndian.Uint16(frag[16:]))
	}

	// A second bind on a bound connection.
	rc = rawDial(t, addr)
	bindRaw(t, rc)
	rc.send(buildBind(ptypeBind, 2, 4280, []testCtx{{0, syntaxWDS, []syntaxID{syntaxNDR20}}}, nil))
	if h, _ := rc.recv(); h.ptype != ptypeBindNak {
		t.Errorf("second bind answered with type %d", h.ptype)
	}

	// A request before any bind closes the connection.
	rc = rawDial(t, addr)
	rc.send(buildRequest(1, pfcFirstFrag|pfcLastFrag, 0, 0, 0, nil, []byte("x")))
	rc.expectClosed(2 * time.Second)
}

func TestRawFaults(t *testing.T) {
	addr := rawServer(t, &Server{})
	rc := rawDial(t, addr)
	bindRaw(t, rc)
	for _, tc := range []struct {
		name   string
		ctxID  uint16
		opnum  uint16
		stub   []byte
		status uint32
	}{
		{"unknown opnum", 1, 9, nil, StatusOpRangeError},
		{"unknown context", 42, 0, []byte{1, 2, 3, 4}, StatusUnknownIf},
		{"bad stub", 1, 0, []byte{0xff, 0xff}, StatusBadStubData},
		{"oversized array", 1, 0, []byte{0, 0, 0, 0xf0, 0, 0, 0, 0xf0}, StatusBadStubData},
		{"handler panic", 0, 2, nil, StatusFaultUnspec},
		{"handler fault", 0, 3, nil, 0x1234},
	} {
		rc.send(buildRequest(100, pfcFirstFrag|pfcLastFrag, tc.ctxID, tc.opnum, uint32(len(tc.stub)), nil, tc.stub))
		h, frag := rc.recv()
		if st := faultStatusOf(t, h, frag); st != tc.status {
			t.Errorf("%s: status 0x%08x, want 0x%08x", tc.name, st, tc.status)
		}
		if h.callID != 100 {
			t.Errorf("%s: fault for call %d", tc.name, h.callID)
		}
	}
	// The connection still serves calls.
	rc.send(buildRequest(101, pfcFirstFrag|pfcLastFrag, 0, 0, 2, nil, []byte("ok")))
	if h, frag := rc.recv(); h.ptype != ptypeResponse || string(frag[24:]) != "ok" {
		t.Errorf("call after faults: type %d %q", h.ptype, frag)
	}
}

func TestRawRequestFeatures(t *testing.T) {
	addr := rawServer(t, &Server{MaxCallSize: 8 << 10})
	rc := rawDial(t, addr)
	bindRaw(t, rc)

	// Object UUID.
	obj := [16]byte{0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0xcd, 0xab, 0xef, 0x00, 1, 2, 3, 4, 5, 6}
	rc.send(buildRequest(1, pfcFirstFrag|pfcLastFrag, 0, 0, 4, &obj, []byte("data")))
	if _, frag := rc.recv(); string(frag[24:]) != "object=12345678-1234-abcd-ef00-010203040506;data" {
		t.Errorf("object call: %q", frag[24:])
	}

	// Fragmented request, with a verification trailer at the end.
	trailer := append(verificationTrailerSignature[:], 0x01, 0x40, 4, 0, 1, 0, 0, 0) // bitmask command, END
	stub := append([]byte("0123456789abcdefXYZ"), 0)                                 // pad to 4
	full := append(bytes.Clone(stub), trailer...)
	rc.send(buildRequest(2, pfcFirstFrag, 0, 0, uint32(len(full)), nil, full[:7]))
	rc.send(buildRequest(2, 0, 0, 0, uint32(len(full)-7), nil, full[7:20]))
	rc.send(buildRequest(2, pfcLastFrag, 0, 0, uint32(len(full)-20), nil, full[20:]))
	if h, frag := rc.recv(); h.callID != 2 || !bytes.Equal(frag[24:], stub) {
		t.Errorf("reassembled call %d: %q, want %q", h.callID, frag[24:], stub)
	}

	// co_cancel is ignored; orphaned drops a half-received call.
	cancel := make([]byte, headerLen)
	putHeader(cancel, 0, ptypeCoCancel, pfcFirstFrag|pfcLastFrag, headerLen, 0, 3)
	rc.send(cancel)
	rc.send(buildRequest(4, pfcFirstFrag, 0, 0, 100, nil, []byte("lost")))
	orphaned := make([]byte, headerLen)
	putHeader(orphaned, 0, ptypeOrphaned, pfcFirstFrag|pfcLastFrag, headerLen, 0, 4)
	rc.send(orphaned)
	rc.send(buildRequest(5, pfcFirstFrag|pfcLastFrag, 0, 0, 4, nil, []byte("next")))
	if h, frag := rc.recv(); h.callID != 5 || string(frag[24:]) != "next" {
		t.Errorf("call after cancel/orphaned: %d %q", h.callID, frag[24:])
	}

	// alloc_hint far above MaxCallSize: access denied, no allocation,
	// the rest of the call is dropped, the connection goes on.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rc.send(buildRequest(6, pfcFirstFrag, 0, 0, 0xffffffff, nil, []byte("huge")))
	h, frag := rc.recv()
	if st := faultStatusOf(t, h, frag); st != StatusAccessDenied || h.callID != 6 {
		t.Errorf("huge alloc_hint: call %d status 0x%08x", h.callID, st)
	}
	rc.send(buildRequest(6, pfcLastFrag, 0, 0, 0, nil, []byte("rest")))
	runtime.ReadMemStats(&after)
	if grew := int64(after.TotalAlloc) - int64(before.TotalAlloc); grew > 16<<20 {
		t.Errorf("a huge alloc_hint allocated %d bytes", grew)
	}

	// A call whose fragments add up to more than MaxCallSize.
	chunk := make([]byte, 4000)
	rc.send(buildRequest(7, pfcFirstFrag, 0, 0, 0, nil, chunk))
	rc.send(buildRequest(7, 0, 0, 0, 0, nil, chunk))
	rc.send(buildRequest(7, 0, 0, 0, 0, nil, chunk))
	h, frag = rc.recv()
	if st := faultStatusOf(t, h, frag); st != StatusAccessDenied || h.callID != 7 {
		t.Errorf("oversized call: call %d status 0x%08x", h.callID, st)
	}
	rc.send(buildRequest(7, pfcLastFrag, 0, 0, 0, nil, chunk))
	rc.send(buildRequest(8, pfcFirstFrag|pfcLastFrag, 0, 0, 2, nil, []byte("ok")))
	if h, frag := rc.recv(); h.ptype != ptypeResponse || h.callID != 8 || string(frag[24:]) != "ok" {
		t.Errorf("call after oversized call: type %d call %d %q", h.ptype, h.callID, frag)
	}
}

func TestRawMalformedCloses(t *testing.T) {
	s := &Server{IdleTimeout: 500 * time.Millisecond, MaxFrag: 4096}
	addr := rawServer(t, s)
	good := buildBind(ptypeBind, 1, 4280, []testCtx{{0, syntaxWDS, []syntaxID{syntaxNDR20}}}, nil)
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
		wait   time.Duration
	}{
		{"frag_length below header", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[8:], 10); return b }, time.Second},
		{"frag_length above MaxFrag", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[8:], 5000); return b }, time.Second},
		{"frag_length beyond the data", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[8:], uint16(len(b)+100)); return b }, 3 * time.Second},
		{"frag_length short of the contexts", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[8:], 40); return b[:40] }, time.Second},
		{"auth_length beyond frag", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[10:], 200); return b }, time.Second},
		{"rpc version 4", func(b []byte) []byte { b[0] = 4; return b }, time.Second},
		{"unknown PDU type", func(b []byte) []byte { b[2] = 99; return b }, time.Second},
		{"response from client", func(b []byte) []byte { b[2] = ptypeResponse; return b }, time.Second},
		{"too many contexts claimed", func(b []byte) []byte { b[24] = 200; return b }, time.Second},
		{"half-open", func(b []byte) []byte { return b[:10] }, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := rawDial(t, addr)
			rc.send(tc.mutate(bytes.Clone(good)))
			h, _, err := rc.tryRecv(tc.wait)
			if err == nil && h.ptype != ptypeBindNak {
				t.Fatalf("malformed bind answered with type %d", h.ptype)
			}
			if err == nil {
				rc.expectClosed(tc.wait)
			} else if !errors.Is(err, io.EOF) && !isReset(err) {
				t.Fatalf("connection not closed: %v", err)
			}
			// The server goes on serving.
			rc = rawDial(t, addr)
			rc.send(good)
			if a := rc.bindAck(); len(a.results) != 1 || a.results[0].result != resultAcceptance {
				t.Fatalf("next connection: %+v", a)
			}
		})
	}
}

func TestRawShutdown(t *testing.T) {
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	s := &Server{Interfaces: []Interface{rawInterface(release, entered)}, Log: testLogger(t)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(l) }()
	addr := l.Addr().String()

	idle := rawDial(t, addr)
	idle.send(buildBind(ptypeBind, 1, 4280, []testCtx{{0, syntaxRaw, []syntaxID{syntaxNDR20}}}, nil))
	idle.recv()
	busy := rawDial(t, addr)
	busy.send(buildBind(ptypeBind, 1, 4280, []testCtx{{0, syntaxRaw, []syntaxID{syntaxNDR20}}}, nil))
	busy.recv()
	busy.send(buildRequest(2, pfcFirstFrag|pfcLastFrag, 0, 1, 0, nil, nil))
	<-entered

	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	// The idle connection gets a shutdown PDU and is closed.
	if h, _ := idle.recv(); h.ptype != ptypeShutdown {
		t.Errorf("idle connection got type %d, want shutdown", h.ptype)
	}
	idle.expectClosed(2 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a call in progress", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("the listener still accepts")
	}
	close(release)
	if h, frag := busy.recv(); h.ptype != ptypeResponse || string(frag[24:]) != "released" {
		t.Errorf("busy call: type %d %q", h.ptype, frag)
	}
	busy.expectClosed(2 * time.Second)
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-errc; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if st := s.Stats(); st.Active != 0 {
		t.Errorf("%d connections still active", st.Active)
	}

	// A Shutdown whose context ends cancels the calls in progress.
	s2 := &Server{Interfaces: []Interface{rawInterface(make(chan struct{}), entered)}}
	addr2 := startServerNoCleanup(t, s2)
	rc := rawDial(t, addr2)
	rc.send(buildBind(ptypeBind, 1, 4280, []testCtx{{0, syntaxRaw, []syntaxID{syntaxNDR20}}}, nil))
	rc.recv()
	rc.send(buildRequest(2, pfcFirstFrag|pfcLastFrag, 0, 1, 0, nil, nil))
	<-entered
	ctx, cancelCtx := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelCtx()
	if err := s2.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a stuck call: %v", err)
	}
}

func startServerNoCleanup(t *testing.T, s *Server) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	return l.Addr().String()
}

// TestRawPort checks the secondary address defaults to the port the
// connection arrived on.
func TestRawPort(t *testing.T) {
	addr := rawServer(t, &Server{})
	_, port, _ := net.SplitHostPort(addr)
	rc := rawDial(t, addr)
	rc.send(buildBind(ptypeBind, 1, 4280, []testCtx{{0, syntaxWDS, []syntaxID{syntaxNDR20}}}, nil))
	if a := rc.bindAck(); a.secAddr != port {
		t.Errorf("secondary address %q, want %q", a.secAddr, port)
	}
	if _, err := strconv.Atoi(port); err != nil {
		t.Fatal(err)
	}
}

// TestRawReassemblyBudget checks requests in reassembly on all
// connections share a memory budget.
func TestRawReassemblyBudget(t *testing.T) {
	s := &Server{budget: 64 << 10, MaxCallSize: 48 << 10}
	addr := rawServer(t, s)
	a, b := rawDial(t, addr), rawDial(t, addr)
	bindRaw(t, a)
	bindRaw(t, b)
	chunk := bytes.Repeat([]byte{7}, 4000)
	a.send(buildRequest(1, pfcFirstFrag, 0, 0, 40000, nil, chunk))
	waitFor(t, time.Second, "first call held", func() bool { return s.pending.Load() == 40000 })
	b.send(buildRequest(1, pfcFirstFrag, 0, 0, 40000, nil, chunk))
	h, frag := b.recv()
	if st := faultStatusOf(t, h, frag); st != StatusServerTooBusy {
		t.Errorf("second large call: status 0x%08x, want server too busy", st)
	}
	b.send(buildRequest(1, pfcLastFrag, 0, 0, 0, nil, chunk))
	if n := s.pending.Load(); n != 40000 {
		t.Errorf("%d bytes held, want 40000", n)
	}
	a.send(buildRequest(1, pfcLastFrag, 0, 0, 0, nil, chunk))
	if stub := a.response(); !bytes.Equal(stub, append(bytes.Clone(chunk), chunk...)) {
		t.Fatalf("first call: %d bytes back", len(stub))
	}
	waitFor(t, time.Second, "budget released", func() bool { return s.pending.Load() == 0 })
	b.send(buildRequest(2, pfcFirstFrag, 0, 0, 40000, nil, chunk))
	b.send(buildRequest(2, pfcLastFrag, 0, 0, 0, nil, chunk))
	if h, _ := b.recv(); h.ptype != ptypeResponse {
		t.Errorf("call after the budget freed: type %d", h.ptype)
	}
	// A connection that ends mid-call gives its share back.
	a.send(buildRequest(3, pfcFirstFrag, 0, 0, 40000, nil, chunk))
	waitFor(t, time.Second, "budget held", func() bool { return s.pending.Load() == 40000 })
	a.c.Close()
	waitFor(t, time.Second, "budget released on close", func() bool { return s.pending.Load() == 0 })
}
