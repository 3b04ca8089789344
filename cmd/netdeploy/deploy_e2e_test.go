package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/imaging/report"
	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/tracker"
)

const deployedMarker = "NETDEPLOY-DEPLOYED-SYSTEM-UP"

// TestQEMUDeploy is the whole deployment: a virtual machine with an empty
// 1 GiB disk PXE-boots from netdeploy's default entry (the machine's
// kernel and the agent's initramfs), the agent logs on with the one-time
// credential from its script, pulls the default image over SMB, writes
// and verifies it, reports done and reboots; the machine then boots its
// disk into the deployed system, which prints a marker on the serial
// console. The disk holds the image's bytes, the events go dhcp, (tftp,)
// http, rpc, smb, apply, done with their ports, and the report has the
// deployment. BIOS boots through the NIC's iPXE ROM, which needs no TFTP;
// UEFI through OVMF's own PXE client, which fetches iPXE over TFTP.
//
// bios-choice has no default image: the agent lists the images on its
// console and the test answers on the serial line. bios-no-disk has no
// disk: the agent reports why it failed, and the report says so.
// bios-multicast leaves multicast on: the agent receives the image from a
// multicast session on a port of the UDP range through the VM's NIC
// instead of by SMB.
func TestQEMUDeploy(t *testing.T) {
	need(t, "qemu-system-x86_64")
	for _, tc := range []deployCase{{fw: "bios"}, {fw: "uefi"}, {fw: "bios", choice: true}, {fw: "bios", noDisk: true}, {fw: "bios", multicast: true}} {
		name := tc.fw
		if tc.choice {
			name += "-choice"
		}
		if tc.noDisk {
			name += "-no-disk"
		}
		if tc.multicast {
			name += "-multicast"
		}
		t.Run(name, func(t *testing.T) { qemuDeploy(t, tc) })
	}
}

type deployCase struct {
	fw     string
	choice bool // no default image: choose at the console
	noDisk bool // a machine without a disk
	// multicast on: the image comes by multicast, not SMB
	multicast bool
}

