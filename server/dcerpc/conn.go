package dcerpc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/oiweiwei/go-msrpc/ndr"

	"github.com/netdeploy/netdeploy/server/tracker"
)

// initialCallBuf caps what a request's alloc_hint makes the server
// allocate up front; the stub grows as fragments arrive.
const initialCallBuf = 64 << 10

// conn is one client connection: an association of one connection
// (C706 12.4) served by its own goroutine.
type conn struct {
	srv    *Server
	nc     net.Conn
	log    *slog.Logger
	ctx    context.Context // handlers' context: ends with the connection
	cancel context.CancelFunc
	ip     string
	peer   string
	port   int // the service port, for events and the secondary address

	rbuf []byte // incoming fragment (MaxFrag bytes once a header arrived)
	wbuf []byte // outgoing response fragment (negotiated size)
	out  []byte // scratch for control PDUs

	// mu guards busy and closed against Shutdown; the protocol state
	// below is the connection goroutine's, read by closeIfIdle only while
	// the connection is idle.
	mu     sync.Mutex
	busy   bool
	closed bool

	bound      bool
	versMinor  uint8
	maxXmit    int
	assoc      uint32
	contexts   map[uint16]*Interface
	sec        *secContext
	call       *pendingCall
	discarding bool // fault sent: drop the rest of call discardID
	discardID  uint32
}

// pendingCall is a request being reassembled.
type pendingCall struct {
	id     uint32
	ctxID  uint16
	opnum  uint16
	object *[uuidLen]byte
	hint   int    // alloc_hint of the first fragment
	stub   []byte // reassembled so far
	held   int64  // bytes of stub counted against the server's budget
}

func (s *Server) newConn(nc net.Conn) *conn {
	ctx, cancel := context.WithCancel(s.baseCtx)
	remote := nc.RemoteAddr()
	c := &conn{
		srv:    s,
		nc:     nc,
		ctx:    ctx,
		cancel: cancel,
		ip:     Caller{Remote: remote}.IP(),
		port:   s.Port,
	}
	if remote != nil {
		c.peer = remote.String()
	}
	if c.port == 0 {
		c.port = portOf(nc.LocalAddr())
	}
	c.log = s.logger().With("ip", c.ip, "port", portOf(remote), "proto", "tcp")
	return c
}

// serve reads and answers PDUs until the connection ends.
func (c *conn) serve() {
	defer c.dropCall()
	timeout := c.srv.handshakeTimeout()
	for {
		c.nc.SetReadDeadline(time.Now().Add(timeout))
		h, frag, err := readPDU(c.nc, &c.rbuf, c.srv.maxFrag())
		if err != nil {
			if errors.Is(err, errDataRep) && frag != nil && h.ptype == ptypeBind {
				c.srv.stats.In(len(frag))
				c.writePDU(appendBindNak(c.out[:0], h.versMinor, h.callID, reasonNotSpecified))
			}
			c.logReadError(err)
			return
		}
		timeout = c.srv.idleTimeout()
		c.srv.stats.In(len(frag))
		if !c.setBusy(true) {
			return
		}
		keep := c.handle(h, frag)
		if !c.setBusy(false) || !keep {
			return
		}
	}
}

func (c *conn) logReadError(err error) {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		c.log.Debug("dcerpc connection closed")
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.log.Debug("dcerpc connection idle; closing")
	case errors.Is(err, errMalformed), errors.Is(err, errVersion), errors.Is(err, errDataRep):
		c.log.Info("dcerpc bad PDU; closing connection", "err", err)
	default:
		c.log.Debug("dcerpc read error", "err", err)
	}
}

// setBusy marks the connection busy while it handles a PDU (or holds a
// partly received request). It returns false once Shutdown has closed
// the connection, or is closing it now that it went idle.
func (c *conn) setBusy(busy bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	if c.srv.listeners.Closing() && (busy || c.call == nil) {
		c.closed = true
		c.nc.Close()
		return false
	}
	c.busy = busy || c.call != nil
	return true
}

// closeIfIdle closes the connection if it is waiting for a PDU, telling
// the client first with a shutdown PDU (C706 12.6.4.11). Busy
// connections close when their call is done.
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busy || c.closed {
		return
	}
	c.closed = true
	if c.bound {
		c.nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		if b := appendShutdown(nil, c.versMinor); c.writeRaw(b) {
			c.srv.stats.Out(len(b))
		}
	}
	c.nc.Close()
}

