package agent

import (
	"bytes"
	"fmt"
	"hash"
	"io"
	"os"
)

// checker verifies the chunks written, in a goroutine of its own while
// the next chunks are read and written: it reads each back from the
// target and hashes it. With the image's SHA-256 known (readBackHash),
// the hash is that of what read back, the same as hashing the target
// after the write, in one pass. Without it, the hash is that of the
// bytes received, and what reads back must equal them.
type checker struct {
	f            *os.File
	h            hash.Hash
	readBackHash bool
	fromDevice   bool   // evict each chunk first: read back from the device
	back         []byte // a chunk read back
	free         chan []byte
	work         chan written
	failure      chan struct{} // closed at the first failure
	done         chan error
	err          error // what done said
	waited       bool
}

// written is a chunk at off on the target.
type written struct {
	b   []byte
	off int64
}

// checkerBuffers is how many chunks the reading and writing can be ahead
// of the check, plus one.
const checkerBuffers = 3

func newChecker(f *os.File, h hash.Hash, readBackHash, fromDevice bool, chunk int) *checker {
	c := &checker{
		f: f, h: h, readBackHash: readBackHash, fromDevice: fromDevice,
		back:    make([]byte, chunk),
		free:    make(chan []byte, checkerBuffers),
		work:    make(chan written, checkerBuffers),
		failure: make(chan struct{}),
		done:    make(chan error, 1),
	}
	for range checkerBuffers {
		c.free <- make([]byte, chunk)
	}
	go c.run()
	return c
}

func (c *checker) run() {
	var err error
	for w := range c.work {
		if err == nil {
			if err = c.check(w); err != nil {
				close(c.failure)
			}
		}
		c.free <- w.b[:cap(w.b)]
	}
	if err != nil {
		err = &verifyError{err}
	}
	c.done <- err
}

// verifyError is a failure of the check: not worth another transfer.
type verifyError struct{ err error }

func (e *verifyError) Error() string { return e.err.Error() }
func (e *verifyError) Unwrap() error { return e.err }

func (c *checker) check(w written) error {
	b := c.back[:len(w.b)]
	if c.fromDevice {
		if err := evict(c.f, w.off, int64(len(b))); err != nil {
			return fmt.Errorf("agent: verify %s: %w", c.f.Name(), err)
		}
	}
	if n, err := c.f.ReadAt(b, w.off); n < len(b) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("agent: verify %s: read back at %d: %w", c.f.Name(), w.off, err)
	}
	if c.readBackHash {
		c.h.Write(b)
		return nil
	}
	if !bytes.Equal(b, w.b) {
		return fmt.Errorf("agent: verify %s: %w: what reads back at %d differs from what was written", c.f.Name(), ErrChecksum, w.off)
	}
	c.h.Write(w.b)
	return nil
}

// buffer returns a buffer for the next chunk.
func (c *checker) buffer() []byte { return <-c.free }

// giveBack returns a buffer that was not written.
func (c *checker) giveBack(b []byte) { c.free <- b[:cap(b)] }

// add queues b, just written at off, for the check.
func (c *checker) add(b []byte, off int64) { c.work <- written{b, off} }

// failed reports whether a check failed; wait says how.
func (c *checker) failed() bool {
	select {
	case <-c.failure:
		return true
	default:
		return false
	}
}

// wait returns once every chunk added was checked, with the first
// failure.
func (c *checker) wait() error {
	if !c.waited {
		c.waited = true
		close(c.work)
		c.err = <-c.done
	}
	return c.err
}
