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
	if len(list) != 4 || list[0].Name != "a.img" || list[1].Name != "b.IMG.ZST" || list[1].Size != 2048 {
		t.Fatalf("scan = %+v", list)
	}
	if got := Summary(dir); got != "4 images, 1.0M" {
		t.Errorf("summary = %q", got)
	}
}