// handle answers one PDU; false closes the connection.
func (c *conn) handle(h header, frag []byte) bool {
	switch h.ptype {
	case ptypeBind:
		return c.handleBind(h, frag)
	case ptypeAlterContext:
		return c.handleAlterContext(h, frag)
	case ptypeAuth3:
		return c.handleAuth3(h, frag)
	case ptypeRequest:
		return c.handleRequest(h, frag)
	case ptypeCoCancel:
		// Calls run to completion; a cancel is not forwarded (C706
		// 12.6.4.6 lets the server ignore it).
		return true
	case ptypeOrphaned:
		// The client abandons a call ([MS-RPCE] 3.3.1.5.10): drop what
		// was received and keep the connection.
		if c.call != nil && c.call.id == h.callID {
			c.dropCall()
		}
		return true
	}
	c.log.Info("dcerpc unexpected PDU; closing connection", "ptype", h.ptype)
	return false
}

// handleBind answers a bind with a bind_ack or a bind_nak (C706
// 12.6.4.3-5, [MS-RPCE] 3.3.1.5.3).
func (c *conn) handleBind(h header, frag []byte) bool {
	nak := func(reason uint16) bool {
		c.writePDU(appendBindNak(c.out[:0], h.versMinor, h.callID, reason))
		return false
	}
	if c.bound {
		c.log.Info("dcerpc second bind on a connection; closing it")
		return nak(reasonNotSpecified)
	}
	b, err := parseBind(h, frag)
	if err == nil && len(b.contexts) == 0 {
		err = fmt.Errorf("%w: bind without presentation contexts", errMalformed)
	}
	if err != nil {
		c.log.Info("dcerpc bad bind", "err", err)
		return nak(reasonNotSpecified)
	}
	if c.srv.limiter.Blocked(c.ip) {
		c.log.Info("dcerpc bind refused: too many failed logons from this address")
		return nak(reasonLocalLimitExceeded)
	}
	c.versMinor = h.versMinor
	var out *authOut
	if b.auth != nil {
		sc, err := newSecContext(c.ctx, c.srv, b.auth)
		if err != nil {
			c.log.Info("dcerpc bind refused", "err", err)
			if errors.Is(err, errAuthType) {
				return nak(reasonAuthenticationTypeUnsupported)
			}
			return nak(reasonNotSpecified)
		}
		tok, err := sc.step(b.auth.token)
		if err != nil {
			c.authFailed(sc, err)
			return nak(reasonInvalidChecksum)
		}
		c.sec = sc
		if len(tok) > 0 {
			out = &authOut{authType: sc.authType, level: sc.level, ctxID: sc.ctxID, token: tok}
		}
	}
	c.maxXmit = min(max(int(min(b.maxXmit, b.maxRecv)), mustRecvFragSize), c.srv.maxFrag())
	c.assoc = b.assocGroup
	if c.assoc == 0 {
		c.assoc = c.srv.newAssocGroup()
	}
	results, added := c.negotiate(b.contexts)
	flags := pfcFirstFrag | pfcLastFrag | h.flags&pfcSupportHeaderSign
	pdu, err := appendBindAck(c.out[:0], ptypeBindAck, c.versMinor, flags, h.callID, c.maxXmit, c.maxXmit, c.assoc, strconv.Itoa(c.port), results, out)
	if err != nil {
		c.log.Warn("dcerpc bind_ack", "err", err)
		return false
	}
	c.out = pdu[:0]
	c.bound = true
	c.log.Debug("dcerpc bind", "max_frag", c.maxXmit, "assoc_group", c.assoc, "contexts", len(b.contexts))
	c.emitBinds(added)
	return c.writePDU(pdu)
}

