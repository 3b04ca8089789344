package pid1

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Disk is a whole block device the agent could write to.
type Disk struct {
	Name      string // sda, vda, nvme0n1
	Size      int64  // bytes
	Removable bool
	ReadOnly  bool
}

// Disks lists the whole disks under sysBlock (normally /sys/block),
// leaving out loop, RAM, optical and device-mapper devices. Sizes come
// from the "size" attribute, in 512-byte sectors whatever the device's
// own sector size (the kernel's block/ sysfs ABI).
func Disks(sysBlock string) ([]Disk, error) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, fmt.Errorf("pid1: %w", err)
	}
	var out []Disk
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") || strings.HasPrefix(name, "sr") ||
			strings.HasPrefix(name, "dm-") || strings.HasPrefix(name, "zram") || strings.HasPrefix(name, "md") {
			continue
		}
		read := func(attr string) int64 {
			b, err := os.ReadFile(filepath.Join(sysBlock, name, attr))
			if err != nil {
				return 0
			}
			v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			return v
		}
		sectors := read("size")
		if sectors <= 0 {
			continue // no medium
		}
		out = append(out, Disk{Name: name, Size: sectors * 512, Removable: read("removable") == 1, ReadOnly: read("ro") == 1})
	}
	return out, nil
}

// PickDisk chooses where an image goes: the hint (a device name or
// /dev path) when given, else the largest writable non-removable disk.
// The disk must hold need bytes.
func PickDisk(disks []Disk, hint string, need int64) (Disk, error) {
	if hint != "" {
		name := strings.TrimPrefix(hint, "/dev/")
		for _, d := range disks {
			if d.Name == name {
				if d.ReadOnly {
					return d, fmt.Errorf("pid1: %s is read-only", hint)
				}
				if need > 0 && d.Size < need {
					return d, fmt.Errorf("pid1: %s holds %d bytes, the image needs %d", hint, d.Size, need)
				}
				return d, nil
			}
		}
		return Disk{}, fmt.Errorf("pid1: no disk %s (have %s)", hint, names(disks))
	}
	var best Disk
	for _, d := range disks {
		if !d.Removable && !d.ReadOnly && d.Size > best.Size {
			best = d
		}
	}
	if best.Name == "" {
		return Disk{}, fmt.Errorf("pid1: no fixed writable disk (have %s)", names(disks))
	}
	if need > 0 && best.Size < need {
		return best, fmt.Errorf("pid1: the largest disk, %s, holds %d bytes; the image needs %d", best.Name, best.Size, need)
	}
	return best, nil
}

func names(disks []Disk) string {
	if len(disks) == 0 {
		return "none"
	}
	var n []string
	for _, d := range disks {
		n = append(n, d.Name)
	}
	return strings.Join(n, ", ")
}
