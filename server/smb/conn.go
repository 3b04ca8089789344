package smb

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/netdeploy/netdeploy/server/tracker"
)

// conn is one client connection. Its requests are handled one message
// (one frame, possibly a compound chain) at a time by its goroutine.
type conn struct {
	srv      *Server
	nc       net.Conn
	netbios  bool
	ip, peer string
	port     int
	log      *slog.Logger
	accepted time.Time
	busy     atomic.Bool
	hdr      [4]byte

	// Negotiated state ([MS-SMB2] 3.3.1.7).
	dialect       uint16 // 0 before NEGOTIATE
	clientGUID    [16]byte
	clientCaps    uint32
	clientSecMode uint16
	serverSecMode uint16
	serverCaps    uint32
	preauth       [64]byte // Connection.PreauthIntegrityHashValue (3.1.1)
	cipher        uint16   // cipherCCM, cipherGCM or 0
	signAlg       uint16   // signHMAC, signCMAC or signGMAC
	smb1Done      bool     // answered an SMB1 NEGOTIATE with 0x02FF

	credits creditWindow

	sessions map[uint64]*session
	opens    map[uint64]*open
	nextFile uint64
	authed   bool // a session has been authenticated
	// chainRead is the READ data of the message being handled: at most
	// maxReadSize per message, compounds included.
	chainRead int64
}

func newConn(s *Server, nc net.Conn, netbios bool) *conn {
	c := &conn{srv: s, nc: nc, netbios: netbios, accepted: time.Now(),
		sessions: map[uint64]*session{}, opens: map[uint64]*open{}}
	c.credits.init()
	c.peer = nc.RemoteAddr().String()
	if host, p, err := net.SplitHostPort(c.peer); err == nil {
		c.ip = host
		_ = p
	}
	c.port = s.Port
	if c.port == 0 {
		if _, p, err := net.SplitHostPort(nc.LocalAddr().String()); err == nil {
			c.port, _ = strconv.Atoi(p)
		}
	}
	var b [8]byte
	rand.Read(b[:])
	c.nextFile = binary.LittleEndian.Uint64(b[:])>>16 | 1
	c.log = s.logger().With("ip", c.ip, "port", c.port, "proto", "tcp")
	return c
}

// closeIfIdle closes the connection unless a request is being handled;
// the connection goroutine stops after its current request once the
// server is closing.
func (c *conn) closeIfIdle() {
	if !c.busy.Load() {
		c.nc.Close()
	}
}

func (c *conn) event(e tracker.Event) {
	e.IP, e.Stage, e.Port, e.Proto, e.Peer = c.ip, tracker.StageSMB, c.port, "tcp", c.peer
	c.srv.emitter().Emit(e)
}

func (c *conn) serve() {
	defer c.cleanup()
	if c.netbios {
		if err := c.netbiosHandshake(); err != nil {
			c.log.Debug("smb netbios session refused", "err", err)
			return
		}
	}
	for {
		if c.srv.listeners.Closing() {
			return
		}
		dl := time.Now().Add(c.srv.idleTimeout())
		if !c.authed {
			if hs := c.accepted.Add(c.srv.handshakeTimeout()); hs.Before(dl) {
				dl = hs
			}
		}
		c.nc.SetReadDeadline(dl)
		msg, err := c.readFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.log.Debug("smb connection closed", "err", err)
			}
			return
		}
		c.busy.Store(true)
		c.srv.stats.In(len(msg) + 4)
		err = c.handleFrame(msg)
		c.busy.Store(false)
		if err != nil {
			c.log.Info("smb connection dropped", "err", err)
			return
		}
	}
}

func (c *conn) cleanup() {
	c.nc.Close()
	for _, o := range c.opens {
		o.close(c)
	}
	clear(c.opens)
}

