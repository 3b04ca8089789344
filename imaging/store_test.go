package imaging

import (
	"os"
	"path/filepath"
	"testing"
)

func TestScanAndSummary(t *testing.T) {
	dir := t.TempDir()
	if got := Summary(filepath.Join(dir, "missing")); got != "none in missing" {
		t.Errorf("missing dir: %q", got)
	}
	// c.wim is zeros, not a WIM: a problem, not an image.
	for name, size := range map[string]int{"a.img": 1024, "b.IMG.ZST": 2048, "c.wim": 1 << 20, "notes.txt": 5, "d.img.gz": 0} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "sub.img"), 0o755)
	list, err := Scan(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].Name != "a.img" || list[1].Name != "b.IMG.ZST" || list[1].Size != 2048 || list[2].Name != "d.img.gz" {
		t.Fatalf("scan = %+v", list)
	}
	if got := Summary(dir); got != "3 images, 3.0KiB, 1 problem" {
		t.Errorf("summary = %q", got)
	}
	// A real WIM counts each of its images, at its TOTALBYTES.
	two, err := os.ReadFile(twoWIM)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "c.wim"), two, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Summary(dir); got != "5 images, 3.0KiB" {
		t.Errorf("summary = %q", got)
	}
	if got := Summary(filepath.Join(dir, "a.img")); got[:12] != "unreadable: " {
		t.Errorf("summary of a file = %q", got)
	}
	for name, want := range map[string]bool{"x.img": true, "X.IMG.GZ": true, "a.img.zst": true, "w.Wim": true, "x.img.json": false, "x.iso": false, "img": false} {
		if IsImage(name) != want {
			t.Errorf("IsImage(%q) = %v", name, !want)
		}
	}
}
