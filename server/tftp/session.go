package tftp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/netdeploy/netdeploy/server/stats"
	"github.com/netdeploy/netdeploy/server/tracker"
)

const (
	progressEvery = 250 * time.Millisecond
	chunkTarget   = 256 << 10 // file bytes read per ReadAt
	maxBackoff    = 8         // the retransmission timeout grows to at most 8x
)

// session is one read transfer on its own UDP socket (RFC 1350 section 4:
// the server's transfer ID is the session port).
type session struct {
	conn    *net.UDPConn
	peer    netip.AddrPort // as received, to send to
	peerKey netip.AddrPort // addrKey(peer), to compare with
	src     io.ReaderAt
	size    int64
	p       params
	maxWin  int
	timeout time.Duration // per-packet timeout before backoff
	retries int
	log     *slog.Logger
	emit    tracker.Emitter
	ev      tracker.Event // template for events

	replied atomic.Bool // the client answered once: a repeated RRQ is new
	raw     syscall.RawConn
	spin    spinner

	st    *stats.Counter // the server's session counters
	info  SessionInfo    // for Server.Sessions; set before the session is tracked
	acked atomic.Int64   // sent, for Server.Sessions

	pkt      []byte // one outgoing packet
	batch    []byte // several DATA packets for one segmented send; nil: none
	oob      []byte // its control message
	rbuf     []byte // one incoming packet
	chunk    []byte // file bytes [chunkOff, chunkOff+len(chunk))
	chunkOff int64
	sent     int64 // bytes acknowledged
	lastProg time.Time
}

// errProbe ends a session that was a size query (tsize, then ERROR).
var errProbe = errors.New("tftp: size probe")

// run does the transfer and reports its outcome as events.
func (s *session) run() {
	start := time.Now()
	s.emitAt(start, tracker.KindStart, 0, "")
	s.log.Debug("tftp session start", "blksize", s.p.blksize, "window", s.p.window, "msftwindow", s.p.msft, "size", s.size)
	s.lastProg = start
	err := s.transfer()
	if errors.Is(err, net.ErrClosed) {
		err = errShutdown // a forced Shutdown closed the socket
	}
	switch {
	case err == nil:
		s.emitEvent(tracker.KindDone, s.size, "")
		el := time.Since(start)
		s.log.Info("tftp transfer done", "bytes", s.size, "elapsed", el.Round(time.Millisecond))
		s.log.Debug("tftp ACK waits", "waits", s.spin.all, "caught_spinning", s.spin.hits,
			"mean_spinning", s.spin.spinMean, "mean_sleeping", s.spin.sleepMean)
	case errors.Is(err, errProbe):
		s.emitEvent(tracker.KindDone, 0, "size probe")
		s.log.Debug("tftp size probe", "size", s.size)
	default:
		s.emitEvent(tracker.KindError, s.sent, detail(err))
		s.log.Warn("tftp transfer failed", "err", err, "bytes", s.sent)
	}
}

func (s *session) emitEvent(kind tracker.Kind, n int64, det string) {
	s.emitAt(time.Now(), kind, n, det)
}

// emitAt emits an event stamped now (the time the progress throttle
// measured, so that progress events are progressEvery apart).
func (s *session) emitAt(now time.Time, kind tracker.Kind, n int64, det string) {
	e := s.ev
	e.Time = now
	e.Event = kind
	e.Bytes = n
	e.Detail = det
	s.emit.Emit(e)
}

// detail is an error's text for an event.
func detail(err error) string {
	msg := err.Error()
	if len(msg) > 6 && msg[:6] == "tftp: " {
		return msg[6:]
	}
	return msg
}