// readFrame reads one transport frame: a 4-byte header of a zero type
// byte (a NetBIOS SESSION MESSAGE, [RFC 1002] 4.3.6; on port 445 the
// same layout, [MS-SMB2] 2.1) and a 24-bit length, then the message.
// NetBIOS SESSION KEEP ALIVE frames are skipped.
func (c *conn) readFrame() ([]byte, error) {
	for {
		if _, err := io.ReadFull(c.nc, c.hdr[:]); err != nil {
			return nil, err
		}
		n := int(c.hdr[1])<<16 | int(c.hdr[2])<<8 | int(c.hdr[3])
		switch {
		case c.hdr[0] == nbKeepAlive && c.netbios && n == 0:
			continue
		case c.hdr[0] != nbSessionMessage:
			return nil, fmt.Errorf("smb: frame type 0x%02x", c.hdr[0])
		case n > maxMessage:
			return nil, fmt.Errorf("smb: frame of %d bytes (at most %d)", n, maxMessage)
		case n < 4:
			return nil, fmt.Errorf("smb: frame of %d bytes", n)
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(c.nc, msg); err != nil {
			return nil, fmt.Errorf("smb: short frame: %w", err)
		}
		return msg, nil
	}
}

// writeFrame sends one frame made of parts.
func (c *conn) writeFrame(parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n > 1<<24-1 {
		return fmt.Errorf("smb: response of %d bytes", n)
	}
	hdr := []byte{nbSessionMessage, byte(n >> 16), byte(n >> 8), byte(n)}
	bufs := net.Buffers(append([][]byte{hdr}, parts...))
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.idleTimeout()))
	_, err := bufs.WriteTo(c.nc)
	c.srv.stats.Out(n + 4)
	return err
}

// request is one request of a message being handled.
type request struct {
	h         header
	msg       []byte // the request, header included
	sess      *session
	tree      *tree
	encrypted bool
	related   bool
	prevFID   fileID // the FileId a related request inherits
	hasPrev   bool
}

// body returns the request body (after the header).
func (r *request) body() []byte { return r.msg[headerLen:] }

// fileID reads the FileId at off in the body, substituting the previous
// request's FileId in a related chain ([MS-SMB2] 3.3.5.2.7.2).
func (r *request) fileID(off int) (fileID, bool) {
	b := r.body()
	if off+16 > len(b) {
		return fileID{}, false
	}
	f := getFileID(b[off:])
	if f == relatedFileID {
		if !r.related || !r.hasPrev {
			return fileID{}, false
		}
		return r.prevFID, true
	}
	return f, true
}

// response is a response being built: buf starts with room for the
// header.
type response struct {
	buf       le
	sessionID uint64
	treeID    uint32
	fid       fileID    // a CREATE's new FileId, for related requests
	budget    int64     // read buffer bytes taken from the server's budget
	pooled    []*[]byte // read buffers to give back after the write
	hasFID    bool
	none      bool     // CANCEL: nothing is sent
	keepBody  bool     // an error response whose body the handler wrote
	ended     *session // LOGOFF: the session gone, which still signs
	forceSign bool     // the final SESSION_SETUP response of a signing session
	// preauthSess is the 3.1.1 session whose preauth hash takes this
	// (SESSION_SETUP, not final) response.
	preauthSess *session
}

func newResponse() *response {
	return &response{buf: make(le, headerLen, 256)}
}

// handleFrame handles one received frame.
func (c *conn) handleFrame(msg []byte) error {
	switch [4]byte(msg[:4]) {
	case protoSMB1:
		return c.handleSMB1(msg)
	case protoTransform:
		sess, plain, err := c.decrypt(msg)
		if err != nil {
			return err
		}
		return c.handleMessage(plain, sess)
	case protoSMB2:
		return c.handleMessage(msg, nil)
	}
	return fmt.Errorf("smb: protocol id %x", msg[:4])
}

