package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/tracker"
)

const bootMarker = "NETDEPLOY-E2E-BOOTED"

// testInitramfs writes the initramfs of testInitramfsMarker for bootMarker.
func testInitramfs(t *testing.T, path string) { testInitramfsMarker(t, path, bootMarker) }

func hostKernel(t *testing.T) string {
	t.Helper()
	list, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(list) == 0 {
		t.Skip("needs a Linux kernel in /boot (Debian package linux-image-amd64)")
	}
	sort.Strings(list)
	return list[len(list)-1]
}

// TestQEMUPXEBoot boots a virtual machine from netdeploy: BIOS through the
// NIC's iPXE ROM (DHCP, script and kernel over HTTP), UEFI through OVMF's
// own PXE client (DHCP, snponly.efi over TFTP, then iPXE over HTTP).
func TestQEMUPXEBoot(t *testing.T) {
	need(t, "qemu-system-x86_64")
	for _, fw := range []string{"bios", "uefi"} {
		t.Run(fw, func(t *testing.T) { qemuBoot(t, fw, false) })
	}
	// proxyDHCP: dnsmasq hands out the address, netdeploy only the boot
	// information (on 67 and on the PXE port 4011).
	t.Run("uefi-proxy", func(t *testing.T) { qemuBoot(t, "uefi", true) })
	t.Run("bios-proxy", func(t *testing.T) { qemuBoot(t, "bios", true) })
}

func qemuBoot(t *testing.T, fw string, proxy bool) {
	kernel := hostKernel(t)
	work := t.TempDir()
	initrd := filepath.Join(work, "initrd.cpio")
	testInitramfs(t, initrd)
	lab := netlab.New(t)
	srv := lab.AddHost("srv", "198.18.0.1/24", "")
	tap := lab.AddTap("tap0")
	args := []string{"--interface", "eth0", "--data-dir", filepath.Join(work, "data"),
		"--kernel", kernel, "--initrd", initrd, "--cmdline", "console=ttyS0,115200 panic=-1"}
	if proxy {
		need(t, "dnsmasq")
		other := lab.AddHost("dhcp", "198.18.0.2/24", "")
		dm := other.Command(context.Background(), "dnsmasq", "--no-daemon", "--port=0", "--conf-file=/dev/null", "--pid-file=",
			"--dhcp-range=198.18.0.50,198.18.0.60,1h", "--interface=eth0", "--bind-interfaces",
			"--dhcp-leasefile="+filepath.Join(work, "dnsmasq.leases"))
		if err := dm.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dm.Process.Kill(); dm.Wait() })
		waitFor(t, 15*time.Second, "dnsmasq on port 67", func() bool {
			out, _ := other.Run(context.Background(), "ss", "-lun", "sport = :67")
			return strings.Contains(out, ":67")
		})
		args = append(args, "--dhcp-mode", "proxy")
	}
	nd := serveIn(t, srv, args...)

	mac := "52:54:00:e2:e0:01"
	if fw == "uefi" {
		mac = "52:54:00:e2:e0:02"
	}
	if proxy {
		mac = strings.Replace(mac, "e2:e0", "e2:e1", 1)
	}
	serial := filepath.Join(work, "serial.log")
	args = []string{"-accel", "tcg", "-m", "768", "-smp", "1",
		"-display", "none", "-monitor", "none", "-serial", "file:" + serial, "-no-reboot",
		"-netdev", "tap,id=n0,ifname=" + tap + ",script=no,downscript=no"}
	nic := []string(nil)
	if fw == "bios" {
		nic = append(nic, "bootindex=1") // the NIC first, as -boot n did
	}
	args = append(args, firmwareArgs(t, fw, work, mac, nic...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	vm := startVM(t, lab.LANCommand(ctx, "qemu-system-x86_64", args...))
	defer vm.stop()

	deadline := time.Now().Add(7 * time.Minute)
	booted := func() (bool, string) {
		b, _ := os.ReadFile(serial)
		return strings.Contains(string(b), bootMarker), string(b)
	}
	for {
		if ok, _ := booted(); ok {
			break
		}
		select {
		case <-vm.done:
			// The guest powers off right after printing the marker.
			if ok, out := booted(); !ok {
				t.Fatalf("qemu exited (%v) before the marker; serial:\n%s\nqemu: %s", vm.err, tail(out), vm.out.String())
			}
		case <-time.After(500 * time.Millisecond):
		}
		if ok, _ := booted(); ok {
			break
		}
		if time.Now().After(deadline) {
			_, out := booted()
			t.Fatalf("no boot marker on the serial console; serial:\n%s", tail(out))
		}
	}

	// The boot went through the stages netdeploy reports.
	is := func(stage tracker.Stage, kind tracker.Kind, file string) func(tracker.Event) bool {
		return func(e tracker.Event) bool {
			return e.MAC == mac && e.Stage == stage && e.Event == kind && (file == "" || e.File == file)
		}
	}
	if !proxy {
		nd.wait(5*time.Second, "dhcp done", is(tracker.StageDHCP, tracker.KindDone, ""))
	} else {
		// The address came from dnsmasq's range, never from netdeploy.
		for _, e := range nd.all() {
			if e.Stage == tracker.StageDHCP && e.Event == tracker.KindDone {
				t.Errorf("proxy mode assigned an address: %+v", e)
			}
		}
	}
	pxe := nd.wait(5*time.Second, "pxe done", is(tracker.StagePXE, tracker.KindDone, ""))
	if proxy && pxe.IP != "" && !strings.HasPrefix(pxe.IP, "198.18.0.5") && !strings.HasPrefix(pxe.IP, "198.18.0.60") {
		t.Errorf("client address %s is not from dnsmasq's range", pxe.IP)
	}
	if fw == "uefi" {
		nd.wait(5*time.Second, "tftp snponly.efi", is(tracker.StageTFTP, tracker.KindDone, "snponly.efi"))
	}
	nd.wait(5*time.Second, "http script", is(tracker.StageHTTP, tracker.KindDone, "boot.ipxe"))
	nd.wait(5*time.Second, "http kernel", is(tracker.StageHTTP, tracker.KindDone, "netdeploy/kernel"))
	nd.wait(5*time.Second, "http initrd", is(tracker.StageHTTP, tracker.KindDone, "netdeploy/initrd"))
	nd.stop()
}

func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}

// qemuVM is a running QEMU: its output, and done closed once it exited
// (its error then in err).
type qemuVM struct {
	cmd  *exec.Cmd
	out  netlab.Buffer
	done chan struct{}
	err  error
}

// startVM starts a QEMU command with its output collected.
func startVM(t *testing.T, cmd *exec.Cmd) *qemuVM {
	t.Helper()
	vm := &qemuVM{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &vm.out, &vm.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		vm.err = cmd.Wait()
		close(vm.done)
	}()
	return vm
}

// stop kills the VM and waits for it.
func (vm *qemuVM) stop() {
	vm.cmd.Process.Kill()
	<-vm.done
}
