//go:build linux

package agent

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resident counts the pages of f's first n bytes in the page cache
// (mincore(2) on a mapping).
func resident(t *testing.T, f *os.File, n int) int {
	t.Helper()
	m, err := unix.Mmap(int(f.Fd()), 0, n, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (n+page-1)/page)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(n), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	c := 0
	for _, v := range vec {
		c += int(v & 1)
	}
	return c
}

// TestEvict: after evict, what was just written is on the device and no
// longer in the page cache, so the read-back reads the device; the bytes
// read back are the ones written. Needs a file system with writeback (not
// tmpfs, whose pages are its storage).
func TestEvict(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC {
		t.Skipf("%s is on tmpfs: its pages cannot be evicted", dir)
	}
	const size = 8 << 20
	data := make([]byte, size)
	rand.Read(data)
	f, err := os.OpenFile(filepath.Join(dir, "target"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	startWriteback(f, 0, size)
	before := resident(t, f, size)
	// Evict the first half only.
	if err := evict(f, 0, size/2); err != nil {
		t.Fatal(err)
	}
	pages := size / os.Getpagesize()
	firstHalf, all := resident(t, f, size/2), resident(t, f, size)
	t.Logf("resident pages: %d of %d after the write, %d of the first half and %d in all after evicting it", before, pages, firstHalf, all)
	if before == 0 {
		t.Skip("the written pages were not in the cache to begin with")
	}
	if firstHalf != 0 {
		t.Errorf("%d pages of the evicted half still cached", firstHalf)
	}
	if all-firstHalf < pages/2*9/10 {
		t.Errorf("the second half was evicted too: %d pages left", all-firstHalf)
	}
	back := make([]byte, size)
	if _, err := f.ReadAt(back, 0); err != nil || !bytes.Equal(back, data) {
		t.Fatalf("read back: %v, equal %v", err, bytes.Equal(back, data))
	}
}