// handleMessage handles an SMB2 message: one request or a compound
// chain. enc is the session whose key decrypted it, nil when it came in
// the clear.
func (c *conn) handleMessage(msg []byte, enc *session) error {
	reqs, err := splitCompound(msg)
	if err != nil {
		return err
	}
	var out [][]byte
	var signers []*session // the session signing each response, or nil
	var budget int64
	var pooled []*[]byte
	defer func() {
		c.srv.releaseBuffer(budget)
		c.chainRead = 0
		for _, bp := range pooled {
			c.srv.putReadBuf(bp)
		}
	}()
	var (
		prevSess uint64
		prevTree uint32
		prevFID  fileID
		hasPrev  bool
		prevSt   Status
	)
	for i, raw := range reqs {
		h, err := parseHeader(raw)
		if err != nil {
			return err
		}
		if h.Flags&flagResponse != 0 {
			return errors.New("smb: received a response")
		}
		if c.dialect == 0 && h.Command != cmdNegotiate {
			return fmt.Errorf("smb: %s before NEGOTIATE", commandName(h.Command))
		}
		r := &request{h: h, msg: raw, encrypted: enc != nil}
		r.related = h.Flags&flagRelated != 0
		if r.related {
			if i == 0 {
				r.related = false
			} else {
				r.h.SessionID, r.h.TreeID = prevSess, prevTree
				r.prevFID, r.hasPrev = prevFID, hasPrev
			}
		}
		w := newResponse()
		w.sessionID, w.treeID = r.h.SessionID, r.h.TreeID
		var st Status
		if r.related && prevSt != StatusSuccess && i > 0 && h.Command != cmdCancel {
			// A related request after a failed one fails the same way.
			st = prevSt
			c.credits.consume(h.MessageID, c.charge(h))
		} else {
			st, err = c.dispatch(r, w, enc)
			if err != nil {
				return err
			}
		}
		budget += w.budget
		pooled = append(pooled, w.pooled...)
		if w.none {
			continue
		}
		resp, signer := c.finish(r, w, st)
		signers = append(signers, signer)
		if w.preauthSess != nil && st == StatusMoreProcessingRequired {
			c.preauthUpdate(&w.preauthSess.preauth, resp)
		}
		out = append(out, resp)
		prevSess, prevTree, prevSt = w.sessionID, w.treeID, st
		if w.hasFID {
			prevFID, hasPrev = w.fid, true
		} else if f, ok := r.fileIDField(); ok {
			prevFID, hasPrev = f, true
		}
		if h.Command == cmdNegotiate && c.dialect == dialect311 {
			c.preauthUpdate(&c.preauth, raw, resp)
		}
	}
	if len(out) == 0 {
		return nil
	}
	// Chain: pad all but the last to 8 bytes and link them.
	for i := range out[:len(out)-1] {
		for len(out[i])%8 != 0 {
			out[i] = append(out[i], 0)
		}
		binary.LittleEndian.PutUint32(out[i][20:], uint32(len(out[i])))
	}
	// Responses are encrypted when the request was ([MS-SMB2]
	// 3.3.4.1.4); a request to an encrypting share that came in the
	// clear is refused in the clear.
	if enc == nil {
		for i, m := range out {
			if signers[i] != nil {
				clear(m[48:64])
				sig := signers[i].signer.sign(m)
				copy(m[48:64], sig[:])
			}
		}
		return c.writeFrame(out...)
	}
	var plain []byte
	if len(out) == 1 {
		plain = out[0]
	} else {
		for _, m := range out {
			plain = append(plain, m...)
		}
	}
	th := c.encrypt(enc, plain)
	return c.writeFrame(th, plain)
}

// fileIDField returns the FileId a request names, for the related
// requests after it.
func (r *request) fileIDField() (fileID, bool) {
	off := -1
	switch r.h.Command {
	case cmdClose:
		off = 8
	case cmdRead, cmdWrite:
		off = 16
	case cmdQueryDirectory:
		off = 8
	case cmdQueryInfo:
		off = 24
	case cmdIoctl:
		off = 8
	}
	if off < 0 {
		return fileID{}, false
	}
	return r.fileID(off)
}