func qemuDeploy(t *testing.T, tc deployCase) {
	hostKernel(t)
	fw := tc.fw
	work := t.TempDir()
	images := filepath.Join(work, "images")
	if err := os.MkdirAll(images, 0o755); err != nil {
		t.Fatal(err)
	}
	imgPath := filepath.Join(images, "e2e-"+fw+".img")
	var size int64
	if tc.noDisk {
		size = int64(len(randomFile(t, imgPath, 1<<20)))
	} else {
		size = buildBootImage(t, fw, deployedMarker, imgPath)
	}
	add := [][]string{{"image", "add", imgPath, "--name", "E2E", "--arch", "amd64", "--description", "boots to a marker"}}
	if tc.choice {
		// Listed first: picking it would fail the test.
		randomFile(t, filepath.Join(images, "a-decoy.img"), 1<<20)
		add = append(add, []string{"image", "add", filepath.Join(images, "a-decoy.img"), "--name", "Decoy"})
	}
	for _, a := range add {
		if out, err := exec.Command(binary(t), a...).CombinedOutput(); err != nil {
			t.Fatalf("image add: %v\n%s", err, out)
		}
	}
	lab := netlab.New(t)
	srv := lab.AddHost("srv", "198.18.0.1/24", "")
	tap := lab.AddTap("tap0")
	data := filepath.Join(work, "data")
	serveArgs := []string{"--interface", "eth0", "--data-dir", data, "--images-dir", images,
		"--cmdline", "console=ttyS0,115200 panic=-1", "--multicast=" + strconv.FormatBool(tc.multicast)}
	if !tc.choice {
		serveArgs = append(serveArgs, "--default-image", "E2E")
	}
	nd := serveIn(t, srv, serveArgs...)

	mac := map[string]string{"bios": "52:54:00:e2:d0:01", "uefi": "52:54:00:e2:d0:02", "bios-choice": "52:54:00:e2:d0:03", "bios-no-disk": "52:54:00:e2:d0:04", "bios-multicast": "52:54:00:e2:d0:05"}[t.Name()[len("TestQEMUDeploy/"):]]
	disk := filepath.Join(work, "disk.raw")
	// The serial line is a socket QEMU waits on, so that the test sees all
	// of it and can type at the agent's console.
	sock := filepath.Join(work, "serial.sock")
	args := []string{"-accel", "tcg", "-m", "1024", "-smp", "1", "-display", "none", "-monitor", "none",
		"-chardev", "socket,id=ser0,path=" + sock + ",server=on,wait=on", "-serial", "chardev:ser0",
		"-netdev", "tap,id=n0,ifname=" + tap + ",script=no,downscript=no"}
	if !tc.noDisk {
		if err := os.WriteFile(disk, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(disk, 1<<30); err != nil {
			t.Fatal(err)
		}
		// The disk comes first in the boot order: empty, the firmware
		// falls through to the network; deployed, it boots.
		args = append(args, "-drive", "file="+disk+",format=raw,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0,bootindex=1")
	}
	args = append(args, firmwareArgs(t, fw, work, mac, "bootindex=2")...)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	vm := startVM(t, lab.LANCommand(ctx, "qemu-system-x86_64", args...))
	defer vm.stop()
	var conn net.Conn
	waitFor(t, 30*time.Second, "qemu's serial socket", func() bool {
		c, err := net.Dial("unix", sock)
		conn = c
		return err == nil
	})
	defer conn.Close()
	var serial netlab.Buffer
	go io.Copy(&serial, conn)

	want := deployedMarker
	if tc.noDisk {
		want = "NETDEPLOY-AGENT-FAILED"
	}
	answered := false
	deadline := time.Now().Add(14 * time.Minute)
	for !strings.Contains(serial.String(), want) {
		out := serial.String()
		if !tc.noDisk && strings.Contains(out, "NETDEPLOY-AGENT-FAILED") {
			t.Fatalf("the agent failed:\n%s", tail(out))
		}
		if tc.choice && !answered && strings.Contains(out, "Deploy which image (1-2)? ") {
			// The list is in catalogue order; answer with E2E's number,
			// after a wrong answer the agent must explain.
			line := out[strings.LastIndex(out, "Images on the server:"):]
			n := "2"
			if strings.Index(line, "E2E") < strings.Index(line, "Decoy") {
				n = "1"
			}
			io.WriteString(conn, "9\r")
			waitFor(t, time.Minute, "the agent to refuse 9", func() bool { return strings.Contains(serial.String(), "type a number from 1 to 2") })
			io.WriteString(conn, n+"\r")
			answered = true
		}
		select {
		case <-vm.done:
			if out := serial.String(); !strings.Contains(out, want) {
				t.Fatalf("qemu exited (%v) before %s; serial:\n%s\nqemu: %s", vm.err, want, tail(out), vm.out.String())
			}
		case <-time.After(time.Second):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s on the serial console:\n%s\nserver:\n%s", want, tail(serial.String()), tail(nd.logs()))
		}
	}
	if tc.noDisk {
		e := nd.wait(30*time.Second, "failed for "+mac, func(e tracker.Event) bool { return e.MAC == mac && e.Stage == tracker.StageFailed })
		if !strings.Contains(e.Detail, "no target disk") {
			t.Errorf("failed event %+v", e)
		}
		nd.stop()
		recs, _, err := report.Scan(report.Path(data))
		if err != nil || len(recs) != 1 || recs[0].MAC != mac || recs[0].Result != report.ResultFailed || !strings.Contains(recs[0].Reason, "no target disk") {
			t.Fatalf("report: %v %+v", err, recs)
		}
		return
	}
	out := serial.String()
	agentDone := strings.Index(out, "NETDEPLOY-AGENT-DONE")
	if agentDone < 0 || agentDone > strings.Index(out, deployedMarker) {
		t.Errorf("the marker came before the agent finished (was the disk bootable before?); serial:\n%s", tail(out))
	}
	if tc.choice && !answered {
		t.Error("the agent never asked for an image")
	}

	// The disk holds the image over its length.
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, size)
	if _, err := io.ReadFull(f, got); err != nil {
		t.Fatal(err)
	}
	image, err := os.ReadFile(imgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, image) {
		t.Fatalf("the disk's first %d bytes are not the image", size)
	}

	// Stages in order of first appearance, each with its port.
	wantStages := []tracker.Stage{tracker.StageDHCP, tracker.StageHTTP, tracker.StageRPC, tracker.StageSMB, tracker.StageApply, tracker.StageDone}
	if fw == "uefi" {
		wantStages = []tracker.Stage{tracker.StageDHCP, tracker.StageTFTP, tracker.StageHTTP, tracker.StageRPC, tracker.StageSMB, tracker.StageApply, tracker.StageDone}
	}
	wantPorts := map[tracker.Stage]int{tracker.StageDHCP: 67, tracker.StageHTTP: 80, tracker.StageSMB: 445}
	if tc.multicast {
		// The agent starts applying, then joins the session.
		wantStages = []tracker.Stage{tracker.StageDHCP, tracker.StageHTTP, tracker.StageRPC, tracker.StageApply, tracker.StageMulticast, tracker.StageDone}
		delete(wantPorts, tracker.StageSMB)
	}
	nd.wait(10*time.Second, "done for "+mac, func(e tracker.Event) bool { return e.MAC == mac && e.Stage == tracker.StageDone })
	var order []tracker.Stage
	seen := map[tracker.Stage]bool{}
	ports := map[tracker.Stage]int{}
	for _, e := range nd.all() {
		if e.MAC != mac || e.Event == tracker.KindLog {
			continue
		}
		if !seen[e.Stage] {
			seen[e.Stage] = true
			order = append(order, e.Stage)
		}
		if e.Port != 0 && ports[e.Stage] == 0 {
			ports[e.Stage] = e.Port
		}
	}
	if !subsequence(order, wantStages) {
		t.Errorf("stages %v, want %v in that order", order, wantStages)
	}
	for stage, port := range wantPorts {
		if ports[stage] != port {
			t.Errorf("%s events carry port %d, want %d", stage, ports[stage], port)
		}
	}
	if p := ports[tracker.StageRPC]; p != 135 && p != 5040 {
		t.Errorf("rpc events carry port %d", p)
	}
	if fw == "uefi" && ports[tracker.StageTFTP] == 0 {
		t.Error("tftp events carry no port")
	}
	if p := ports[tracker.StageMulticast]; tc.multicast && (p < 64001 || p > 65000) {
		t.Errorf("multicast events carry port %d, want one of the UDP range 64001-65000", p)
	}
	if tc.multicast && seen[tracker.StageSMB] {
		t.Errorf("the image came by SMB too: stages %v", order)
	}
	nd.stop()
	for _, l := range strings.Split(nd.logs(), "\n") {
		if strings.Contains(l, "multicast session over") {
			t.Log(l) // what the session sent to this one slow (TCG) client
		}
	}
	recs, _, err := report.Scan(report.Path(data))
	if err != nil || len(recs) != 1 || recs[0].MAC != mac || recs[0].Result != report.ResultDone || recs[0].Bytes != size {
		t.Fatalf("report: %v %+v", err, recs)
	}
}

