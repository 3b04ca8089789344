package pathfold

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFind(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "Images", "Lab"), 0o755)
	os.WriteFile(filepath.Join(dir, "Images", "Lab", "Install.WIM"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "Images", "a.img"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "Images", "A.img"), nil, 0o644)
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for in, want := range map[string]string{
		"images/lab/install.wim": "Images/Lab/Install.WIM",
		"IMAGES/LAB/INSTALL.WIM": "Images/Lab/Install.WIM",
		"Images/A.img":           "Images/A.img", // the exact spelling wins
		"Images/a.img":           "Images/a.img",
	} {
		if got, ok := Find(r, in); !ok || got != want {
			t.Errorf("Find(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"images/missing", "../etc/passwd", "images/lab/install.wim/x"} {
		if got, ok := Find(r, in); ok {
			t.Errorf("Find(%q) = %q", in, got)
		}
	}
}