// dispatch checks a request's session, tree and credits and runs its
// command. A returned error drops the connection.
func (c *conn) dispatch(r *request, w *response, enc *session) (Status, error) {
	h := &r.h
	if h.Command == cmdCancel {
		// CANCEL takes no credits and gets no response ([MS-SMB2]
		// 3.3.5.16); requests are never pending here.
		w.none = true
		return StatusSuccess, nil
	}
	if !c.credits.consume(h.MessageID, c.charge(*h)) {
		return 0, fmt.Errorf("smb: message id %d (charge %d) outside the credit window [%d, %d)", h.MessageID, c.charge(*h), c.credits.low, c.credits.high)
	}
	switch h.Command {
	case cmdNegotiate:
		return c.negotiate(r, w)
	case cmdEcho:
		if len(r.body()) < 4 {
			return StatusInvalidParameter, nil
		}
		w.buf.u16(4)
		w.buf.u16(0)
		return StatusSuccess, nil
	case cmdSessionSetup:
		return c.sessionSetup(r, w)
	}
	// Everything else runs in an authenticated session ([MS-SMB2]
	// 3.3.5.2.9).
	sess := c.sessions[h.SessionID]
	if sess == nil || !sess.valid {
		return StatusUserSessionDeleted, nil
	}
	r.sess = sess
	if enc != nil && enc != sess {
		return StatusAccessDenied, nil
	}
	if st := c.verify(r); st != StatusSuccess {
		return st, nil
	}
	switch h.Command {
	case cmdLogoff:
		return c.logoff(r, w)
	case cmdTreeConnect:
		return c.treeConnect(r, w)
	}
	t := sess.trees[h.TreeID]
	if t == nil {
		return StatusNetworkNameDeleted, nil
	}
	r.tree = t
	if t.share.encrypt && !r.encrypted {
		return StatusAccessDenied, nil
	}
	switch h.Command {
	case cmdTreeDisconnect:
		return c.treeDisconnect(r, w)
	case cmdCreate:
		return c.create(r, w)
	case cmdClose:
		return c.closeFile(r, w)
	case cmdRead:
		return c.read(r, w)
	case cmdWrite:
		return c.write(r, w)
	case cmdQueryInfo:
		return c.queryInfo(r, w)
	case cmdQueryDirectory:
		return c.queryDirectory(r, w)
	case cmdIoctl:
		return c.ioctl(r, w)
	case cmdFlush:
		if _, st := c.lookupOpen(r, 8); st != StatusSuccess {
			return st, nil
		}
		w.buf.u16(4)
		w.buf.u16(0)
		return StatusSuccess, nil
	case cmdSetInfo, cmdLock:
		return StatusAccessDenied, nil
	case cmdChangeNotify, cmdOplockBreak:
		return StatusNotSupported, nil
	}
	return StatusNotSupported, nil
}

// finish writes the response header (and the error body for a failed
// request) and returns the response and the session that must sign it
// once the chain is laid out (padding is signed too), or nil.
func (c *conn) finish(r *request, w *response, st Status) ([]byte, *session) {
	if st != StatusSuccess && st != StatusMoreProcessingRequired && st != StatusBufferOverflow && !w.keepBody {
		// SMB2 ERROR Response ([MS-SMB2] 2.2.2).
		w.buf = w.buf[:headerLen]
		w.buf.u16(9)
		w.buf.u8(0)
		w.buf.u8(0)
		w.buf.u32(0)
		w.buf.u8(0)
	}
	credits := c.credits.grant(r.h.Credits)
	h := header{
		CreditCharge: r.h.CreditCharge,
		Status:       uint32(st),
		Command:      r.h.Command,
		Credits:      credits,
		Flags:        flagResponse | r.h.Flags&flagRelated,
		MessageID:    r.h.MessageID,
		ProcessID:    r.h.ProcessID,
		TreeID:       w.treeID,
		SessionID:    w.sessionID,
	}
	h.put(w.buf)

	// Sign ([MS-SMB2] 3.3.4.1.1) responses to signed requests and all
	// responses of a session that requires signing, never a response
	// that is encrypted or an intermediate SESSION_SETUP one; always the
	// final SESSION_SETUP response of a keyed 3.x session.
	sess := c.sessions[w.sessionID]
	if sess == nil {
		sess = w.ended
	}
	if sess == nil || sess.signer == nil || r.encrypted {
		return w.buf, nil
	}
	sign := w.forceSign || (sess.valid && (r.h.Flags&flagSigned != 0 || sess.signingRequired))
	if !sign || st == StatusMoreProcessingRequired {
		return w.buf, nil
	}
	binary.LittleEndian.PutUint32(w.buf[16:], h.Flags|flagSigned)
	return w.buf, sess
}

