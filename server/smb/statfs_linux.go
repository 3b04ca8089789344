package smb

import "syscall"

// statfs returns a file system's size, free space and block size.
func statfs(dir string) (total, free, bsize uint64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, 0, false
	}
	bs := uint64(st.Bsize)
	return st.Blocks * bs, st.Bavail * bs, bs, true
}
