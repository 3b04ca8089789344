package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// TestSMBRealBinary: the real binary serves images_dir over SMB in a
// namespace. smbclient lists the shares and gets a file byte-identical on
// 445 and through the NetBIOS session service on 139; nmblookup resolves
// the server name; a wrong password is refused; the events name the
// account, the share and the file with its size.
func TestSMBRealBinary(t *testing.T) {
	need(t, "smbclient", "nmblookup")
	lab := netlab.New(t)
	srv := lab.AddHost("srv", "198.18.0.1/24", "")
	cli := lab.AddHost("cli", "198.18.0.9/24", "")
	work := t.TempDir()
	images := filepath.Join(work, "images")
	want := randomFile(t, filepath.Join(images, "disk.img"), 5<<20+123)
	cfg := filepath.Join(work, "netdeploy.yaml")
	writeFile(t, cfg, []byte("accounts:\n  - name: tech\n    password: S3cret!\nsmb:\n  name: LABSRV\n"))
	nd := serveIn(t, srv, "--config", cfg, "--interface", "eth0", "--data-dir", filepath.Join(work, "data"), "--images-dir", images, "--dhcp-mode", "off")
	ctx := context.Background()

	out, err := cli.Run(ctx, "smbclient", "-L", "//198.18.0.1", "-U", "tech%S3cret!", "-m", "SMB3_11")
	if err != nil || !strings.Contains(out, "images") || !strings.Contains(out, "IPC$") {
		t.Fatalf("smbclient -L: %v\n%s", err, out)
	}
	for _, port := range []string{"445", "139"} {
		got := filepath.Join(work, "got-"+port)
		out, err := cli.Run(ctx, "smbclient", "//198.18.0.1/images", "-p", port, "-U", "tech%S3cret!", "-m", "SMB3_11",
			"--option=client signing=required", "-c", "get disk.img "+got)
		if err != nil {
			t.Fatalf("smbclient get on %s: %v\n%s", port, err, out)
		}
		sameFile(t, "SMB port "+port, got, want)
	}
	// Windows clients do not care about case: neither does the share.
	upper := filepath.Join(work, "got-upper")
	if out, err := cli.Run(ctx, "smbclient", "//198.18.0.1/images", "-U", "tech%S3cret!", "-c", "get DISK.IMG "+upper); err != nil {
		t.Fatalf("smbclient get DISK.IMG: %v\n%s", err, out)
	}
	sameFile(t, "SMB, name in another case", upper, want)
	// impacket's smbclient (run with /usr/bin/python3) reads it too.
	const impacketSMB = "/usr/share/doc/python3-impacket/examples/smbclient.py"
	if _, err := os.Stat(impacketSMB); err == nil {
		dir := filepath.Join(work, "impacket")
		os.MkdirAll(dir, 0o755)
		cmds := filepath.Join(work, "impacket.cmds")
		writeFile(t, cmds, []byte("use images\nls\nget disk.img\nexit\n"))
		cmd := cli.Command(ctx, "/usr/bin/python3", impacketSMB, "-file", cmds, "tech:S3cret!@198.18.0.1")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "disk.img") {
			t.Fatalf("impacket smbclient: %v\n%s", err, out)
		}
		sameFile(t, "impacket smbclient", filepath.Join(dir, "disk.img"), want)
	} else {
		t.Errorf("impacket missing (%v): the test script installs python3-impacket", err)
	}
	if out, err := cli.Run(ctx, "smbclient", "//198.18.0.1/images", "-U", "tech%wrong", "-c", "ls"); err == nil || !strings.Contains(out, "NT_STATUS_LOGON_FAILURE") {
		t.Errorf("wrong password: %v\n%s", err, out)
	}
	if out, err := cli.Run(ctx, "nmblookup", "--configfile=/dev/null", "-U", "198.18.0.1", "--recursion", "LABSRV"); err != nil || !strings.Contains(out, "198.18.0.1 LABSRV<00>") {
		t.Errorf("nmblookup: %v\n%s", err, out)
	}
	nd.wait(5*time.Second, "a logon event", func(e tracker.Event) bool {
		return e.Stage == tracker.StageSMB && e.IP == "198.18.0.9" && e.Detail == "logon tech"
	})
	nd.wait(5*time.Second, "a failed logon event", func(e tracker.Event) bool {
		return e.Stage == tracker.StageSMB && e.Event == tracker.KindError && strings.Contains(e.Detail, "logon failed")
	})
	nd.wait(5*time.Second, "the file read to the end", func(e tracker.Event) bool {
		return e.Stage == tracker.StageSMB && e.Event == tracker.KindDone && e.File == "disk.img" && e.Bytes == int64(len(want)) && e.Total == int64(len(want))
	})
	nd.stop()
}
