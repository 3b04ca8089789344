package multicast

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/netdeploy/netdeploy/server/serving"
	"github.com/netdeploy/netdeploy/server/stats"
	"github.com/netdeploy/netdeploy/server/tracker"
	"github.com/netdeploy/netdeploy/server/udprange"
)

// Defaults for zero Sender fields.
const (
	DefaultTTL           = 1
	DefaultInitialRate   = 12_500_000    // 100 Mbit/s
	DefaultMinRate       = 250_000       // 2 Mbit/s
	DefaultMaxRate       = 1_250_000_000 // 10 Gbit/s
	DefaultSlowRate      = 2_500_000     // 20 Mbit/s
	DefaultSilentTimeout = 5 * time.Second
	DefaultHeartbeat     = 100 * time.Millisecond
)

const (
	// controlInterval is how often the rate control runs.
	controlInterval = 200 * time.Millisecond
	// sendBatch is the most DATA packets sent in one system call.
	sendBatch = 64
	// endRepeats is how often the final END goes to the group.
	endRepeats = 3
)

// Sender streams one image to a multicast group. Set the fields before
// calling Join or Serve; zero fields take the documented defaults. A
// Sender serves one session once and must not be copied after first use.
//
// Clients are registered with Join, which returns what their Receiver
// needs. Every packet leaves from Conn (a port of udp_range) to Group
// (another, or the same, port of udp_range); receivers answer to Conn.
type Sender struct {
	// Conn is the session socket, bound to the server IP and a port of
	// udp_range (Listen does that). Required; Serve closes it.
	Conn *net.UDPConn
	// Group is the multicast group and port the blocks go to. Nil:
	// GroupAddr(SessionID, Conn's port).
	Group *net.UDPAddr
	// Interface is the served interface: multicast leaves by it only
	// (IP_MULTICAST_IF). Required.
	Interface *net.Interface
	// TTL is the multicast TTL. 0: DefaultTTL (the local segment).
	TTL int
	// Loopback delivers the group's packets to receivers on this host too.
	Loopback bool
	// Key signs every packet (KeyLen bytes). Nil: a random key.
	Key []byte
	// SessionID tells this session's packets from others'. 0: random.
	SessionID uint32
	// Name is the image's name in events (File).
	Name string
	// Image is what is sent, Size bytes of it. Required.
	Image io.ReaderAt
	Size  int64
	// BlockSize is the payload of one DATA packet. 0: DefaultBlockSize,
	// which fits a 1500-byte MTU (see BlockSizeForMTU).
	BlockSize int
	// StartPolicy says when sending starts; see also Start.
	StartPolicy StartPolicy
	// Slow is the slow-client policy. SlowDrop drops a client that would
	// push the rate below SlowRate.
	Slow SlowPolicy
	// SlowRate in bytes per second. 0: DefaultSlowRate.
	SlowRate int64
	// InitialRate, MinRate and MaxRate bound the send rate in bytes per
	// second (UDP payload). 0: the defaults.
	InitialRate, MinRate, MaxRate int64
	// SilentTimeout drops a client not heard from for this long (from
	// its Join on). 0: DefaultSilentTimeout.
	SilentTimeout time.Duration
	// Heartbeat is the ANNOUNCE interval. 0: DefaultHeartbeat.
	Heartbeat time.Duration
	// Linger keeps the session open this long after every client
	// finished, for late joiners. 0: Serve returns at once.
	Linger time.Duration
	// Events receives client events (stage multicast). Nil: tracker.Nop{}.
	Events tracker.Emitter
	// Log receives diagnostics. Nil: discarded.
	Log *slog.Logger

	mu      sync.Mutex
	inited  bool
	initErr error
	sess    *session
	group   *net.UDPAddr
	server  *net.UDPAddr
	key     []byte
	id      uint32
	serving bool
	closing bool
	forced  bool
	wake    chan struct{}
	done    chan struct{}
	emitMu  sync.Mutex // keeps events in order across goroutines

	counter stats.Counter
	dropped atomic.Uint64
}

