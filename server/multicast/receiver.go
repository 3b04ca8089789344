package multicast

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"
)

// Defaults for zero Receiver fields.
const (
	DefaultReadBuffer     = 8 << 20
	DefaultTimeout        = 10 * time.Second
	DefaultStatusInterval = 100 * time.Millisecond
	DefaultNackBackoff    = 20 * time.Millisecond
)

const (
	// gapDelay batches the gap NACKs of a sweep round.
	gapDelay = 5 * time.Millisecond
	// progressInterval is the least time between Progress calls.
	progressInterval = 100 * time.Millisecond
	// recvBatch is the most packets read in one system call.
	recvBatch = 64
	// A batch of fewer than shortBatch packets means the reader keeps up
	// packet by packet: it then waits up to batchWait (never past its next
	// deadline) so that the next read finds a batch instead of waking the
	// runtime for every packet. The socket's buffer holds far more than
	// arrives meanwhile.
	shortBatch = recvBatch / 4
	batchWait  = time.Millisecond
	// pollSlice is the longest a read waits before Run looks at its
	// context again.
	pollSlice = 20 * time.Millisecond
)

// Receiver takes part in one session: it joins the group, writes every
// block to Target as it arrives and asks the sender for what it lacks.
// Set the fields (most come from the sender's Params) before Run; zero
// fields take the documented defaults.
type Receiver struct {
	// Interface is where the group is joined. Required unless Conn is
	// set.
	Interface *net.Interface
	// Group is the session's multicast group and port; the receiver's
	// socket is bound to that port, so its NACKs and STATUSes leave from
	// it.
	Group *net.UDPAddr
	// Server is where NACKs and STATUSes go (Params.Server).
	Server *net.UDPAddr
	// SessionID, ClientID and Key identify and authenticate the session
	// and this receiver (from Params).
	SessionID uint32
	ClientID  uint32
	Key       []byte
	// Size and BlockSize are the image's size and the session's block size
	// (from Params); an ANNOUNCE that disagrees ends Run with an error.
	Size      int64
	BlockSize int
	// Target receives each block at its offset as it arrives, in any
	// order. Required.
	Target io.WriterAt
	// Progress, if set, is called from Run with the bytes held and the
	// total, at most every 100 ms and once when every block is held.
	Progress func(held, total int64)
	// Written, if set, is called from Run with the length of the start of
	// the image that is held and written to Target, each time it grows
	// (blocks arrive out of order, so it may lag Progress): the caller
	// can read that much back while the rest arrives. It reaches Size
	// before Run returns nil.
	Written func(n int64)
	// Log receives diagnostics. Nil: discarded.
	Log *slog.Logger
	// Conn, if set, is the socket to use (from ListenGroup, already a
	// member of the group); Run closes it. Nil: Run opens one.
	Conn *GroupConn
	// ReadBuffer is the socket's receive buffer. 0: DefaultReadBuffer.
	ReadBuffer int
	// Timeout ends Run with ErrTimeout when nothing valid came from the
	// sender for this long. 0: DefaultTimeout.
	Timeout time.Duration
	// StatusInterval is how often a STATUS goes to the sender (the sender
	// drops a receiver silent for its SilentTimeout). 0:
	// DefaultStatusInterval.
	StatusInterval time.Duration
	// NackBackoff is the greatest random delay before answering the end
	// of a round. 0: DefaultNackBackoff.
	NackBackoff time.Duration

	mu    sync.Mutex
	stats ReceiverStats
}

// ReceiverStats is a receiver's counters.
type ReceiverStats struct {
	Held       uint32 // blocks held
	Received   uint32 // DATA packets accepted
	Duplicates uint64 // DATA for blocks already held
	Lost       uint32 // DATA packets missed (sequence gaps)
	Nacks      uint64 // NACK packets sent
	Dropped    uint64 // packets rejected (tag, session, length, type)
	Port       int    // the socket's local port
}

// NewReceiver returns a receiver for the session described by p, joining
// on iface and writing to target.
func NewReceiver(p Params, iface *net.Interface, target io.WriterAt) *Receiver {
	return &Receiver{Interface: iface, Group: p.Group, Server: p.Server, SessionID: p.SessionID, ClientID: p.ClientID,
		Key: p.Key, Size: p.Size, BlockSize: p.BlockSize, Target: target}
}

// Stats returns the receiver's counters (updated as Run goes).
func (r *Receiver) Stats() ReceiverStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

func (r *Receiver) logger() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.New(slog.DiscardHandler)
}

// ListenGroup opens a receiver's socket: UDP 0.0.0.0 on the group's port
// (SO_REUSEADDR), receiving only the groups it joined, with a readBuffer
// receive buffer (0: DefaultReadBuffer), a member of the group on iface.
func ListenGroup(iface *net.Interface, group *net.UDPAddr, readBuffer int) (*GroupConn, error) {
	if iface == nil {
		return nil, errors.New("multicast: no interface to join the group on")
	}
	if group == nil || !group.IP.IsMulticast() || group.IP.To4() == nil || group.Port == 0 {
		return nil, fmt.Errorf("multicast: group %v is not an IPv4 multicast address and port", group)
	}
	if readBuffer <= 0 {
		readBuffer = DefaultReadBuffer
	}
	c, err := listenGroup(iface, group, readBuffer)
	if err != nil {
		return nil, fmt.Errorf("multicast: group %v port %d on %s: %w", group.IP, group.Port, iface.Name, err)
	}
	return c, nil
}

