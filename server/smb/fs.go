package smb

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/netdeploy/netdeploy/server/pathfold"
)

// FS is the file tree a share serves. Names are slash-separated and
// relative to the share root ("." is the root); the server validates
// them (no "..", no absolute paths, no streams) before calling FS. An FS
// must keep every name inside its root, symbolic links included, and be
// safe for concurrent use. DirFS is the os.Root implementation; a
// writable share would add an OpenFile method (checked for with a type
// assertion) beside these.
type FS interface {
	// Open opens a file or directory for reading.
	Open(name string) (File, error)
	// Stat describes a file or directory.
	Stat(name string) (fs.FileInfo, error)
}

// File is an open file or directory of an FS.
type File interface {
	io.ReaderAt
	io.Closer
	Stat() (fs.FileInfo, error)
	// ReadDir reads a directory as os.File.ReadDir does.
	ReadDir(n int) ([]fs.DirEntry, error)
}

// DirFS returns an FS serving the directory dir, confined with os.Root:
// names and symbolic links that lead out of dir fail.
func DirFS(dir string) (FS, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return rootFS{r, dir}, nil
}

type rootFS struct {
	r    *os.Root
	path string
}

func (f rootFS) dir() string { return f.path }

// Open and Stat match names without case when the exact spelling does
// not exist, as Windows clients expect ([MS-FSCC] 2.1.5).
func (f rootFS) Open(name string) (File, error) {
	fh, err := f.r.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		if folded, ok := pathfold.Find(f.r, name); ok {
			fh, err = f.r.Open(folded)
		}
	}
	if err != nil {
		return nil, err
	}
	return fh, nil
}

func (f rootFS) Stat(name string) (fs.FileInfo, error) {
	fi, err := f.r.Stat(name)
	if errors.Is(err, fs.ErrNotExist) {
		if folded, ok := pathfold.Find(f.r, name); ok {
			return f.r.Stat(folded)
		}
	}
	return fi, err
}

// resolve turns an SMB2 CREATE path ([MS-SMB2] 2.2.13: relative to the
// share, backslash-separated) into an FS name. It refuses, with
// StatusObjectNameInvalid, names with characters Windows does not allow
// ([MS-FSCC] 2.1.5.2: control characters, " * / : < > ? |), which covers
// alternate data streams (':'), and, with StatusAccessDenied, ".."
// components and paths that start with a separator or a drive letter.
func resolve(p string) (string, Status) {
	if len(p) > maxPathLen || !utf8.ValidString(p) {
		return "", StatusObjectNameInvalid
	}
	if strings.HasPrefix(p, `\`) {
		return "", StatusAccessDenied
	}
	p = strings.TrimSuffix(p, `\`)
	if p == "" {
		return ".", StatusSuccess
	}
	parts := strings.Split(p, `\`)
	out := parts[:0]
	for _, c := range parts {
		switch c {
		case "", ".":
			continue
		case "..":
			return "", StatusAccessDenied
		}
		if len(c) > 255 {
			return "", StatusObjectNameInvalid
		}
		for _, r := range c {
			if r < 0x20 || strings.ContainsRune(`"*/:<>?|`, r) {
				return "", StatusObjectNameInvalid
			}
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return ".", StatusSuccess
	}
	return strings.Join(out, "/"), StatusSuccess
}

// maxPathLen caps a path in bytes (Windows: 32767 UTF-16 units).
const maxPathLen = 32767

// fsStatus maps an FS error to the status a CREATE fails with: not
// found, or access denied for everything else (permissions, and names
// or symbolic links that os.Root refuses because they lead out).
func fsStatus(err error) Status {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return StatusObjectNameNotFound
	case errors.Is(err, syscall.ENOTDIR):
		return StatusObjectPathNotFound
	}
	return StatusAccessDenied
}
