//go:build linux

package multicast

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/tracker"
	"github.com/netdeploy/netdeploy/server/udprange"
)

// These tests run a sender and receivers in network namespaces
// (198.18.0.0/24, groups in 239.255.0.0/16, only inside the lab).
// netlab.New skips them unless root.

// labRange is the test's udp_range.
var labRange = udprange.Default()

// giveUp bounds every wait of the lab tests (a deadline, not a timing
// threshold).
const giveUp = 5 * time.Minute

type lab struct {
	t      *testing.T
	l      *netlab.Lab
	srv    *netlab.Host
	sender *Sender
	events *eventLog
	image  []byte
	sum    [sha256.Size]byte
	served chan error
}

// labImageSize is the image of the tests: 128 MiB, less under the race
// detector.
func labImageSize() int64 {
	if raceEnabled {
		return 16 << 20
	}
	return 128 << 20
}

// newLab builds the server host and a sender for a random image of size
// bytes; configure may change the Sender before it serves.
func newLab(t *testing.T, size int64, configure func(*Sender)) *lab {
	t.Helper()
	l := &lab{t: t, l: netlab.New(t), events: &eventLog{}, served: make(chan error, 1)}
	l.srv = l.l.AddHost("srv", "198.18.0.1/24", "")
	l.image = make([]byte, size)
	rand.Read(l.image)
	l.sum = sha256.Sum256(l.image)
	var conn *net.UDPConn
	var iface *net.Interface
	if err := l.srv.Do(func() (err error) {
		if iface, err = net.InterfaceByName("eth0"); err != nil {
			return err
		}
		conn, err = Listen(l.srv.IP(), labRange)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	l.sender = &Sender{Conn: conn, Interface: iface, Image: bytes.NewReader(l.image), Size: size, Name: "test.img",
		Events: l.events, Log: testLog()}
	if configure != nil {
		configure(l.sender)
	}
	return l
}

// serve runs the sender until the test ends.
func (l *lab) serve(ctx context.Context) {
	go func() { l.served <- l.sender.Serve(ctx) }()
	l.t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l.sender.Shutdown(sctx)
	})
}

// wait returns Serve's result.
func (l *lab) wait() error {
	select {
	case err := <-l.served:
		return err
	case <-time.After(giveUp):
		l.t.Fatalf("sender still serving after %v: %+v", giveUp, l.sender.Stats())
		return nil
	}
}

// labClient is one receiver host.
type labClient struct {
	host   *netlab.Host
	rcv    *Receiver
	conn   *GroupConn
	target *memTarget
	done   chan error
}

// addClient adds a receiver host at 198.18.0.<n>, joins it to the session
// and opens its socket (not yet running).
func (l *lab) addClient(name string, n int) *labClient {
	l.t.Helper()
	c, err := l.join(l.l.AddHost(name, fmt.Sprintf("198.18.0.%d/24", n), ""))
	if err != nil {
		l.t.Fatal(err)
	}
	return c
}

func (c *labClient) run(ctx context.Context) {
	go func() { c.done <- c.rcv.Run(ctx) }()
}

func (c *labClient) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-c.done:
		return err
	case <-time.After(giveUp):
		t.Fatalf("%s still receiving after %v: %+v", c.host.Name, giveUp, c.rcv.Stats())
		return nil
	}
}

// checkImage compares the client's copy with the image.
func (l *lab) checkImage(c *labClient) {
	l.t.Helper()
	if got := sha256.Sum256(c.target.bytes()); got != l.sum {
		l.t.Errorf("%s: image differs (sha256 %x, want %x)", c.host.Name, got[:8], l.sum[:8])
	}
}

// overhead logs and returns bytes sent per image byte.
func (l *lab) overhead() float64 {
	st := l.sender.Stats()
	o := float64(st.Traffic.BytesOut) / float64(len(l.image))
	l.t.Logf("sent %d bytes in %d packets for a %d-byte image: %.4fx; %d rounds, %d repair packets, %d requests (%d duplicate, %d stale), final rate %.1f MB/s",
		st.Traffic.BytesOut, st.Traffic.PacketsOut, len(l.image), o, st.Rounds, st.RepairPackets, st.Requests,
		st.Duplicates, st.Stale, float64(st.Rate)/1e6)
	return o
}