// handleAlterContext answers an alter_context: more presentation
// contexts, and the next legs of a security context (SPNEGO), C706
// 12.6.4.1-2. A failed logon is answered with a fault.
func (c *conn) handleAlterContext(h header, frag []byte) bool {
	if !c.bound {
		c.log.Info("dcerpc alter_context before bind; closing connection")
		return false
	}
	a, err := parseBind(h, frag)
	if err != nil {
		c.log.Info("dcerpc bad alter_context; closing connection", "err", err)
		return false
	}
	var out *authOut
	if v := a.auth; v != nil {
		var tok []byte
		switch {
		case c.sec == nil:
			if c.srv.limiter.Blocked(c.ip) {
				c.log.Info("dcerpc alter_context refused: too many failed logons from this address")
				return c.writeFault(h.callID, 0, StatusAccessDenied, true)
			}
			sc, err := newSecContext(c.ctx, c.srv, v)
			if err != nil {
				c.log.Info("dcerpc alter_context refused", "err", err)
				return c.writeFault(h.callID, 0, StatusAccessDenied, true)
			}
			c.sec = sc
			tok, err = sc.step(v.token)
			if err != nil {
				c.authFailed(sc, err)
				return c.writeFault(h.callID, 0, StatusAccessDenied, true)
			}
		case c.sec.matches(v) && !c.sec.established && !c.sec.failed:
			tok, err = c.sec.step(v.token)
			if err != nil {
				c.authFailed(c.sec, err)
				return c.writeFault(h.callID, 0, StatusAccessDenied, true)
			}
		default:
			c.log.Info("dcerpc alter_context for another or a finished security context")
			return c.writeFault(h.callID, 0, StatusAccessDenied, true)
		}
		if c.sec.established {
			c.logonDone()
		}
		if len(tok) > 0 {
			out = &authOut{authType: c.sec.authType, level: c.sec.level, ctxID: c.sec.ctxID, token: tok}
		}
	}
	results, added := c.negotiate(a.contexts)
	flags := pfcFirstFrag | pfcLastFrag | h.flags&pfcSupportHeaderSign
	pdu, err := appendBindAck(c.out[:0], ptypeAlterContextResp, c.versMinor, flags, h.callID, c.maxXmit, c.maxXmit, c.assoc, "", results, out)
	if err != nil {
		c.log.Warn("dcerpc alter_context_resp", "err", err)
		return false
	}
	c.out = pdu[:0]
	c.emitBinds(added)
	return c.writePDU(pdu)
}

// handleAuth3 completes an NTLM logon (the third leg, never answered;
// [MS-RPCE] 3.3.1.5.2). A failed logon faults the connection's requests.
func (c *conn) handleAuth3(h header, frag []byte) bool {
	v, _, err := parseAuth(h, frag, headerLen)
	if err != nil || v == nil {
		c.log.Info("dcerpc bad auth3; closing connection", "err", err)
		return false
	}
	sc := c.sec
	if sc == nil || sc.established || sc.failed {
		c.log.Debug("dcerpc auth3 without a security context in progress; ignored")
		return true
	}
	if !sc.matches(v) {
		sc.failed = true
		c.authFailed(sc, errors.New("auth3 for another security context"))
		return true
	}
	if _, err := sc.step(v.token); err != nil {
		c.authFailed(sc, err)
		return true
	}
	if sc.established {
		c.logonDone()
	}
	return true
}

// negotiate answers the presentation contexts of a bind or alter_context
// and returns the names of interfaces newly bound.
func (c *conn) negotiate(list []presContext) (results []ctxResult, added []string) {
	if c.contexts == nil {
		c.contexts = map[uint16]*Interface{}
	}
	for _, pc := range list {
		if len(pc.transfers) == 1 {
			if bits, ok := isFeatureNegotiation(pc.transfers[0]); ok {
				// [MS-RPCE] 3.3.1.5.3: negotiate_ack, the reason carrying
				// the features both sides support.
				results = append(results, ctxResult{result: resultNegotiateAck, reason: uint16(bits & supportedFeatures)})
				continue
			}
		}
		it := c.srv.lookup(pc.abstract)
		if it == nil {
			results = append(results, ctxResult{result: resultProviderRejection, reason: reasonAbstractSyntaxNotSupported})
			continue
		}
		if !slices.Contains(pc.transfers, syntaxNDR20) {
			// NDR64 and anything else.
			results = append(results, ctxResult{result: resultProviderRejection, reason: reasonTransferSyntaxesNotSupported})
			continue
		}
		prev, exists := c.contexts[pc.id]
		if !exists && len(c.contexts) >= maxContexts {
			results = append(results, ctxResult{result: resultProviderRejection, reason: reasonLocalLimitExceeded})
			continue
		}
		c.contexts[pc.id] = it
		results = append(results, ctxResult{result: resultAcceptance, transfer: syntaxNDR20})
		if prev != it {
			added = append(added, it.Name)
		}
	}
	return results, added
}

