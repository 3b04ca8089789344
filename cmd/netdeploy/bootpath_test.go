package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/tracker"
)

const udhcpcScript = `#!/bin/sh
case "$1" in
bound|renew)
  echo "LEASE ip=$ip mask=$mask serverid=$serverid siaddr=$siaddr boot_file=$boot_file bootfile=$bootfile tftp=$tftp lease=$lease"
  ip addr flush dev "$interface"
  ip addr add "$ip/$mask" dev "$interface"
  ;;
esac
`

// lease is what udhcpc reported.
type lease map[string]string

var leaseLine = regexp.MustCompile(`LEASE (.*)`)

// udhcpc runs busybox's DHCP client once in host with extra options and
// returns the lease it got.
func udhcpc(t *testing.T, h *netlab.Host, dir string, extra ...string) (lease, error) {
	t.Helper()
	script := filepath.Join(dir, "udhcpc.sh")
	if _, err := os.Stat(script); err != nil {
		writeFile(t, script, []byte(udhcpcScript))
		os.Chmod(script, 0o755)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	args := append([]string{"-f", "-q", "-n", "-t", "6", "-T", "2", "-i", h.Iface, "-s", script}, extra...)
	out, err := h.Run(ctx, "udhcpc", args...)
	if err != nil {
		return nil, err
	}
	m := leaseLine.FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("no lease in udhcpc output: %s", out)
	}
	l := lease{}
	for _, kv := range strings.Fields(m[1]) {
		k, v, _ := strings.Cut(kv, "=")
		l[k] = v
	}
	return l, nil
}

func randomFile(t *testing.T, path string, size int) []byte {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	writeFile(t, path, b)
	return b
}

func sameFile(t *testing.T, what, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: %d bytes differ from the %d served", what, len(got), len(want))
	}
}

