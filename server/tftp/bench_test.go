package tftp

import (
	"bytes"
	"strconv"
	"testing"
	"time"
)

// BenchmarkTransfer64MiB reports loopback throughput of a 64 MiB file
// with the test client, lock-step and windowed.
func BenchmarkTransfer64MiB(b *testing.B) {
	ts := startServer(b, nil)
	want := ts.file(b, "big", 64<<20)
	for _, c := range []struct{ blksize, window int }{{512, 1}, {1468, 1}, {512, 16}, {1468, 16}, {8192, 16}} {
		b.Run("blksize="+strconv.Itoa(c.blksize)+"/window="+strconv.Itoa(c.window), func(b *testing.B) {
			b.SetBytes(int64(len(want)))
			for b.Loop() {
				start := time.Now()
				got, err := rawGet(ts.addr, "big", rawOpts{blksize: c.blksize, window: c.window})
				if err != nil {
					b.Fatal(err)
				}
				if !bytes.Equal(got.data, want) {
					b.Fatal("data differs")
				}
				b.ReportMetric(float64(len(want))/time.Since(start).Seconds()/(1<<20), "MiB/s")
			}
		})
	}
}
