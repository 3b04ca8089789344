package smb

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSmbclientGetSmall(t *testing.T) {
	ts := newTestServer(t, false, nil)
	for _, m := range []string{"SMB2_02", "SMB2_10", "SMB3_00", "SMB3_11"} {
		t.Run(m, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			o, err := ts.smbclient(t, "images", "-U", testUser+"%"+testPass, "-m", m, "-c", "get small.txt "+out)
			if err != nil {
				t.Fatalf("smbclient: %v\n%s", err, o)
			}
			sameFile(t, out, []byte("hello smb\n"))
		})
	}
}

// smbclient gets a 64 MiB file byte-identical with every dialect, with
// signing required by the client and with encryption, and reports its
// throughput.
func TestSmbclientGetBig(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB transfers skipped in -short mode")
	}
	ts := newTestServer(t, true, func(s *Server) {
		s.Shares = append(s.Shares, Share{Name: "secure", Path: s.Shares[0].Path, Encrypt: true})
	})
	cases := []struct {
		name, share string
		args        []string
	}{
		{"SMB2_02", "images", []string{"-m", "SMB2_02"}},
		{"SMB2_10", "images", []string{"-m", "SMB2_10"}},
		{"SMB3_00", "images", []string{"-m", "SMB3_00"}},
		{"SMB3_11", "images", []string{"-m", "SMB3_11"}},
		{"SMB2_10 signed", "images", []string{"-m", "SMB2_10", "--option=client signing = required"}},
		{"SMB3_00 signed", "images", []string{"-m", "SMB3_00", "--option=client signing = required"}},
		{"SMB3_11 signed", "images", []string{"-m", "SMB3_11", "--option=client signing = required"}},
		{"SMB3_00 encrypted", "secure", []string{"-m", "SMB3_00", "--option=client smb encrypt = required"}},
		{"SMB3_11 encrypted", "secure", []string{"-m", "SMB3_11", "--option=client smb encrypt = required"}},
		{"SMB3_11 share encryption", "secure", []string{"-m", "SMB3_11"}},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := append([]string{"-U", testUser + "%" + testPass}, tc.args...)
			args = append(args, "-c", "get big.bin "+out)
			start := time.Now()
			o, err := ts.smbclient(t, tc.share, args...)
			if err != nil {
				t.Fatalf("smbclient: %v\n%s", err, o)
			}
			el := time.Since(start)
			sameFile(t, out, bigContent())
			t.Logf("%s: %d bytes in %v (%.0f MB/s)", tc.name, len(bigContent()), el.Round(time.Millisecond), float64(len(bigContent()))/el.Seconds()/1e6)
		})
	}
}

// ls lists the share with and without wildcards, in every dialect.
func TestSmbclientList(t *testing.T) {
	ts := newTestServer(t, false, nil)
	for _, m := range []string{"SMB2_02", "SMB3_11"} {
		t.Run(m, func(t *testing.T) {
			o, err := ts.smbclient(t, "images", "-U", testUser+"%"+testPass, "-m", m, "-c", "ls")
			if err != nil {
				t.Fatalf("smbclient ls: %v\n%s", err, o)
			}
			for _, want := range []string{"small.txt", "readme.md", "sub", "link.txt"} {
				if !strings.Contains(o, want) {
					t.Errorf("ls output lacks %s:\n%s", want, o)
				}
			}
			if strings.Contains(o, "escape.txt") {
				t.Errorf("ls lists a symlink leading out of the share:\n%s", o)
			}
			o, err = ts.smbclient(t, "images", "-U", testUser+"%"+testPass, "-m", m, "-c", "ls *.txt; ls sub\\*; ls s?all.*")
			if err != nil {
				t.Fatalf("smbclient ls with wildcards: %v\n%s", err, o)
			}
			if !strings.Contains(o, "small.txt") || !strings.Contains(o, "link.txt") || !strings.Contains(o, "inner.txt") {
				t.Errorf("wildcard listing lacks names:\n%s", o)
			}
			if strings.Contains(o, "readme.md") {
				t.Errorf("*.txt lists readme.md:\n%s", o)
			}
			o, _ = ts.smbclient(t, "images", "-U", testUser+"%"+testPass, "-m", m, "-c", "ls nothing*")
			if !strings.Contains(o, "NO_SUCH_FILE") {
				t.Errorf("ls of an unmatched pattern: want NT_STATUS_NO_SUCH_FILE:\n%s", o)
			}
		})
	}
}