// capture runs tcpdump on the server's eth0 for UDP until stop is called,
// which returns every (source, destination) port pair seen and how many
// packets had it.
func (l *lab) capture(ctx context.Context) (stop func() map[[2]int]int) {
	l.t.Helper()
	if _, err := exec.LookPath("tcpdump"); err != nil {
		l.t.Log("no tcpdump: ports checked on the sockets only")
		return func() map[[2]int]int { return nil }
	}
	file := filepath.Join(l.t.TempDir(), "cap.pcap")
	cmd := l.srv.Command(ctx, "tcpdump", "-i", "eth0", "-nn", "-s", "96", "-B", "16384", "-w", file, "udp")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	ready := make(chan struct{})
	var tail netlab.Buffer
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			tail.Write([]byte(sc.Text() + "\n"))
			if strings.Contains(sc.Text(), "listening on") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		l.t.Fatalf("tcpdump did not start: %s", tail.String())
	}
	return func() map[[2]int]int {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
		l.t.Logf("tcpdump: %s", strings.TrimSpace(tail.String()))
		out, err := l.srv.Command(ctx, "tcpdump", "-r", file, "-nn", "-q").Output()
		if err != nil {
			l.t.Fatalf("tcpdump -r: %v", err)
		}
		re := regexp.MustCompile(`IP [\d.]+\.(\d+) > [\d.]+\.(\d+): UDP`)
		pairs := map[[2]int]int{}
		for line := range strings.SplitSeq(string(out), "\n") {
			m := re.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			a, _ := strconv.Atoi(m[1])
			b, _ := strconv.Atoi(m[2])
			pairs[[2]int{a, b}]++
		}
		return pairs
	}
}

// TestLabFourReceivers: four receivers in their own namespaces get a
// 128 MiB image at once, byte-identical; every UDP port of the session
// lies in udp_range; without loss the sender sends at most 1.15x the
// image.
func TestLabFourReceivers(t *testing.T) {
	size := labImageSize()
	l := newLab(t, size, func(s *Sender) { s.StartPolicy.Clients = 4 })
	ctx, cancel := context.WithTimeout(context.Background(), giveUp)
	defer cancel()
	var clients []*labClient
	for i := range 4 {
		clients = append(clients, l.addClient(fmt.Sprintf("r%d", i+1), 11+i))
	}
	stop := l.capture(ctx)
	l.transfer(ctx, t, clients)
	pairs := stop()
	for _, c := range clients {
		l.checkImage(c)
		st := c.rcv.Stats()
		t.Logf("%s: %+v", c.host.Name, st)
		if !labRange.Contains(st.Port) {
			t.Errorf("%s: socket port %d outside %s", c.host.Name, st.Port, labRange)
		}
		if ev := l.events.find(c.host.MAC.String(), tracker.KindDone); len(ev) != 1 || ev[0].Bytes != size || ev[0].Stage != tracker.StageMulticast {
			t.Errorf("%s: done events %+v", c.host.Name, ev)
		}
	}
	if p := l.sender.Conn.LocalAddr().(*net.UDPAddr).Port; !labRange.Contains(p) {
		t.Errorf("sender port %d outside %s", p, labRange)
	}
	if pairs != nil {
		total := 0
		for pr, n := range pairs {
			total += n
			if !labRange.Contains(pr[0]) || !labRange.Contains(pr[1]) {
				t.Errorf("%d packets from port %d to %d: outside %s", n, pr[0], pr[1], labRange)
			}
		}
		t.Logf("captured %d UDP packets, port pairs %v", total, pairs)
		if total < int(size/int64(DefaultBlockSize))/2 {
			t.Errorf("captured only %d packets", total)
		}
	}
	if o := l.overhead(); o > 1.15 {
		t.Errorf("sent %.4fx the image, want at most 1.15x", o)
	}
}

// TestLabLoss: with 5%% random loss on one receiver's link every receiver
// completes and the sender sends at most 1.5x the image.
func TestLabLoss(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft")
	}
	size := labImageSize()
	l := newLab(t, size, func(s *Sender) { s.StartPolicy.Clients = 4 })
	ctx, cancel := context.WithTimeout(context.Background(), giveUp)
	defer cancel()
	var clients []*labClient
	for i := range 4 {
		clients = append(clients, l.addClient(fmt.Sprintf("r%d", i+1), 11+i))
	}
	lossy := clients[0].host
	addLoss(ctx, t, lossy, 5)
	// Written on the lossy receiver (blocks out of order): it only grows,
	// what it covers is on the target, and it ends at the size.
	var calls int
	var last int64
	rc := clients[0]
	rc.rcv.Written = func(n int64) {
		calls++
		if n <= last {
			t.Errorf("Written(%d) after Written(%d)", n, last)
		}
		last = n
		from := max(0, n-int64(rc.rcv.BlockSize))
		if !bytes.Equal(rc.target.bytes()[from:n], l.image[from:n]) {
			t.Errorf("Written(%d): the bytes before it are not on the target", n)
		}
	}
	l.transfer(ctx, t, clients)
	logLoss(ctx, t, lossy)
	t.Logf("Written called %d times", calls)
	if last != size {
		t.Errorf("Written ended at %d of %d", last, size)
	}
	for _, c := range clients {
		l.checkImage(c)
		t.Logf("%s: %+v", c.host.Name, c.rcv.Stats())
	}
	if st := clients[0].rcv.Stats(); st.Lost == 0 {
		t.Errorf("the lossy receiver lost nothing: %+v", st)
	}
	if o := l.overhead(); o > 1.5 {
		t.Errorf("sent %.4fx the image, want at most 1.5x", o)
	}
}

