package wds

import (
	"testing"

	"github.com/netdeploy/netdeploy/server/tracker"
)

func applyMsg(r ApplyReport, text string) []byte {
	vars := []Var{ULongVar(VarMessageType, MsgClientGenericMessage), WStringVar(VarClientMAC, "525400123456")}
	if text != "" {
		vars = append(vars, WStringVar(VarMessage, text))
	}
	return NewRequest(OpLogMsg, append(vars, r.Vars()...)...)
}

func TestHandlerApplyEvents(t *testing.T) {
	h, _, rec := newTestHandler(t)
	user := userCaller
	const img = `raw\disk.img`
	steps := []struct {
		r    ApplyReport
		text string
		want tracker.Event
	}{
		{ApplyReport{Stage: ApplyStageApply, Bytes: 0, Total: 100, Image: img}, "", tracker.Event{Stage: tracker.StageApply, Event: tracker.KindStart, Total: 100}},
		{ApplyReport{Stage: ApplyStageApply, Bytes: 40, Total: 100, Image: img}, "", tracker.Event{Stage: tracker.StageApply, Event: tracker.KindProgress, Bytes: 40, Total: 100}},
		{ApplyReport{Stage: ApplyStageApply, Bytes: 100, Total: 100, Image: img}, "", tracker.Event{Stage: tracker.StageApply, Event: tracker.KindDone, Bytes: 100, Total: 100}},
		{ApplyReport{Stage: ApplyStageDone, Image: img}, "sha256 abc", tracker.Event{Stage: tracker.StageDone, Event: tracker.KindDone, Detail: "deployed " + img + " sha256 ok"}},
		{ApplyReport{Stage: ApplyStageFailed, Image: img, Reason: "checksum mismatch"}, "", tracker.Event{Stage: tracker.StageFailed, Event: tracker.KindError, Detail: "checksum mismatch"}},
	}
	for i, s := range steps {
		if _, err := ParseReply(call(t, h, &user, applyMsg(s.r, s.text))); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		evs := rec.take()
		if len(evs) != 2 || evs[0].Stage != tracker.StageRPC || evs[0].Event != tracker.KindLog {
			t.Fatalf("step %d: events %+v", i, evs)
		}
		e := evs[1]
		if e.Stage != s.want.Stage || e.Event != s.want.Event || e.Bytes != s.want.Bytes || e.Total != s.want.Total ||
			(s.want.Detail != "" && e.Detail != s.want.Detail) {
			t.Errorf("step %d: event %+v, want %+v", i, e, s.want)
		}
		if e.MAC != "52:54:00:12:34:56" || e.File != img || e.IP != "198.18.0.131" || e.Port != 5040 {
			t.Errorf("step %d: identity %+v", i, e)
		}
	}
}

func TestHandlerApplyIgnored(t *testing.T) {
	h, _, rec := newTestHandler(t)
	user, anon := userCaller, anonCaller
	r := ApplyReport{Stage: ApplyStageDone, Image: "x.img"}
	// Anonymous callers only log.
	call(t, h, &anon, applyMsg(r, ""))
	if evs := rec.take(); len(evs) != 1 || evs[0].Event != tracker.KindLog {
		t.Errorf("anonymous: %+v", evs)
	}
	// An unknown stage is logged, not mapped.
	call(t, h, &user, NewRequest(OpLogMsg, ULongVar(VarMessageType, MsgClientGenericMessage), WStringVar(VarNDStage, "bogus")))
	if evs := rec.take(); len(evs) != 1 || evs[0].Event != tracker.KindLog {
		t.Errorf("bad stage: %+v", evs)
	}
	// A plain LOG_MSG stays a log line.
	call(t, h, &user, NewRequest(OpLogMsg, ULongVar(VarMessageType, MsgClientGenericMessage), WStringVar(VarMessage, "hello")))
	if evs := rec.take(); len(evs) != 1 || evs[0].Event != tracker.KindLog {
		t.Errorf("plain: %+v", evs)
	}
}

func TestParseApplyRoundTrip(t *testing.T) {
	in := ApplyReport{Stage: ApplyStageApply, Bytes: 1 << 40, Total: 1<<40 + 5, Image: `a\b.img.zst`}
	p, err := Decode(NewRequest(OpLogMsg, in.Vars()...))
	if err != nil {
		t.Fatal(err)
	}
	out, ok, err := ParseApply(p)
	if err != nil || !ok || out != in {
		t.Fatalf("ParseApply = %+v, %v, %v; want %+v", out, ok, err, in)
	}
	p, _ = Decode(NewRequest(OpLogMsg, WStringVar(VarNDStage, "apply"), ULongVar(VarNDBytes, 7)))
	if out, ok, err := ParseApply(p); err != nil || !ok || out.Bytes != 7 {
		t.Errorf("ULONG bytes: %+v, %v, %v", out, ok, err)
	}
	p, _ = Decode(NewRequest(OpLogMsg, WStringVar(VarNDStage, "apply"), WStringVar(VarNDBytes, "7")))
	if _, _, err := ParseApply(p); err == nil {
		t.Error("WSTRING bytes accepted")
	}
}