// Logons the server must refuse: anonymous (guest off), a wrong
// password, an unknown account; and anonymous succeeds with Guest.
func TestSmbclientLogonRefused(t *testing.T) {
	ts := newTestServer(t, false, nil)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"anonymous", []string{"-N"}},
		{"wrong password", []string{"-U", testUser + "%wrong"}},
		{"unknown account", []string{"-U", "nobody%" + testPass}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			args := append(tc.args, "-m", "SMB3_11", "-c", "get small.txt /dev/null")
			o, err := ts.smbclient(t, "images", args...)
			if err == nil {
				t.Fatalf("smbclient succeeded:\n%s", o)
			}
			if !strings.Contains(o, "NT_STATUS_LOGON_FAILURE") && !strings.Contains(o, "NT_STATUS_ACCESS_DENIED") {
				t.Errorf("want a logon failure:\n%s", o)
			}
		})
	}
	var failed int
	for _, e := range ts.events.All() {
		if e.Event == "error" && strings.HasPrefix(e.Detail, "logon failed for ") {
			failed++
		}
	}
	if failed < 2 {
		t.Errorf("%d logon failure events, want at least 2 (wrong password, unknown account)", failed)
	}

	guest := newTestServer(t, false, func(s *Server) { s.Guest = true })
	out := filepath.Join(t.TempDir(), "out")
	o, err := guest.smbclient(t, "images", "-N", "-m", "SMB3_11", "-c", "get small.txt "+out)
	if err != nil {
		t.Fatalf("anonymous with Guest: %v\n%s", err, o)
	}
	sameFile(t, out, []byte("hello smb\n"))
}

// Paths that lead out of the share, name streams, or are illegal are
// refused and nothing outside is read.
func TestSmbclientTraversal(t *testing.T) {
	ts := newTestServer(t, false, nil)
	for _, p := range []string{
		`..\..\etc\passwd`, `\..\x`, `sub\..\..\etc\passwd`, `small.txt:secret`, `small.txt::$DATA`,
		`escape.txt`, `sub\..\..\` + filepath.Base(filepath.Dir(ts.dir)) + `\secret.txt`, `a*b`, `/etc/passwd`,
	} {
		t.Run(p, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			o, err := ts.smbclient(t, "images", "-U", testUser+"%"+testPass, "-m", "SMB3_11", "-c", `get "`+p+`" `+out)
			if err == nil && !strings.Contains(o, "NT_STATUS_") {
				t.Fatalf("get %s succeeded:\n%s", p, o)
			}
			t.Logf("get %s: %s", p, strings.TrimSpace(o))
			if b, err := os.ReadFile(out); err == nil && len(b) > 0 {
				t.Fatalf("get %s wrote %q", p, b)
			}
		})
	}
}

// smbclient -L lists the shares through srvsvc on IPC$.
func TestSmbclientListShares(t *testing.T) {
	needSmbclient(t)
	ts := newTestServer(t, false, nil)
	for _, m := range []string{"SMB2_02", "SMB3_11"} {
		t.Run(m, func(t *testing.T) {
			bin := needSmbclient(t)
			home := t.TempDir()
			conf := filepath.Join(home, "smb.conf")
			mustWrite(t, conf, []byte("[global]\n"))
			cmd := exec.Command(bin, "-s", conf, "-L", "//127.0.0.1", "-p", itoa(ts.port), "-U", testUser+"%"+testPass, "-m", m)
			cmd.Env = append(os.Environ(), "HOME="+home)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("smbclient -L: %v\n%s", err, out)
			}
			o := string(out)
			if !strings.Contains(o, "images") || !strings.Contains(o, "deployment images") || !strings.Contains(o, "IPC$") {
				t.Fatalf("share list lacks images or IPC$:\n%s", o)
			}
		})
	}
}

// TestLogonLimit: after LogonLimit failures from one address, even the
// right password is refused for a while, and one event says so.
func TestLogonLimit(t *testing.T) {
	ts := newTestServer(t, false, func(s *Server) { s.LogonLimit, s.LogonBlock = 2, time.Hour })
	for range 2 {
		if out, err := ts.smbclient(t, "images", "-U", testUser+"%wrong", "-c", "ls"); err == nil {
			t.Fatalf("wrong password accepted:\n%s", out)
		}
	}
	if out, err := ts.smbclient(t, "images", "-U", testUser+"%"+testPass, "-c", "ls"); err == nil || !strings.Contains(out, "LOGON_FAILURE") {
		t.Fatalf("logon while blocked: %v\n%s", err, out)
	}
	blocks := 0
	for _, e := range ts.events.All() {
		if strings.Contains(e.Detail, "logons refused") {
			blocks++
		}
	}
	if blocks != 1 {
		t.Errorf("%d block events, want 1", blocks)
	}
}
