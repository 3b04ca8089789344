package agent

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPrefixHash: the hash follows advance in steps of any size (not
// past it) and equals the file's SHA-256; a file shorter than the size
// is a read error; abandon ends it without a result.
func TestPrefixHash(t *testing.T) {
	data := make([]byte, 3<<20+12345)
	rand.Read(data)
	path := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	p := newPrefixHash(f, int64(len(data)), true)
	for _, n := range []int64{100, 100, 5 << 20 >> 2, 2 << 20, 3 << 20} {
		p.advance(n)
	}
	select {
	case err := <-p.done:
		t.Fatalf("done (%v) before the whole file was written", err)
	case <-time.After(50 * time.Millisecond):
	}
	p.advance(int64(len(data)))
	if err := <-p.done; err != nil {
		t.Fatal(err)
	}
	if got, want := p.h.Sum(nil), sha256.Sum256(data); string(got) != string(want[:]) {
		t.Error("hash differs from the file's")
	}

	short := newPrefixHash(f, int64(len(data))+1, true)
	short.advance(int64(len(data)) + 1)
	if err := <-short.done; !errors.Is(err, io.EOF) {
		t.Errorf("short file: %v", err)
	}

	gone := newPrefixHash(f, int64(len(data)), true)
	gone.advance(10)
	gone.abandon()
	select {
	case err := <-gone.done:
		t.Errorf("abandoned hash reported %v", err)
	case <-time.After(50 * time.Millisecond):
	}
}
