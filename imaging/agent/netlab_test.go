//go:build linux

package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// TestRunNamespaces runs four agents at once, each in a network namespace
// of its own, against the servers in the server's namespace; each learns
// its CLIENT_MAC from its interface.
func TestRunNamespaces(t *testing.T) {
	lab := netlab.New(t)
	srv := lab.AddHost("srv", "198.18.7.1/24", "")
	im := newImages(t)
	s := startServersOn(t, im.dir, srv.IP(), func(addr string) net.Listener {
		var ln net.Listener
		if err := srv.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
			t.Fatal(err)
		}
		return ln
	})
	sub := s.tr.Subscribe()
	defer sub.Close()
	var hosts []*netlab.Host
	for i := range 4 {
		hosts = append(hosts, lab.AddHost(fmt.Sprintf("c%d", i), fmt.Sprintf("198.18.7.%d/24", 10+i), fmt.Sprintf("52:54:00:07:00:%02x", i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(hosts))
	targets := make([]string, len(hosts))
	for i, h := range hosts {
		cfg := s.config(t, "alpha")
		cfg.Server, cfg.MAC, cfg.Iface = srv.IP(), nil, h.Iface
		cfg.ProgressEvery = 5 * time.Millisecond
		targets[i] = filepath.Join(t.TempDir(), "disk")
		cfg.TargetFile = targets[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.Do(func() error { _, err := Run(ctx, cfg); return err })
		}()
	}
	wg.Wait()
	want := im.data[`raw\alpha.img`]
	for i, h := range hosts {
		if errs[i] != nil {
			t.Errorf("%s: %v", h.Name, errs[i])
			continue
		}
		got, err := os.ReadFile(targets[i])
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: target differs (%v)", h.Name, err)
		}
		c, ok := s.tr.Client(h.MAC.String())
		if !ok || c.Stage != tracker.StageDone || c.IP != h.IP().String() {
			t.Errorf("%s: tracker record %+v", h.Name, c)
		}
	}
	// Each client's apply events come in order: start, progress, done,
	// then done.
	seq := map[string][]tracker.Kind{}
	for _, e := range sub.Next() {
		if e.Stage == tracker.StageApply || e.Stage == tracker.StageDone {
			k := e.Event
			if e.Stage == tracker.StageDone {
				k = "deployed"
			}
			if n := len(seq[e.MAC]); n > 0 && seq[e.MAC][n-1] == k && k == tracker.KindProgress {
				continue
			}
			seq[e.MAC] = append(seq[e.MAC], k)
		}
	}
	for _, h := range hosts {
		got := fmt.Sprint(seq[h.MAC.String()])
		if got != "[start progress done deployed]" {
			t.Errorf("%s: apply events %s", h.Name, got)
		}
	}
}

// loopDevice attaches a size-byte file as a loop block device, or skips.
func loopDevice(t *testing.T, size int64) (dev, backing string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a loop device")
	}
	backing = filepath.Join(t.TempDir(), "backing")
	if err := os.WriteFile(backing, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(backing, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", backing).Output()
	if err != nil {
		t.Skipf("no loop device: %v", err)
	}
	dev = strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev, backing
}

func TestRunBlockDevice(t *testing.T) {
	im := newImages(t)
	s := startServers(t, im.dir)
	want := im.data[`raw\alpha.img`]

	dev, backing := loopDevice(t, 5<<20)
	cfg := s.config(t, "alpha")
	cfg.TargetFile = dev
	res, err := Run(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(backing)
	if err != nil || len(got) != 5<<20 || !bytes.Equal(got[:len(want)], want) || res.SHA256 != sum(want) {
		t.Fatalf("device content differs (%d bytes, %v)", len(got), err)
	}

	small, _ := loopDevice(t, 1<<20)
	sub := s.tr.Subscribe()
	defer sub.Close()
	cfg = s.config(t, "alpha")
	cfg.TargetFile = small
	if _, err := Run(testContext(t), cfg); !errors.Is(err, ErrTargetSmall) {
		t.Fatalf("small device: %v", err)
	}
	ev := applyEvents(sub.Next())
	if len(ev) != 1 || ev[0].Stage != tracker.StageFailed || !strings.Contains(ev[0].Detail, "too small") {
		t.Errorf("events %+v", ev)
	}
}
