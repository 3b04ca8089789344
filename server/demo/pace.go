package demo

import (
	"context"
	"io"
	"time"
)

// pacer caps a transfer at rate bytes per second: after n bytes it lets the
// caller go on no earlier than start + n/rate. A zero rate never waits.
type pacer struct {
	rate  int64
	start time.Time
	total int64
	now   func() time.Time
	sleep func(context.Context, time.Duration) error
}

func newPacer(rate int64) *pacer {
	return &pacer{rate: rate, start: time.Now(), now: time.Now, sleep: sleepCtx}
}

// due is how long to wait after total bytes when elapsed time has passed
// since the start; never negative.
func due(rate, total int64, elapsed time.Duration) time.Duration {
	if rate <= 0 {
		return 0
	}
	// total/rate seconds, computed without overflow for any file size.
	want := time.Duration(total/rate)*time.Second + time.Duration(total%rate)*time.Second/time.Duration(rate)
	if d := want - elapsed; d > 0 {
		return d
	}
	return 0
}

// wait accounts n more bytes and sleeps until the rate allows them, but at
// most limit (0: no limit) in one call.
func (p *pacer) wait(ctx context.Context, n int, limit time.Duration) error {
	if p == nil || p.rate <= 0 {
		return ctx.Err()
	}
	p.total += int64(n)
	d := due(p.rate, p.total, p.now().Sub(p.start))
	if limit > 0 && d > limit {
		d = limit
	}
	if d <= 0 {
		return ctx.Err()
	}
	return p.sleep(ctx, d)
}

// chunk is the read size that keeps a paced download smooth: about a
// twentieth of a second's worth, 1 KiB to 64 KiB.
func (p *pacer) chunk() int {
	if p == nil || p.rate <= 0 {
		return 64 << 10
	}
	return int(min(max(p.rate/20, 1<<10), 64<<10))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// copyPaced reads r to the end, discarding the data, at most at p's rate,
// and calls progress (if not nil) after every chunk with the bytes so far.
func copyPaced(ctx context.Context, r io.Reader, p *pacer, progress func(int64)) (int64, error) {
	buf := make([]byte, p.chunk())
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if k > 0 {
			if progress != nil {
				progress(n)
			}
			if werr := p.wait(ctx, k, 0); werr != nil {
				return n, werr
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