// verify checks a request's signature ([MS-SMB2] 3.3.5.2.4): a signed
// request must verify; an unsigned one is refused when the session
// requires signing, unless it came encrypted.
func (c *conn) verify(r *request) Status {
	s := r.sess
	if r.encrypted {
		return StatusSuccess
	}
	if r.h.Flags&flagSigned == 0 {
		if s.signingRequired {
			c.log.Debug("smb unsigned request refused", "command", commandName(r.h.Command))
			return StatusAccessDenied
		}
		return StatusSuccess
	}
	if s.signer == nil {
		return StatusSuccess // guest and anonymous sessions have no key
	}
	m := r.msg
	var got [16]byte
	copy(got[:], m[48:64])
	clear(m[48:64])
	want := s.signer.sign(m)
	copy(m[48:64], got[:])
	if want != got {
		c.log.Info("smb bad signature", "command", commandName(r.h.Command), "session", s.id)
		return StatusAccessDenied
	}
	return StatusSuccess
}

// preauthUpdate folds a request and its response into a 3.1.1
// pre-authentication integrity hash ([MS-SMB2] 3.3.5.4, 3.3.5.5).
func (c *conn) preauthUpdate(hv *[64]byte, msgs ...[]byte) {
	for _, m := range msgs {
		if m == nil {
			continue
		}
		h := sha512.New()
		h.Write(hv[:])
		h.Write(m)
		copy(hv[:], h.Sum(nil))
	}
}

// charge is a request's CreditCharge as the credit window counts it.
func (c *conn) charge(h header) int {
	if c.dialect == dialect202 || c.dialect == 0 || h.CreditCharge == 0 {
		return 1
	}
	return int(h.CreditCharge)
}

// chargeCovers reports whether a request's CreditCharge pays for n bytes
// of payload ([MS-SMB2] 3.3.5.2.5): one credit per 64 KiB.
func (c *conn) chargeCovers(h header, n uint64) bool {
	if c.dialect == dialect202 {
		return n <= 65536
	}
	need := max((n+65535)/65536, 1)
	return uint64(max(h.CreditCharge, 1)) >= need
}

// creditWindow tracks the message ids the client may use ([MS-SMB2]
// 3.3.1.1): [low, high) were granted, used marks those consumed.
type creditWindow struct {
	low, high uint64
	used      [creditRing]bool
	nused     int // consumed ids in [low, high)
}

const creditRing = 2 * maxCredits

func (w *creditWindow) init() { w.low, w.high = 0, 1 }

// consume takes the ids [id, id+n) or reports that they are not
// available.
func (w *creditWindow) consume(id uint64, n int) bool {
	if n < 1 || id < w.low || id+uint64(n) > w.high || id+uint64(n) < id {
		return false
	}
	for i := range uint64(n) {
		if w.used[(id+i)%creditRing] {
			return false
		}
	}
	for i := range uint64(n) {
		w.used[(id+i)%creditRing] = true
	}
	w.nused += n
	for w.low < w.high && w.used[w.low%creditRing] {
		w.used[w.low%creditRing] = false
		w.low++
		w.nused--
	}
	return true
}

// grant extends the window by up to req credits, keeping the client's
// credits at or below maxCredits and at least 1.
func (w *creditWindow) grant(req uint16) uint16 {
	outstanding := int(w.high-w.low) - w.nused
	g := int(req)
	if g == 0 && outstanding == 0 {
		g = 1
	}
	g = min(g, maxCredits-outstanding, creditRing-int(w.high-w.low))
	if g < 0 {
		g = 0
	}
	w.high += uint64(g)
	return uint16(g)
}
