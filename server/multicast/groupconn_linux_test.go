//go:build linux

package multicast

import (
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/netdeploy/netdeploy/server/netlab"
)

// TestGroupConn: the receiver's socket (recvmmsg outside the poller)
// takes a burst of group packets in batches with their lengths, gives
// nothing of another group, stops at its deadline, sends to the server
// from the group port, and a Close from another goroutine ends a read in
// progress with net.ErrClosed.
func TestGroupConn(t *testing.T) {
	l := netlab.New(t)
	srv := l.AddHost("srv", "198.18.0.1/24", "")
	rcv := l.AddHost("rcv", "198.18.0.11/24", "")
	group := &net.UDPAddr{IP: net.IPv4(239, 255, 77, 9), Port: 64500}
	other := &net.UDPAddr{IP: net.IPv4(239, 255, 77, 10), Port: 64500}

	var gc, bystander *GroupConn
	if err := rcv.Do(func() error {
		iface, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		if gc, err = ListenGroup(iface, group, 0); err != nil {
			return err
		}
		// Another socket on the port, in another group: SO_REUSEADDR
		// lets it bind, IP_MULTICAST_ALL off keeps each to its group.
		bystander, err = ListenGroup(iface, other, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	defer bystander.Close()
	if gc.LocalPort() != group.Port {
		t.Errorf("LocalPort %d", gc.LocalPort())
	}
	var tx *net.UDPConn
	if err := srv.Do(func() (err error) {
		iface, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		if tx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: srv.IP(), Port: 64001}); err != nil {
			return err
		}
		return ipv4.NewPacketConn(tx).SetMulticastInterface(iface)
	}); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()

	const burst = 200
	for i := range burst {
		if _, err := tx.WriteToUDP([]byte(fmt.Sprintf("packet %03d%s", i, make([]byte, i))), group); err != nil {
			t.Fatal(err)
		}
	}
	bufs := make([][]byte, recvBatch)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	lens := make([]int, recvBatch)
	got, reads := 0, 0
	for got < burst {
		n, err := gc.readBatch(bufs, lens, time.Now().Add(giveUp))
		if err != nil {
			t.Fatalf("after %d packets: %v", got, err)
		}
		reads++
		for i := range n {
			if want := fmt.Sprintf("packet %03d%s", got, make([]byte, got)); string(bufs[i][:lens[i]]) != want {
				t.Fatalf("packet %d: %q (%d bytes)", got, bufs[i][:min(lens[i], 10)], lens[i])
			}
			got++
		}
	}
	if reads >= burst {
		t.Errorf("%d packets took %d reads: no batching", burst, reads)
	}
	t.Logf("%d packets in %d reads", burst, reads)

	// Nothing of the group reached the bystander; its deadline passes.
	if n, err := bystander.readBatch(bufs, lens, time.Now().Add(50*time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("bystander: %d packets, err %v", n, err)
	}

	// To the server, from the group port.
	if err := gc.writeTo([]byte("status"), tx.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	tx.SetReadDeadline(time.Now().Add(giveUp))
	b := make([]byte, 64)
	n, from, err := tx.ReadFromUDP(b)
	if err != nil || string(b[:n]) != "status" || from.Port != group.Port || !from.IP.Equal(rcv.IP()) {
		t.Errorf("server got %q from %v, err %v", b[:n], from, err)
	}

	// Close during a read: the read ends with net.ErrClosed, and later
	// calls say so too.
	done := make(chan error, 1)
	go func() {
		_, err := gc.readBatch(bufs, lens, time.Time{})
		for errors.Is(err, os.ErrDeadlineExceeded) { // a poll slice passed
			_, err = gc.readBatch(bufs, lens, time.Time{})
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // likely in poll; if not yet, the read sees Close at once
	if err := gc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("read during Close: %v", err)
	}
	if err := gc.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if err := gc.writeTo([]byte("x"), from.AddrPort()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Close: %v", err)
	}
}
