package smb

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hirochachacha/go-smb2"
)

// encodeNetBIOSName is the first-level encoding of [RFC 1001] 14.1.
func encodeNetBIOSName(name string, suffix byte) []byte {
	var n [16]byte
	copy(n[:], (name + "                ")[:15])
	n[15] = suffix
	out := []byte{32}
	for _, c := range n {
		out = append(out, 'A'+c>>4, 'A'+c&15)
	}
	return append(out, 0)
}

func sessionRequest(called, calling string) []byte {
	body := append(encodeNetBIOSName(called, 0x20), encodeNetBIOSName(calling, 0x00)...)
	return append([]byte{nbSessionRequest, 0, byte(len(body) >> 8), byte(len(body))}, body...)
}

func serveNetBIOS(t *testing.T) (*testServer, string) {
	ts := newTestServer(t, false, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ts.srv.ServeNetBIOS(l)
	return ts, l.Addr().String()
}

// Port 139: SESSION REQUEST, POSITIVE SESSION RESPONSE, then SMB2 in
// session messages (go-smb2 over the established session).
func TestNetBIOSSession(t *testing.T) {
	_, addr := serveNetBIOS(t)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A keep-alive first is allowed.
	nc.Write([]byte{nbKeepAlive, 0, 0, 0})
	nc.Write(sessionRequest("*SMBSERVER", "CLIENT"))
	resp := make([]byte, 4)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(nc, resp); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(resp, []byte{nbPositiveResp, 0, 0, 0}) {
		t.Fatalf("session response %x, want 82000000", resp)
	}
	nc.SetReadDeadline(time.Time{})
	d := &smb2.Dialer{Initiator: &smb2.NTLMInitiator{User: testUser, Password: testPass}}
	s, err := d.Dial(nc)
	if err != nil {
		t.Fatalf("SMB2 over NetBIOS: %v", err)
	}
	defer s.Logoff()
	sh, err := s.Mount("images")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := sh.ReadFile("small.txt"); err != nil || string(b) != "hello smb\n" {
		t.Fatalf("ReadFile = %q, %v", b, err)
	}
}

// Malformed session requests get a NEGATIVE SESSION RESPONSE or a
// closed connection, and never an SMB answer.
func TestNetBIOSMalformed(t *testing.T) {
	_, addr := serveNetBIOS(t)
	good := sessionRequest("NETDEPLOY", "CLIENT")
	for name, msg := range map[string][]byte{
		"short name":      {nbSessionRequest, 0, 0, 4, 32, 'A', 'A', 0},
		"bad half-byte":   append([]byte{nbSessionRequest, 0, 0, 68}, append([]byte{32}, bytes.Repeat([]byte{'Z'}, 67)...)...),
		"direct SMB2":     append([]byte{0, 0, 0, 64}, make([]byte, 64)...),
		"huge request":    {nbSessionRequest, 1, 0xff, 0xff},
		"truncated names": good[:len(good)-5],
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.Write(msg)
			if name == "truncated names" {
				// Shorter than its length field: the server waits for
				// the rest; close our side.
				nc.(*net.TCPConn).CloseWrite()
			}
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, _ := io.ReadAll(nc)
			if len(b) > 0 && b[0] != nbNegativeResp {
				t.Fatalf("answer %x to a malformed session request", b)
			}
		})
	}
}

// smbclient uses the NetBIOS session service when the port is 139; that
// needs root to listen on it.
func TestSmbclientPort139(t *testing.T) {
	needSmbclient(t)
	if os.Geteuid() != 0 {
		t.Skip("listening on port 139 needs root")
	}
	ts := newTestServer(t, false, nil)
	l, err := net.Listen("tcp", "127.0.0.1:139")
	if err != nil {
		t.Skipf("port 139 unavailable: %v", err)
	}
	go ts.srv.ServeNetBIOS(l)
	saved := ts.port
	ts.port = 139
	defer func() { ts.port = saved }()
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = ctx
	o, err := ts.smbclient(t, "images", "-U", testUser+"%"+testPass, "-m", "SMB3_11", "-c", "get small.txt "+out)
	if err != nil {
		t.Fatalf("smbclient -p 139: %v\n%s", err, o)
	}
	sameFile(t, out, []byte("hello smb\n"))
}
