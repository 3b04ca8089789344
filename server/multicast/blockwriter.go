package multicast

import (
	"fmt"
	"io"
)

// coalesceMax is the most bytes gathered into one write.
const coalesceMax = 256 << 10

// blockWriter gathers blocks that arrive one after another at adjacent
// offsets into one WriteAt of up to coalesceMax bytes: a write per block
// would cost a system call per packet. The first error sticks.
type blockWriter struct {
	w   io.WriterAt
	buf []byte
	off int64 // target offset of buf[0]
	err error
}

func newBlockWriter(w io.WriterAt) *blockWriter {
	return &blockWriter{w: w, buf: make([]byte, 0, coalesceMax)}
}

// write queues p for offset off, writing out what was gathered first
// when p does not follow it or would not fit.
func (b *blockWriter) write(off int64, p []byte) {
	if len(b.buf) > 0 && (off != b.off+int64(len(b.buf)) || len(b.buf)+len(p) > cap(b.buf)) {
		b.flush()
	}
	if b.err != nil {
		return
	}
	if len(b.buf) == 0 {
		b.off = off
	}
	b.buf = append(b.buf, p...)
}

// flush writes out what was gathered and returns the first error.
func (b *blockWriter) flush() error {
	if len(b.buf) > 0 && b.err == nil {
		if _, err := b.w.WriteAt(b.buf, b.off); err != nil {
			b.err = fmt.Errorf("multicast: write %d bytes at %d: %w", len(b.buf), b.off, err)
		}
	}
	b.buf = b.buf[:0]
	return b.err
}
