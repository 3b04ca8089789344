//go:build unix

package report

import (
	"errors"
	"os"
	"syscall"
)

// lock takes an exclusive advisory lock on f, so that two processes never
// append to (or repair) one journal at once.
func lock(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errInUse
	}
	return err
}