// TestBootPathRealClients runs the real binary in a namespace and drives it
// with busybox udhcpc, curl, tftp-hpa and atftp.
func TestBootPathRealClients(t *testing.T) {
	need(t, "udhcpc", "curl", "tftp", "atftp", "tshark")
	lab := netlab.New(t)
	srv := lab.AddHost("srv", "198.18.0.1/24", "")
	cli := lab.AddHost("cli", "", "02:00:00:00:01:01")
	work := t.TempDir()
	data, root := filepath.Join(work, "data"), filepath.Join(work, "root")
	small := randomFile(t, filepath.Join(root, "small.bin"), 1000)
	big := randomFile(t, filepath.Join(root, "big.bin"), 8<<20+123)
	wds := randomFile(t, filepath.Join(root, "Boot", "x64", "wdsmgfw.efi"), 70000)
	exact := randomFile(t, filepath.Join(root, "exact.bin"), 1468*40)
	writeFile(t, filepath.Join(work, "secret"), []byte("secret"))
	os.Symlink(filepath.Join(work, "secret"), filepath.Join(root, "link-out"))

	args := []string{"--interface", "eth0", "--data-dir", data, "--tftp-root", root, "--udp-range", "64001-64100",
		"--dhcp-pool", "198.18.0.100-198.18.0.120"}
	nd := serveIn(t, srv, args...)

	// DHCP with PXE options: BIOS, x64 UEFI, and a client that is iPXE.
	bios, err := udhcpc(t, cli, work, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000")
	if err != nil {
		t.Fatal(err)
	}
	if bios["serverid"] != "198.18.0.1" || bios["siaddr"] != "198.18.0.1" || bios["boot_file"] != "undionly.kpxe" || bios["tftp"] != "198.18.0.1" {
		t.Errorf("BIOS lease %v", bios)
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(bios["ip"], "198.18.0."))
	if !strings.HasPrefix(bios["ip"], "198.18.0.") || n < 100 || n > 120 || bios["mask"] != "24" {
		t.Errorf("address %s/%s outside the pool", bios["ip"], bios["mask"])
	}
	efi, err := udhcpc(t, cli, work, "-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007")
	if err != nil {
		t.Fatal(err)
	}
	if efi["boot_file"] != "snponly.efi" || efi["ip"] != bios["ip"] {
		t.Errorf("UEFI lease %v (a MAC keeps its address: %s)", efi, bios["ip"])
	}
	ipxe, err := udhcpc(t, cli, work, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000", "-x", "0x4d:69505845")
	if err != nil {
		t.Fatal(err)
	}
	if ipxe["boot_file"] != "http://198.18.0.1/boot.ipxe" {
		t.Errorf("iPXE client must get the script URL, got %v", ipxe)
	}
	plain, err := udhcpc(t, cli, work)
	if err != nil {
		t.Fatal(err)
	}
	if plain["boot_file"] != "" || plain["ip"] != bios["ip"] {
		t.Errorf("non-PXE client: %v", plain)
	}
	cliIP := bios["ip"]
	nd.wait(5*time.Second, "dhcp done for the client", func(e tracker.Event) bool {
		return e.MAC == cli.MAC.String() && e.Stage == tracker.StageDHCP && e.Event == tracker.KindDone && e.IP == cliIP
	})

	// Capture what the server sends while the transfers run.
	stopCapture := capture(t, srv, "udp and src host 198.18.0.1 and not port 67 and not port 68 and not port 4011", "udp.srcport", "udp.dstport")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	get := func(what string, want []byte, out string, name string, args ...string) {
		t.Helper()
		if o, err := cli.Run(ctx, name, args...); err != nil {
			t.Errorf("%s: %v\n%s", what, err, o)
			return
		}
		sameFile(t, what, out, want)
	}
	o := func(n string) string { return filepath.Join(work, n) }
	get("curl tftp lock-step default", big, o("c1"), "curl", "-sS", "-o", o("c1"), "tftp://198.18.0.1/big.bin")
	get("curl tftp blksize 1468", big, o("c2"), "curl", "-sS", "--tftp-blksize", "1468", "-o", o("c2"), "tftp://198.18.0.1/big.bin")
	get("curl tftp exact multiple", exact, o("c3"), "curl", "-sS", "--tftp-blksize", "1468", "-o", o("c3"), "tftp://198.18.0.1/exact.bin")
	get("curl http", big, o("c4"), "curl", "-sS", "-f", "-o", o("c4"), "http://198.18.0.1/big.bin")
	get("tftp-hpa no options", small, o("h1"), "tftp", "198.18.0.1", "-m", "binary", "-c", "get", "small.bin", o("h1"))
	get("tftp-hpa big, block rollover at 512", big, o("h2"), "tftp", "198.18.0.1", "-m", "binary", "-c", "get", "big.bin", o("h2"))
	get("tftp-hpa backslash path", wds, o("h3"), "tftp", "198.18.0.1", "-m", "binary", "-c", "get", `\boot\X64\WDSMGFW.EFI`, o("h3"))
	get("atftp no options", small, o("a1"), "atftp", "-g", "-r", "small.bin", "-l", o("a1"), "198.18.0.1")
	get("atftp blksize tsize", big, o("a2"), "atftp", "--option", "blksize 1468", "--option", "tsize enable", "-g", "-r", "big.bin", "-l", o("a2"), "198.18.0.1")
	get("atftp windowsize 16", big, o("a3"), "atftp", "--option", "blksize 1468", "--option", "windowsize 16", "-g", "-r", "big.bin", "-l", o("a3"), "198.18.0.1")
	get("atftp windowsize 8 blksize 512", exact, o("a4"), "atftp", "--option", "windowsize 8", "-g", "-r", "exact.bin", "-l", o("a4"), "198.18.0.1")

	// Traversal and missing files: refused, nothing written.
	for i, p := range []string{"../secret", "../../../../etc/passwd", "link-out", `..\secret`, "/etc/passwd", "missing.bin"} {
		out := o(fmt.Sprintf("bad%d", i))
		res, _ := cli.Run(ctx, "tftp", "198.18.0.1", "-m", "binary", "-c", "get", p, out)
		if b, err := os.ReadFile(out); err == nil && len(b) > 0 {
			t.Errorf("tftp get %q wrote %d bytes: %s", p, len(b), res)
		}
		if !strings.Contains(res, "Error code") {
			t.Errorf("tftp get %q: no TFTP error: %q", p, res)
		}
		if st, err := cli.Run(ctx, "curl", "-sS", "-o", out+"c", "tftp://198.18.0.1/"+strings.ReplaceAll(p, "/", "%2f")); err == nil {
			t.Errorf("curl get %q succeeded: %s", p, st)
		}
	}

	captured := stopCapture()
	// Every datagram the TFTP service sent came from port 69 (errors to a
	// request) or from a session port inside udp_range.
	var inRange int
	for _, line := range captured {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		src, _ := strconv.Atoi(f[0])
		switch {
		case src >= 64001 && src <= 64100:
			inRange++
		case src == 69, src == 80:
		default:
			t.Errorf("datagram from port %d, outside udp_range 64001-64100: %s", src, line)
		}
	}
	t.Logf("%d datagrams from session ports inside udp_range", inRange)
	if inRange < 10000 {
		t.Errorf("only %d TFTP data datagrams captured from the range; capture broken?", inRange)
	}

	// The events tell the story per client, with the MAC learnt from DHCP.
	done := nd.wait(5*time.Second, "tftp done for big.bin", func(e tracker.Event) bool {
		return e.Stage == tracker.StageTFTP && e.Event == tracker.KindDone && e.File == "big.bin"
	})
	if done.MAC != cli.MAC.String() || done.IP != cliIP || done.Port != 69 || done.Bytes != int64(len(big)) || done.LocalPort < 64001 || done.LocalPort > 64100 {
		t.Errorf("tftp done event %+v", done)
	}
	nd.wait(5*time.Second, "tftp error for traversal", func(e tracker.Event) bool {
		return e.Stage == tracker.StageTFTP && e.Event == tracker.KindError && e.MAC == cli.MAC.String()
	})
	nd.wait(5*time.Second, "http done", func(e tracker.Event) bool {
		return e.Stage == tracker.StageHTTP && e.Event == tracker.KindDone && e.File == "big.bin" && e.Bytes == int64(len(big))
	})
	for _, e := range nd.all() {
		if e.Time.IsZero() || e.Stage == "" || e.Event == "" {
			t.Errorf("event lacks time/stage/event: %+v", e)
		}
	}

	t.Logf("%d events; leases: first client %s", len(nd.all()), cliIP)

	// Leases survive a restart: stop cleanly, start again, same address.
	nd.stop()
	raw, err := os.ReadFile(filepath.Join(data, "leases.json"))
	if err != nil || !strings.Contains(string(raw), cli.MAC.String()) || !strings.Contains(string(raw), cliIP) {
		t.Fatalf("leases on disk: %v %s", err, raw)
	}
	var anyJSON any
	if err := json.Unmarshal(raw, &anyJSON); err != nil {
		t.Fatalf("leases.json is not JSON: %v", err)
	}
	nd2 := serveIn(t, srv, args...)
	other := lab.AddHost("cli2", "", "02:00:00:00:01:02")
	again, err := udhcpc(t, cli, work, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000")
	if err != nil {
		t.Fatal(err)
	}
	second, err := udhcpc(t, other, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if again["ip"] != cliIP || second["ip"] == cliIP || second["ip"] == "" {
		t.Errorf("after restart: first client %s (was %s), second client %s", again["ip"], cliIP, second["ip"])
	}
	nd2.stop()
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