// transfer sends the file: OACK first when options were accepted (RFC
// 2347), then DATA in windows (RFC 7440; a window of 1 is RFC 1350's
// lock-step). Block numbers wrap past 65535 to 0; idx is the 64-bit index.
func (s *session) transfer() error {
	bs := int64(s.p.blksize)
	last := uint64(s.size/bs) + 1 // the short (maybe empty) final block
	if s.p.oack != nil {
		if err := s.handshake(); err != nil {
			return err
		}
	}
	window := s.p.window
	base, next := uint64(1), uint64(1) // first unacknowledged, next to send
	var floor uint64                   // highest block sent before the last rewind
	tries := 0
	dupRewound := false
	for {
		if end := min(base+uint64(window)-1, last); next <= end {
			if err := s.sendRange(next, end); err != nil {
				return err
			}
			next = end + 1
		}
		deadline := time.Now().Add(s.backoff(tries))
	wait:
		b, err := s.recv(deadline)
		if err != nil {
			if isTimeout(err) {
				if err := s.retry(&tries); err != nil {
					return err
				}
				s.log.Debug("tftp timeout, resending", "block", base, "try", tries)
				next = base // RFC 7440 section 4: resend from the first unacknowledged block
				continue
			}
			return err
		}
		block, hint, err := decodeACK(b)
		if err != nil {
			return s.unexpected(b)
		}
		idx := base - 1 + uint64(block-uint16(base-1))
		switch {
		case idx >= next:
			s.log.Debug("tftp ignoring ACK outside window", "ack", block)
			goto wait
		case idx == base-1:
			// Duplicate: never answer it in lock-step (RFC 1123 section
			// 4.2.3.1, Sorcerer's Apprentice); in a window rewind once.
			if window == 1 || dupRewound {
				goto wait
			}
			dupRewound = true
			next = base
			continue
		}
		s.replied.Store(true)
		base, tries, dupRewound = idx+1, 0, false
		s.sent = min(int64(idx)*bs, s.size)
		s.acked.Store(s.sent)
		if s.p.msft && hint > 0 {
			window = clampWindow(hint, s.maxWin)
		}
		if idx == last {
			return nil
		}
		if idx+1 < next && idx > floor {
			// RFC 7440 section 4: an ACK inside the window means the
			// blocks after it were lost; go on from there. ACKs of blocks
			// sent before the last rewind only slide the window.
			floor = next - 1
			next = base
		}
		s.progress()
	}
}

// handshake sends the OACK and waits for ACK 0 (RFC 2347 section 2). An
// ERROR instead, after a tsize answer, is a client that only wanted the
// size (UEFI does this before every download).
func (s *session) handshake() error {
	oack := appendOACK(s.pkt[:0], s.p.oack)
	for tries := 0; ; {
		if _, err := s.conn.WriteToUDPAddrPort(oack, s.peer); err != nil {
			return fmt.Errorf("tftp: send OACK: %w", err)
		}
		s.st.Out(len(oack))
		deadline := time.Now().Add(s.backoff(tries))
	wait:
		b, err := s.recv(deadline)
		if err != nil {
			if isTimeout(err) {
				if err := s.retry(&tries); err != nil {
					return err
				}
				continue
			}
			return err
		}
		if len(b) >= 2 && opcode(uint16(b[0])<<8|uint16(b[1])) == opERROR {
			code, msg, _ := decodeError(b)
			s.replied.Store(true)
			if s.p.tsize && (code == errUndefined || code == errOptionRefused) {
				return errProbe
			}
			return fmt.Errorf("tftp: client error %d: %s", code, msg)
		}
		block, hint, err := decodeACK(b)
		if err != nil {
			return s.unexpected(b)
		}
		if block != 0 {
			s.log.Debug("tftp ignoring ACK before OACK acknowledged", "ack", block)
			goto wait
		}
		s.replied.Store(true)
		if s.p.msft && hint > 0 {
			s.p.window = clampWindow(hint, s.maxWin)
		}
		return nil
	}
}

// recv returns the next packet from the peer, or an error matching
// os.ErrDeadlineExceeded at deadline. Packets from any other address get
// ERROR 5 and leave the session alone (RFC 1350 section 4).
func (s *session) recv(deadline time.Time) ([]byte, error) {
	for {
		n, from, err := s.readFrom(s.rbuf, deadline)
		if err != nil {
			if isTimeout(err) || errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			return nil, fmt.Errorf("tftp: receive: %w", err)
		}
		s.st.In(n)
		if addrKey(from) == s.peerKey {
			return s.rbuf[:n], nil
		}
		s.log.Debug("tftp packet from unknown transfer ID", "from", from.String())
		if n >= 2 && s.rbuf[0] == 0 && s.rbuf[1] == byte(opERROR) {
			continue // never answer an error with an error
		}
		var eb [32]byte
		s.sendError(appendError(eb[:0], errUnknownTID, "unknown transfer ID"), from)
	}
}

// sendError sends an ERROR packet b from the session port, best effort.
func (s *session) sendError(b []byte, to netip.AddrPort) {
	if _, err := s.conn.WriteToUDPAddrPort(b, to); err == nil {
		s.st.Out(len(b))
	}
}

