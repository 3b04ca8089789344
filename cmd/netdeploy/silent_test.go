package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/imaging/report"
	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// TestSilentAgentRealBinary: "netdeploy serve --silent-timeout 10s" marks
// an agent failed that stops talking mid-transfer. The server's link is
// throttled (tc tbf) so the transfer is still running when the agent is
// stopped (SIGSTOP) at its first apply progress; then the failed event
// with the silent reason appears on the JSON stream, and "netdeploy
// report" (table and CSV) lists the deployment failed with that reason,
// once.
func TestSilentAgentRealBinary(t *testing.T) {
	need(t, "tc")
	lab := netlab.New(t)
	srv := lab.AddHost("srv", "198.18.0.1/24", "")
	cli := lab.AddHost("a1", "198.18.0.21/24", "02:00:00:00:08:01")
	mac := cli.MAC.String()
	work := t.TempDir()
	images := filepath.Join(work, "images")
	randomFile(t, filepath.Join(images, "big.img"), 48<<20)
	if out, err := exec.Command(binary(t), "image", "add", filepath.Join(images, "big.img"), "--name", "Big").CombinedOutput(); err != nil {
		t.Fatalf("netdeploy image add: %v\n%s", err, out)
	}
	// About 1 MB/s from the server: 48 MiB take most of a minute.
	if out, err := srv.Run(context.Background(), "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "8mbit", "burst", "64kb", "latency", "1s"); err != nil {
		t.Skipf("needs tc with the tbf qdisc to hold the transfer mid-way: %v\n%s", err, out)
	}
	cfg := filepath.Join(work, "netdeploy.yaml")
	writeFile(t, cfg, []byte("accounts:\n  - name: agent\n    password: Agent-Pw1\n"))
	data := filepath.Join(work, "data")
	nd := serveIn(t, srv, "--config", cfg, "--interface", "eth0", "--data-dir", data, "--images-dir", images,
		"--dhcp-mode", "off", "--silent-timeout", "10s")

	agent := cli.Command(context.Background(), binary(t), "agent", "--server", "198.18.0.1", "--iface", "eth0",
		"--account", "agent", "--password", "Agent-Pw1", "--image", "Big", "--target-file", filepath.Join(work, "disk"), "--unicast")
	var out netlab.Buffer
	agent.Stdout, agent.Stderr = &out, &out
	// Its own process group: stopped and killed with whatever "ip netns
	// exec" left around it.
	agent.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	killed := false
	kill := func() {
		if !killed {
			killed = true
			syscall.Kill(-agent.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
	t.Cleanup(kill)

	nd.wait(60*time.Second, "the agent's first apply progress", func(e tracker.Event) bool {
		return e.MAC == mac && e.Stage == tracker.StageApply && e.Event == tracker.KindProgress && e.Bytes > 0
	})
	if err := syscall.Kill(-agent.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP the agent: %v", err)
	}
	failed := nd.wait(60*time.Second, "the silent failure of "+mac, func(e tracker.Event) bool {
		return e.MAC == mac && e.Stage == tracker.StageFailed
	})
	if failed.Event != tracker.KindError || !strings.HasPrefix(failed.Detail, "silent for ") {
		t.Fatalf("failed event %+v, want error \"silent for ...\"", failed)
	}
	for _, e := range nd.all() {
		if e.MAC == mac && e.Stage == tracker.StageDone {
			t.Fatalf("the agent finished before it was stopped: %+v\n%s", e, out.String())
		}
	}

	// The record is written before the event goes out: no waiting.
	recs, _, err := report.Scan(report.Path(data))
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	if len(recs) != 1 || recs[0].MAC != mac || recs[0].Result != report.ResultFailed || recs[0].Reason != failed.Detail ||
		recs[0].IP != "198.18.0.21" || recs[0].Image != "big.img" || recs[0].Bytes <= 0 || recs[0].Bytes >= 48<<20 {
		t.Fatalf("records %+v, want one failed for %s with %q, part of big.img", recs, mac, failed.Detail)
	}
	csvOut, err := exec.Command(binary(t), "report", "--data-dir", data, "--csv").Output()
	if err != nil {
		t.Fatalf("netdeploy report --csv: %v\n%s", err, csvOut)
	}
	rows, err := csv.NewReader(bytes.NewReader(csvOut)).ReadAll()
	if err != nil || len(rows) != 2 || !slices.Equal(rows[0], report.CSVHeader) {
		t.Fatalf("report --csv: %v\n%s", err, csvOut)
	}
	row := map[string]string{}
	for i, k := range rows[0] {
		row[k] = rows[1][i]
	}
	if row["mac"] != mac || row["result"] != "failed" || row["reason"] != failed.Detail {
		t.Errorf("report --csv row %v, want %s failed %q", row, mac, failed.Detail)
	}
	table, err := exec.Command(binary(t), "report", "--data-dir", data).Output()
	if err != nil {
		t.Fatalf("netdeploy report: %v\n%s", err, table)
	}
	if !strings.Contains(string(table), mac) || !strings.Contains(string(table), failed.Detail) || !strings.Contains(string(table), "0 done, 1 failed") {
		t.Errorf("report table:\n%s", table)
	}
	t.Logf("netdeploy report:\n%s", table)

	kill()
	nd.stop()
	if recs, err := report.Read(report.Path(data)); err != nil || len(recs) != 1 {
		t.Errorf("after the agent was killed and the server stopped: %v, records %+v", err, recs)
	}
	if n := len(slices.DeleteFunc(nd.all(), func(e tracker.Event) bool { return e.MAC != mac || e.Stage != tracker.StageFailed })); n != 1 {
		t.Errorf("%d failed events for %s, want 1", n, mac)
	}
}