// Params is what a receiver needs to take part in a session. It holds
// the session key: hand it to the client over an authenticated, private
// channel.
type Params struct {
	Group     *net.UDPAddr // where the blocks go
	Server    *net.UDPAddr // where NACK and STATUS go (the sender's Conn)
	SessionID uint32
	ClientID  uint32
	Key       []byte
	Size      int64
	BlockSize int
}

// ClientInfo is one client of a session, for the console and tests.
type ClientInfo struct {
	ID     uint32  `json:"id"`
	MAC    string  `json:"mac"`
	IP     string  `json:"ip"`
	Peer   string  `json:"peer,omitempty"` // its ip:port, once heard
	State  string  `json:"state"`          // joined, ready, done, dropped, fallback, left, ended
	Detail string  `json:"detail,omitempty"`
	Held   uint32  `json:"held"` // blocks it reported
	Bytes  int64   `json:"bytes"`
	Loss   float64 `json:"loss"` // loss fraction in its last measured interval
}

// Stats is a session's counters.
type Stats struct {
	// Everything the session socket sent and received (UDP payload).
	Traffic stats.Snapshot `json:"traffic"`
	// DATA packets sent and their payload bytes; RepairPackets are those
	// after the first round.
	DataPackets   uint64 `json:"data_packets"`
	DataBytes     uint64 `json:"data_bytes"`
	RepairPackets uint64 `json:"repair_packets"`
	Rounds        uint32 `json:"rounds"`
	// Blocks NACKed; of them, already queued (Duplicates), sent since the
	// receiver's view (Stale) or out of range (Invalid).
	Requests   uint64 `json:"requests"`
	Duplicates uint64 `json:"duplicates"`
	Stale      uint64 `json:"stale"`
	Invalid    uint64 `json:"invalid"`
	// Dropped counts packets rejected (bad tag, session, length, type).
	Dropped uint64       `json:"dropped"`
	Rate    int64        `json:"rate"` // current rate, bytes per second
	State   string       `json:"state"`
	Clients []ClientInfo `json:"clients"`
}

// Listen opens a UDP socket on ip and a free port of ports, probing
// upwards (wrapping) from a random start: the sender's Conn.
func Listen(ip net.IP, ports udprange.Range) (*net.UDPConn, error) {
	if err := ports.Validate(); err != nil {
		return nil, fmt.Errorf("multicast: port range: %w", err)
	}
	size := ports.Size()
	start := mrand.IntN(size)
	var lastErr error
	for i := range size {
		port := ports.First + (start+i)%size
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip, Port: port})
		if err == nil {
			return c, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("multicast: bind a port of %s: %w", ports, lastErr)
}

// GroupAddr derives a group in 239.255.0.0/16 (administratively scoped)
// from a session ID: 239.255.X.Y with X and Y in 1-254.
func GroupAddr(session uint32, port int) *net.UDPAddr {
	return &net.UDPAddr{IP: net.IPv4(239, 255, byte(1+(session>>8)%254), byte(1+session%254)), Port: port}
}

// init validates the fields and builds the session, once.
func (s *Sender) init() error {
	if s.inited {
		return s.initErr
	}
	s.inited = true
	s.initErr = s.setup()
	return s.initErr
}

