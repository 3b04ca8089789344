package imaging

import (
	"io/fs"
	"syscall"
)

// fileID is what tells two versions of a file apart beyond size and
// modification time: replaced files get a new inode, rewritten ones a new
// change time (which no one can set back).
type fileID struct {
	dev, ino uint64
	ctime    int64
}

func fileIDOf(fi fs.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino), ctime: st.Ctim.Nano()}
}
