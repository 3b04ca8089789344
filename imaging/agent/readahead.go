package agent

import (
	"errors"
	"io"
)

// readAhead reads a section of an io.ReaderAt in chunks, several reads
// outstanding, and returns the bytes in order. go-smb2 sends one READ
// per ReadAt and waits for its response: read one at a time, a transfer
// pays a round trip per chunk and the server idles while the client
// works. With reads outstanding both sides stay busy.
//
// A failed or short read ends the stream after the bytes before it: the
// error, or io.EOF when the file ended early. Reads still outstanding at
// Close finish on their own (they fail once the connection is closed);
// their buffers are not reused.
type readAhead struct {
	r     io.ReaderAt
	off   int64 // where the next read starts
	end   int64
	chunk int
	depth int

	pending []chan chunkResult // outstanding reads, in order
	free    [][]byte           // buffers no read uses
	cur     []byte             // what is left of the chunk being returned
	curBuf  []byte             // the buffer of cur, free once cur is read
	err     error              // returned once cur is read
}

type chunkResult struct {
	b   []byte
	n   int
	err error
}

// newReadAhead reads r from off to off+n, in chunks of chunk bytes with
// up to depth reads outstanding.
func newReadAhead(r io.ReaderAt, off, n int64, chunk, depth int) *readAhead {
	return &readAhead{r: r, off: off, end: off + n, chunk: chunk, depth: max(depth, 1)}
}

// fill starts reads until depth are outstanding or the whole section
// was asked for; none after a failure.
func (ra *readAhead) fill() {
	for len(ra.pending) < ra.depth && ra.off < ra.end && ra.err == nil {
		var b []byte
		if k := len(ra.free); k > 0 {
			b, ra.free = ra.free[k-1], ra.free[:k-1]
		} else {
			b = make([]byte, ra.chunk)
		}
		b = b[:min(int64(ra.chunk), ra.end-ra.off)]
		ch := make(chan chunkResult, 1)
		go func(off int64) {
			n, err := ra.r.ReadAt(b, off)
			ch <- chunkResult{b: b, n: n, err: err}
		}(ra.off)
		ra.off += int64(len(b))
		ra.pending = append(ra.pending, ch)
	}
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.curBuf != nil {
			ra.free = append(ra.free, ra.curBuf[:cap(ra.curBuf)])
			ra.curBuf = nil
		}
		if ra.err != nil {
			return 0, ra.err
		}
		ra.fill()
		if len(ra.pending) == 0 {
			return 0, io.EOF
		}
		res := <-ra.pending[0]
		ra.pending = ra.pending[1:]
		ra.cur, ra.curBuf = res.b[:res.n], res.b
		switch {
		case res.err == nil && res.n == len(res.b):
		case res.err == nil || errors.Is(res.err, io.EOF):
			ra.err = io.EOF
		default:
			ra.err = res.err
		}
		ra.fill()
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close drops the reads outstanding and the buffers.
func (ra *readAhead) Close() error {
	ra.pending, ra.free, ra.cur, ra.curBuf = nil, nil, nil, nil
	if ra.err == nil {
		ra.err = errors.New("agent: read-ahead closed")
	}
	return nil
}
