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

// Image is one entry of the image store: a raw disk image, or one image
// (index) inside a WIM file.
type Image struct {
	Name        string `json:"name"`        // display name (the WIM's NAME, the manifest's name, else the file name)
	Description string `json:"description"` // free text
	Arch        string `json:"arch"`        // "amd64", "x86", "arm64", "arm", "ia64", or "" when unknown
	Size        int64  `json:"size"`        // bytes: the WIM image's TOTALBYTES, a raw image's uncompressed size if known, else the file size
	Index       int    `json:"index"`       // image index inside a WIM (1-based); 1 for raw images
	File        string `json:"file"`        // path of the file relative to images_dir, forward slashes
	Path        string `json:"path"`        // path relative to the image share as Windows clients want it: backslashes, e.g. Images\win11.wim
	Kind        string `json:"kind"`        // "wim" or "raw"
	Compression string `json:"compression"` // raw images: "", "zstd" or "gzip"
	SHA256      string `json:"sha256"`      // hex sha256 of the uncompressed image (from the manifest), or ""
	Group       string `json:"group"`       // image group (WDS); "" means the default group
	FileSize    int64  `json:"file_size"`   // size of the file on disk
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
		out = append(out, Image{Name: e.Name(), File: e.Name(), Size: info.Size(), FileSize: info.Size()})
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
