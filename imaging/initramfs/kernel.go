package initramfs

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ErrNotKernel is returned for a file without a Linux x86 boot header.
var ErrNotKernel = errors.New("initramfs: not a Linux bzImage")

// ErrNotStatic is returned for an agent binary that needs a dynamic
// loader, which the initramfs does not have.
var ErrNotStatic = errors.New("initramfs: the agent binary is dynamically linked (build it with CGO_ENABLED=0)")

// KernelVersion reads the release string of a bzImage (Linux x86 boot
// protocol, Documentation/arch/x86/boot.rst: "HdrS" at 0x202, protocol
// 2.00 or later, kernel_version at 0x20E pointing 0x200 before the
// NUL-terminated string), e.g. "6.1.0-56-amd64".
func KernelVersion(r io.ReaderAt) (string, error) {
	var hdr [0x210]byte
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotKernel, err)
	}
	if string(hdr[0x202:0x206]) != "HdrS" || binary.LittleEndian.Uint16(hdr[0x206:]) < 0x0200 {
		return "", ErrNotKernel
	}
	off := int64(binary.LittleEndian.Uint16(hdr[0x20e:]))
	if off == 0 {
		return "", fmt.Errorf("%w: no version string", ErrNotKernel)
	}
	var s [256]byte
	n, err := r.ReadAt(s[:], off+0x200)
	if n == 0 {
		return "", fmt.Errorf("%w: version string: %v", ErrNotKernel, err)
	}
	v := s[:n]
	if i := bytes.IndexAny(v, " \x00"); i >= 0 {
		v = v[:i]
	}
	if len(v) == 0 || !isPrint(v) {
		return "", fmt.Errorf("%w: version string unreadable", ErrNotKernel)
	}
	return string(v), nil
}

func isPrint(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c > '~' || c == '/' {
			return false
		}
	}
	return true
}

// FileKernelVersion is KernelVersion of the file at path.
func FileKernelVersion(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	v, err := KernelVersion(f)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// HostKernel is the newest vmlinuz-<version> in bootDir (/boot), by
// version order.
func HostKernel(bootDir string) (string, error) {
	list, _ := filepath.Glob(filepath.Join(bootDir, "vmlinuz-*"))
	if len(list) == 0 {
		return "", fmt.Errorf("initramfs: no kernel in %s (install linux-image-amd64, or set boot.kernel)", bootDir)
	}
	sort.Slice(list, func(i, j int) bool {
		return versionLess(strings.TrimPrefix(filepath.Base(list[i]), "vmlinuz-"), strings.TrimPrefix(filepath.Base(list[j]), "vmlinuz-"))
	})
	return list[len(list)-1], nil
}

// versionLess compares version strings piecewise, numbers as numbers:
// 6.1.0-9 < 6.1.0-10.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		pa, ra := splitPiece(a)
		pb, rb := splitPiece(b)
		if pa != pb {
			na, ea := strconv.Atoi(pa)
			nb, eb := strconv.Atoi(pb)
			if ea == nil && eb == nil {
				return na < nb
			}
			return pa < pb
		}
		a, b = ra, rb
	}
	return len(a) < len(b)
}

// splitPiece cuts a leading run of digits, or of anything else.
func splitPiece(s string) (string, string) {
	digit := s[0] >= '0' && s[0] <= '9'
	i := 1
	for i < len(s) && (s[i] >= '0' && s[i] <= '9') == digit {
		i++
	}
	return s[:i], s[i:]
}

// ModulesFor is /lib/modules/<version> (under root) of the kernel at path.
func ModulesFor(root, kernel string) (string, error) {
	v, err := FileKernelVersion(kernel)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "lib", "modules", v)
	if _, err := os.Stat(filepath.Join(dir, "modules.dep")); err != nil {
		return "", fmt.Errorf("initramfs: no modules for kernel %s (%s): %w", v, kernel, err)
	}
	return dir, nil
}

// CheckStatic returns ErrNotStatic when the ELF binary at path asks for
// a program interpreter (a dynamic loader).
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("initramfs: agent %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s: %w", path, ErrNotStatic)
		}
	}
	return nil
}
