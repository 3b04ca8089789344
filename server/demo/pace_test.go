package demo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

func TestDue(t *testing.T) {
	cases := []struct {
		rate, total int64
		elapsed     time.Duration
		want        time.Duration
	}{
		{0, 1 << 30, 0, 0},                     // unlimited
		{1000, 500, 0, 500 * time.Millisecond}, // half a second's worth at once
		{1000, 500, 200 * time.Millisecond, 300 * time.Millisecond},
		{1000, 500, 600 * time.Millisecond, 0},                // behind: no wait, never negative
		{1 << 20, 10 << 20, 4 * time.Second, 6 * time.Second}, // 10 MiB at 1 MiB/s
		{3, 10, 0, 3333333333 * time.Nanosecond},              // remainder kept
		{1 << 20, 1 << 50, 0, (1 << 30) * time.Second},        // no overflow for huge totals
	}
	for _, c := range cases {
		if got := due(c.rate, c.total, c.elapsed); got != c.want {
			t.Errorf("due(%d, %d, %v) = %v, want %v", c.rate, c.total, c.elapsed, got, c.want)
		}
	}
}

// fakeClock advances only when the pacer sleeps.
type fakeClock struct {
	now   time.Time
	slept []time.Duration
}

func (f *fakeClock) pacer(rate int64) *pacer {
	return &pacer{rate: rate, start: f.now, now: func() time.Time { return f.now },
		sleep: func(_ context.Context, d time.Duration) error {
			f.slept = append(f.slept, d)
			f.now = f.now.Add(d)
			return nil
		}}
}

func TestPacerKeepsTheRate(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	p := clk.pacer(100 << 10) // 100 KiB/s
	start := clk.now
	for range 200 {
		if err := p.wait(context.Background(), 1468, 0); err != nil {
			t.Fatal(err)
		}
	}
	// 200 blocks of 1468 bytes at 100 KiB/s take 2.867 s of waiting.
	got := clk.now.Sub(start)
	want := time.Duration(float64(200*1468) / float64(100<<10) * float64(time.Second))
	if d := got - want; d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("paced 293600 bytes in %v, want %v", got, want)
	}
	if len(clk.slept) != 200 {
		t.Errorf("%d sleeps, want one per block", len(clk.slept))
	}

	// The limit caps one sleep (TFTP must ACK before the server's timeout).
	clk = &fakeClock{now: time.Unix(1000, 0)}
	p = clk.pacer(1000)
	p.wait(context.Background(), 1468, 500*time.Millisecond)
	if len(clk.slept) != 1 || clk.slept[0] != 500*time.Millisecond {
		t.Errorf("capped sleeps %v, want [500ms]", clk.slept)
	}

	// Rate 0 never sleeps; a nil pacer neither.
	clk = &fakeClock{now: time.Unix(1000, 0)}
	p = clk.pacer(0)
	p.wait(context.Background(), 1<<30, 0)
	var nilPacer *pacer
	nilPacer.wait(context.Background(), 1<<30, 0)
	if len(clk.slept) != 0 {
		t.Errorf("unlimited pacer slept %v", clk.slept)
	}
	if (&pacer{rate: 1000}).chunk() != 1<<10 || (&pacer{rate: 100 << 20}).chunk() != 64<<10 || (&pacer{rate: 200 << 10}).chunk() != 10<<10 {
		t.Error("chunk sizes out of 1 KiB..64 KiB or not rate/20")
	}
}

func TestCopyPacedRealTime(t *testing.T) {
	data := bytes.Repeat([]byte{7}, 96<<10)
	var last int64
	start := time.Now()
	n, err := copyPaced(context.Background(), bytes.NewReader(data), newPacer(384<<10), func(k int64) { last = k })
	el := time.Since(start)
	if err != nil || n != int64(len(data)) || last != n {
		t.Fatalf("copied %d (progress %d), %v; want %d", n, last, err, len(data))
	}
	// 96 KiB at 384 KiB/s: 250 ms.
	if el < 240*time.Millisecond || el > 2*time.Second {
		t.Errorf("took %v, want about 250ms", el)
	}

	// Cancelling stops a slow copy at once.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	n, err = copyPaced(ctx, io.LimitReader(zeros{}, 1<<20), newPacer(4<<10), nil)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second || n >= 1<<20 {
		t.Errorf("cancelled copy: %d bytes, %v after %v", n, err, time.Since(start))
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
