package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
// instead of by SMB. bios-multicast-pair boots two machines at once,
// which get the image from one session (started at two clients).
func TestQEMUDeploy(t *testing.T) {
	need(t, "qemu-system-x86_64")
	for _, tc := range []deployCase{{fw: "bios"}, {fw: "uefi"}, {fw: "bios", choice: true}, {fw: "bios", noDisk: true}, {fw: "bios", multicast: true},
		{fw: "bios", multicast: true, pair: true}} {
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
		if tc.pair {
			name += "-pair"
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
	// two machines at once, in one multicast session (clients:2)
	pair bool
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
	data := filepath.Join(work, "data")
	serveArgs := []string{"--interface", "eth0", "--data-dir", data, "--images-dir", images,
		"--cmdline", "console=ttyS0,115200 panic=-1", "--multicast=" + strconv.FormatBool(tc.multicast)}
	if !tc.choice {
		serveArgs = append(serveArgs, "--default-image", "E2E")
	}
	if tc.pair {
		serveArgs = append(serveArgs, "--multicast-start", "clients:2")
	}
	nd := serveIn(t, srv, serveArgs...)

	macs := map[string][]string{"bios": {"52:54:00:e2:d0:01"}, "uefi": {"52:54:00:e2:d0:02"}, "bios-choice": {"52:54:00:e2:d0:03"},
		"bios-no-disk": {"52:54:00:e2:d0:04"}, "bios-multicast": {"52:54:00:e2:d0:05"},
		"bios-multicast-pair": {"52:54:00:e2:d0:06", "52:54:00:e2:d0:07"}}[t.Name()[len("TestQEMUDeploy/"):]]
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var machines []*deployVM
	for i, mac := range macs {
		m := bootDeployVM(ctx, t, lab.AddTap(fmt.Sprintf("tap%d", i)), lab, tc, fw, filepath.Join(work, fmt.Sprintf("vm%d", i)), mac)
		defer m.vm.stop()
		defer m.conn.Close()
		machines = append(machines, m)
	}

	want := deployedMarker
	if tc.noDisk {
		want = "NETDEPLOY-AGENT-FAILED"
	}
	deadline := time.Now().Add(14 * time.Minute)
	for _, m := range machines {
		m.await(t, tc, want, deadline, nd)
	}
	if tc.noDisk {
		mac := macs[0]
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
	image, err := os.ReadFile(imgPath)
	if err != nil {
		t.Fatal(err)
	}
	mcPorts := map[int]bool{}
	for _, m := range machines {
		out := m.serial.String()
		agentDone := strings.Index(out, "NETDEPLOY-AGENT-DONE")
		if agentDone < 0 || agentDone > strings.Index(out, deployedMarker) {
			t.Errorf("%s: the marker came before the agent finished (was the disk bootable before?); serial:\n%s", m.mac, tail(out))
		}
		if tc.choice && !m.answered {
			t.Error("the agent never asked for an image")
		}
		// The disk holds the image over its length.
		got := make([]byte, size)
		f, err := os.Open(m.disk)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadFull(f, got)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, image) {
			t.Fatalf("%s: the disk's first %d bytes are not the image", m.mac, size)
		}
		mcPorts[m.checkEvents(t, tc, fw, nd)] = true
	}
	if tc.multicast && len(mcPorts) != 1 {
		t.Errorf("the machines' multicast events carry ports %v: not one session", mcPorts)
	}
	nd.stop()
	sessions := 0
	for _, l := range strings.Split(nd.logs(), "\n") {
		if strings.Contains(l, "multicast session over") {
			sessions++
			t.Log(l) // what the session sent to these slow (TCG) clients
		}
	}
	if tc.multicast && sessions != 1 {
		t.Errorf("%d multicast sessions for %d machines, want one", sessions, len(machines))
	}
	recs, _, err := report.Scan(report.Path(data))
	if err != nil || len(recs) != len(machines) {
		t.Fatalf("report: %v %+v", err, recs)
	}
	for _, rec := range recs {
		if !slices.Contains(macs, rec.MAC) || rec.Result != report.ResultDone || rec.Bytes != size {
			t.Errorf("report record %+v", rec)
		}
	}
}

// deployVM is one machine of TestQEMUDeploy.
type deployVM struct {
	mac, disk string
	vm        *qemuVM
	conn      net.Conn // its serial line
	serial    *netlab.Buffer
	answered  bool // the image choice was answered
}

// bootDeployVM starts a machine with mac on tap, a tap of lab, its disk
// (unless tc.noDisk) and serial socket in dir.
func bootDeployVM(ctx context.Context, t *testing.T, tap string, lab *netlab.Lab, tc deployCase, fw, dir, mac string) *deployVM {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := &deployVM{mac: mac, disk: filepath.Join(dir, "disk.raw"), serial: &netlab.Buffer{}}
	// The serial line is a socket QEMU waits on, so that the test sees all
	// of it and can type at the agent's console.
	sock := filepath.Join(dir, "serial.sock")
	args := []string{"-accel", "tcg", "-m", "1024", "-smp", "1", "-display", "none", "-monitor", "none",
		"-chardev", "socket,id=ser0,path=" + sock + ",server=on,wait=on", "-serial", "chardev:ser0",
		"-netdev", "tap,id=n0,ifname=" + tap + ",script=no,downscript=no"}
	if !tc.noDisk {
		if err := os.WriteFile(m.disk, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(m.disk, 1<<30); err != nil {
			t.Fatal(err)
		}
		// The disk comes first in the boot order: empty, the firmware
		// falls through to the network; deployed, it boots.
		args = append(args, "-drive", "file="+m.disk+",format=raw,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0,bootindex=1")
	}
	args = append(args, firmwareArgs(t, fw, dir, mac, "bootindex=2")...)
	m.vm = startVM(t, lab.LANCommand(ctx, "qemu-system-x86_64", args...))
	waitFor(t, 30*time.Second, "qemu's serial socket", func() bool {
		c, err := net.Dial("unix", sock)
		m.conn = c
		return err == nil
	})
	go io.Copy(m.serial, m.conn)
	return m
}

// await waits for want on the machine's serial line, answering the image
// choice when tc.choice.
func (m *deployVM) await(t *testing.T, tc deployCase, want string, deadline time.Time, nd *instance) {
	t.Helper()
	for !strings.Contains(m.serial.String(), want) {
		out := m.serial.String()
		if !tc.noDisk && strings.Contains(out, "NETDEPLOY-AGENT-FAILED") {
			t.Fatalf("%s: the agent failed:\n%s", m.mac, tail(out))
		}
		if tc.choice && !m.answered && strings.Contains(out, "Deploy which image (1-2)? ") {
			// The list is in catalogue order; answer with E2E's number,
			// after a wrong answer the agent must explain.
			line := out[strings.LastIndex(out, "Images on the server:"):]
			n := "2"
			if strings.Index(line, "E2E") < strings.Index(line, "Decoy") {
				n = "1"
			}
			io.WriteString(m.conn, "9\r")
			waitFor(t, time.Minute, "the agent to refuse 9", func() bool { return strings.Contains(m.serial.String(), "type a number from 1 to 2") })
			io.WriteString(m.conn, n+"\r")
			m.answered = true
		}
		select {
		case <-m.vm.done:
			if out := m.serial.String(); !strings.Contains(out, want) {
				t.Fatalf("%s: qemu exited (%v) before %s; serial:\n%s\nqemu: %s", m.mac, m.vm.err, want, tail(out), m.vm.out.String())
			}
		case <-time.After(time.Second):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s on the serial console:\n%s\nserver:\n%s", m.mac, want, tail(m.serial.String()), tail(nd.logs()))
		}
	}
}

// checkEvents checks the machine's stages, in order of first appearance,
// and their ports; it returns the port of its multicast events.
func (m *deployVM) checkEvents(t *testing.T, tc deployCase, fw string, nd *instance) int {
	t.Helper()
	mac := m.mac
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
		t.Errorf("%s: stages %v, want %v in that order", mac, order, wantStages)
	}
	for stage, port := range wantPorts {
		if ports[stage] != port {
			t.Errorf("%s: %s events carry port %d, want %d", mac, stage, ports[stage], port)
		}
	}
	if p := ports[tracker.StageRPC]; p != 135 && p != 5040 {
		t.Errorf("%s: rpc events carry port %d", mac, p)
	}
	if fw == "uefi" && ports[tracker.StageTFTP] == 0 {
		t.Errorf("%s: tftp events carry no port", mac)
	}
	if p := ports[tracker.StageMulticast]; tc.multicast && (p < 64001 || p > 65000) {
		t.Errorf("%s: multicast events carry port %d, want one of the UDP range 64001-65000", mac, p)
	}
	if tc.multicast && seen[tracker.StageSMB] {
		t.Errorf("%s: the image came by SMB too: stages %v", mac, order)
	}
	return ports[tracker.StageMulticast]
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
