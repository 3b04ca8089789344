package wds

import (
	"fmt"
	"strings"

	"github.com/netdeploy/netdeploy/server/dcerpc"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// This file is netdeploy's apply-progress convention on top of LOG_MSG:
// the imaging agent (imaging/agent) adds variables of its own to the
// status messages it sends while it writes an image, and the handler turns
// them into apply, done and failed events besides the usual log event.
//
//	ND_STAGE   WSTRING  "apply", "done" or "failed"
//	ND_BYTES   ULONG64  apply: uncompressed bytes written so far
//	ND_TOTAL   ULONG64  apply: the image's uncompressed size (0: unknown)
//	ND_IMAGE   WSTRING  the image's path on the share
//	ND_REASON  WSTRING  failed: why
//
// An apply message with ND_BYTES 0 starts the stage, one with ND_BYTES
// equal to a non-zero ND_TOTAL finishes it, the others are progress. The
// MESSAGE of a done message carries the image's SHA-256. Windows clients
// never send these variables; a message without ND_STAGE is only logged.

// Variables of the apply convention.
const (
	VarNDStage  = "ND_STAGE"
	VarNDBytes  = "ND_BYTES"
	VarNDTotal  = "ND_TOTAL"
	VarNDImage  = "ND_IMAGE"
	VarNDReason = "ND_REASON"
)

// ND_STAGE values.
const (
	ApplyStageApply  = "apply"
	ApplyStageDone   = "done"
	ApplyStageFailed = "failed"
)

// ApplyReport is what one apply-convention LOG_MSG says.
type ApplyReport struct {
	Stage  string // ApplyStageApply, ApplyStageDone or ApplyStageFailed
	Bytes  uint64 // apply: bytes written so far
	Total  uint64 // apply: image size, 0 when unknown
	Image  string // image path
	Reason string // failed: why
	Text   string // the MESSAGE (done: the SHA-256)
}

// Vars encodes r as LOG_MSG variables (without the common ones:
// MESSAGE_TYPE, CLIENT_MAC, MESSAGE).
func (r ApplyReport) Vars() []Var {
	vars := []Var{WStringVar(VarNDStage, r.Stage)}
	if r.Image != "" {
		vars = append(vars, WStringVar(VarNDImage, r.Image))
	}
	switch r.Stage {
	case ApplyStageApply:
		vars = append(vars, ULong64Var(VarNDBytes, r.Bytes), ULong64Var(VarNDTotal, r.Total))
	case ApplyStageFailed:
		vars = append(vars, WStringVar(VarNDReason, r.Reason))
	}
	return vars
}

// ParseApply reads the apply convention from a LOG_MSG request. ok is
// false when the packet has no ND_STAGE; an error is a malformed one (an
// unknown stage, a mistyped variable).
func ParseApply(req *Packet) (r ApplyReport, ok bool, err error) {
	if !req.Has(VarNDStage) {
		return r, false, nil
	}
	if r.Stage, err = req.Text(VarNDStage); err != nil {
		return r, false, err
	}
	r.Stage = strings.ToLower(strings.TrimSpace(r.Stage))
	switch r.Stage {
	case ApplyStageApply, ApplyStageDone, ApplyStageFailed:
	default:
		return r, false, fmt.Errorf("wds: %s: unknown stage %q", VarNDStage, truncate(r.Stage, 32))
	}
	for _, f := range []struct {
		name string
		dst  *uint64
	}{{VarNDBytes, &r.Bytes}, {VarNDTotal, &r.Total}} {
		if req.Has(f.name) {
			if *f.dst, err = req.ULong64(f.name); err != nil {
				return r, false, err
			}
		}
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{VarNDImage, &r.Image}, {VarNDReason, &r.Reason}, {VarMessage, &r.Text}} {
		if req.Has(f.name) {
			if *f.dst, err = req.Text(f.name); err != nil {
				return r, false, err
			}
		}
	}
	r.Image, r.Reason, r.Text = oneLine(r.Image, 260), oneLine(r.Reason, maxLogDetail), oneLine(r.Text, 200)
	return r, true, nil
}

// ApplyEvent maps a report to its tracker event; base carries the
// client's identity (MAC, IP, Peer, Port, Proto).
func ApplyEvent(r ApplyReport, base tracker.Event) tracker.Event {
	ev := base
	ev.File = r.Image
	switch r.Stage {
	case ApplyStageApply:
		ev.Stage = tracker.StageApply
		ev.Bytes, ev.Total = clampInt64(r.Bytes), clampInt64(r.Total)
		switch {
		case r.Bytes == 0:
			ev.Event, ev.Detail = tracker.KindStart, "applying "+r.Image
		case r.Total > 0 && r.Bytes >= r.Total:
			ev.Event, ev.Detail = tracker.KindDone, "applied "+r.Image
		default:
			ev.Event = tracker.KindProgress
		}
	case ApplyStageDone:
		ev.Stage, ev.Event = tracker.StageDone, tracker.KindDone
		ev.Detail = "deployed " + r.Image + " sha256 ok"
	default:
		ev.Stage, ev.Event = tracker.StageFailed, tracker.KindError
		ev.Detail = r.Reason
		if ev.Detail == "" {
			ev.Detail = "failed"
		}
	}
	return ev
}

func clampInt64(n uint64) int64 {
	if n > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(n)
}

// reportApply emits the apply-convention event of a LOG_MSG that was
// accepted (see report). Only authenticated callers move a client through
// apply, done and failed: LOG_MSG is open to anonymous callers, and a
// spoofed "done" would mislead the operator.
func (h *Handler) reportApply(c dcerpc.Caller, d Decision, b []byte) {
	if h.Events == nil || d.Op != OpLogMsg || d.Status != StatusSuccess || d.Refused || !c.Authenticated {
		return
	}
	req, err := Decode(b)
	if err != nil {
		return
	}
	r, ok, err := ParseApply(req)
	if err != nil {
		h.log().Debug("wds ignoring a malformed apply report", "peer", peer(c), "err", err)
		return
	}
	if !ok {
		return
	}
	h.Events.Emit(ApplyEvent(r, tracker.Event{
		MAC:   tracker.MACString(d.MAC),
		IP:    c.IP(),
		Port:  h.Port,
		Proto: "tcp",
		Peer:  peer(c),
	}))
}
