package main

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuf is a goroutine-safe output.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestConsolesChoose: the list goes to every console, a wrong answer is
// explained, and the first valid answer from any console wins.
func TestConsolesChoose(t *testing.T) {
	var screen, serial syncBuf
	r1, w1 := io.Pipe()
	r2, w2 := io.Pipe()
	defer w1.Close()
	defer w2.Close()
	c := newConsoles([]io.Writer{&screen, &serial}, []io.Reader{r1, r2})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list := []choice{{Name: "Debian", Description: "base system", Size: 2 << 30}, {Name: "Win\x1b[2J11", Size: 0}}
	got := make(chan int, 1)
	go func() {
		n, err := c.choose(ctx, list)
		if err != nil {
			t.Error(err)
		}
		got <- n
	}()
	io.WriteString(w2, "7\n")
	waitFor(t, 5*time.Second, "the wrong answer explained", func() bool { return strings.Contains(serial.String(), "type a number") })
	io.WriteString(w1, " 2 \n")
	if n := <-got; n != 1 {
		t.Fatalf("chose %d, want 1", n)
	}
	for _, out := range []string{screen.String(), serial.String()} {
		if !strings.Contains(out, "Debian") || !strings.Contains(out, "2.0GiB") || !strings.Contains(out, "type a number from 1 to 2") {
			t.Errorf("console shows:\n%s", out)
		}
		if strings.Contains(out, "\x1b") {
			t.Errorf("a control sequence from the network reached the console: %q", out)
		}
	}
	if _, err := c.choose(ctx, nil); err == nil {
		t.Error("an empty list gave no error")
	}
}

// TestConsolesSecret: echo goes off while a password is typed, and back.
func TestConsolesSecret(t *testing.T) {
	var out syncBuf
	r, w := io.Pipe()
	defer w.Close()
	c := newConsoles([]io.Writer{&out}, []io.Reader{r})
	var states []bool
	c.quiet = func(off bool) { states = append(states, off) }
	go io.WriteString(w, "s3cret\n")
	pw, err := c.askSecret(context.Background(), "password: ")
	if err != nil || pw != "s3cret" {
		t.Fatalf("%q %v", pw, err)
	}
	if len(states) != 2 || !states[0] || states[1] {
		t.Errorf("echo states %v", states)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.ask(ctx, "account: ", nil); err == nil {
		t.Error("a cancelled prompt returned")
	}
}