func (s *Sender) setup() error {
	bs := s.BlockSize
	if bs == 0 {
		bs = DefaultBlockSize
	}
	switch {
	case s.Conn == nil:
		return errors.New("multicast: Sender.Conn is nil")
	case s.Image == nil:
		return errors.New("multicast: Sender.Image is nil")
	case s.Size <= 0:
		return fmt.Errorf("multicast: image size %d", s.Size)
	case bs < MinBlockSize || bs > MaxBlockSize:
		return fmt.Errorf("multicast: block size %d outside %d-%d", bs, MinBlockSize, MaxBlockSize)
	case (s.Size+int64(bs)-1)/int64(bs) > 1<<32-1:
		return fmt.Errorf("multicast: %d bytes need more than 2^32 blocks of %d", s.Size, bs)
	case s.Key != nil && len(s.Key) != KeyLen:
		return fmt.Errorf("multicast: key is %d bytes, want %d", len(s.Key), KeyLen)
	}
	la, _ := s.Conn.LocalAddr().(*net.UDPAddr)
	if la == nil || la.IP == nil || la.IP.IsUnspecified() || la.IP.To4() == nil {
		return fmt.Errorf("multicast: Conn must be bound to the server's IPv4 address, not %v", s.Conn.LocalAddr())
	}
	s.server = &net.UDPAddr{IP: la.IP.To4(), Port: la.Port}
	s.id = s.SessionID
	for s.id == 0 {
		var b [4]byte
		rand.Read(b[:])
		s.id = binary.BigEndian.Uint32(b[:])
	}
	s.key = s.Key
	if s.key == nil {
		s.key = make([]byte, KeyLen)
		rand.Read(s.key)
	}
	s.group = s.Group
	if s.group == nil {
		s.group = GroupAddr(s.id, la.Port)
	}
	if !s.group.IP.IsMulticast() || s.group.IP.To4() == nil || s.group.Port == 0 {
		return fmt.Errorf("multicast: group %v is not an IPv4 multicast address and port", s.group)
	}
	rc := rateConfig{
		initial: float64(orDefault(s.InitialRate, DefaultInitialRate)),
		min:     float64(orDefault(s.MinRate, DefaultMinRate)),
		max:     float64(orDefault(s.MaxRate, DefaultMaxRate)),
	}
	if rc.min > rc.max {
		return fmt.Errorf("multicast: min rate %v above max rate %v", rc.min, rc.max)
	}
	s.sess = newSession(sessionConfig{
		size: s.Size, blockSize: bs, start: s.StartPolicy, slow: s.Slow,
		slowRate: float64(orDefault(s.SlowRate, DefaultSlowRate)), rate: rc,
		silent:    orDefault(s.SilentTimeout, DefaultSilentTimeout),
		heartbeat: orDefault(s.Heartbeat, DefaultHeartbeat),
		control:   controlInterval, linger: s.Linger,
		burst: float64(sendBatch * (Overhead + bs)),
		event: tracker.Event{Stage: tracker.StageMulticast, Port: s.group.Port, Proto: "udp", File: s.Name, LocalPort: la.Port},
	}, time.Now())
	if s.closing {
		s.sess.close()
	}
	s.wake = make(chan struct{}, 1)
	s.done = make(chan struct{})
	return nil
}

func orDefault[T int64 | int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func (s *Sender) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Sender) emitter() tracker.Emitter {
	if s.Events != nil {
		return s.Events
	}
	return tracker.Nop{}
}

// Join registers a client (its MAC and IP for events) and returns what its
// Receiver needs. A client that joins after the start gets what it missed
// from the carousel.
func (s *Sender) Join(mac net.HardwareAddr, ip net.IP) (Params, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.init(); err != nil {
		return Params{}, err
	}
	ipStr := ""
	if ip != nil {
		ipStr = ip.String()
	}
	id, err := s.sess.join(time.Now(), tracker.MACString(mac), ipStr)
	if err != nil {
		return Params{}, err
	}
	s.kick()
	s.logger().Info("multicast client joined", "mac", tracker.MACString(mac), "ip", ipStr, "client", id)
	g, srv := *s.group, *s.server
	return Params{Group: &g, Server: &srv, SessionID: s.id, ClientID: id, Key: append([]byte(nil), s.key...),
		Size: s.Size, BlockSize: s.sess.cfg.blockSize}, nil
}

// Start starts sending now (once a client is ready), whatever the start
// policy.
func (s *Sender) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.init() == nil {
		s.sess.start()
		s.kick()
	}
}

