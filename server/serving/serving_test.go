package serving

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

type closer struct{ n int }

func (c *closer) Close() error { c.n++; return nil }

func TestListeners(t *testing.T) {
	var ls Listeners
	a, b := &closer{}, &closer{}
	if !ls.Add(a) || !ls.Add(b) || ls.Closing() {
		t.Fatal("Add before Close refused")
	}
	ls.Remove(a)
	if a.n != 1 {
		t.Errorf("Remove closed it %d times", a.n)
	}
	ls.Close()
	if !ls.Closing() || b.n != 1 || a.n != 1 {
		t.Errorf("Close: closing %v, b closed %d times, a (removed) %d", ls.Closing(), b.n, a.n)
	}
	if ls.Add(&closer{}) {
		t.Error("Add after Close accepted")
	}
}

func TestBackoff(t *testing.T) {
	var b Backoff
	var got []time.Duration
	for range 10 {
		got = append(got, b.Next())
	}
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("pauses %v", got)
		}
	}
	b.Reset()
	if p := b.Next(); p != 5*time.Millisecond {
		t.Errorf("after Reset: %v", p)
	}
}

func TestDrain(t *testing.T) {
	var wg sync.WaitGroup
	if err := Drain(context.Background(), &wg, func() { t.Error("forced with nothing running") }); err != nil {
		t.Fatal(err)
	}
	// Work that ends only when forced.
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		<-stop
		wg.Done()
	}()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	forced := false
	err := Drain(ctx, &wg, func() { forced = true; close(stop) })
	if !errors.Is(err, context.Canceled) || !forced {
		t.Errorf("err %v, forced %v", err, forced)
	}
}