// addLoss drops pct% of the UDP packets h receives, at random (an nft
// numgen rule in h's namespace).
func addLoss(ctx context.Context, t *testing.T, h *netlab.Host, pct int) {
	t.Helper()
	for _, args := range [][]string{
		{"add", "table", "inet", "mcloss"},
		{"add", "chain", "inet", "mcloss", "input", "{ type filter hook input priority 0 ; }"},
		{"add", "rule", "inet", "mcloss", "input", "meta", "l4proto", "udp", "numgen", "random", "mod", "100", "<", strconv.Itoa(pct), "counter", "drop"},
	} {
		if _, err := h.Run(ctx, "nft", args...); err != nil {
			t.Fatal(err)
		}
	}
}

// logLoss logs addLoss's rule with its counter.
func logLoss(ctx context.Context, t *testing.T, h *netlab.Host) {
	out, _ := h.Run(ctx, "nft", "list", "chain", "inet", "mcloss", "input")
	t.Logf("loss rule on %s: %s", h.Name, strings.Join(strings.Fields(out), " "))
}

// TestLabTwentyReceivers: twenty receivers at once, three of them losing
// 5% of their packets each (different packets), all complete
// byte-identical with a done event; the repairs one receiver asks for
// serve the others too (a block is resent once per round however many
// ask), so the session sends at most 1.5x the image.
func TestLabTwentyReceivers(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft")
	}
	const n = 20
	size := labImageSize() / 8
	l := newLab(t, size, func(s *Sender) { s.StartPolicy.Clients = n })
	ctx, cancel := context.WithTimeout(context.Background(), giveUp)
	defer cancel()
	var clients []*labClient
	for i := range n {
		clients = append(clients, l.addClient(fmt.Sprintf("r%d", i+1), 11+i))
	}
	lossy := []*labClient{clients[0], clients[7], clients[14]}
	for _, c := range lossy {
		addLoss(ctx, t, c.host, 5)
	}
	l.transfer(ctx, t, clients)
	for _, c := range lossy {
		logLoss(ctx, t, c.host)
		if st := c.rcv.Stats(); st.Lost == 0 {
			t.Errorf("%s lost nothing: %+v", c.host.Name, st)
		}
	}
	nacks := uint64(0)
	for _, c := range clients {
		l.checkImage(c)
		nacks += c.rcv.Stats().Nacks
		if ev := l.events.find(c.host.MAC.String(), tracker.KindDone); len(ev) != 1 || ev[0].Bytes != size {
			t.Errorf("%s: done events %+v", c.host.Name, ev)
		}
	}
	st := l.sender.Stats()
	t.Logf("%d NACK packets from the receivers; the sender counted %d requests, %d for blocks already asked for", nacks, st.Requests, st.Duplicates)
	if st.Requests == 0 {
		t.Error("no repair requests, yet three receivers lost packets")
	}
	if o := l.overhead(); o > 1.5 {
		t.Errorf("sent %.4fx the image, want at most 1.5x", o)
	}
}

