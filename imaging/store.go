package imaging

import (
	"fmt"
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
	Path        string `json:"path"`        // File with backslashes, as Windows clients want it: relative to the image share (images_dir), e.g. Win11\install.wim
	Kind        string `json:"kind"`        // "wim" or "raw"
	Compression string `json:"compression"` // raw images: "", "zstd" or "gzip"
	SHA256      string `json:"sha256"`      // hex sha256 of the uncompressed image (from the manifest), or ""
	Group       string `json:"group"`       // image group (WDS); "" means the default group
	FileSize    int64  `json:"file_size"`   // size of the file on disk
	TargetDisk  string `json:"target_disk"` // raw images: the manifest's target disk hint, or ""
}

// IsImage reports whether name has an image file's suffix: .img, .img.zst,
// .img.gz or .wim, in any case.
func IsImage(name string) bool {
	lower := strings.ToLower(name)
	for _, s := range [...]string{".img", ".img.zst", ".img.gz", ".wim"} {
		if strings.HasSuffix(lower, s) {
			return true
		}
	}
	return false
}

// Scan lists the images in dir and its subdirectories (a missing dir is
// an empty store), as Catalog.List does; the problems are dropped.
func Scan(dir string) ([]Image, error) {
	return (&Catalog{Dir: dir}).List()
}

// Summary describes the store in a few words for the console header, as
// Catalog.Summary does. A long-lived Catalog is cheaper to ask again.
func Summary(dir string) string {
	return (&Catalog{Dir: dir}).Summary()
}

// SizeString shows a byte count in binary units: "512B", "1.5MiB".
func SizeString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	f, units := float64(n), "KMGTPE"
	i := -1
	for f >= unit && i < len(units)-1 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f%ciB", f, units[i])
}