func (s *Sender) kick() {
	if s.wake == nil {
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Stats returns the session's counters and clients.
func (s *Sender) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Traffic: s.counter.Snapshot(), Dropped: s.dropped.Load()}
	if s.sess == nil {
		return st
	}
	ss := s.sess
	st.DataPackets, st.DataBytes, st.RepairPackets = ss.st.dataPackets, ss.st.dataBytes, ss.st.repairPackets
	st.Requests, st.Duplicates, st.Stale, st.Invalid = ss.st.requests, ss.st.duplicates, ss.st.stale, ss.st.invalid
	st.Rounds, st.Rate, st.State = ss.round, int64(ss.rate.rate), ss.state.String()
	for _, c := range ss.sorted() {
		in := ClientInfo{ID: c.id, MAC: c.mac, IP: c.ip, State: c.state.String(), Detail: c.detail, Held: c.held,
			Bytes: min(int64(c.held)*int64(ss.cfg.blockSize), ss.cfg.size), Loss: c.lossRate}
		if c.addr.IsValid() {
			in.Peer = c.addr.String()
		}
		st.Clients = append(st.Clients, in)
	}
	return st
}

// Serve runs the session until every client that joined has finished
// (done, dropped or told to fall back) and Linger has passed, then returns
// nil. Shutdown makes it finish the running clients and return nil; when
// Shutdown's context ends, or ctx here does, the session ends at once (an
// END to the group) and Serve returns ctx's error. Serve closes Conn; if
// Conn is closed by someone else it returns an error wrapping
// net.ErrClosed.
func (s *Sender) Serve(ctx context.Context) error {
	s.mu.Lock()
	err := s.init()
	switch {
	case err != nil:
	case s.serving:
		err = errors.New("multicast: Serve called twice")
	case s.closing && s.sess.finished(time.Now()):
		s.mu.Unlock()
		s.Conn.Close()
		return nil
	}
	if err != nil {
		s.mu.Unlock()
		if s.Conn != nil {
			s.Conn.Close()
		}
		return err
	}
	s.serving = true
	s.mu.Unlock()
	defer close(s.done)

	pc := ipv4.NewPacketConn(s.Conn)
	if err := s.configure(pc); err != nil {
		s.Conn.Close()
		return err
	}
	log := s.logger()
	log.Info("multicast session serving", "port", s.server.Port, "proto", "udp", "group", s.group.String(),
		"session", s.id, "size", s.Size, "block_size", s.sess.cfg.blockSize)

	var readers sync.WaitGroup
	readers.Go(s.readLoop)
	err = s.run(ctx, pc)
	s.Conn.Close()
	readers.Wait()
	return err
}

// configure sets the multicast options of the session socket.
func (s *Sender) configure(pc *ipv4.PacketConn) error {
	if s.Interface == nil {
		return errors.New("multicast: Sender.Interface is nil")
	}
	if err := pc.SetMulticastInterface(s.Interface); err != nil {
		return fmt.Errorf("multicast: IP_MULTICAST_IF %s: %w", s.Interface.Name, err)
	}
	if err := pc.SetMulticastTTL(orDefault(s.TTL, DefaultTTL)); err != nil {
		return fmt.Errorf("multicast: IP_MULTICAST_TTL: %w", err)
	}
	if err := pc.SetMulticastLoopback(s.Loopback); err != nil {
		return fmt.Errorf("multicast: IP_MULTICAST_LOOP: %w", err)
	}
	return nil
}

