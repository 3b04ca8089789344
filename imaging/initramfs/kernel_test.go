package initramfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// bzImage is a minimal boot header carrying version v.
func bzImage(v string) []byte {
	b := make([]byte, 0x1000)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], 0x020f)
	binary.LittleEndian.PutUint16(b[0x20e:], 0x400)
	copy(b[0x600:], v+" (debian-kernel@lists.debian.org) #1 SMP\x00")
	return b
}

func TestKernelVersion(t *testing.T) {
	v, err := KernelVersion(bytes.NewReader(bzImage("6.1.0-56-amd64")))
	if err != nil || v != "6.1.0-56-amd64" {
		t.Fatalf("%q %v", v, err)
	}
	bad := bzImage("x")
	copy(bad[0x202:], "Nope")
	noOffset := bzImage("x")
	binary.LittleEndian.PutUint16(noOffset[0x20e:], 0)
	slash := bzImage("../../etc")
	for name, b := range map[string][]byte{"magic": bad, "offset": noOffset, "short": make([]byte, 100), "slash": slash} {
		if _, err := KernelVersion(bytes.NewReader(b)); !errors.Is(err, ErrNotKernel) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The machine's own kernels, when there are any.
	if k, err := HostKernel("/boot"); err == nil {
		v, err := FileKernelVersion(k)
		if err != nil || filepath.Base(k) != "vmlinuz-"+v {
			t.Errorf("%s: version %q %v", k, v, err)
		}
	}
}

func TestHostKernelOrder(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"6.1.0-9-amd64", "6.1.0-10-amd64", "5.10.0-30-amd64"} {
		os.WriteFile(filepath.Join(dir, "vmlinuz-"+v), bzImage(v), 0o644)
	}
	k, err := HostKernel(dir)
	if err != nil || filepath.Base(k) != "vmlinuz-6.1.0-10-amd64" {
		t.Fatalf("%s %v", k, err)
	}
	if _, err := HostKernel(t.TempDir()); err == nil {
		t.Fatal("no kernel, no error")
	}
	os.MkdirAll(filepath.Join(dir, "lib", "modules", "6.1.0-10-amd64"), 0o755)
	if _, err := ModulesFor(dir, k); err == nil {
		t.Fatal("modules dir without modules.dep accepted")
	}
	os.WriteFile(filepath.Join(dir, "lib", "modules", "6.1.0-10-amd64", "modules.dep"), nil, 0o644)
	if m, err := ModulesFor(dir, k); err != nil || m != filepath.Join(dir, "lib", "modules", "6.1.0-10-amd64") {
		t.Fatalf("%s %v", m, err)
	}
}

func TestCheckStatic(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ELF binaries")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	os.WriteFile(src, []byte("package main\nimport \"os/user\"\nfunc main() { user.Current() }\n"), 0o644)
	static := filepath.Join(dir, "static")
	cmd := exec.Command("go", "build", "-o", static, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v %s", err, out)
	}
	if err := CheckStatic(static); err != nil {
		t.Fatal(err)
	}
	// /bin/sh is dynamically linked on Debian.
	if err := CheckStatic("/bin/sh"); !errors.Is(err, ErrNotStatic) {
		t.Errorf("/bin/sh: %v", err)
	}
	if err := CheckStatic(src); err == nil {
		t.Error("a Go source file passed as a binary")
	}
}
