// Package serving holds what netdeploy's servers share around their
// sockets, in the net/http shape: the set of listeners that Shutdown
// closes, the pause after a transient accept or read error, and the wait
// for work in progress with a forced end when Shutdown's context ends.
package serving

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Listeners is a server's listening sockets and whether it is shutting
// down. The zero value is ready.
type Listeners struct {
	closing atomic.Bool
	mu      sync.Mutex
	set     map[io.Closer]struct{}
}

// Add registers l. It returns false once Close was called: Serve after
// Shutdown closes l and returns nil.
func (ls *Listeners) Add(l io.Closer) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.closing.Load() {
		return false
	}
	if ls.set == nil {
		ls.set = map[io.Closer]struct{}{}
	}
	ls.set[l] = struct{}{}
	return true
}

// Remove forgets l and closes it (Serve's deferred call).
func (ls *Listeners) Remove(l io.Closer) {
	ls.mu.Lock()
	delete(ls.set, l)
	ls.mu.Unlock()
	l.Close()
}

// Close marks the server as shutting down and closes every listener, so
// that their Serve loops return.
func (ls *Listeners) Close() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.closing.Store(true)
	for l := range ls.set {
		l.Close()
	}
}

// Closing reports whether Close was called. It takes no lock the caller
// may hold.
func (ls *Listeners) Closing() bool { return ls.closing.Load() }

// Backoff is the pause after a transient accept or read error (EMFILE,
// ENOBUFS): doubling from 5 ms up to 1 s, as net/http's Serve does.
type Backoff struct{ pause time.Duration }

// Next returns the next pause.
func (b *Backoff) Next() time.Duration {
	b.pause = min(max(2*b.pause, 5*time.Millisecond), time.Second)
	return b.pause
}

// Reset starts again from the shortest pause, after a success.
func (b *Backoff) Reset() { b.pause = 0 }

// Drain waits for wg and returns nil. When ctx ends first it calls force
// (which closes what is still running), waits for wg again and returns
// ctx's error.
func Drain(ctx context.Context, wg *sync.WaitGroup, force func()) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	force()
	<-done
	return ctx.Err()
}