// TestLabKilledAndLateReceivers: a receiver whose socket is closed midway
// and one that gives up (context cancelled) do not stall the others, and
// a receiver that joins when the first is halfway through completes.
func TestLabKilledAndLateReceivers(t *testing.T) {
	size := labImageSize()
	l := newLab(t, size, func(s *Sender) {
		s.StartPolicy.Clients = 3
		s.SilentTimeout = 2 * time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), giveUp)
	defer cancel()
	steady := l.addClient("steady", 11)
	killed := l.addClient("killed", 12)
	quitter := l.addClient("quitter", 13)
	late := l.l.AddHost("late", "198.18.0.14/24", "")

	var once sync.Once
	lateJoined := make(chan *labClient, 1)
	steady.rcv.Progress = func(held, total int64) {
		if held >= total/2 {
			once.Do(func() {
				// Join from another goroutine: Progress runs in Run's.
				go func() {
					c, err := l.join(late)
					if err != nil {
						t.Error(err)
						close(lateJoined)
						return
					}
					c.run(ctx)
					lateJoined <- c
				}()
			})
		}
	}
	var killOnce sync.Once
	killed.rcv.Progress = func(held, total int64) {
		if held >= total*3/10 {
			killOnce.Do(func() { killed.conn.Close() })
		}
	}
	qctx, qcancel := context.WithCancel(ctx)
	defer qcancel()
	quitter.rcv.Progress = func(held, total int64) {
		if held >= total*3/10 {
			qcancel()
		}
	}
	began := time.Now()
	l.serve(ctx)
	steady.run(ctx)
	killed.run(ctx)
	quitter.run(qctx)

	if err := steady.wait(t); err != nil {
		t.Errorf("steady: %v", err)
	}
	if err := killed.wait(t); !errors.Is(err, net.ErrClosed) {
		t.Errorf("killed: %v, want net.ErrClosed", err)
	}
	if err := quitter.wait(t); !errors.Is(err, context.Canceled) {
		t.Errorf("quitter: %v, want context.Canceled", err)
	}
	var lc *labClient
	select {
	case lc = <-lateJoined:
		if lc == nil {
			t.FailNow()
		}
	case <-time.After(giveUp):
		t.Fatal("the late receiver never joined")
	}
	if err := lc.wait(t); err != nil {
		t.Errorf("late: %v", err)
	}
	if err := l.wait(); err != nil {
		t.Errorf("Serve: %v", err)
	}
	t.Logf("session took %v", time.Since(began).Round(time.Millisecond))
	l.checkImage(steady)
	l.checkImage(lc)
	for _, c := range []*labClient{steady, killed, quitter, lc} {
		t.Logf("%s: %+v", c.host.Name, c.rcv.Stats())
	}
	st := l.sender.Stats()
	want := map[string]string{steady.host.MAC.String(): "done", killed.host.MAC.String(): "dropped",
		quitter.host.MAC.String(): "left", late.MAC.String(): "done"}
	for _, c := range st.Clients {
		if want[c.MAC] != c.State {
			t.Errorf("client %s (%s): state %s (%s), want %s", c.MAC, c.IP, c.State, c.Detail, want[c.MAC])
		}
	}
	if ev := l.events.find(killed.host.MAC.String(), tracker.KindError); len(ev) != 1 || !strings.Contains(ev[0].Detail, "silent") {
		t.Errorf("killed: error events %+v", ev)
	}
	l.overhead()
}

// join joins host h to the session and opens its socket in h.
func (l *lab) join(h *netlab.Host) (*labClient, error) {
	p, err := l.sender.Join(h.MAC, h.IP())
	if err != nil {
		return nil, err
	}
	c := &labClient{host: h, target: newMemTarget(p.Size), done: make(chan error, 1)}
	var iface *net.Interface
	if err := h.Do(func() (err error) {
		if iface, err = net.InterfaceByName("eth0"); err != nil {
			return err
		}
		c.conn, err = ListenGroup(iface, p.Group, 0)
		return err
	}); err != nil {
		return nil, err
	}
	c.rcv = NewReceiver(p, iface, c.target)
	c.rcv.Conn = c.conn
	c.rcv.Log = testLog().With("client", h.Name)
	return c, nil
}

