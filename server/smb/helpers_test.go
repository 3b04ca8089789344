package smb

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/tracker"
)

// eventLog keeps the events a test server emits.
type eventLog = tracker.Recorder

const (
	testUser = "deploy"
	testPass = "s3cret-Pw"
)

type testServer struct {
	srv    *Server
	addr   string
	port   int
	dir    string
	events *eventLog
}

// bigFile is a shared 64 MiB random file.
var bigOnce sync.Once
var bigData []byte

func bigContent() []byte {
	bigOnce.Do(func() {
		bigData = make([]byte, 64<<20+12345)
		rand.Read(bigData)
	})
	return bigData
}

// newTestServer serves a directory with small.txt, big.bin (if big),
// sub/inner.txt and a symlink leading out, on 127.0.0.1.
func newTestServer(t *testing.T, big bool, edit func(*Server)) *testServer {
	t.Helper()
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "small.txt"), []byte("hello smb\n"))
	mustWrite(t, filepath.Join(dir, "readme.md"), []byte("# images\n"))
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	mustWrite(t, filepath.Join(dir, "sub", "inner.txt"), []byte("inner\n"))
	if big {
		mustWrite(t, filepath.Join(dir, "big.bin"), bigContent())
	}
	outside := filepath.Join(t.TempDir(), "secret.txt")
	mustWrite(t, outside, []byte("outside\n"))
	os.Symlink(outside, filepath.Join(dir, "escape.txt"))
	os.Symlink("small.txt", filepath.Join(dir, "link.txt"))
	ev := &eventLog{}
	s := &Server{
		Shares:   []Share{{Name: "images", Path: dir, Comment: "deployment images"}},
		Accounts: []Account{{Name: testUser, NTHash: NTHash(testPass)}},
		Events:   ev,
	}
	if testing.Verbose() {
		s.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if edit != nil {
		edit(s)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testServer{srv: s, addr: l.Addr().String(), port: l.Addr().(*net.TCPAddr).Port, dir: dir, events: ev}
}

func mustWrite(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func needSmbclient(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("smbclient")
	if err != nil {
		t.Skip("smbclient not installed (apt-get install smbclient)")
	}
	return p
}

// smbclient runs smbclient against ts with args and returns its output.
func (ts *testServer) smbclient(t *testing.T, share string, args ...string) (string, error) {
	t.Helper()
	bin := needSmbclient(t)
	home := t.TempDir() // keep smbclient from reading a user smb.conf
	conf := filepath.Join(home, "smb.conf")
	mustWrite(t, conf, []byte("[global]\n"))
	full := append([]string{"-s", conf, "//127.0.0.1/" + share, "-p", itoa(ts.port)}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Env = append(os.Environ(), "HOME="+home)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func itoa(n int) string { return fmtInt(n) }

func fmtInt(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(b[i:])
}

func sameFile(t *testing.T, name string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes differ from the %d served", name, len(got), len(want))
	}
}

func needSmbclientOK() bool {
	_, err := exec.LookPath("smbclient")
	return err == nil
}
