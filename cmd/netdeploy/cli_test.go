package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runBinary runs netdeploy with args and returns its exit code and output.
func runBinary(t *testing.T, env []string, cred *syscall.Credential, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), out.String(), errb.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, out.String(), errb.String()
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("netdeploy %v did not exit", args)
	}
	return -1, "", ""
}

// TestBadConfigExits2 checks that every kind of bad configuration ends
// with status 2 and a single line naming the key, never a stack trace.
func TestBadConfigExits2(t *testing.T) {
	dir := t.TempDir()
	ipxe := t.TempDir()
	cfgFile := dir + "/bad.yaml"
	writeFile(t, cfgFile, []byte("dhcp:\n  mdoe: proxy\n"))
	base := []string{"serve", "--data-dir", dir, "--ipxe-dir", ipxe}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		says string
	}{
		{"unknown interface", nil, []string{"--interface", "nosuch0"}, `interface: no interface named "nosuch0"`},
		{"malformed range", nil, []string{"--interface", "lo", "--udp-range", "64001"}, "udp_range: "},
		{"inverted range", nil, []string{"--interface", "lo", "--udp-range", "65000-64001"}, "udp_range: 65000-64001 is inverted"},
		{"low ports", nil, []string{"--interface", "lo", "--udp-range", "100-2000"}, "udp_range: 100-2000 includes ports below 1024"},
		{"pool outside subnet", nil, []string{"--interface", "lo", "--dhcp-pool", "198.18.0.10-198.18.0.20"}, "dhcp.pool: 198.18.0.10-198.18.0.20 is outside lo's subnet"},
		{"unknown mode flag", nil, []string{"--interface", "lo", "--dhcp-mode", "rogue"}, `dhcp.mode: unknown mode "rogue"`},
		{"unknown mode env", []string{"NETDEPLOY_DHCP_MODE=sneaky"}, []string{"--interface", "lo"}, `dhcp.mode: unknown mode "sneaky"`},
		{"unknown key in file", nil, []string{"--config", cfgFile}, "dhcp.mdoe: unknown key"},
		{"missing config file", nil, []string{"--config", dir + "/none.yaml"}, "config: "},
		{"bad flag", nil, []string{"--no-such-flag"}, "unknown flag"},
	} {
		code, _, stderr := runBinary(t, tc.env, nil, append(append([]string{}, base...), tc.args...)...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 2 || len(lines) != 1 || !strings.Contains(stderr, tc.says) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and one line containing %q", tc.name, code, stderr, tc.says)
		}
		if strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "panic") {
			t.Errorf("%s: stack trace: %s", tc.name, stderr)
		}
	}
}

// TestPortErrorsExit2 checks the start-up lines for a port in use and for
// missing privileges (only loopback is touched; no packet is sent).
func TestPortErrorsExit2(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to bind port 69 and to drop to another user (CI runs as root)")
	}
	// A data directory the unprivileged user can reach and write.
	dir, err := os.MkdirTemp("", "netdeploy-priv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	args := []string{"serve", "--interface", "lo", "--dhcp-mode", "off", "--data-dir", dir, "--ipxe-dir", os.TempDir(), "--http-port", "18080"}

	busy, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 69})
	if err != nil {
		t.Skipf("port 69 on loopback is taken already: %v", err)
	}
	code, _, stderr := runBinary(t, nil, nil, args...)
	busy.Close()
	if code != 2 || !strings.Contains(stderr, "tftp: cannot listen on udp port 69") || !strings.Contains(stderr, "ss -lnpu 'sport = :69'") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("port in use: exit %d, stderr %q", code, stderr)
	}

	code, _, stderr = runBinary(t, nil, &syscall.Credential{Uid: 65534, Gid: 65534}, args...)
	if code != 2 || !strings.Contains(stderr, "permission denied") || !strings.Contains(stderr, "setcap cap_net_bind_service") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("unprivileged: exit %d, stderr %q", code, stderr)
	}
}
