package initramfs

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
)

// fakeModules makes a modules directory with a modules.dep like the
// kernel's: a -> b c (c depends on d), e has none.
func fakeModules(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "6.1.0-test")
	dep := "kernel/a.ko: kernel/b.ko kernel/c.ko kernel/d.ko\nkernel/b.ko:\nkernel/c.ko: kernel/d.ko\nkernel/d.ko:\nkernel/net/e-x.ko:\n"
	os.MkdirAll(filepath.Join(dir, "kernel", "net"), 0o755)
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644)
	for _, m := range []string{"a", "b", "c", "d", "net/e-x"} {
		os.WriteFile(filepath.Join(dir, "kernel", m+".ko"), []byte("module "+m), 0o644)
	}
	return dir
}

func TestResolveOrder(t *testing.T) {
	dir := fakeModules(t)
	paths, missing, err := Resolve(dir, []string{"a", "e_x", "nope"})
	if err != nil {
		t.Fatal(err)
	}
	// Dependencies before their users: d before c, c and b before a.
	idx := func(p string) int { return slices.Index(paths, p) }
	if len(paths) != 5 || idx("kernel/d.ko") > idx("kernel/c.ko") || idx("kernel/c.ko") > idx("kernel/a.ko") || idx("kernel/b.ko") > idx("kernel/a.ko") {
		t.Fatalf("order %v", paths)
	}
	if len(missing) != 1 || missing[0] != "nope" {
		t.Fatalf("missing %v", missing)
	}
}

func readArchive(t *testing.T, b []byte) map[string]*cpio.Header {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	r := cpio.NewReader(zr)
	out := map[string]*cpio.Header{}
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = h
	}
	return out
}

func TestBuild(t *testing.T) {
	dir := fakeModules(t)
	agent := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(agent, []byte("#!agent"), 0o755)
	var buf bytes.Buffer
	mods, _, err := Build(&buf, Options{Agent: agent, ModulesDir: dir, Modules: []string{"a"}})
	if err != nil || len(mods) != 4 {
		t.Fatalf("build: %v %v", err, mods)
	}
	files := readArchive(t, buf.Bytes())
	if h := files["init"]; h == nil || h.Mode&0o777 != 0o755 || !h.Mode.IsRegular() || h.Size != 7 {
		t.Fatalf("init: %+v", h)
	}
	for _, want := range []string{"lib/modules/6.1.0-test/kernel/a.ko", "lib/modules/6.1.0-test/kernel/d.ko", "dev", "proc", "sys", LoadList} {
		if files[want] == nil {
			t.Errorf("archive lacks %s (has %d entries)", want, len(files))
		}
	}
	if _, _, err := Build(io.Discard, Options{ModulesDir: dir}); err == nil {
		t.Error("built without an agent")
	}
}

// TestHostKernel: the defaults resolve on this machine's own kernel
// (the test script installs linux-image-amd64), network and disk drivers
// with their dependencies.
func TestHostKernel(t *testing.T) {
	vers, _ := filepath.Glob("/lib/modules/*/modules.dep")
	if len(vers) == 0 {
		t.Skip("no /lib/modules here (the test script installs linux-image-amd64)")
	}
	dir := filepath.Dir(vers[0])
	paths, missing, err := Resolve(dir, DefaultModules[:])
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(paths, " ")
	for _, want := range []string{"virtio_net.ko", "virtio_blk.ko", "e1000.ko", "ahci.ko", "libata.ko", "nvme-core.ko"} {
		if !strings.Contains(joined, want) {
			t.Errorf("%s missing from %v (missing names: %v)", want, paths, missing)
		}
	}
}

func TestCached(t *testing.T) {
	dir := fakeModules(t)
	agent := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(agent, []byte("v1"), 0o755)
	cache := t.TempDir()
	o := Options{Agent: agent, ModulesDir: dir, Modules: []string{"a"}}
	p1, err := Cached(cache, o)
	if err != nil {
		t.Fatal(err)
	}
	st1, _ := os.Stat(p1)
	time.Sleep(10 * time.Millisecond)
	if p2, _ := Cached(cache, o); p2 != p1 {
		t.Fatalf("rebuilt without a change: %s %s", p1, p2)
	}
	if st2, _ := os.Stat(p1); !st2.ModTime().Equal(st1.ModTime()) {
		t.Fatal("archive rewritten without a change")
	}
	os.WriteFile(agent, []byte("v2, longer"), 0o755)
	p3, err := Cached(cache, o)
	if err != nil || p3 == p1 {
		t.Fatalf("agent changed but archive kept: %v", err)
	}
	if _, err := os.Stat(p1); !os.IsNotExist(err) {
		t.Errorf("stale archive left: %v", err)
	}
	b, _ := os.ReadFile(p3)
	if h := readArchive(t, b)["init"]; h == nil || h.Size != int64(len("v2, longer")) {
		t.Fatalf("new archive has the old agent: %+v", h)
	}
}