// run is the send loop: it steps the session, sends what it decides and
// sleeps until the next thing is due.
func (s *Sender) run(ctx context.Context, pc *ipv4.PacketConn) error {
	codec, _ := NewCodec(s.key, s.id)
	bs := s.sess.cfg.blockSize
	blocks := make([]uint32, 0, sendBatch)
	chunk := make([]byte, sendBatch*bs)
	bufs := make([][]byte, sendBatch)
	for i := range bufs {
		bufs[i] = make([]byte, 0, Overhead+bs)
	}
	msgs := make([]ipv4.Message, sendBatch)
	ctl := make([]byte, 0, 128)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		s.mu.Lock()
		stop := s.forced || ctx.Err() != nil
		if stop {
			s.sess.end(now, "session stopped")
		}
		rate := s.sess.rate.rate
		b := s.sess.step(now, sendBatch, blocks)
		if s.sess.rate.rate != rate {
			s.logger().Debug("multicast rate", "port", s.server.Port, "proto", "udp", "from", int64(rate), "to", int64(s.sess.rate.rate))
		}
		ann, annDue := s.sess.announce(now)
		notices, events := s.sess.drain()
		fin := stop || s.sess.finished(now)
		wake := s.sess.wake(now)
		s.emitMu.Lock()
		s.mu.Unlock()
		s.emit(events)
		s.emitMu.Unlock()

		if len(b.Blocks) > 0 {
			if err := s.sendData(pc, codec, b, chunk, bufs, msgs); err != nil {
				s.stopAll(err.Error())
				return err
			}
		}
		var werr error
		if annDue {
			ctl = codec.AppendAnnounce(ctl[:0], &ann)
			werr = s.write(ctl, s.group.AddrPort())
		}
		if err := s.sendNotices(codec, notices, &ctl); werr == nil {
			werr = err
		}
		if errors.Is(werr, net.ErrClosed) {
			err := fmt.Errorf("multicast: send: %w", werr)
			s.stopAll(err.Error())
			return err
		}
		if fin {
			for range endRepeats {
				ctl = codec.AppendNotice(ctl[:0], &Notice{})
				s.write(ctl, s.group.AddrPort())
			}
			st := s.Stats()
			s.logger().Info("multicast session over", "port", s.server.Port, "proto", "udp", "rounds", st.Rounds,
				"bytes_sent", st.Traffic.BytesOut, "data_packets", st.DataPackets, "repairs", st.RepairPackets)
			if stop && ctx.Err() != nil {
				return fmt.Errorf("multicast: serve: %w", ctx.Err())
			}
			return nil
		}
		if d := time.Until(wake); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-s.wake:
				timer.Stop() // no stale tick after Stop (Go 1.23 timers)
			case <-ctx.Done():
			}
		}
	}
}

// stopAll ends the session after a fatal error.
func (s *Sender) stopAll(detail string) {
	s.mu.Lock()
	s.sess.end(time.Now(), detail)
	_, events := s.sess.drain()
	s.emitMu.Lock()
	s.mu.Unlock()
	s.emit(events)
	s.emitMu.Unlock()
}

// emit hands events to Events and logs the clients' ends.
func (s *Sender) emit(events []tracker.Event) {
	em := s.emitter()
	for _, e := range events {
		em.Emit(e)
		switch e.Event {
		case tracker.KindDone:
			s.logger().Info("multicast client done", "mac", e.MAC, "ip", e.IP, "port", e.Port, "proto", "udp")
		case tracker.KindError:
			s.logger().Info("multicast client out", "mac", e.MAC, "ip", e.IP, "port", e.Port, "proto", "udp",
				"detail", e.Detail, "bytes", e.Bytes)
		}
	}
}

