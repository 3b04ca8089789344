package multicast

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/udprange"
)

// testRange is where the sockets of the tests without namespaces go.
var testRange = udprange.Range{First: 41000, Last: 41999}

func loopback(t *testing.T) *net.Interface {
	t.Helper()
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip("no lo interface")
	}
	return lo
}

func TestListen(t *testing.T) {
	c, err := Listen(net.IPv4(127, 0, 0, 1), udprange.Range{First: 41500, Last: 41502})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.LocalAddr().(*net.UDPAddr).Port; p < 41500 || p > 41502 {
		t.Errorf("port %d", p)
	}
	if _, err := Listen(net.IPv4(127, 0, 0, 1), udprange.Range{First: 5, Last: 1}); err == nil {
		t.Error("invalid range accepted")
	}
	if g := GroupAddr(0xffffffff, 64001); !g.IP.Equal(net.IPv4(239, 255, 8, 16)) || g.Port != 64001 {
		t.Errorf("GroupAddr: %v", g)
	}
	for id := range uint32(100000) {
		ip := GroupAddr(id*7919, 1).IP.To4()
		if ip[2] == 0 || ip[2] == 255 || ip[3] == 0 || ip[3] == 255 {
			t.Fatalf("GroupAddr(%d) = %v", id*7919, ip)
		}
	}
}

func TestSenderValidation(t *testing.T) {
	lo := loopback(t)
	img := bytes.NewReader(make([]byte, 10000))
	for _, tc := range []struct {
		name string
		set  func(*Sender)
		want string
	}{
		{"no conn", func(s *Sender) { s.Conn = nil }, "Conn is nil"},
		{"no image", func(s *Sender) { s.Image = nil }, "Image is nil"},
		{"no size", func(s *Sender) { s.Size = 0 }, "image size 0"},
		{"small blocks", func(s *Sender) { s.BlockSize = 10 }, "block size 10"},
		{"big blocks", func(s *Sender) { s.BlockSize = MaxBlockSize + 1 }, "block size"},
		{"key", func(s *Sender) { s.Key = []byte("short") }, "key is 5 bytes"},
		{"group", func(s *Sender) { s.Group = &net.UDPAddr{IP: net.IPv4(198, 18, 0, 1), Port: 41000} }, "not an IPv4 multicast"},
		{"rates", func(s *Sender) { s.MinRate, s.MaxRate = 10, 5 }, "min rate"},
		{"unbound conn", func(s *Sender) {
			s.Conn.Close()
			s.Conn, _ = net.ListenUDP("udp4", &net.UDPAddr{})
		}, "bound to the server"},
		{"no interface", func(s *Sender) { s.Interface = nil }, "Interface is nil"},
	} {
		conn, err := Listen(net.IPv4(127, 0, 0, 1), testRange)
		if err != nil {
			t.Fatal(err)
		}
		s := &Sender{Conn: conn, Interface: lo, Image: img, Size: 10000}
		tc.set(s)
		if tc.name != "no interface" && tc.name != "no conn" {
			if _, err := s.Join(nil, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: Join: %v", tc.name, err)
			}
		}
		err = s.Serve(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "multicast: ") {
			t.Errorf("%s: Serve: %v", tc.name, err)
		}
		conn.Close()
	}
}

func TestSenderShutdownBeforeServe(t *testing.T) {
	conn, err := Listen(net.IPv4(127, 0, 0, 1), testRange)
	if err != nil {
		t.Fatal(err)
	}
	s := &Sender{Conn: conn, Interface: loopback(t), Image: bytes.NewReader(make([]byte, 10)), Size: 10}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(context.Background()); err != nil {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	if _, err := s.Join(nil, nil); err == nil {
		t.Error("Join after Shutdown")
	}
	if _, err := conn.Write([]byte{1}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve left the socket open: %v", err)
	}
}

// TestSenderConnClosed: when someone else closes Conn, Serve returns an
// error wrapping net.ErrClosed, even while it only sends heartbeats.
func TestSenderConnClosed(t *testing.T) {
	conn, err := Listen(net.IPv4(127, 0, 0, 1), testRange)
	if err != nil {
		t.Fatal(err)
	}
	s := &Sender{Conn: conn, Interface: loopback(t), Image: bytes.NewReader(make([]byte, 10)), Size: 10,
		Heartbeat: 10 * time.Millisecond, Log: testLog()}
	if _, err := s.Join(nil, net.IPv4(127, 0, 0, 2)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	conn.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Serve still running")
	}
}

// TestSenderServeCancel: ending Serve's context ends the session at once.
func TestSenderServeCancel(t *testing.T) {
	conn, err := Listen(net.IPv4(127, 0, 0, 1), testRange)
	if err != nil {
		t.Fatal(err)
	}
	ev := &eventLog{}
	s := &Sender{Conn: conn, Interface: loopback(t), Image: bytes.NewReader(make([]byte, 10)), Size: 10, Events: ev}
	if _, err := s.Join(net.HardwareAddr{2, 0, 0, 0, 0, 1}, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Serve still running")
	}
	if e := ev.find("02:00:00:00:00:01", "error"); len(e) != 1 || e[0].Detail != "session stopped" {
		t.Errorf("events %+v", ev.all())
	}
	if st := s.Stats(); len(st.Clients) != 1 || st.Clients[0].State != "ended" || st.Traffic.PacketsOut == 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestReceiverValidation(t *testing.T) {
	good := func() *Receiver {
		return &Receiver{Group: GroupAddr(1, 41000), Server: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 41000},
			SessionID: 1, ClientID: 1, Key: testKey, Size: 10, BlockSize: DefaultBlockSize, Target: newMemTarget(10)}
	}
	for _, tc := range []struct {
		name string
		set  func(*Receiver)
		want string
	}{
		{"target", func(r *Receiver) { r.Target = nil }, "Target is nil"},
		{"server", func(r *Receiver) { r.Server = nil }, "server address"},
		{"client", func(r *Receiver) { r.ClientID = 0 }, "ClientID is 0"},
		{"block size", func(r *Receiver) { r.BlockSize = 1 }, "block size 1"},
		{"size", func(r *Receiver) { r.Size = -1 }, "size -1"},
		{"key", func(r *Receiver) { r.Key = nil }, "key is 0 bytes"},
		{"interface", func(r *Receiver) {}, "no interface"},
		{"group", func(r *Receiver) { r.Interface, r.Group = &net.Interface{Name: "x"}, nil }, "not an IPv4 multicast"},
	} {
		r := good()
		tc.set(r)
		err := r.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "multicast: ") {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// A socket handed to Run is closed even when Run refuses to start.
	conn, err := ListenGroup(loopback(t), GroupAddr(1, 41001), 0)
	if err != nil {
		t.Fatal(err)
	}
	r := good()
	r.Conn, r.ClientID = conn, 0
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("Run without a client ID")
	}
	if err := conn.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the socket was left open: Close says %v", err)
	}
}
