package boot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/netdeploy/netdeploy/server/pathfold"
)

// Errors from FS.Open. ErrInvalidPath means the name could never be
// served (traversal, NUL byte, drive letter); fs.ErrNotExist that nothing
// of that name is there.
var ErrInvalidPath = errors.New("invalid path")

// File is an open read-only boot file.
type File interface {
	io.ReaderAt
	io.ReadSeeker
	io.Closer
	Size() int64
	ModTime() time.Time
}

// Entry describes the default boot entry, a Linux kernel and initrd.
type Entry struct {
	Kernel  string // path on this machine; empty: no boot entry
	Initrd  string // path on this machine; optional
	Cmdline string
	// BuildInitrd, when Initrd is empty, returns the path of an initrd
	// built on first use (the imaging agent's initramfs).
	BuildInitrd func() (string, error)
	// Agent says the entry boots the imaging agent: each client's script
	// then carries its settings on the command line.
	Agent bool
}

// HasInitrd reports whether the entry loads an initrd.
func (e Entry) HasInitrd() bool { return e.Initrd != "" || e.BuildInitrd != nil }

// FS is the read-only file system served over TFTP and HTTP. Lookups go,
// in order: the generated script, the boot entry's kernel and initrd, the
// TFTP root (confined with os.Root, so neither ".." nor symbolic links
// lead out of it) and the iPXE binaries in the iPXE directory.
type FS struct {
	// Script returns the current iPXE script. Nil: no script.
	Script func() []byte
	// Entry is the default boot entry.
	Entry Entry
	// Root is the TFTP root directory; empty for none.
	Root string
	// IPXEDir holds the iPXE binaries (Debian package ipxe: /usr/lib/ipxe).
	IPXEDir string
}

// Clean maps a client's file name to a slash-separated name relative to
// the boot file system's root. Backslashes (Windows clients) become
// slashes and leading separators are dropped: a leading separator means
// the TFTP root, never the host's root. It rejects NUL bytes, ".."
// components, drive letters and names that clean to nothing.
func Clean(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL byte", ErrInvalidPath)
	}
	name = strings.ReplaceAll(name, `\`, "/")
	if len(name) >= 2 && name[1] == ':' {
		return "", fmt.Errorf("%w: drive letter", ErrInvalidPath)
	}
	name = strings.TrimLeft(name, "/")
	if slices.Contains(strings.Split(name, "/"), "..") {
		return "", fmt.Errorf("%w: parent directory", ErrInvalidPath)
	}
	name = path.Clean(name)
	if name == "." || name == "" {
		return "", fmt.Errorf("%w: empty name", ErrInvalidPath)
	}
	return name, nil
}

// Open opens a file by the name a client asked for.
func (f *FS) Open(name string) (File, error) {
	clean, err := Clean(name)
	if err != nil {
		return nil, err
	}
	switch strings.ToLower(clean) {
	case ScriptName:
		if f.Script != nil {
			return MemFile(f.Script()), nil
		}
	case KernelName:
		if f.Entry.Kernel != "" {
			return openHost(f.Entry.Kernel)
		}
	case InitrdName:
		if f.Entry.Initrd != "" {
			return openHost(f.Entry.Initrd)
		}
		if f.Entry.BuildInitrd != nil {
			p, err := f.Entry.BuildInitrd()
			if err != nil {
				return nil, err
			}
			return openHost(p)
		}
	}
	if f.Root != "" {
		file, err := openInRoot(f.Root, clean)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return file, err
		}
	}
	if f.IPXEDir != "" && slices.Contains(IPXEBinaries(), clean) {
		return openHost(path.Join(f.IPXEDir, clean))
	}
	return nil, fmt.Errorf("open %s: %w", clean, fs.ErrNotExist)
}

// Has reports whether name can be opened.
func (f *FS) Has(name string) bool {
	file, err := f.Open(name)
	if err != nil {
		return false
	}
	file.Close()
	return true
}

func openHost(p string) (File, error) {
	file, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	return statFile(file)
}

func statFile(file *os.File) (File, error) {
	st, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		file.Close()
		return nil, fmt.Errorf("open %s: %w", file.Name(), fs.ErrNotExist)
	}
	return &osFile{File: file, size: st.Size(), mod: st.ModTime()}, nil
}

// openInRoot opens name inside root. A name that does not exist as
// written is looked up again component by component, ignoring case, as
// Windows clients expect.
func openInRoot(root, name string) (File, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	file, err := r.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		if alt, ok := foldName(r, name); ok {
			file, err = r.Open(alt)
		}
	}
	if err != nil {
		if strings.Contains(err.Error(), "escapes from parent") || strings.Contains(err.Error(), "path escapes") {
			return nil, fmt.Errorf("%w: %s leads out of the root", ErrInvalidPath, name)
		}
		return nil, err
	}
	return statFile(file)
}

// foldName finds the on-disk spelling of name, matching each component
// case-insensitively.
func foldName(r *os.Root, name string) (string, bool) { return pathfold.Find(r, name) }

type osFile struct {
	*os.File
	size int64
	mod  time.Time
}

func (f *osFile) Size() int64        { return f.size }
func (f *osFile) ModTime() time.Time { return f.mod }

type bytesFile struct {
	*bytes.Reader
	mod time.Time
}

// MemFile serves b as a boot file.
func MemFile(b []byte) File { return &bytesFile{Reader: bytes.NewReader(b), mod: time.Now()} }

func (f *bytesFile) Close() error       { return nil }
func (f *bytesFile) ModTime() time.Time { return f.mod }