// sendData reads the batch's blocks (one ReadAt per run of consecutive
// blocks) and sends them in as few system calls as the kernel allows.
func (s *Sender) sendData(pc *ipv4.PacketConn, codec *Codec, b batch, chunk []byte, bufs [][]byte, msgs []ipv4.Message) error {
	bs := int64(s.sess.cfg.blockSize)
	blocks := b.Blocks
	for i := 0; i < len(blocks); {
		j := i + 1
		for j < len(blocks) && blocks[j] == blocks[j-1]+1 {
			j++
		}
		off := int64(blocks[i]) * bs
		n := min(int64(j-i)*bs, s.Size-off)
		if _, err := s.Image.ReadAt(chunk[int64(i)*bs:int64(i)*bs+n], off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("multicast: read image at %d: %w", off, err)
		}
		i = j
	}
	total := 0
	for k, blk := range blocks {
		off := int64(k) * bs
		n := min(bs, s.Size-int64(blk)*bs)
		d := Data{Round: b.Round, Seq: b.Seq + uint32(k), Block: blk, Sweep: b.Sweep, Payload: chunk[off : off+n]}
		bufs[k] = codec.AppendData(bufs[k][:0], &d)
		msgs[k] = ipv4.Message{Buffers: bufs[k : k+1], Addr: s.group}
		total += len(bufs[k])
	}
	for sent := 0; sent < len(blocks); {
		n, err := pc.WriteBatch(msgs[sent:len(blocks)], 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("multicast: send: %w", err)
			}
			// Transient (ENOBUFS): what was not sent counts as lost.
			s.logger().Debug("multicast send error", "port", s.server.Port, "proto", "udp", "err", err)
			break
		}
		sent += n
	}
	s.counter.OutBatch(len(blocks), total)
	return nil
}

// write sends one control packet; failures are logged and returned.
func (s *Sender) write(b []byte, to netip.AddrPort) error {
	if _, err := s.Conn.WriteToUDPAddrPort(b, to); err != nil {
		s.logger().Debug("multicast send failed", "ip", to.Addr().String(), "port", to.Port(), "proto", "udp", "err", err)
		return err
	}
	s.counter.Out(len(b))
	return nil
}

func (s *Sender) sendNotices(codec *Codec, ns []notice, buf *[]byte) error {
	var first error
	for _, n := range ns {
		*buf = codec.AppendNotice((*buf)[:0], &n.n)
		if err := s.write(*buf, n.to); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// readLoop takes the receivers' NACKs and STATUSes until Conn closes.
func (s *Sender) readLoop() {
	codec, _ := NewCodec(s.key, s.id)
	buf := make([]byte, MaxPacket+1)
	ctl := make([]byte, 0, 128)
	var p Packet
	var backoff serving.Backoff
	log := s.logger()
	for {
		n, from, err := s.Conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			pause := backoff.Next()
			log.Warn("multicast read error", "port", s.server.Port, "proto", "udp", "err", err, "retry_in", pause)
			time.Sleep(pause)
			continue
		}
		backoff.Reset()
		s.counter.In(n)
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if err := codec.Decode(buf[:n], &p); err != nil || (p.Type != TypeNack && p.Type != TypeStatus) {
			if err == nil {
				err = fmt.Errorf("unexpected %s", p.Type)
			}
			s.dropped.Add(1)
			log.Debug("multicast dropping packet", "ip", from.Addr().String(), "port", from.Port(), "proto", "udp", "err", err)
			continue
		}
		now := time.Now()
		s.mu.Lock()
		if p.Type == TypeNack {
			s.sess.onNack(now, from, &p.Nack)
		} else {
			s.sess.onStatus(now, from, &p.Status)
		}
		notices, events := s.sess.drain()
		s.emitMu.Lock()
		s.mu.Unlock()
		s.emit(events)
		s.emitMu.Unlock()
		s.sendNotices(codec, notices, &ctl)
		s.kick()
	}
}

// Shutdown stops joins and waits for the running clients to finish; Serve
// then returns nil. A session that has not started starts now if a client
// is ready. When ctx ends first, the session ends at once and Shutdown
// returns ctx's error.
func (s *Sender) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	if s.sess != nil {
		s.sess.close()
	}
	serving, done := s.serving, s.done
	s.kick()
	s.mu.Unlock()
	if !serving {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	s.forced = true
	s.kick()
	s.mu.Unlock()
	<-done
	return fmt.Errorf("multicast: shutdown: %w", ctx.Err())
}