func (c *conn) emitBinds(names []string) {
	for _, n := range names {
		c.log.Info("dcerpc bind", "interface", n)
		c.event(tracker.KindStart, "bind "+n)
	}
}

// logonDone reports a completed logon.
func (c *conn) logonDone() {
	sc := c.sec
	if sc.ntlm.Anonymous() {
		c.log.Info("dcerpc anonymous logon", "mech", sc.mechName(), "level", levelName(sc.level))
		return
	}
	c.log.Info("dcerpc logon", "account", sc.ntlm.Account(), "mech", sc.mechName(), "level", levelName(sc.level))
	c.event(tracker.KindDone, fmt.Sprintf("logon %s (%s, %s)", sc.ntlm.Account(), sc.mechName(), levelName(sc.level)))
}

// authFailed reports a failed security context. Once an AUTHENTICATE
// was examined it is a failed logon: an event, and a count towards
// refusing the address.
func (c *conn) authFailed(sc *secContext, err error) {
	sc.failed = true
	if !sc.ntlm.Examined() {
		c.log.Info("dcerpc security negotiation failed", "mech", sc.mechName(), "err", err)
		return
	}
	who := sc.attempted()
	c.log.Warn("dcerpc logon failed", "account", who, "mech", sc.mechName(), "err", err)
	c.event(tracker.KindError, "logon failed for "+who)
	if c.srv.limiter.Fail(c.ip) {
		block := c.srv.limiter.Block
		c.log.Warn("dcerpc too many failed logons; refusing binds from this address", "for", block)
		c.event(tracker.KindError, fmt.Sprintf("too many failed logons; binds refused for %s", block))
	}
}

// handleRequest reassembles a request from its fragments (C706
// 12.6.4.9) and dispatches it when the last one arrives.
func (c *conn) handleRequest(h header, frag []byte) bool {
	if !c.bound {
		c.log.Info("dcerpc request before bind; closing connection")
		return false
	}
	r, err := parseRequest(h, frag)
	if err != nil {
		c.log.Info("dcerpc bad request; closing connection", "err", err)
		return false
	}
	stubEnd, status, fatal := c.checkRequestAuth(frag, r)
	if status != 0 {
		ok := c.failCall(h, r, status)
		return ok && !fatal
	}
	stub := frag[r.stubOff:stubEnd]
	first, last := h.flags&pfcFirstFrag != 0, h.flags&pfcLastFrag != 0
	if c.discarding && h.callID == c.discardID {
		if first {
			c.discarding = false
		} else {
			if last {
				c.discarding = false
			}
			return true
		}
	}
	maxCall := c.srv.maxCallSize()
	if first {
		if int64(r.allocHint) > int64(maxCall) {
			c.log.Info("dcerpc request too large", "alloc_hint", r.allocHint, "max", maxCall)
			return c.failCall(h, r, StatusAccessDenied)
		}
		c.dropCall()
		c.call = &pendingCall{id: h.callID, ctxID: r.ctxID, opnum: r.opnum, object: r.object, hint: int(r.allocHint)}
	} else if c.call == nil || c.call.id != h.callID {
		c.log.Info("dcerpc request fragment of no call; closing connection", "call_id", h.callID)
		return false
	}
	if len(c.call.stub)+len(stub) > maxCall {
		c.log.Info("dcerpc request too large", "max", maxCall)
		return c.failCall(h, r, StatusAccessDenied)
	}
	if !c.appendStub(stub, maxCall) {
		c.log.Warn("dcerpc requests in reassembly exceed their memory budget", "budget", c.srv.maxPending())
		return c.failCall(h, r, StatusServerTooBusy)
	}
	if !last {
		return true
	}
	call := c.call
	c.call = nil
	defer c.srv.pending.Add(-call.held)
	return c.dispatch(h, call)
}

// appendStub adds a fragment's stub to the call being reassembled,
// growing its buffer within the server-wide reassembly budget. The first
// allocation follows alloc_hint, capped.
func (c *conn) appendStub(stub []byte, maxCall int) bool {
	call := c.call
	need := len(call.stub) + len(stub)
	if need > cap(call.stub) {
		newCap := max(need, 2*cap(call.stub))
		if call.stub == nil {
			newCap = max(need, min(call.hint, initialCallBuf))
		}
		newCap = min(newCap, maxCall)
		delta := int64(newCap - cap(call.stub))
		if c.srv.pending.Add(delta) > c.srv.maxPending() {
			c.srv.pending.Add(-delta)
			return false
		}
		call.held += delta
		grown := make([]byte, len(call.stub), newCap)
		copy(grown, call.stub)
		call.stub = grown
	}
	call.stub = append(call.stub, stub...)
	return true
}