// unexpected handles a packet from the peer that is not an ACK: an ERROR
// ends the session, anything else is answered with ERROR 4.
func (s *session) unexpected(b []byte) error {
	if code, msg, err := decodeError(b); err == nil {
		return fmt.Errorf("tftp: client error %d: %s", code, msg)
	}
	var eb [64]byte
	s.sendError(appendError(eb[:0], errIllegalOp, "illegal TFTP operation"), s.peer)
	if p, err := decode(b); err == nil {
		return fmt.Errorf("tftp: illegal operation: unexpected %v", p.op)
	}
	return fmt.Errorf("tftp: illegal operation: malformed packet of %d bytes", len(b))
}

// sendRange sends DATA blocks from..to. With UDP segmentation offload a
// run of blocks leaves in one system call; without, one per block.
func (s *session) sendRange(from, to uint64) error {
	seg := 4 + s.p.blksize
	for from <= to {
		n := uint64(1)
		if s.batch != nil {
			n = min(to-from+1, uint64(cap(s.batch)/seg))
		}
		if n == 1 {
			b, err := s.appendBlock(s.pkt[:0], from)
			if err != nil {
				return err
			}
			if _, err := s.conn.WriteToUDPAddrPort(b, s.peer); err != nil {
				return fmt.Errorf("tftp: send DATA: %w", err)
			}
			s.st.Out(len(b))
			from++
			continue
		}
		b := s.batch[:0]
		for i := range n {
			var err error
			if b, err = s.appendBlock(b, from+i); err != nil {
				return err
			}
		}
		if err := writeSegments(s.conn, b, seg, s.oob, s.peer); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			s.log.Debug("tftp UDP segmentation offload unavailable", "err", err)
			s.batch = nil // one datagram per block from now on
			continue
		}
		s.st.OutBatch(int(n), len(b))
		from += n
	}
	return nil
}

// appendBlock appends DATA block idx to dst, reading the file a chunk at
// a time.
func (s *session) appendBlock(dst []byte, idx uint64) ([]byte, error) {
	bs := int64(s.p.blksize)
	off := int64(idx-1) * bs
	n := min(bs, s.size-off)
	if off < s.chunkOff || off+n > s.chunkOff+int64(len(s.chunk)) {
		if err := s.fill(off); err != nil {
			return dst, err
		}
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(opDATA))
	dst = binary.BigEndian.AppendUint16(dst, uint16(idx))
	return append(dst, s.chunk[off-s.chunkOff:off-s.chunkOff+n]...), nil
}

// fill reads the chunk of the file that starts at off.
func (s *session) fill(off int64) error {
	n := min(int64(cap(s.chunk)), s.size-off)
	s.chunk = s.chunk[:n]
	s.chunkOff = off
	if n == 0 {
		return nil
	}
	got, err := s.src.ReadAt(s.chunk, off)
	if int64(got) == n {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	var eb [64]byte
	s.sendError(appendError(eb[:0], errUndefined, "read error"), s.peer)
	return fmt.Errorf("tftp: read at %d: %w", off, err)
}

// retry counts a timeout and fails once the retries are used up.
func (s *session) retry(tries *int) error {
	*tries++
	if *tries > s.retries {
		return fmt.Errorf("tftp: timeout after %d retries", s.retries)
	}
	return nil
}

// backoff is the timeout for the given retry: doubled each time, capped.
func (s *session) backoff(tries int) time.Duration {
	return s.timeout * time.Duration(min(1<<min(tries, 8), maxBackoff))
}

func (s *session) progress() {
	now := time.Now()
	if now.Sub(s.lastProg) < progressEvery {
		return
	}
	s.lastProg = now
	s.emitAt(now, tracker.KindProgress, s.sent, "")
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// chunkSize is the read-ahead buffer for a transfer: a whole number of
// blocks near chunkTarget, never more than the file needs.
func chunkSize(blksize int, size int64) int {
	n := max(chunkTarget/blksize, 1) * blksize
	return int(min(int64(n), size))
}

// netasciiMax caps the in-memory netascii conversion.
const netasciiMax = 32 << 20

// toNetascii converts to netascii (RFC 764 via RFC 1350 section 5): LF
// becomes CR LF and CR becomes CR NUL. It fails past max bytes.
func toNetascii(src []byte, limit int) ([]byte, error) {
	extra := 0
	for _, c := range src {
		if c == '\n' || c == '\r' {
			extra++
		}
	}
	if len(src)+extra > limit {
		return nil, fmt.Errorf("tftp: netascii form larger than %d bytes", limit)
	}
	out := make([]byte, 0, len(src)+extra)
	for _, c := range src {
		switch c {
		case '\n':
			out = append(out, '\r', '\n')
		case '\r':
			out = append(out, '\r', 0)
		default:
			out = append(out, c)
		}
	}
	return out, nil
}