// Run receives the image. It returns nil once every block is held and
// written (the caller then checks the image's digest), ErrFallback when
// the sender dropped this receiver, ErrTimeout when the sender went
// silent, ErrEnded when it ended the session first, ctx's error when ctx
// ends (the sender is told), or a Target or socket error.
func (r *Receiver) Run(ctx context.Context) error {
	if r.Conn != nil {
		defer r.Conn.Close() // whatever happens, as documented
	}
	switch {
	case r.Target == nil:
		return errors.New("multicast: Receiver.Target is nil")
	case r.Server == nil || r.Server.IP.To4() == nil:
		return fmt.Errorf("multicast: server address %v", r.Server)
	case r.ClientID == 0:
		return errors.New("multicast: Receiver.ClientID is 0")
	case r.Size < 0 || r.BlockSize < MinBlockSize || r.BlockSize > MaxBlockSize:
		return fmt.Errorf("multicast: size %d, block size %d", r.Size, r.BlockSize)
	case (r.Size+int64(r.BlockSize)-1)/int64(r.BlockSize) > 1<<32-1:
		return fmt.Errorf("multicast: %d bytes need more than 2^32 blocks of %d", r.Size, r.BlockSize)
	}
	codec, err := NewCodec(r.Key, r.SessionID)
	if err != nil {
		return err
	}
	conn := r.Conn
	if conn == nil {
		if conn, err = ListenGroup(r.Interface, r.Group, r.ReadBuffer); err != nil {
			return err
		}
		defer conn.Close()
	}
	if r.Size == 0 {
		return nil
	}
	now := time.Now()
	st := newRecvState(recvConfig{
		client: r.ClientID, size: r.Size, blockSize: r.BlockSize,
		status:   orDefault(r.StatusInterval, DefaultStatusInterval),
		backoff:  orDefault(r.NackBackoff, DefaultNackBackoff),
		gapDelay: gapDelay,
		timeout:  orDefault(r.Timeout, DefaultTimeout),
		jitter:   func(d time.Duration) time.Duration { return rand.N(d + 1) },
	}, now)
	server := r.Server.AddrPort()
	local := conn.LocalPort()
	log := r.logger().With("ip", server.Addr().String(), "port", local, "proto", "udp")
	bufs := make([][]byte, recvBatch)
	for i := range bufs {
		bufs[i] = make([]byte, Overhead+r.BlockSize+1) // +1: a longer packet is seen as such
	}
	lens := make([]int, recvBatch)
	tx := make([]byte, 0, MaxControlPacket)
	var p Packet
	var progressAt time.Time
	var progressHeld uint32
	var lastBatch = recvBatch
	out := newBlockWriter(r.Target)
	defer out.flush()
	var prefix uint32  // blocks 0..prefix-1 are held
	var reported int64 // what Written was last told
	written := func() {
		if r.Written == nil {
			return
		}
		prefix = st.have.nextClear(prefix)
		n := min(int64(prefix)*int64(r.BlockSize), r.Size)
		if len(out.buf) > 0 {
			n = min(n, out.off) // held, not yet written
		}
		if n > reported {
			reported = n
			r.Written(n)
		}
	}

	send := func(now time.Time) {
		nacks, status := st.due(now)
		for i := range nacks {
			tx = codec.AppendNack(tx[:0], &nacks[i])
			if err := conn.writeTo(tx, server); err != nil {
				log.Debug("multicast NACK not sent", "err", err)
			}
		}
		if status != nil {
			tx = codec.AppendStatus(tx[:0], status)
			if err := conn.writeTo(tx, server); err != nil {
				log.Debug("multicast STATUS not sent", "err", err)
			}
		}
	}
	progress := func(now time.Time, force bool) {
		if r.Progress == nil || st.held == progressHeld || (!force && now.Sub(progressAt) < progressInterval) {
			return
		}
		progressAt, progressHeld = now, st.held
		r.Progress(min(int64(st.held)*int64(r.BlockSize), r.Size), r.Size)
	}
	publish := func() {
		r.mu.Lock()
		r.stats = ReceiverStats{Held: st.held, Received: st.received, Duplicates: st.dup, Lost: st.lost,
			Nacks: st.nacksTx, Dropped: st.bad, Port: local}
		r.mu.Unlock()
	}
	defer publish()
	leave := func(err error) error {
		out.flush()
		st.leave, st.over, st.statusAt = true, false, time.Time{}
		send(time.Now())
		return err
	}

	for {
		now := time.Now()
		if ctx.Err() != nil {
			return leave(fmt.Errorf("multicast: receive: %w", ctx.Err()))
		}
		if st.complete() {
			out.flush() // before the STATUS that says done
		}
		if out.err != nil {
			return leave(out.err)
		}
		written()
		st.check(now)
		send(now)
		progress(now, st.complete())
		publish()
		if st.over {
			if st.err != nil {
				log.Info("multicast receive ended", "err", st.err)
			}
			return st.err
		}
		wake := st.wake()
		if lastBatch < shortBatch {
			if d := min(batchWait, time.Until(wake)); d > 0 {
				time.Sleep(d)
			}
		}
		n, err := conn.readBatch(bufs, lens, wake)
		lastBatch = n
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				lastBatch = recvBatch // idle: the next read waits in the poller
				out.flush()
				continue
			}
			return fmt.Errorf("multicast: receive: %w", err)
		}
		now = time.Now()
		for i := range n {
			b := bufs[i][:lens[i]]
			if err := codec.Decode(b, &p); err != nil {
				st.bad++
				log.Debug("multicast dropping packet", "err", err)
				continue
			}
			switch p.Type {
			case TypeData:
				if st.onData(now, &p.Data) {
					out.write(int64(p.Data.Block)*int64(r.BlockSize), p.Data.Payload)
				}
			case TypeAnnounce:
				if err := st.onAnnounce(now, &p.Announce); err != nil {
					return leave(err)
				}
			case TypeFallback, TypeEnd:
				st.onNotice(p.Type, &p.Notice)
			default:
				st.bad++
			}
		}
	}
}
