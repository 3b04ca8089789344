package smb

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/hirochachacha/go-smb2"
)

// dialGoSMB2 logs on with the github.com/hirochachacha/go-smb2 client.
func dialGoSMB2(t *testing.T, ts *testServer, user, pass string) (*smb2.Session, error) {
	t.Helper()
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	d := &smb2.Dialer{Initiator: &smb2.NTLMInitiator{User: user, Password: pass}}
	s, err := d.Dial(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	t.Cleanup(func() { s.Logoff() })
	return s, nil
}

// statusOf is the status a go-smb2 error carries; the client turns
// access denied and not found into fs errors, mapped back here.
func statusOf(err error) Status {
	var re *smb2.ResponseError
	switch {
	case errors.As(err, &re):
		return Status(re.Code)
	case errors.Is(err, fs.ErrPermission):
		return StatusAccessDenied
	case errors.Is(err, fs.ErrNotExist):
		return StatusObjectNameNotFound
	}
	return 0
}

func TestGoSMB2Client(t *testing.T) {
	ts := newTestServer(t, !testing.Short(), nil)
	s, err := dialGoSMB2(t, ts, testUser, testPass)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	shares, err := s.ListSharenames() // srvsvc NetShareEnumAll over IPC$
	if err != nil || strings.Join(shares, ",") != "IPC$,images" {
		t.Fatalf("ListSharenames = %v, %v", shares, err)
	}
	sh, err := s.Mount("images")
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	defer sh.Umount()
	if b, err := sh.ReadFile("small.txt"); err != nil || string(b) != "hello smb\n" {
		t.Fatalf("ReadFile small.txt = %q, %v", b, err)
	}
	if b, err := sh.ReadFile(`sub\inner.txt`); err != nil || string(b) != "inner\n" {
		t.Fatalf(`ReadFile sub\inner.txt = %q, %v`, b, err)
	}
	if !testing.Short() {
		f, err := sh.Open("big.bin")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil || !bytes.Equal(got, bigContent()) {
			t.Fatalf("big.bin: %d bytes, %v; want the %d served", len(got), err, len(bigContent()))
		}
	}
	fi, err := sh.Stat("small.txt")
	if err != nil || fi.Size() != 10 || fi.IsDir() {
		t.Fatalf("Stat small.txt = %v, %v", fi, err)
	}
	ents, err := sh.ReadDir("")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
	}
	want := 4 // small.txt readme.md sub link.txt (and big.bin unless -short)
	if !testing.Short() {
		want++
	}
	if !names["small.txt"] || !names["sub"] || names["escape.txt"] || len(ents) != want {
		t.Errorf("ReadDir: %v", names)
	}
	if _, err := sh.Statfs(""); err != nil {
		t.Errorf("Statfs: %v", err)
	}

	// The server, not the client, refuses these.
	for _, tc := range []struct {
		path string
		want Status
	}{
		{`..\..\etc\passwd`, StatusAccessDenied},
		{`sub\..\..\etc\passwd`, StatusAccessDenied},
		{`small.txt:alt`, StatusObjectNameInvalid},
		{`small.txt::$DATA`, StatusObjectNameInvalid},
		{`escape.txt`, StatusAccessDenied},
		{`nope.txt`, StatusObjectNameNotFound},
		{`nodir\x.txt`, StatusObjectNameNotFound}, // path not found, as the client maps it
		{"bad\x01name", StatusObjectNameInvalid},
	} {
		_, err := sh.Open(tc.path)
		if got := statusOf(err); got != tc.want {
			t.Errorf("Open(%q): %v (status 0x%08x), want 0x%08x", tc.path, err, uint32(got), uint32(tc.want))
		}
	}
	// Write access is refused on a read-only share.
	if _, err := sh.OpenFile("small.txt", os.O_RDWR, 0); statusOf(err) != StatusAccessDenied {
		t.Errorf("OpenFile O_RDWR: %v, want access denied", err)
	}
	if _, err := sh.Create("new.txt"); statusOf(err) != StatusAccessDenied {
		t.Errorf("Create: %v, want access denied", err)
	}
	if _, err := s.Mount("nosuch"); statusOf(err) != StatusBadNetworkName {
		t.Errorf("Mount nosuch: %v, want bad network name", err)
	}
}

// go-smb2 on an encrypting share (it negotiates 3.1.1 and encrypts when
// the share says so).
func TestGoSMB2Encrypted(t *testing.T) {
	ts := newTestServer(t, false, func(s *Server) {
		s.Shares = []Share{{Name: "secure", Path: s.Shares[0].Path, Encrypt: true}}
	})
	s, err := dialGoSMB2(t, ts, testUser, testPass)
	if err != nil {
		t.Fatal(err)
	}
	sh, err := s.Mount("secure")
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	defer sh.Umount()
	if b, err := sh.ReadFile(`sub\inner.txt`); err != nil || string(b) != "inner\n" {
		t.Fatalf("ReadFile = %q, %v", b, err)
	}
}

func TestGoSMB2WrongPassword(t *testing.T) {
	ts := newTestServer(t, false, nil)
	if _, err := dialGoSMB2(t, ts, testUser, "nope"); err == nil {
		t.Fatal("logon with a wrong password succeeded")
	}
}
