package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/imaging/report"
	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// TestAgentMulticastRealBinary: "netdeploy agent" processes in their own
// namespaces ask for the same raw image; the server offers it by
// multicast, they join over RPC and receive it from one session,
// byte-identical. tshark on the server sees every UDP port of the session
// inside udp_range; each client goes through the multicast stage; the
// report has every deployment done.
//
//   - clean: four agents, 128 MiB; the session sends at most 1.15x.
//   - loss: 5% random loss on one agent's input (an nft numgen rule in its
//     namespace); at most 1.5x.
//   - churn: one of four agents is killed midway and a fifth joins late:
//     the others and the late one complete.
func TestAgentMulticastRealBinary(t *testing.T) {
	need(t, "tshark")
	for _, tc := range []struct {
		name  string
		size  int
		limit float64
		loss  bool
		churn bool
	}{
		{name: "clean", size: 128 << 20, limit: 1.15},
		{name: "loss", size: 64 << 20, limit: 1.5, loss: true},
		{name: "churn", size: 64 << 20, churn: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.loss {
				need(t, "nft")
			}
			multicastRun(t, tc.size, tc.limit, tc.loss, tc.churn)
		})
	}
}

func multicastRun(t *testing.T, size int, limit float64, loss, churn bool) {
	lab := netlab.New(t)
	srv := lab.AddHost("srv", "198.18.0.1/24", "")
	work := t.TempDir()
	images := filepath.Join(work, "images")
	want := randomFile(t, filepath.Join(images, "fleet.img"), size)
	if out, err := exec.Command(binary(t), "image", "add", filepath.Join(images, "fleet.img"), "--name", "Fleet").CombinedOutput(); err != nil {
		t.Fatalf("image add: %v\n%s", err, out)
	}
	cfg := filepath.Join(work, "netdeploy.yaml")
	conf := "accounts:\n  - name: agent\n    password: Agent-Pw1\n"
	if loss {
		// Server, receivers and test share two cores here: capped, the
		// receivers keep up, so the loss measured is the 5% injected and
		// not CPU starvation of a busy machine.
		conf += "multicast:\n  max_rate: 400\n"
	}
	writeFile(t, cfg, []byte(conf))
	data := filepath.Join(work, "data")
	const first, last = 64200, 64299
	nd := serveIn(t, srv, "--config", cfg, "--interface", "eth0", "--data-dir", data, "--images-dir", images,
		"--dhcp-mode", "off", "--udp-range", strconv.Itoa(first)+"-"+strconv.Itoa(last), "--multicast-start", "clients:4")
	stop := capture(t, srv, "udp and not port 137 and not port 138", "udp.srcport", "udp.dstport", "ip.dst")

	type run struct {
		host   *netlab.Host
		target string
		out    string
		err    error
		killed bool
	}
	var runs []*run
	for i := 1; i <= 5; i++ {
		runs = append(runs, &run{host: lab.AddHost("m"+strconv.Itoa(i), "198.18.0."+strconv.Itoa(20+i)+"/24", "02:00:00:00:09:0"+strconv.Itoa(i)),
			target: filepath.Join(work, "disk"+strconv.Itoa(i))})
	}
	if loss {
		for _, args := range [][]string{
			{"add", "table", "inet", "mcloss"},
			{"add", "chain", "inet", "mcloss", "input", "{ type filter hook input priority 0 ; }"},
			{"add", "rule", "inet", "mcloss", "input", "meta", "l4proto", "udp", "numgen", "random", "mod", "100", "<", "5", "counter", "drop"},
		} {
			if out, err := runs[0].host.Run(context.Background(), "nft", args...); err != nil {
				t.Fatalf("nft %v: %v\n%s", args, err, out)
			}
		}
	}
	start := func(r *run, wg *sync.WaitGroup) *exec.Cmd {
		cmd := r.host.Command(context.Background(), binary(t), "agent", "--server", "198.18.0.1", "--iface", "eth0",
			"--account", "agent", "--password", "Agent-Pw1", "--image", "Fleet", "--target-file", r.target)
		var out netlab.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.err = cmd.Wait()
			r.out = out.String()
		}()
		return cmd
	}
	var wg sync.WaitGroup
	cmds := make([]*exec.Cmd, 4)
	for i, r := range runs[:4] {
		cmds[i] = start(r, &wg)
	}
	active := runs[:4]
	if churn {
		// Once the session is a quarter through, one agent dies and a
		// fifth arrives.
		victim := runs[1]
		nd.wait(2*time.Minute, "a quarter of the image", func(e tracker.Event) bool {
			return e.Stage == tracker.StageMulticast && e.Event == tracker.KindProgress && e.Bytes > int64(size/4)
		})
		cmds[1].Process.Kill()
		victim.killed = true
		start(runs[4], &wg)
		active = []*run{runs[0], runs[2], runs[3], runs[4]}
	}
	wg.Wait()
	for _, r := range active {
		if r.err != nil {
			t.Fatalf("agent in %s: %v\n%s", r.host.Name, r.err, r.out)
		}
		if !strings.Contains(r.out, "joined the multicast session") || strings.Contains(r.out, "by SMB") {
			t.Errorf("agent in %s did not finish by multicast:\n%s", r.host.Name, r.out)
		}
		sameFile(t, "received by "+r.host.Name, r.target, want)
		mac := r.host.MAC.String()
		nd.wait(10*time.Second, "multicast done for "+mac, func(e tracker.Event) bool {
			return e.MAC == mac && e.Stage == tracker.StageMulticast && e.Event == tracker.KindDone
		})
		nd.wait(10*time.Second, "done for "+mac, func(e tracker.Event) bool { return e.MAC == mac && e.Stage == tracker.StageDone })
	}
	nd.stop()
	lines := stop()

	// Every datagram of the session, data and control, uses ports of the
	// range (the SMB, RPC and NetBIOS traffic is TCP or excluded).
	var datagrams int
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 3 {
			continue
		}
		src, _ := strconv.Atoi(f[0])
		dst, _ := strconv.Atoi(f[1])
		if src < first || src > last || dst < first || dst > last {
			t.Errorf("datagram outside udp_range: %s", l)
			continue
		}
		if strings.HasPrefix(f[2], "239.") {
			datagrams++
		}
	}
	if datagrams < size/1500 {
		t.Errorf("tshark saw %d multicast datagrams, fewer than the image needs", datagrams)
	}
	m := regexp.MustCompile(`multicast session over".*bytes_sent=(\d+)`).FindStringSubmatch(nd.logs())
	if m == nil {
		t.Fatalf("no session summary in the log:\n%s", tail(nd.logs()))
	}
	sent, _ := strconv.ParseFloat(m[1], 64)
	ratio := sent / float64(size)
	t.Logf("the session sent %.3fx the image", ratio)
	if limit > 0 && ratio > limit {
		t.Errorf("the session sent %.3fx the image, more than %.2fx", ratio, limit)
	}
	recs, _, err := report.Scan(report.Path(data))
	if err != nil {
		t.Fatal(err)
	}
	done := 0
	for _, rec := range recs {
		if rec.Result == report.ResultDone && rec.Bytes == int64(size) {
			done++
		}
	}
	if done != len(active) {
		t.Errorf("report: %d done, want %d: %+v", done, len(active), recs)
	}
}

