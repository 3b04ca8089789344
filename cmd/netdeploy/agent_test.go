package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/imaging/report"
	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// TestAgentRealBinary: an image registered with "netdeploy image add" is
// deployed by four "netdeploy agent" processes in their own namespaces at
// once onto files, byte-identical; a fifth asks for an image whose
// manifest lies and fails on the checksum. The events show apply and done
// (or failed) per MAC, and "netdeploy report" lists all five.
func TestAgentRealBinary(t *testing.T) {
	lab := netlab.New(t)
	srv := lab.AddHost("srv", "198.18.0.1/24", "")
	work := t.TempDir()
	images := filepath.Join(work, "images")
	want := randomFile(t, filepath.Join(images, "appliance.img"), 6<<20+17)
	bad := randomFile(t, filepath.Join(images, "broken.img"), 1<<20)
	for _, args := range [][]string{
		{"image", "add", filepath.Join(images, "appliance.img"), "--name", "Appliance", "--arch", "amd64"},
		{"image", "add", filepath.Join(images, "broken.img"), "--name", "Broken"},
	} {
		if out, err := exec.Command(binary(t), args...).CombinedOutput(); err != nil {
			t.Fatalf("netdeploy %v: %v\n%s", args, err, out)
		}
	}
	// Corrupt the second image after its manifest was written.
	bad[100] ^= 0xff
	writeFile(t, filepath.Join(images, "broken.img"), bad)
	cfg := filepath.Join(work, "netdeploy.yaml")
	writeFile(t, cfg, []byte("accounts:\n  - name: agent\n    password: Agent-Pw1\n"))
	data := filepath.Join(work, "data")
	nd := serveIn(t, srv, "--config", cfg, "--interface", "eth0", "--data-dir", data, "--images-dir", images, "--dhcp-mode", "off")

	type run struct {
		host   *netlab.Host
		image  string
		target string
		out    string
		err    error
	}
	runs := []*run{
		{host: lab.AddHost("a1", "198.18.0.11/24", "02:00:00:00:07:01"), image: "Appliance"},
		{host: lab.AddHost("a2", "198.18.0.12/24", "02:00:00:00:07:02"), image: "Appliance"},
		{host: lab.AddHost("a3", "198.18.0.13/24", "02:00:00:00:07:03"), image: "Appliance"},
		{host: lab.AddHost("a4", "198.18.0.14/24", "02:00:00:00:07:04"), image: "Appliance"},
		{host: lab.AddHost("a5", "198.18.0.15/24", "02:00:00:00:07:05"), image: "Broken"},
	}
	good, broken := runs[:4], runs[4]
	var wg sync.WaitGroup
	for i, r := range runs {
		r.target = filepath.Join(work, "disk"+string(rune('1'+i)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			r.out, r.err = r.host.Run(ctx, binary(t), "agent", "--server", "198.18.0.1", "--iface", "eth0",
				"--account", "agent", "--password", "Agent-Pw1", "--image", r.image, "--target-file", r.target, "--unicast")
		}()
	}
	wg.Wait()
	for _, r := range good {
		if r.err != nil {
			t.Fatalf("agent in %s: %v\n%s", r.host.Name, r.err, r.out)
		}
		sameFile(t, "deployed by "+r.host.Name, r.target, want)
	}
	if r := broken; r.err == nil || !strings.Contains(r.out, "checksum") {
		t.Fatalf("agent with a lying manifest: %v\n%s", r.err, r.out)
	}
	for _, r := range runs {
		mac := r.host.MAC.String()
		final := tracker.StageDone
		if r.image == "Broken" {
			final = tracker.StageFailed
		}
		nd.wait(10*time.Second, "the end of "+mac, func(e tracker.Event) bool { return e.MAC == mac && e.Stage == final })
		// Stages in order of first appearance: the image streams, so SMB
		// reads and apply writes interleave after both have started.
		var stages []tracker.Stage
		seen := map[tracker.Stage]bool{}
		for _, e := range nd.all() {
			if e.MAC == mac && !seen[e.Stage] && e.Event != tracker.KindLog {
				seen[e.Stage] = true
				stages = append(stages, e.Stage)
			}
		}
		got := make([]string, len(stages))
		for i, s := range stages {
			got[i] = string(s)
		}
		if !strings.Contains(strings.Join(got, ","), "rpc,smb,apply,"+string(final)) {
			t.Errorf("%s went through %v, want rpc, smb, apply, %s", mac, got, final)
		}
	}
	nd.stop()
	out, err := exec.Command(binary(t), "report", "--data-dir", data, "--csv").CombinedOutput()
	if err != nil {
		t.Fatalf("netdeploy report: %v\n%s", err, out)
	}
	recs, _, err := report.Scan(report.Path(data))
	if err != nil || len(recs) != len(runs) {
		b, _ := json.Marshal(recs)
		t.Fatalf("report: %v, %d records: %s\n%s", err, len(recs), b, out)
	}
	for _, rec := range recs {
		switch rec.MAC {
		case good[0].host.MAC.String(), good[1].host.MAC.String(), good[2].host.MAC.String(), good[3].host.MAC.String():
			if rec.Result != report.ResultDone || rec.Bytes != int64(len(want)) || rec.Image != "appliance.img" || rec.SHA256 == "" {
				t.Errorf("record %+v", rec)
			}
		case broken.host.MAC.String():
			if rec.Result != report.ResultFailed || !strings.Contains(rec.Reason, "checksum") {
				t.Errorf("record %+v", rec)
			}
		default:
			t.Errorf("record for an unknown MAC: %+v", rec)
		}
	}
	if !strings.Contains(string(out), "failed") || !strings.Contains(string(out), "done") {
		t.Errorf("report output:\n%s", out)
	}
}
