package demo

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
)

// Names of the files WriteBootFiles writes.
const (
	KernelFile = "vmlinuz-demo"
	InitrdFile = "initrd-demo.img"
)

// WriteBootFiles writes a fake kernel of kernelMiB MiB and an initrd of
// initrdMiB MiB of random bytes into dir (created if needed) and returns
// their paths. kernelMiB must be at least 1; initrdMiB 0 writes no initrd
// and returns initrd "".
func WriteBootFiles(dir string, kernelMiB, initrdMiB int) (kernel, initrd string, err error) {
	if kernelMiB < 1 || initrdMiB < 0 {
		return "", "", fmt.Errorf("demo: boot file sizes %d MiB and %d MiB (kernel needs at least 1)", kernelMiB, initrdMiB)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("demo: %w", err)
	}
	kernel = filepath.Join(dir, KernelFile)
	if err := writeRandom(kernel, int64(kernelMiB)<<20); err != nil {
		return "", "", err
	}
	if initrdMiB > 0 {
		initrd = filepath.Join(dir, InitrdFile)
		if err := writeRandom(initrd, int64(initrdMiB)<<20); err != nil {
			os.Remove(kernel)
			return "", "", err
		}
	}
	return kernel, initrd, nil
}

func writeRandom(path string, size int64) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("demo: %w", cerr)
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		rand.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		left -= n
	}
	return nil
}
