package imaging

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Image is one file in the image store.
type Image struct {
	Name string // file name relative to the store
	Size int64
}

// imageSuffixes are the file kinds the store serves.
var imageSuffixes = []string{".img", ".img.zst", ".img.gz", ".wim"}

// IsImage reports whether name has an image file's suffix.
func IsImage(name string) bool {
	lower := strings.ToLower(name)
	for _, s := range imageSuffixes {
		if strings.HasSuffix(lower, s) {
			return true
		}
	}
	return false
}

// Scan lists the images directly in dir (a missing dir is an empty store).
func Scan(dir string) ([]Image, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("imaging: %w", err)
	}
	var out []Image
	for _, e := range entries {
		if !e.Type().IsRegular() || !IsImage(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed while we looked
		}
		out = append(out, Image{Name: e.Name(), Size: info.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Summary describes the store in a few words for the console header.
func Summary(dir string) string {
	list, err := Scan(dir)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	if len(list) == 0 {
		return "none in " + filepath.Base(dir)
	}
	var total int64
	for _, im := range list {
		total += im.Size
	}
	noun := "images"
	if len(list) == 1 {
		noun = "image"
	}
	return fmt.Sprintf("%d %s, %s", len(list), noun, sizeString(total))
}

func sizeString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	f, units := float64(n), "KMGTP"
	i := -1
	for f >= unit && i < len(units)-1 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f%c", f, units[i])
}
