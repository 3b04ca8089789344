//go:build linux

package agent

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts writing [off, off+n) of f to its device without
// waiting for it (sync_file_range(2), SYNC_FILE_RANGE_WRITE), so that the
// device is busy with the chunks written while earlier ones are checked.
func startWriteback(f *os.File, off, n int64) {
	unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// evict waits until [off, off+n) of f is on its device and drops it from
// the page cache (sync_file_range(2) with WAIT_BEFORE, WRITE and
// WAIT_AFTER, then posix_fadvise(2) POSIX_FADV_DONTNEED), so that reading
// it back reads the device, not the bytes the kernel still holds. A write
// error of the range (EIO) is returned; a file where this is not
// supported is left as it is (tmpfs keeps its pages: they are its
// storage).
func evict(f *os.File, off, n int64) error {
	fd := int(f.Fd())
	err := unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
	switch {
	case err == nil:
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ESPIPE), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
		return nil
	default:
		return fmt.Errorf("write out %d bytes at %d: %w", n, off, err)
	}
	unix.Fadvise(fd, off, n, unix.FADV_DONTNEED)
	return nil
}
