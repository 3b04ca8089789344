package imaging

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// AddOptions are the manifest fields Add writes besides size and sha256,
// which it computes. Every field is optional; they are validated as
// ParseManifest validates a manifest (arch amd64, x86, arm64, arm or ia64;
// no control characters in name, arch and target disk).
type AddOptions struct {
	Name        string
	Description string
	Arch        string
	TargetDisk  string

	// Progress, if set, is called on the calling goroutine as the file is
	// read: done is the bytes of the file read so far and total its size
	// (the compressed bytes for .img.zst and .img.gz, since the
	// uncompressed size is what is being measured). The last call has
	// done == total.
	Progress func(done, total int64)
}

// AddResult is what Add wrote.
type AddResult struct {
	Image        string   // the image file, as given
	ManifestPath string   // the manifest written beside it: Image + ManifestSuffix
	Manifest     Manifest // as written (and as ParseManifest reads it back)
	Compression  string   // "", "zstd" or "gzip"
	FileSize     int64    // bytes on disk
	Replaced     bool     // a manifest was there before and has been replaced
}

// ErrWIM refuses a WIM in Add: a WIM carries its own metadata.
var ErrWIM = errors.New("a WIM carries its own names, descriptions and sizes and takes no manifest")

// ErrNotRawImage refuses a file that is not a raw image by its suffix.
var ErrNotRawImage = errors.New("not a raw image: want .img, .img.zst or .img.gz")

// progressStep is how much of the uncompressed stream is hashed between
// two Progress calls.
const progressStep = 1 << 20

// Add describes the raw image at path (.img, .img.zst or .img.gz, in any
// case) with a manifest beside it, path + ".json": it reads the whole
// image, decompressing it, and records the size and sha256 of the
// uncompressed stream together with opts. The manifest is written
// atomically (a dot-named temporary file, fsync, rename, fsync of the
// directory), so a crash leaves the old manifest or the new one, and the
// catalogue never lists the temporary file. An existing manifest is
// replaced. A WIM, another suffix, an empty image, or a compressed stream
// that does not decode are refused and nothing is written. The file may
// be anywhere; the catalogue lists it once it is inside images_dir.
func Add(path string, opts AddOptions) (AddResult, error) {
	res := AddResult{Image: path, ManifestPath: path + ManifestSuffix, Compression: compressionOf(path)}
	fail := func(err error) (AddResult, error) { return AddResult{}, fmt.Errorf("imaging: add %s: %w", path, err) }
	switch {
	case isWIMName(path):
		return fail(ErrWIM)
	case !IsImage(path):
		return fail(ErrNotRawImage)
	}
	// Check the options before the long read.
	probe := Manifest{Name: opts.Name, Description: opts.Description, Arch: opts.Arch, TargetDisk: opts.TargetDisk}
	if _, err := encodeManifest(res.ManifestPath, probe); err != nil {
		return fail(err)
	}

	f, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if !before.Mode().IsRegular() {
		return fail(fmt.Errorf("not a regular file (%v)", before.Mode().Type()))
	}
	res.FileSize = before.Size()

	size, sum, err := measure(f, res.Compression, res.FileSize, opts.Progress)
	if err != nil {
		return fail(err)
	}
	if size == 0 {
		return fail(errors.New("the image is empty"))
	}
	after, err := os.Stat(path)
	if err != nil {
		return fail(err)
	}
	if after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) || !os.SameFile(before, after) {
		return fail(errors.New("the file changed while it was read; try again once it is complete"))
	}

	m := probe
	m.Size, m.SHA256 = size, sum
	data, err := encodeManifest(res.ManifestPath, m)
	if err != nil {
		return fail(err)
	}
	if _, err := os.Lstat(res.ManifestPath); err == nil {
		res.Replaced = true
	}
	if err := writeFileAtomic(res.ManifestPath, data); err != nil {
		return fail(err)
	}
	res.Manifest, _ = ParseManifest(res.ManifestPath, data) // checked by encodeManifest
	return res, nil
}

// measure returns the size and hex sha256 of the uncompressed stream in f.
func measure(f *os.File, compression string, fileSize int64, progress func(done, total int64)) (int64, string, error) {
	var read atomic.Int64 // the zstd decoder may read ahead on another goroutine
	src := &countingReader{r: f, n: &read}
	var r io.Reader = src
	switch compression {
	case "zstd":
		// Windows up to 2 GiB, as "zstd --long=31" writes.
		d, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<31))
		if err != nil {
			return 0, "", fmt.Errorf("zstd: %w", err)
		}
		defer d.Close()
		r = d
	case "gzip":
		z, err := gzip.NewReader(src)
		if err != nil {
			return 0, "", fmt.Errorf("gzip: %w", err)
		}
		defer z.Close()
		r = z
	}
	h := sha256.New()
	var size int64
	for {
		n, err := io.CopyN(h, r, progressStep)
		size += n
		if progress != nil {
			progress(min(read.Load(), fileSize), fileSize)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if compression != "" {
				return 0, "", fmt.Errorf("%s stream corrupt after %d uncompressed bytes: %w", compression, size, err)
			}
			return 0, "", err
		}
	}
	if progress != nil {
		progress(fileSize, fileSize)
	}
	return size, hex.EncodeToString(h.Sum(nil)), nil
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// manifestJSON is Manifest as Add writes it: the keys in documentation
// order, empty ones left out.
type manifestJSON struct {
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	Arch        string `json:"arch,omitempty"`
	Size        int64  `json:"size,omitempty"`
	SHA256      string `json:"sha256,omitempty"`
	TargetDisk  string `json:"target_disk,omitempty"`
}

// encodeManifest renders m and checks that ParseManifest accepts it.
func encodeManifest(file string, m Manifest) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(manifestJSON(m)); err != nil {
		return nil, err
	}
	if _, err := ParseManifest(file, buf.Bytes()); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeFileAtomic replaces name with data: a temporary file beside it
// (named with a leading dot, which the catalogue skips), fsync, rename,
// then fsync of the directory so the rename survives a crash.
func writeFileAtomic(name string, data []byte) error {
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+strings.TrimPrefix(base, ".")+".tmp-*")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return err
	}
	done = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
