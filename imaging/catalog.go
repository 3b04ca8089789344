package imaging

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// Kinds of Image.
const (
	KindWIM = "wim"
	KindRaw = "raw"
)

// Problem is a file of the store that is not served as it stands: a WIM
// that cannot be read, a refused manifest, a symbolic link leading out of
// the store, a subdirectory that cannot be listed.
type Problem struct {
	File string // relative to the store, forward slashes
	Err  error
}

func (p Problem) Error() string { return p.File + ": " + p.Err.Error() }

// Catalog is the image store in Dir (images_dir); see the package
// documentation for what it lists. A Catalog with Dir set is ready to use
// and safe for concurrent use; it must not be copied once used. Each Scan
// walks Dir again, so images added or removed show up at the next call,
// but a WIM or a manifest is parsed again only when its size, modification
// time (or, on Linux, inode or change time) differ from the last reading.
type Catalog struct {
	Dir string

	mu    sync.Mutex
	cache map[string]cacheEntry // by path relative to Dir
	reads int                   // files parsed so far (WIMs and manifests)
}

// fileKey identifies one version of a file.
type fileKey struct {
	size  int64
	mtime int64
	id    fileID
}

func keyOf(fi fs.FileInfo) fileKey {
	return fileKey{size: fi.Size(), mtime: fi.ModTime().UnixNano(), id: fileIDOf(fi)}
}

// cacheEntry is a parsed WIM (images) or manifest (man), or why it failed.
type cacheEntry struct {
	key    fileKey
	images []Image
	man    Manifest
	err    error
}

// List returns the images of the store, sorted by File then Index. A
// missing Dir is an empty store. Files that cannot be served are left out;
// Scan says why.
func (c *Catalog) List() ([]Image, error) {
	list, _, err := c.Scan()
	return list, err
}

// Scan returns the images of the store (as List) and the problems found
// on the way, sorted by File. The error is for the store as a whole (Dir
// unreadable); a bad file is a Problem, never an error.
func (c *Catalog) Scan() ([]Image, []Problem, error) {
	if c.Dir == "" {
		return nil, nil, errors.New("imaging: no image directory given (images_dir)")
	}
	root, err := os.OpenRoot(c.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		c.prune(nil)
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("imaging: %w", err)
	}
	defer root.Close()

	w := walker{root: root, manifests: map[string]bool{}, named: map[string]bool{}}
	if err := fs.WalkDir(root.FS(), ".", w.visit); err != nil {
		return nil, nil, fmt.Errorf("imaging: %w", err)
	}

	var list []Image
	for _, p := range w.images {
		if isWIMName(p) {
			ims, err := c.readWIM(root, p)
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed while we looked
			}
			if err != nil {
				w.problem(p, err)
				continue
			}
			list = append(list, ims...)
			continue
		}
		im, ok := c.raw(&w, p)
		if ok {
			list = append(list, im)
		}
	}
	for mp := range w.manifests {
		img := strings.TrimSuffix(mp, ManifestSuffix)
		switch {
		case w.named[img] && isWIMName(img):
			w.problem(mp, &ManifestError{File: mp, Err: fmt.Errorf("%w: manifests are read for raw images only (.img, .img.zst, .img.gz)", ErrBadManifest)})
		case !w.named[img]:
			w.problem(mp, &ManifestError{File: mp, Err: fmt.Errorf("%w: no %s beside it", ErrLonelyManifest, path.Base(img))})
		}
	}
	c.prune(w.named)

	sort.Slice(list, func(i, j int) bool {
		if list[i].File != list[j].File {
			return list[i].File < list[j].File
		}
		return list[i].Index < list[j].Index
	})
	sort.SliceStable(w.problems, func(i, j int) bool { return w.problems[i].File < w.problems[j].File })
	return list, w.problems, nil
}

// walker collects the store's files during one Scan.
type walker struct {
	root      *os.Root
	images    []string        // image files, relative paths
	manifests map[string]bool // manifest files
	named     map[string]bool // every image or manifest path met, served or not
	problems  []Problem
}

func (w *walker) problem(file string, err error) {
	w.problems = append(w.problems, Problem{File: file, Err: err})
}

