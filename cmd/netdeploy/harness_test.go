package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// binary is the netdeploy binary built once for the tests that run it.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "netdeploy-bin-")
		if err != nil {
			buildErr = err
			return
		}
		os.Chmod(dir, 0o755) // other users run it too (privilege test)
		builtPath = filepath.Join(dir, "netdeploy")
		// Static, as README builds it: the binary is also the agent in the
		// initramfs it serves.
		build := exec.Command("go", "build", "-o", builtPath, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := build.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtPath
}

var (
	buildOnce sync.Once
	builtPath string
	buildErr  error
)

// instance is a running "netdeploy serve".
type instance struct {
	t       *testing.T
	cmd     *exec.Cmd
	mu      sync.Mutex
	events  []tracker.Event
	stderr  netlab.Buffer
	notify  chan struct{}
	exited  chan struct{}
	waitErr error
}

// serveIn starts netdeploy serve inside host's namespace with args.
func serveIn(t *testing.T, host *netlab.Host, args ...string) *instance {
	t.Helper()
	bin := binary(t)
	in := &instance{t: t, notify: make(chan struct{}, 1), exited: make(chan struct{})}
	in.cmd = host.Command(context.Background(), bin, append([]string{"serve"}, args...)...)
	in.cmd.Stderr = &in.stderr
	stdout, err := in.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e tracker.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("stdout line is not a JSON event: %q: %v", sc.Text(), err)
				continue
			}
			in.mu.Lock()
			in.events = append(in.events, e)
			in.mu.Unlock()
			select {
			case in.notify <- struct{}{}:
			default:
			}
		}
		in.waitErr = in.cmd.Wait()
		close(in.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-in.exited:
		default:
			in.cmd.Process.Kill()
			<-in.exited
		}
		if t.Failed() {
			var b strings.Builder
			for _, e := range in.all() {
				j, _ := json.Marshal(e)
				b.Write(j)
				b.WriteByte('\n')
			}
			t.Logf("netdeploy stderr:\n%s\nnetdeploy events:\n%s", in.logs(), b.String())
		}
	})
	in.wait(20*time.Second, "http listening", func(e tracker.Event) bool {
		return e.MAC == "" && e.Stage == tracker.StageHTTP && e.Event == tracker.KindListening
	})
	return in
}

func (in *instance) logs() string { return in.stderr.String() }

// all returns the events seen so far.
func (in *instance) all() []tracker.Event {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]tracker.Event(nil), in.events...)
}

// wait returns the first event matching ok, failing the test after d.
func (in *instance) wait(d time.Duration, what string, ok func(tracker.Event) bool) tracker.Event {
	in.t.Helper()
	deadline := time.After(d)
	for {
		for _, e := range in.all() {
			if ok(e) {
				return e
			}
		}
		select {
		case <-in.notify:
		case <-time.After(100 * time.Millisecond):
		case <-in.exited:
			for _, e := range in.all() {
				if ok(e) {
					return e
				}
			}
			in.t.Fatalf("netdeploy exited (%v) before %s", in.waitErr, what)
		case <-deadline:
			in.t.Fatalf("no event for %s within %s", what, d)
		}
	}
}

// stop sends SIGTERM and expects a clean exit.
func (in *instance) stop() {
	in.t.Helper()
	in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.exited:
	case <-time.After(20 * time.Second):
		in.t.Fatal("netdeploy did not stop within 20s of SIGTERM")
	}
	if in.waitErr != nil {
		in.t.Fatalf("netdeploy exit after SIGTERM: %v\n%s", in.waitErr, in.logs())
	}
	if !strings.Contains(in.logs(), "stopped cleanly") {
		in.t.Errorf("no clean-stop log line:\n%s", in.logs())
	}
}

func need(t *testing.T, progs ...string) {
	t.Helper()
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("needs %s (installed by .ci/test.sh)", p)
		}
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// capture runs tshark in host's namespace with a capture filter, printing
// the given fields; stop ends it (SIGINT, so tshark flushes) and returns
// the lines it printed.
func capture(t *testing.T, host *netlab.Host, filter string, fields ...string) (stop func() []string) {
	t.Helper()
	args := []string{"-i", host.Iface, "-n", "-l", "-f", filter, "-T", "fields"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	cmd := host.Command(context.Background(), "tshark", args...)
	var out, errb netlab.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(errb.String(), "Capturing on") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("tshark did not start: %s", errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// "Capturing on" comes from tshark before its capture child has the
	// filter on the socket: give it a moment, or a quick exchange is lost.
	time.Sleep(time.Second)
	stopped := false
	stop = func() []string {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGINT)
			cmd.Wait()
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
		return lines
	}
	t.Cleanup(func() { stop() })
	return stop
}

// TestMain removes the binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if builtPath != "" {
		os.RemoveAll(filepath.Dir(builtPath))
	}
	os.Exit(code)
}