// dropCall forgets the call being reassembled.
func (c *conn) dropCall() {
	if c.call != nil {
		c.srv.pending.Add(-c.call.held)
		c.call = nil
	}
}

// failCall faults a request and drops its remaining fragments.
func (c *conn) failCall(h header, r *requestPDU, status uint32) bool {
	if c.call != nil && c.call.id == h.callID {
		c.dropCall()
	}
	if h.flags&pfcLastFrag == 0 {
		c.discarding, c.discardID = true, h.callID
	}
	return c.writeFault(h.callID, r.ctxID, status, true)
}

// checkRequestAuth applies the security context to a request fragment:
// at packet levels and above it must carry a verifier of the context,
// whose signature is checked (and at privacy the stub decrypted in
// place, [MS-RPCE] 3.3.1.5.2.2). It returns where the stub ends, or a
// fault status; fatal means the connection cannot continue (the
// sequence numbers are out of step).
func (c *conn) checkRequestAuth(frag []byte, r *requestPDU) (stubEnd int, status uint32, fatal bool) {
	end := r.bodyEnd
	if r.auth != nil {
		end -= int(r.auth.padLen)
	}
	sc := c.sec
	switch {
	case sc == nil:
		if r.auth != nil {
			c.log.Info("dcerpc request with a verifier on a connection without security")
			return 0, StatusAccessDenied, false
		}
		return end, 0, false
	case !sc.established:
		c.log.Debug("dcerpc request without a completed logon")
		return 0, StatusAccessDenied, false
	case !sc.protects():
		return end, 0, false
	}
	v := r.auth
	if v == nil || !sc.matches(v) || v.level != sc.level || len(v.token) != ntlmSigLen {
		c.log.Info("dcerpc request without the connection's verifier")
		return 0, StatusAccessDenied, true
	}
	hdr, body, trailer := frag[:r.stubOff], frag[r.stubOff:r.bodyEnd], frag[r.bodyEnd:r.bodyEnd+secTrailerLen]
	if err := sc.ntlm.Unwrap(hdr, body, trailer, v.token, sc.sealed()); err != nil {
		c.log.Warn("dcerpc request failed verification", "err", err)
		return 0, StatusAccessDenied, true
	}
	return end, 0, false
}

// caller is who makes calls on this connection now.
func (c *conn) caller() Caller {
	cl := Caller{Remote: c.nc.RemoteAddr(), AuthType: AuthTypeNone, AuthLevel: AuthLevelNone}
	if sc := c.sec; sc != nil && sc.established {
		cl.AuthType, cl.AuthLevel = sc.authType, sc.level
		cl.Account = sc.ntlm.Account()
		cl.Authenticated = cl.Account != ""
	}
	return cl
}

// dispatch runs a reassembled call and sends its response or fault.
func (c *conn) dispatch(h header, call *pendingCall) bool {
	it := c.contexts[call.ctxID]
	if it == nil {
		c.log.Debug("dcerpc call on an unknown presentation context", "context", call.ctxID)
		return c.writeFault(h.callID, call.ctxID, StatusUnknownIf, true)
	}
	ctx := WithCaller(c.ctx, c.caller())
	if call.object != nil {
		ctx = withObject(ctx, *call.object)
	}
	stub := stripVerificationTrailer(call.stub)
	out, status := c.invoke(ctx, it, int(call.opnum), stub)
	if status != 0 {
		c.log.Debug("dcerpc call failed", "interface", it.Name, "opnum", call.opnum, "status", fmt.Sprintf("0x%08x", status))
		return c.writeFault(h.callID, call.ctxID, status, status == StatusOpRangeError || status == StatusBadStubData)
	}
	return c.sendResponse(h.callID, call.ctxID, out)
}