// TestLabForgeryAndGracefulShutdown: forged packets (another key, another
// session, garbage) sent to the sender and to the group during a transfer
// are dropped and counted and change nothing; a Shutdown during the
// transfer refuses new joins and returns once the clients are done.
func TestLabForgeryAndGracefulShutdown(t *testing.T) {
	size := labImageSize() / 4
	l := newLab(t, size, func(s *Sender) { s.StartPolicy.Clients = 2 })
	ctx, cancel := context.WithTimeout(context.Background(), giveUp)
	defer cancel()
	clients := []*labClient{l.addClient("r1", 11), l.addClient("r2", 12)}
	evil := l.l.AddHost("evil", "198.18.0.66/24", "")
	var ec *net.UDPConn
	if err := evil.Do(func() (err error) {
		iface, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		if ec, err = net.ListenUDP("udp4", &net.UDPAddr{IP: evil.IP()}); err != nil {
			return err
		}
		return ipv4.NewPacketConn(ec).SetMulticastInterface(iface)
	}); err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	p := clients[0].rcv
	wrongKey, _ := NewCodec(bytes.Repeat([]byte{7}, KeyLen), p.SessionID)
	wrongSession, _ := NewCodec(p.Key, p.SessionID+1)
	junk := make([]byte, 1472)
	rand.Read(junk)
	toSender := [][]byte{
		wrongKey.AppendStatus(nil, &Status{Client: p.ClientID, Held: uint32(size / int64(p.BlockSize)), Done: true}),
		wrongSession.AppendNack(nil, &Nack{Client: p.ClientID, Entries: []NackEntry{{Start: 0, Count: 1000}}}),
		junk[:100], []byte(magic),
	}
	toGroup := [][]byte{
		wrongKey.AppendData(nil, &Data{Round: 1, Block: 0, Payload: junk[:p.BlockSize]}),
		wrongSession.AppendNotice(nil, &Notice{Client: 0}),
		wrongKey.AppendNotice(nil, &Notice{Client: p.ClientID, Reason: ReasonSlow}),
		junk,
	}
	forged := 0
	forge := func() {
		for _, b := range toSender {
			if _, err := ec.WriteToUDP(b, l.sender.server); err == nil {
				forged++
			}
		}
		for _, b := range toGroup {
			ec.WriteToUDP(b, p.Group)
		}
	}
	stopForging := make(chan struct{})
	forging := make(chan struct{})
	go func() {
		defer close(forging)
		for {
			forge()
			select {
			case <-stopForging:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()

	shutdown := make(chan error, 1)
	var once sync.Once
	clients[0].rcv.Progress = func(held, total int64) {
		if held >= total/10 {
			once.Do(func() { go func() { shutdown <- l.sender.Shutdown(ctx) }() })
		}
	}
	l.transfer(ctx, t, clients)
	close(stopForging)
	<-forging
	select {
	case err := <-shutdown:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(giveUp):
		t.Fatal("Shutdown did not return")
	}
	if _, err := l.sender.Join(evil.MAC, evil.IP()); err == nil {
		t.Error("Join accepted after Shutdown")
	}
	for _, c := range clients {
		l.checkImage(c)
		st := c.rcv.Stats()
		t.Logf("%s: %+v", c.host.Name, st)
		if st.Dropped == 0 {
			t.Errorf("%s dropped no forged packet", c.host.Name)
		}
	}
	st := l.sender.Stats()
	if st.Dropped < uint64(forged)/2 || st.Dropped > uint64(forged) {
		t.Errorf("sender dropped %d of %d forged packets", st.Dropped, forged)
	}
	t.Logf("sender dropped %d packets, %d forged", st.Dropped, forged)
	l.overhead()
}

// TestLabForcedShutdown: a Shutdown whose context has ended stops the
// session at once: the receivers get ErrEnded, Serve returns nil and
// Shutdown the context's error.
func TestLabForcedShutdown(t *testing.T) {
	l := newLab(t, labImageSize()/4, func(s *Sender) {
		s.StartPolicy.Clients = 2
		s.MaxRate = 20e6
	})
	ctx, cancel := context.WithTimeout(context.Background(), giveUp)
	defer cancel()
	clients := []*labClient{l.addClient("r1", 11), l.addClient("r2", 12)}
	shutdown := make(chan error, 1)
	var once sync.Once
	clients[0].rcv.Progress = func(held, total int64) {
		if held >= total/5 {
			once.Do(func() {
				go func() {
					dead, stop := context.WithCancel(ctx)
					stop()
					shutdown <- l.sender.Shutdown(dead)
				}()
			})
		}
	}
	l.serve(ctx)
	for _, c := range clients {
		c.run(ctx)
	}
	for _, c := range clients {
		if err := c.wait(t); !errors.Is(err, ErrEnded) {
			t.Errorf("%s: %v, want ErrEnded", c.host.Name, err)
		}
	}
	if err := l.wait(); err != nil {
		t.Errorf("Serve: %v", err)
	}
	if err := <-shutdown; !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown: %v", err)
	}
	for _, c := range clients {
		if ev := l.events.find(c.host.MAC.String(), tracker.KindError); len(ev) != 1 || ev[0].Detail != "session stopped" {
			t.Errorf("%s: error events %+v", c.host.Name, ev)
		}
	}
}

// transfer serves the session, runs every client and waits for all of
// them and for Serve, reporting errors and the time taken.
func (l *lab) transfer(ctx context.Context, t *testing.T, clients []*labClient) {
	t.Helper()
	began := time.Now()
	l.serve(ctx)
	for _, c := range clients {
		c.run(ctx)
	}
	for _, c := range clients {
		if err := c.wait(t); err != nil {
			t.Errorf("%s: %v", c.host.Name, err)
		}
	}
	if err := l.wait(); err != nil {
		t.Errorf("Serve: %v", err)
	}
	t.Logf("transfer took %v", time.Since(began).Round(time.Millisecond))
}