// TestAgentMulticastSlowLane: with multicast.slow_client split, a client
// on a link throttled to 8 Mbit/s (tc tbf on its switch port) is dropped
// from the main session as too slow and finishes from the image's slow
// lane, by multicast still; the three others finish from the main
// session. All four are byte-identical.
func TestAgentMulticastSlowLane(t *testing.T) {
	need(t, "tc")
	lab := netlab.New(t)
	srv := lab.AddHost("srv", "198.18.0.1/24", "")
	work := t.TempDir()
	images := filepath.Join(work, "images")
	const size = 12 << 20
	want := randomFile(t, filepath.Join(images, "fleet.img"), size)
	if out, err := exec.Command(binary(t), "image", "add", filepath.Join(images, "fleet.img"), "--name", "Fleet").CombinedOutput(); err != nil {
		t.Fatalf("image add: %v\n%s", err, out)
	}
	cfg := filepath.Join(work, "netdeploy.yaml")
	writeFile(t, cfg, []byte("accounts:\n  - name: agent\n    password: Agent-Pw1\n"))
	nd := serveIn(t, srv, "--config", cfg, "--interface", "eth0", "--data-dir", filepath.Join(work, "data"), "--images-dir", images,
		"--dhcp-mode", "off", "--multicast-start", "clients:4", "--multicast-slow-client", "split")
	var hosts []*netlab.Host
	for i := 1; i <= 4; i++ {
		hosts = append(hosts, lab.AddHost("s"+strconv.Itoa(i), "198.18.0."+strconv.Itoa(30+i)+"/24", "02:00:00:00:0a:0"+strconv.Itoa(i)))
	}
	// The slow one's switch port: 8 Mbit/s with a short queue, so that the
	// group's rate shows as loss.
	tbf := lab.LANCommand(context.Background(), "tc", "qdisc", "add", "dev", "vs4", "root", "tbf", "rate", "8mbit", "burst", "32kb", "latency", "20ms")
	if out, err := tbf.CombinedOutput(); err != nil {
		t.Skipf("needs tc with the tbf qdisc: %v\n%s", err, out)
	}
	outs := make([]string, 4)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			outs[i], errs[i] = h.Run(ctx, binary(t), "agent", "--server", "198.18.0.1", "--iface", "eth0",
				"--account", "agent", "--password", "Agent-Pw1", "--image", "Fleet", "--target-file", filepath.Join(work, "disk"+strconv.Itoa(i)))
		}()
	}
	wg.Wait()
	for i, h := range hosts {
		if errs[i] != nil {
			t.Fatalf("agent in %s: %v\n%s", h.Name, errs[i], outs[i])
		}
		sameFile(t, "received by "+h.Name, filepath.Join(work, "disk"+strconv.Itoa(i)), want)
		if strings.Contains(outs[i], "reading the image by SMB") {
			t.Errorf("agent in %s fell back to SMB:\n%s", h.Name, outs[i])
		}
		slow := strings.Contains(outs[i], "slow_lane=true")
		if (i == 3) != slow {
			t.Errorf("agent in %s: slow lane %v:\n%s", h.Name, slow, outs[i])
		}
	}
	if !strings.Contains(nd.logs(), "(slow lane)") {
		t.Errorf("no slow-lane session in the server log:\n%s", tail(nd.logs()))
	}
}
