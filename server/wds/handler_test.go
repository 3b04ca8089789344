package wds

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	wdsrpc "github.com/oiweiwei/go-msrpc/msrpc/wdsc/wdsrpcinterface/v1"

	"github.com/netdeploy/netdeploy/imaging"
	"github.com/netdeploy/netdeploy/server/dcerpc"
	"github.com/netdeploy/netdeploy/server/tracker"
)

type fakeStore struct {
	images []imaging.Image
	err    error
	calls  int
}

func (s *fakeStore) List() ([]imaging.Image, error) {
	s.calls++
	return s.images, s.err
}

type recorder struct {
	mu     sync.Mutex
	events []tracker.Event
}

func (r *recorder) Emit(e tracker.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) take() []tracker.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

func newTestHandler(t *testing.T) (*Handler, *fakeStore, *recorder) {
	store := &fakeStore{images: fakeImages()}
	rec := &recorder{}
	return &Handler{
		Images: store,
		Events: rec,
		Log:    slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Port:   5040,
	}, store, rec
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// call sends b through Message as caller (nil: no caller in the context)
// and checks the response's framing.
func call(t *testing.T, h *Handler, caller *dcerpc.Caller, b []byte) []byte {
	t.Helper()
	ctx := context.Background()
	if caller != nil {
		ctx = dcerpc.WithCaller(ctx, *caller)
	}
	resp, err := h.Message(ctx, &wdsrpc.MessageRequest{RequestPacketSize: uint32(len(b)), RequestPacket: b})
	if err != nil || resp == nil {
		t.Fatalf("Message: %v, %v", resp, err)
	}
	if resp.Return != 0 {
		t.Errorf("Return %#x", resp.Return)
	}
	if int(resp.ReplyPacketSize) != len(resp.ReplyPacket) {
		t.Fatalf("ReplyPacketSize %d, %d bytes", resp.ReplyPacketSize, len(resp.ReplyPacket))
	}
	return resp.ReplyPacket
}

func TestHandlerEnumerate(t *testing.T) {
	h, _, rec := newTestHandler(t)
	user := userCaller

	p, err := ParseReply(call(t, h, &user, NewRequest(OpImgEnumerate, ULongVar(VarVersion, 1))))
	if err != nil {
		t.Fatal(err)
	}
	checkEnumerated(t, readImagesV1(t, p), false)

	p, err = ParseReply(call(t, h, &user, NewRequest(OpImgEnumerate, ULongVar(VarVersion, 1), ULongVar(VarCC, ClientCapV2))))
	if err != nil {
		t.Fatal(err)
	}
	checkEnumerated(t, readImagesV2(t, p), true)

	evs := rec.take()
	if len(evs) != 2 {
		t.Fatalf("events %+v", evs)
	}
	for _, e := range evs {
		if e.Stage != tracker.StageRPC || e.Event != tracker.KindDone || e.Detail != "enumerated 3 images" ||
			e.Proto != "tcp" || e.Port != 5040 || e.IP != "198.18.0.131" || e.Peer != "198.18.0.131:49153" {
			t.Errorf("event %+v", e)
		}
	}
}

func TestHandlerAnonymousEnumerateRefused(t *testing.T) {
	h, store, rec := newTestHandler(t)
	for _, caller := range []*dcerpc.Caller{nil, &anonCaller} {
		for _, cc := range []uint32{0, ClientCapV2} {
			out := call(t, h, caller, NewRequest(OpImgEnumerate, ULongVar(VarVersion, 1), ULongVar(VarCC, cc), WStringVar(VarClientMAC, "525400123456")))
			p, err := ParseReply(out)
			var se *StatusError
			if !errors.As(err, &se) || se.Status != StatusAccessDenied || len(p.Vars) != 0 {
				t.Fatalf("reply %+v, %v", p, err)
			}
			for _, im := range fakeImages() {
				for _, s := range []string{im.Name, im.Description, im.File, "win11", "Ubuntu"} {
					if bytes.Contains(out, []byte(s)) || bytes.Contains(out, utf16le(s, false)) {
						t.Errorf("refused reply contains %q", s)
					}
				}
			}
		}
	}
	if store.calls != 0 {
		t.Errorf("store listed %d times for anonymous callers", store.calls)
	}
	evs := rec.take()
	if len(evs) != 4 {
		t.Fatalf("events %+v", evs)
	}
	for _, e := range evs {
		if e.Event != tracker.KindError || e.Detail != "refused: not authenticated" || e.MAC != "52:54:00:12:34:56" || e.Stage != tracker.StageRPC {
			t.Errorf("event %+v", e)
		}
	}
}

func TestHandlerLogMessages(t *testing.T) {
	h, _, rec := newTestHandler(t)
	h.NewTransactionID = func() string { return "{TX}" }
	level := LogLevelError
	h.ClientLogLevel = &level
	mac := WStringVar(VarClientMAC, "52:54:00:e2:e0:02")

	p, err := ParseReply(call(t, h, &anonCaller, NewRequest(OpLogInit, ULongVar(VarVersion, 1), mac)))
	if err != nil {
		t.Fatal(err)
	}
	if mustULong(t, p, VarLogLevel) != LogLevelError || mustWString(t, p, VarTransactionID) != "{TX}" {
		t.Errorf("LOG_INIT reply %v", names(p))
	}
	p, err = ParseReply(call(t, h, nil, NewRequest(OpLogMsg, ULongVar(VarVersion, 1), ULongVar(VarMessageType, MsgClientGenericMessage),
		ULongVar(VarArchitecture, ArchAMD64), mac, WStringVar(VarTransactionID, "{TX}"), WStringVar(VarMessage, "Applying image: 42%"))))
	if err != nil || len(p.Vars) != 0 {
		t.Fatalf("LOG_MSG reply %+v, %v", p, err)
	}
	evs := rec.take()
	if len(evs) != 2 {
		t.Fatalf("events %+v", evs)
	}
	if e := evs[0]; e.Event != tracker.KindStart || e.Detail != "log init" || e.MAC != "52:54:00:e2:e0:02" || e.IP != "198.18.0.130" {
		t.Errorf("LOG_INIT event %+v", e)
	}
	if e := evs[1]; e.Event != tracker.KindLog || e.Detail != "GENERIC_MESSAGE: Applying image: 42%" || e.MAC != "52:54:00:e2:e0:02" ||
		e.Stage != tracker.StageRPC || e.Port != 5040 || e.Proto != "tcp" || e.IP != "" {
		t.Errorf("LOG_MSG event %+v", e)
	}
}

func TestHandlerOtherOps(t *testing.T) {
	h, _, rec := newTestHandler(t)
	h.ClientUnattend = map[uint32][]byte{ArchX86: []byte("<unattend/>")}
	mac, guid := WStringVar(VarClientMAC, "525400123456"), WStringVar(VarClientGUID, "525400123456")

	p, err := ParseReply(call(t, h, &anonCaller, NewRequest(OpGetClientUnattend, ULongVar(VarVersion, 1), ByteVar(VarArchitecture, 0), mac, guid)))
	if err != nil {
		t.Fatal(err)
	}
	if blob, _ := p.Blob(VarClientUnattend); string(blob) != "<unattend/>" {
		t.Errorf("CLIENT_UNATTEND %q", blob)
	}
	if _, err := ParseReply(call(t, h, &userCaller, NewRequest(OpResetBootProgram, ULongVar(VarVersion, 1), mac, guid))); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseReply(call(t, h, &userCaller, NewRequest(OpGetUnattendVariables, ULongVar(VarVersion, 1), mac, guid))); err != nil {
		t.Fatal(err)
	}
	want := []string{"client unattend: sent", "reset boot program", "unattend variables"}
	evs := rec.take()
	if len(evs) != len(want) {
		t.Fatalf("events %+v", evs)
	}
	for i, e := range evs {
		if e.Event != tracker.KindDone || e.Detail != want[i] || e.MAC != "52:54:00:12:34:56" {
			t.Errorf("event %d %+v", i, e)
		}
	}
}

func TestHandlerMalformed(t *testing.T) {
	h, store, rec := newTestHandler(t)
	good := NewRequest(OpImgEnumerate, ULongVar(VarVersion, 1))
	flipped := append([]byte{}, good...)
	flipped[56+68] = 0x99 // an unknown variable type
	inputs := [][]byte{nil, {}, {0}, good[:40], good[:56], good[:len(good)-1], flipped, bytes.Repeat([]byte{0xff}, 4096), make([]byte, MaxPacketSize+1)}
	for _, b := range inputs {
		for _, c := range []*dcerpc.Caller{nil, &userCaller} {
			p, err := ParseReply(call(t, h, c, b))
			var se *StatusError
			if !errors.As(err, &se) || se.Status != StatusInvalidData || len(p.Vars) != 0 {
				t.Errorf("%d bytes: %+v, %v", len(b), p, err)
			}
		}
	}
	// A request size below the bytes received limits the packet.
	resp, err := h.Message(dcerpc.WithCaller(context.Background(), userCaller), &wdsrpc.MessageRequest{RequestPacketSize: 50, RequestPacket: good})
	if err != nil || resp == nil {
		t.Fatal(err)
	}
	var se *StatusError
	if _, err := ParseReply(resp.ReplyPacket); !errors.As(err, &se) || se.Status != StatusInvalidData {
		t.Errorf("truncated by size: %v", err)
	}
	// A nil request is malformed, not a crash.
	resp, err = h.Message(context.Background(), nil)
	if err != nil || resp == nil || len(resp.ReplyPacket) == 0 {
		t.Fatalf("nil request: %v, %v", resp, err)
	}
	if store.calls != 0 {
		t.Errorf("store listed for malformed requests")
	}
	if evs := rec.take(); len(evs) != 0 {
		t.Errorf("malformed input produced events %+v", evs)
	}
	// Unknown opcodes and endpoints are errors in the reply, no events.
	other, _ := EncodeRequest(MustGUID("01234567-89ab-cdef-0123-456789abcdef"), OpImgEnumerate, ULongVar(VarVersion, 1))
	for _, b := range [][]byte{NewRequest(0x42), other} {
		if _, err := ParseReply(call(t, h, &userCaller, b)); err == nil {
			t.Errorf("accepted %x", b[:24])
		}
	}
	if evs := rec.take(); len(evs) != 0 {
		t.Errorf("unknown requests produced events %+v", evs)
	}
}

func TestHandlerStoreError(t *testing.T) {
	h, store, rec := newTestHandler(t)
	store.err = errors.New("unreadable")
	_, err := ParseReply(call(t, h, &userCaller, NewRequest(OpImgEnumerate, ULongVar(VarVersion, 1))))
	var se *StatusError
	if !errors.As(err, &se) || se.Status != StatusInternalError {
		t.Fatalf("%v", err)
	}
	if evs := rec.take(); len(evs) != 1 || evs[0].Event != tracker.KindError {
		t.Errorf("events %+v", evs)
	}
}

func TestHandlerZeroValue(t *testing.T) {
	var h Handler // no store, no emitter, no logger
	p, err := ParseReply(call(t, &h, &userCaller, NewRequest(OpImgEnumerate, ULongVar(VarVersion, 1))))
	if err != nil || p.Has(V1ImageVar("XML", 1)) {
		t.Fatalf("%+v, %v", p, err)
	}
	p, err = ParseReply(call(t, &h, nil, NewRequest(OpLogInit, ULongVar(VarVersion, 1))))
	if err != nil || mustULong(t, p, VarLogLevel) != LogLevelInfo {
		t.Fatalf("%+v, %v", p, err)
	}
}