// subsequence reports whether want appears in got in order.
func subsequence[T comparable](got, want []T) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// firmwareArgs are QEMU's machine, firmware and NIC arguments for fw.
// BIOS: i440fx with an e1000 NIC and iPXE's option ROM for it (Debian's
// virtio ROM carries the modern virtio PCI id, which SeaBIOS does not
// match). UEFI: q35 with OVMF and a virtio NIC without ROM, so that OVMF's
// own PXE client boots. nicOpts are extra -device options (bootindex=).
func firmwareArgs(t *testing.T, fw, work, mac string, nicOpts ...string) []string {
	t.Helper()
	extra := ""
	if len(nicOpts) > 0 {
		extra = "," + strings.Join(nicOpts, ",")
	}
	args := machineArgs(t, fw, work)
	if fw == "bios" {
		rom := "/usr/lib/ipxe/qemu/pxe-e1000.rom"
		if _, err := os.Stat(rom); err != nil {
			t.Skipf("needs %s (Debian package ipxe-qemu)", rom)
		}
		return append(args, "-device", "e1000,netdev=n0,mac="+mac+",romfile="+rom+extra)
	}
	return append(args, "-device", "virtio-net-pci,netdev=n0,mac="+mac+",romfile="+extra)
}

// machineArgs are the machine type and firmware for fw: SeaBIOS on
// i440fx, or OVMF on q35 with its own copy of the variable store in work.
func machineArgs(t *testing.T, fw, work string) []string {
	t.Helper()
	switch fw {
	case "bios":
		return []string{"-machine", "pc"}
	case "uefi":
		code := "/usr/share/OVMF/OVMF_CODE_4M.fd"
		vars, err := os.ReadFile("/usr/share/OVMF/OVMF_VARS_4M.fd")
		if err != nil {
			t.Skipf("needs OVMF (Debian package ovmf): %v", err)
		}
		writeFile(t, filepath.Join(work, "vars.fd"), vars)
		return []string{"-machine", "q35",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + code,
			"-drive", "if=pflash,format=raw,unit=1,file=" + filepath.Join(work, "vars.fd")}
	}
	t.Fatalf("unknown firmware %q", fw)
	return nil
}
