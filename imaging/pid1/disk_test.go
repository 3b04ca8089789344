package pid1

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fakeSysBlock(t *testing.T, disks map[string][3]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, attrs := range disks {
		os.MkdirAll(filepath.Join(dir, name), 0o755)
		os.WriteFile(filepath.Join(dir, name, "size"), []byte(attrs[0]+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, name, "removable"), []byte(attrs[1]+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, name, "ro"), []byte(attrs[2]+"\n"), 0o644)
	}
	return dir
}

func TestPickDisk(t *testing.T) {
	dir := fakeSysBlock(t, map[string][3]string{
		"vda":     {"2097152", "0", "0"},  // 1 GiB
		"sda":     {"41943040", "0", "0"}, // 20 GiB
		"sdb":     {"83886080", "1", "0"}, // 40 GiB USB stick
		"sdc":     {"99999999", "0", "1"}, // read-only
		"loop0":   {"100", "0", "0"},
		"sr0":     {"0", "1", "0"},
		"nvme0n1": {"0", "0", "0"}, // no medium
	})
	disks, err := Disks(dir)
	if err != nil || len(disks) != 4 {
		t.Fatalf("disks %v %v", disks, err)
	}
	if d, err := PickDisk(disks, "", 1<<30); err != nil || d.Name != "sda" {
		t.Fatalf("largest fixed: %v %v", d, err)
	}
	if d, err := PickDisk(disks, "/dev/vda", 1<<20); err != nil || d.Name != "vda" || d.Size != 1<<30 {
		t.Fatalf("hint: %v %v", d, err)
	}
	for _, tc := range []struct {
		hint string
		need int64
		want string
	}{
		{"/dev/vda", 2 << 30, "needs"},
		{"sdc", 1, "read-only"},
		{"sdz", 1, "no disk sdz"},
		{"", 100 << 30, "largest disk, sda"},
	} {
		if _, err := PickDisk(disks, tc.hint, tc.need); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("PickDisk(%q, %d) = %v, want %q", tc.hint, tc.need, err, tc.want)
		}
	}
	if _, err := PickDisk(nil, "", 1); err == nil || !strings.Contains(err.Error(), "none") {
		t.Errorf("no disks: %v", err)
	}
}
