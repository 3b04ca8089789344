package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
)

// Disk layout shared by both firmware types: one FAT partition from 1 MiB,
// 62 MiB long, leaving room at the end for GPT's backup header.
const (
	bootImageSize  = 64 << 20
	bootPartStart  = 2048                // sectors
	bootPartSize   = (62 << 20) / 512    // sectors
	bootPartOffset = bootPartStart * 512 // bytes
)

// testInitramfsMarker writes a newc initramfs whose /init (busybox-static)
// prints marker on the serial console and powers off.
func testInitramfsMarker(t *testing.T, path, marker string) {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("needs busybox-static: %v", err)
	}
	initScript := "#!/bin/busybox sh\n" +
		"/bin/busybox mount -t devtmpfs devtmpfs /dev\n" +
		"exec </dev/console >/dev/console 2>&1\n" +
		"/bin/busybox echo " + marker + "\n" +
		"/bin/busybox echo " + marker + " > /dev/kmsg\n" +
		"/bin/busybox poweroff -f\n"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := cpio.NewWriter(f)
	add := func(name string, mode cpio.FileMode, body []byte) {
		if err := w.WriteHeader(&cpio.Header{Name: name, Mode: mode, Size: int64(len(body)), Links: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	add("bin", cpio.TypeDir|0o755, nil)
	add("dev", cpio.TypeDir|0o755, nil)
	add("bin/busybox", cpio.TypeReg|0o755, bb)
	add("init", cpio.TypeReg|0o755, []byte(initScript))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// bootTool finds prog (also in the sbin directories a non-root PATH may
// lack) or skips naming the Debian package.
func bootTool(t *testing.T, prog, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(prog); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, prog); fileExists(p) {
			return p
		}
	}
	t.Skipf("needs %s (Debian package %s)", prog, pkg)
	return ""
}

// bootFile skips unless path exists.
func bootFile(t *testing.T, path, pkg string) string {
	t.Helper()
	if !fileExists(path) {
		t.Skipf("needs %s (Debian package %s)", path, pkg)
	}
	return path
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// runTool runs a command, failing the test with its output on error.
func runTool(t *testing.T, stdin string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	// mtools (syslinux uses it too): no geometry checks, no user config.
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "MTOOLSRC=/dev/null")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// buildBootImage writes a disk image for firmware fw ("bios" or "uefi") to out
// and returns its size in bytes. The system on it prints marker on ttyS0 and powers off.
//
// bios: MBR with syslinux's mbr.bin, one active FAT32 partition with
// syslinux (ldlinux.sys). uefi: GPT with one EFI System Partition holding
// syslinux.efi as EFI/BOOT/BOOTX64.EFI. Both boot the host kernel with an
// initramfs from testInitramfsMarker. Layout and ids are fixed; FAT
// timestamps are not.
func buildBootImage(t *testing.T, fw, marker, out string) int64 {
	t.Helper()
	sfdisk := bootTool(t, "sfdisk", "fdisk")
	mkfs := bootTool(t, "mkfs.vfat", "dosfstools")
	mcopy := bootTool(t, "mcopy", "mtools")
	mmd := bootTool(t, "mmd", "mtools")
	kernel := hostKernel(t)

	var table, dir string
	files := map[string]string{} // path on the FAT → host file
	switch fw {
	case "bios":
		table = fmt.Sprintf("label: dos\nlabel-id: 0x4e444550\nunit: sectors\n"+
			"start=%d, size=%d, type=c, bootable\n", bootPartStart, bootPartSize)
		dir = "/"
	case "uefi":
		table = fmt.Sprintf("label: gpt\nlabel-id: 4E444550-0000-4000-8000-000000000001\nunit: sectors\n"+
			"start=%d, size=%d, type=U, uuid=4E444550-0000-4000-8000-000000000002, name=\"EFI System\"\n",
			bootPartStart, bootPartSize)
		dir = "/EFI/BOOT/"
		files[dir+"BOOTX64.EFI"] = bootFile(t, "/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi", "syslinux-efi")
		files[dir+"ldlinux.e64"] = bootFile(t, "/usr/lib/syslinux/modules/efi64/ldlinux.e64", "syslinux-common")
	default:
		t.Fatalf("buildBootImage: unknown firmware %q", fw)
	}
	var syslinux, mbr string
	if fw == "bios" {
		syslinux = bootTool(t, "syslinux", "syslinux")
		mbr = bootFile(t, "/usr/lib/syslinux/mbr/mbr.bin", "syslinux-common")
	}

	work := t.TempDir()
	initrd := filepath.Join(work, "initrd")
	testInitramfsMarker(t, initrd, marker)
	cfg := filepath.Join(work, "syslinux.cfg")
	writeFile(t, cfg, []byte("SERIAL 0 115200\nDEFAULT linux\nPROMPT 0\nTIMEOUT 0\n"+
		"LABEL linux\n  LINUX /vmlinuz\n  INITRD /initrd\n  APPEND console=ttyS0,115200 panic=-1\n"))
	files["/vmlinuz"] = kernel
	files["/initrd"] = initrd
	files[dir+"syslinux.cfg"] = cfg

	// A sparse zero file: nothing but what is written below can boot.
	if err := os.WriteFile(out, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(out, bootImageSize); err != nil {
		t.Fatal(err)
	}
	runTool(t, table, sfdisk, "-q", out)
	runTool(t, "", mkfs, fmt.Sprintf("--offset=%d", bootPartStart), "-h", fmt.Sprint(bootPartStart),
		"-F", "32", "-s", "1", "-n", "NETDEPLOY", "--invariant", out, fmt.Sprint(bootPartSize/2))
	fat := fmt.Sprintf("%s@@%d", out, bootPartOffset)
	if dir != "/" {
		runTool(t, "", mmd, "-i", fat, "::/EFI", "::"+strings.TrimSuffix(dir, "/"))
	}
	for dst, src := range files {
		runTool(t, "", mcopy, "-i", fat, "-m", src, "::"+dst)
	}
	if fw == "bios" {
		// Volume boot record and ldlinux.sys/.c32, then the MBR boot code
		// that chains to the active partition.
		runTool(t, "", syslinux, "--install", "--offset", fmt.Sprint(bootPartOffset), out)
		code, err := os.ReadFile(mbr)
		if err != nil || len(code) > 440 {
			t.Fatalf("mbr.bin: %v (%d bytes)", err, len(code))
		}
		f, err := os.OpenFile(out, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(code, 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestBootImage boots buildBootImage's disks in QEMU without a network:
// the marker proves the bootloader on the disk loaded kernel and initrd.
func TestBootImage(t *testing.T) {
	need(t, "qemu-system-x86_64")
	const marker = "NETDEPLOY-DISK-BOOTED"
	for _, fw := range []string{"bios", "uefi"} {
		t.Run(fw, func(t *testing.T) {
			work := t.TempDir()
			img := filepath.Join(work, "disk.img")
			start := time.Now()
			size := buildBootImage(t, fw, marker, img)
			t.Logf("built %s image, %d bytes, in %v", fw, size, time.Since(start).Round(time.Millisecond))
			start = time.Now()
			bootDisk(t, fw, img, marker, 5*time.Minute)
			t.Logf("marker after %v", time.Since(start).Round(time.Second))
		})
	}
}

// bootDisk boots img as the only disk of a VM without network and waits
// (up to giveUp) for marker on its serial console.
func bootDisk(t *testing.T, fw, img, marker string, giveUp time.Duration) {
	t.Helper()
	work := t.TempDir()
	serial := filepath.Join(work, "serial.log")
	args := []string{"-accel", "tcg", "-m", "512", "-smp", "1",
		"-display", "none", "-monitor", "none", "-serial", "file:" + serial, "-no-reboot",
		"-nic", "none", "-drive", "file=" + img + ",format=raw,if=virtio"}
	// SeaBIOS prints nothing on the serial port: keep its debug log too.
	fwlog := filepath.Join(work, "firmware.log")
	if fw == "bios" {
		args = append(args, "-chardev", "file,id=fwlog,path="+fwlog, "-device", "isa-debugcon,iobase=0x402,chardev=fwlog")
	}
	args = append(args, machineArgs(t, fw, work)...)
	ctx, cancel := context.WithTimeout(context.Background(), giveUp+time.Minute)
	defer cancel()
	vm := startVM(t, exec.CommandContext(ctx, "qemu-system-x86_64", args...))
	defer vm.stop()

	log := func() string { b, _ := os.ReadFile(serial); return string(b) }
	firmware := func() string {
		if b, err := os.ReadFile(fwlog); err == nil {
			return "\nfirmware log:\n" + tail(string(b))
		}
		return ""
	}
	deadline := time.After(giveUp)
	for !strings.Contains(log(), marker) {
		select {
		case <-vm.done:
			// The guest powers off right after the marker: look once more.
			if out := log(); !strings.Contains(out, marker) {
				t.Fatalf("qemu exited (%v) before the marker; serial:\n%s%s\nqemu: %s", vm.err, tail(out), firmware(), vm.out.String())
			}
			return
		case <-deadline:
			t.Fatalf("no marker on the serial console after %v; serial:\n%s%s", giveUp, tail(log()), firmware())
		case <-time.After(500 * time.Millisecond):
		}
	}
}