// visit is the fs.WalkDirFunc: it skips dot files and dot directories,
// does not follow symbolic links to directories, and follows symbolic links
// to files only while they stay inside the store (os.Root).
func (w *walker) visit(p string, d fs.DirEntry, err error) error {
	if err != nil {
		if p == "." {
			return err
		}
		w.problem(p, err) // an unreadable subdirectory: skip it
		return nil
	}
	if p == "." {
		return nil
	}
	if strings.HasPrefix(d.Name(), ".") {
		if d.IsDir() {
			return fs.SkipDir
		}
		return nil
	}
	if d.IsDir() {
		return nil
	}
	isImage, isManifest := IsImage(d.Name()), isManifestName(d.Name())
	if !isImage && !isManifest {
		return nil
	}
	w.named[p] = true
	if strings.Contains(p, `\`) {
		w.problem(p, errors.New("skipped: the name has a backslash, which Windows clients read as a separator"))
		return nil
	}
	if d.Type()&fs.ModeSymlink != 0 {
		fi, err := w.root.Stat(p)
		if err != nil {
			w.problem(p, fmt.Errorf("skipped: symbolic link leading outside the store or nowhere: %w", err))
			return nil
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
	} else if !d.Type().IsRegular() {
		return nil
	}
	if isManifest {
		w.manifests[p] = true
	} else {
		w.images = append(w.images, p)
	}
	return nil
}

// raw describes a raw image file and applies its manifest if it has one.
// A refused manifest is a problem; the image is listed without it.
func (c *Catalog) raw(w *walker, p string) (Image, bool) {
	fi, err := w.root.Stat(p)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) { // else removed while we looked
			w.problem(p, err)
		}
		return Image{}, false
	}
	im := Image{Name: path.Base(p), Size: fi.Size(), Index: 1, Kind: KindRaw, Compression: compressionOf(p), FileSize: fi.Size()}
	setLocation(&im, p)
	mp := p + ManifestSuffix
	if !w.manifests[mp] {
		return im, true
	}
	delete(w.manifests, mp)
	m, err := c.readManifest(w.root, mp)
	if err == nil && im.Compression == "" && m.Size != 0 && m.Size != im.FileSize {
		err = &ManifestError{File: mp, Field: "size", Err: fmt.Errorf("%w: %d bytes, but the uncompressed image file has %d", ErrBadManifest, m.Size, im.FileSize)}
	}
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) { // else removed while we looked
			w.problem(mp, err)
		}
		return im, true
	}
	if m.Name != "" {
		im.Name = m.Name
	}
	if m.Size != 0 {
		im.Size = m.Size
	}
	im.Description, im.Arch, im.SHA256, im.TargetDisk = m.Description, m.Arch, m.SHA256, m.TargetDisk
	return im, true
}

// readWIM returns a WIM's images, from the cache while the file is unchanged.
func (c *Catalog) readWIM(root *os.Root, p string) ([]Image, error) {
	e, err := c.read(root, p, func(f *os.File, fi fs.FileInfo) cacheEntry {
		ims, err := ReadWIMImages(f, fi.Size(), p)
		return cacheEntry{images: ims, err: err}
	})
	if err != nil {
		return nil, err
	}
	return append([]Image(nil), e.images...), e.err
}

// readManifest returns a manifest, from the cache while the file is unchanged.
func (c *Catalog) readManifest(root *os.Root, p string) (Manifest, error) {
	e, err := c.read(root, p, func(f *os.File, fi fs.FileInfo) cacheEntry {
		data, err := io.ReadAll(io.LimitReader(f, MaxManifestSize+1))
		if err != nil {
			return cacheEntry{err: err}
		}
		m, err := ParseManifest(p, data)
		return cacheEntry{man: m, err: err}
	})
	if err != nil {
		return Manifest{}, err
	}
	return e.man, e.err
}

// read returns the cache entry for p if the file is unchanged, else opens
// it (without blocking on a FIFO swapped in meanwhile), parses it and
// remembers the result under the opened file's key. The error is for
// opening; parse errors are in the entry.
func (c *Catalog) read(root *os.Root, p string, parse func(*os.File, fs.FileInfo) cacheEntry) (cacheEntry, error) {
	fi, err := root.Stat(p)
	if err != nil {
		return cacheEntry{}, err
	}
	if e, ok := c.lookup(p, keyOf(fi)); ok {
		return e, nil
	}
	f, err := root.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return cacheEntry{}, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return cacheEntry{}, err
	}
	if !fi.Mode().IsRegular() {
		return cacheEntry{}, fmt.Errorf("not a regular file (%v)", fi.Mode().Type())
	}
	e := parse(f, fi)
	e.key = keyOf(fi)
	c.mu.Lock()
	if c.cache == nil {
		c.cache = map[string]cacheEntry{}
	}
	c.cache[p] = e
	c.reads++
	c.mu.Unlock()
	return e, nil
}

func (c *Catalog) lookup(p string, key fileKey) (cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.cache[p]
	return e, ok && e.key == key
}

// prune forgets the files that are gone.
func (c *Catalog) prune(keep map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p := range c.cache {
		if !keep[p] {
			delete(c.cache, p)
		}
	}
}

// Summary describes the store in a few words for the console header:
// "3 images, 5.2G" (Size added up), then ", 1 problem" when there are.
func (c *Catalog) Summary() string {
	list, problems, err := c.Scan()
	if err != nil {
		return "unreadable: " + err.Error()
	}
	var s string
	if len(list) == 0 {
		s = "none in " + filepath.Base(c.Dir)
	} else {
		var total int64
		for _, im := range list {
			total += im.Size
		}
		s = fmt.Sprintf("%d %s, %s", len(list), plural(len(list), "image"), SizeString(total))
	}
	if len(problems) > 0 {
		s += fmt.Sprintf(", %d %s", len(problems), plural(len(problems), "problem"))
	}
	return s
}

func plural(n int, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}

// setLocation fills File, Path and Group from the path relative to the
// store: Group is the first directory of the path, "" at the top level.
func setLocation(im *Image, file string) {
	im.File = file
	im.Path = strings.ReplaceAll(file, "/", `\`)
	im.Group = ""
	if i := strings.IndexByte(file, '/'); i >= 0 {
		im.Group = file[:i]
	}
}

func isWIMName(name string) bool { return strings.HasSuffix(strings.ToLower(name), ".wim") }

// isManifestName reports whether name is a raw or WIM image's name plus
// ManifestSuffix (WIM manifests are found only to be refused).
func isManifestName(name string) bool {
	base, ok := strings.CutSuffix(name, ManifestSuffix)
	return ok && IsImage(base)
}

func compressionOf(name string) string {
	lower := strings.ToLower(name)
	switch {
	case strings.HasSuffix(lower, ".img.zst"):
		return "zstd"
	case strings.HasSuffix(lower, ".img.gz"):
		return "gzip"
	}
	return ""
}
