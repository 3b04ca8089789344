package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/netdeploy/netdeploy/server/netlab"
)

// scriptArgs fetches mac's boot script with curl from host and returns
// its kernel line's netdeploy.* parameters.
func scriptArgs(t *testing.T, host *netlab.Host, mac string) (map[string]string, string) {
	t.Helper()
	out, err := host.Run(context.Background(), "curl", "-sSf", "http://198.18.0.1/boot.ipxe?mac="+strings.ReplaceAll(mac, ":", "-"))
	if err != nil {
		t.Fatalf("curl boot.ipxe: %v\n%s", err, out)
	}
	args := map[string]string{}
	for _, m := range regexp.MustCompile(`netdeploy\.(\w+)=(\S+)`).FindAllStringSubmatch(out, -1) {
		args[m[1]] = m[2]
	}
	return args, out
}

// TestAgentBootEntry: with no boot.kernel and no boot.initrd the default
// entry is the machine's kernel with the agent's initramfs, built from
// this (static) binary and the kernel's modules. An approved client's
// script carries the server, a one-time logon and its image (the
// default, or one assigned through "netdeploy ctl assign"); the logon
// works for RPC and SMB and is spent once the deployment is done. A client
// waiting for approval gets no logon.
func TestAgentBootEntry(t *testing.T) {
	need(t, "curl")
	if l, _ := filepath.Glob("/boot/vmlinuz-*"); len(l) == 0 {
		t.Skip("needs a kernel in /boot (Debian package linux-image-amd64)")
	}
	lab := netlab.New(t)
	srv := lab.AddHost("srv", "198.18.0.1/24", "")
	cli := lab.AddHost("cli", "198.18.0.20/24", "02:00:00:00:08:01")
	work := t.TempDir()
	images := filepath.Join(work, "images")
	want := randomFile(t, filepath.Join(images, "base.img"), 3<<20+5)
	randomFile(t, filepath.Join(images, "other.img"), 1<<20)
	for _, name := range []string{"base", "other"} {
		if out, err := exec.Command(binary(t), "image", "add", filepath.Join(images, name+".img"), "--name", strings.ToUpper(name[:1])+name[1:], "--target-disk", "/dev/"+name).CombinedOutput(); err != nil {
			t.Fatalf("image add: %v\n%s", err, out)
		}
	}
	data := filepath.Join(work, "data")
	nd := serveIn(t, srv, "--interface", "eth0", "--data-dir", data, "--images-dir", images, "--dhcp-mode", "off",
		"--default-image", "Base", "--after", "poweroff", "--pxe-policy", "known")
	mac := cli.MAC.String()

	// Under policy known an unknown client is denied: no logon.
	if args, script := scriptArgs(t, cli, mac); args["password"] != "" || !strings.Contains(script, "denied") {
		t.Fatalf("denied client's script:\n%s", script)
	}
	ctl(t, data, "policy", "all")
	args, script := scriptArgs(t, cli, mac)
	if args["server"] != "198.18.0.1" || args["account"] != "nd-020000000801" || len(args["password"]) != 24 ||
		args["image"] != "Base" || args["after"] != "poweroff" || args["target"] != "/dev/base" {
		t.Fatalf("script:\n%s", script)
	}
	if again, _ := scriptArgs(t, cli, mac); again["password"] != args["password"] {
		t.Fatal("fetching the script again changed the logon")
	}
	if !strings.Contains(script, "initrd --name initrd http://198.18.0.1/netdeploy/initrd") || !strings.Contains(script, "initrd=initrd ") {
		t.Fatalf("no initrd in the script:\n%s", script)
	}

	// The initramfs: /init is this binary, with the module list.
	initrd := filepath.Join(work, "initrd")
	if out, err := cli.Run(context.Background(), "curl", "-sSf", "-o", initrd, "http://198.18.0.1/netdeploy/initrd?mac="+strings.ReplaceAll(mac, ":", "-")); err != nil {
		t.Fatalf("initrd: %v\n%s", err, out)
	}
	names := initrdNames(t, initrd)
	if !names["init"] || !names["etc/netdeploy/modules"] || !names["lib/modules"] {
		t.Fatalf("initramfs holds %v", names)
	}

	// An assignment through the control API wins over the default.
	ctl(t, data, "assign", mac, "Other")
	if a, _ := scriptArgs(t, cli, mac); a["image"] != "Other" || a["target"] != "/dev/other" || a["password"] != args["password"] {
		t.Fatalf("after assign: %v", a)
	}
	if out, err := ctlCmd(t, data, "assign", mac, "Nothing").CombinedOutput(); err == nil || !strings.Contains(string(out), `no image "Nothing"`) {
		t.Fatalf("assigning a missing image: %v %s", err, out)
	}
	ctl(t, data, "assign", mac)

	// The one-time logon deploys the assigned image, then it is spent.
	deploy := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		return cli.Run(ctx, binary(t), "agent", "--server", args["server"], "--iface", "eth0", "--account", args["account"],
			"--password", args["password"], "--image", args["image"], "--target-file", filepath.Join(work, "disk"))
	}
	if out, err := deploy(); err != nil {
		t.Fatalf("agent with the one-time logon: %v\n%s", err, out)
	}
	sameFile(t, "deployed", filepath.Join(work, "disk"), want)
	if out, err := deploy(); err == nil || !strings.Contains(out, "logon") {
		t.Fatalf("the spent logon worked again: %v\n%s", err, out)
	}
	if fresh, _ := scriptArgs(t, cli, mac); fresh["password"] == args["password"] || fresh["password"] == "" {
		t.Fatal("the next boot did not get a new logon")
	}
	if !strings.Contains(nd.logs(), "agent initramfs ready") {
		t.Errorf("no log line for the initramfs:\n%s", nd.logs())
	}
}

// initrdNames lists the names in a gzip-compressed newc archive.
func initrdNames(t *testing.T, path string) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("initrd is not gzip: %v", err)
	}
	r := cpio.NewReader(zr)
	names := map[string]bool{}
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("cpio: %v", err)
		}
		names[h.Name] = true
	}
	return names
}