// invoke calls the interface handle and marshals the response; a panic
// is a failed call.
func (c *conn) invoke(ctx context.Context, it *Interface, opnum int, stub []byte) (out []byte, status uint32) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("dcerpc handler panic", "interface", it.Name, "opnum", opnum, "panic", p, "stack", string(debug.Stack()))
			out, status = nil, StatusFaultUnspec
		}
	}()
	if it.Handle == nil {
		return nil, StatusOpRangeError
	}
	op, err := it.Handle(ctx, opnum, ndr.NDR20(stub))
	if st := faultStatus(op, err); st != 0 {
		if err != nil && st == StatusFaultUnspec {
			c.log.Info("dcerpc handler error", "interface", it.Name, "opnum", opnum, "err", err)
		}
		return nil, st
	}
	w := ndr.NDR20(nil)
	if err := op.MarshalNDRResponse(ctx, w); err != nil {
		c.log.Warn("dcerpc response did not marshal", "interface", it.Name, "opnum", opnum, "err", err)
		return nil, StatusFaultUnspec
	}
	return w.Bytes(), 0
}

// sendResponse sends a response stub in fragments of the negotiated
// size, each signed or sealed on its own (C706 12.6.4.10, [MS-RPCE]
// 3.3.1.5.2.2). With a verifier, fragments carry a multiple of 16 stub
// bytes, and the last one is padded to 16 (auth_pad_length).
func (c *conn) sendResponse(callID uint32, ctxID uint16, stub []byte) bool {
	sc := c.sec
	protect := sc.protects()
	overhead := requestHeaderLen
	if protect {
		overhead += secTrailerLen + ntlmSigLen
	}
	maxStub := c.maxXmit - overhead
	if protect {
		maxStub &^= 15
	}
	if len(c.wbuf) < c.maxXmit {
		c.wbuf = make([]byte, c.maxXmit)
	}
	off := 0
	for first := true; ; first = false {
		n := min(len(stub)-off, maxStub)
		last := off+n == len(stub)
		flags := uint8(0)
		if first {
			flags |= pfcFirstFrag
		}
		if last {
			flags |= pfcLastFrag
		}
		pad, authLen := 0, 0
		if protect {
			pad = (16 - n%16) % 16
			authLen = ntlmSigLen
		}
		bodyEnd := requestHeaderLen + n + pad
		fragLen := bodyEnd
		if protect {
			fragLen += secTrailerLen + authLen
		}
		b := c.wbuf[:fragLen]
		putHeader(b, c.versMinor, ptypeResponse, flags, fragLen, authLen, callID)
		binary.LittleEndian.PutUint32(b[16:], uint32(len(stub)-off)) // alloc_hint: what remains
		binary.LittleEndian.PutUint16(b[20:], ctxID)
		b[22], b[23] = 0, 0 // cancel_count, reserved
		copy(b[requestHeaderLen:], stub[off:off+n])
		clear(b[requestHeaderLen+n : bodyEnd])
		if protect {
			t := b[bodyEnd:]
			t[0], t[1], t[2], t[3] = sc.authType, sc.level, uint8(pad), 0
			binary.LittleEndian.PutUint32(t[4:], sc.ctxID)
			if err := sc.ntlm.Wrap(b[:requestHeaderLen], b[requestHeaderLen:bodyEnd], b[bodyEnd:bodyEnd+secTrailerLen], b[bodyEnd+secTrailerLen:], sc.sealed()); err != nil {
				c.log.Warn("dcerpc response not protected", "err", err)
				return false
			}
		}
		if !c.writePDU(b) {
			return false
		}
		off += n
		if last {
			return true
		}
	}
}

func (c *conn) writeFault(callID uint32, ctxID uint16, status uint32, didNotExecute bool) bool {
	b := appendFault(c.out[:0], c.versMinor, callID, ctxID, status, didNotExecute)
	c.out = b[:0]
	return c.writePDU(b)
}

// writePDU sends one PDU; a client that does not read for IdleTimeout
// is dropped.
func (c *conn) writePDU(b []byte) bool {
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.idleTimeout()))
	if !c.writeRaw(b) {
		return false
	}
	c.srv.stats.Out(len(b))
	return true
}

func (c *conn) writeRaw(b []byte) bool {
	if _, err := c.nc.Write(b); err != nil {
		c.log.Debug("dcerpc write error", "err", err)
		return false
	}
	return true
}

// event emits a client event of the RPC stage.
func (c *conn) event(kind tracker.Kind, detail string) {
	c.srv.emitter().Emit(tracker.Event{
		IP:     c.ip,
		Stage:  tracker.StageRPC,
		Event:  kind,
		Port:   c.port,
		Proto:  "tcp",
		Peer:   c.peer,
		Detail: detail,
	})
}
