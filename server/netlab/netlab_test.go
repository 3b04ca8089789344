package netlab

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

func TestLabPing(t *testing.T) {
	l := New(t)
	a := l.AddHost("a", "198.18.0.1/24", "")
	b := l.AddHost("b", "198.18.0.2/24", "02:00:00:00:00:0b")
	if b.MAC.String() != "02:00:00:00:00:0b" {
		t.Fatalf("mac %s", b.MAC)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A UDP round trip from a socket opened inside a's namespace.
	var ln *net.UDPConn
	if err := b.Do(func() (err error) {
		ln, err = net.ListenUDP("udp4", &net.UDPAddr{IP: b.IP(), Port: 9999})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		buf := make([]byte, 16)
		n, from, err := ln.ReadFromUDP(buf)
		if err == nil {
			ln.WriteToUDP(buf[:n], from)
		}
	}()
	var c *net.UDPConn
	if err := a.Do(func() (err error) {
		c, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: b.IP(), Port: 9999})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("echo: %q %v", buf[:n], err)
	}
	if out, err := a.Run(ctx, "ip", "-br", "addr", "show", "eth0"); err != nil {
		t.Fatal(err)
	} else if want := "198.18.0.1/24"; !strings.Contains(out, want) {
		t.Fatalf("addr %q lacks %s", out, want)
	}
}
