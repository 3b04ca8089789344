package wds

import (
	"context"
	"fmt"
	"log/slog"

	wdsrpc "github.com/oiweiwei/go-msrpc/msrpc/wdsc/wdsrpcinterface/v1"

	"github.com/netdeploy/netdeploy/imaging"
	"github.com/netdeploy/netdeploy/server/dcerpc"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// Handler serves WdsRpcMessage ([MS-WDSC] 3.1.4.1) for the OS deployment
// endpoint. Register it with the DCE/RPC runtime through
// wdsrpcinterface.NewInterfaceServerHandle. Every call that produced a reply
// returns ERROR_SUCCESS; what went wrong travels in the reply's error code
// ([MS-WDSC] 3.2.4), so the handler never returns an error or a nil
// response.
type Handler struct {
	Images ImageLister     // nil: an empty store
	Events tracker.Emitter // nil: events are dropped
	Log    *slog.Logger    // nil: slog.Default()
	Port   int             // the RPC port, for events

	// ClientLogLevel is LOG_INIT's LOGLEVEL; nil means LogLevelInfo, so
	// clients send every status message.
	ClientLogLevel *uint32
	// ClientUnattend is the deployment agent's unattend file by
	// ARCHITECTURE (see State).
	ClientUnattend map[uint32][]byte
	// UnattendVariables answers GET_UNATTEND_VARIABLES by MAC (see State).
	UnattendVariables map[string]UnattendVariables
	// NewTransactionID overrides LOG_INIT's random TRANSACTION_ID (tests).
	NewTransactionID func() string
	// Join registers a client in an image's multicast session (see
	// State.Join); nil: multicast is off.
	Join func(JoinRequest) (MulticastJoin, error)
}

// ImageLister is the image catalogue as the handler uses it.
type ImageLister interface {
	List() ([]imaging.Image, error)
}

var _ wdsrpc.InterfaceServer = (*Handler)(nil)

func (h *Handler) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.Default()
}

func (h *Handler) state() State {
	st := State{
		LogLevel:          LogLevelInfo,
		NewTransactionID:  h.NewTransactionID,
		ClientUnattend:    h.ClientUnattend,
		UnattendVariables: h.UnattendVariables,
		Join:              h.Join,
	}
	if h.ClientLogLevel != nil {
		st.LogLevel = *h.ClientLogLevel
	}
	if h.Images != nil {
		st.Images = h.Images.List
	}
	return st
}

// Message decodes the request packet, decides it for the caller the runtime
// put in ctx (none: anonymous), reports it, and returns the encoded reply.
func (h *Handler) Message(ctx context.Context, req *wdsrpc.MessageRequest) (resp *wdsrpc.MessageResponse, _ error) {
	caller, _ := dcerpc.CallerFrom(ctx)
	var b []byte
	if req != nil {
		b = req.RequestPacket
		if n := uint64(req.RequestPacketSize); n < uint64(len(b)) {
			b = b[:n]
		}
	}
	defer func() {
		if r := recover(); r != nil { // a bug must not take the RPC server down
			h.log().Error("wds: panic while handling a request", "peer", peer(caller), "panic", fmt.Sprint(r))
			resp = response(errorPacket(OSDeploymentEndpoint, StatusInternalError))
		}
	}()
	d := DecideBytes(b, caller, h.state())
	h.report(caller, d)
	h.reportApply(caller, d, b) // apply.go
	return response(d.Reply), nil
}

func response(p *Packet) *wdsrpc.MessageResponse {
	out, err := p.Encode()
	if err != nil { // only an error reply is left to send
		out, _ = errorPacket(p.Endpoint, StatusInternalError).Encode()
	}
	return &wdsrpc.MessageResponse{ReplyPacketSize: uint32(len(out)), ReplyPacket: out}
}

func errorPacket(ep GUID, s Status) *Packet {
	return &Packet{Endpoint: ep, Type: PacketReply, Code: uint32(s)}
}

func peer(c dcerpc.Caller) string {
	if c.Remote == nil {
		return ""
	}
	return c.Remote.String()
}

// report logs the decision and emits the client's event.
func (h *Handler) report(c dcerpc.Caller, d Decision) {
	log := h.log()
	ev := tracker.Event{
		MAC:   tracker.MACString(d.MAC),
		IP:    c.IP(),
		Stage: tracker.StageRPC,
		Port:  h.Port,
		Proto: "tcp",
		Peer:  peer(c),
	}
	switch {
	case d.Refused:
		log.Debug("wds refused", "op", OpName(d.Op), "peer", ev.Peer, "mac", ev.MAC, "reason", d.Reason)
		ev.Event, ev.Detail = tracker.KindError, "refused: not authenticated"
	case d.Status == StatusInternalError:
		log.Warn("wds request failed", "op", OpName(d.Op), "peer", ev.Peer, "mac", ev.MAC, "err", d.Reason)
		ev.Event, ev.Detail = tracker.KindError, "server error"
	case d.Status != StatusSuccess:
		log.Debug("wds ignoring request", "op", OpName(d.Op), "peer", ev.Peer, "status", d.Status.String(), "reason", d.Reason)
		return
	case d.Join != nil:
		ev.Event, ev.Detail = tracker.KindDone, fmt.Sprintf("joined multicast session %d of %s", d.Join.SessionID, d.Join.Path)
	case d.Op == OpLogInit:
		ev.Event, ev.Detail = tracker.KindStart, "log init"
	case d.Op == OpLogMsg:
		ev.Event, ev.Detail = tracker.KindLog, d.Log.String()
	case d.Op == OpGetClientUnattend:
		ev.Event, ev.Detail = tracker.KindDone, "client unattend: none"
		if d.UnattendPresent {
			ev.Detail = "client unattend: sent"
		}
	case d.Op == OpGetUnattendVariables:
		ev.Event, ev.Detail = tracker.KindDone, "unattend variables"
	case d.Op == OpImgEnumerate:
		ev.Event, ev.Detail = tracker.KindDone, fmt.Sprintf("enumerated %d images", d.Images)
		if d.Images == 1 {
			ev.Detail = "enumerated 1 image"
		}
		if d.Omitted > 0 {
			log.Warn("wds image list cut to fit one reply", "peer", ev.Peer, "sent", d.Images, "omitted", d.Omitted)
		}
	case d.Op == OpResetBootProgram:
		ev.Event, ev.Detail = tracker.KindDone, "reset boot program"
	default:
		return
	}
	if h.Events != nil {
		h.Events.Emit(ev)
	}
}
