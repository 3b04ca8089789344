package smb

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"
)

// verifyHMAC checks a 2.x response signature with the session key.
func verifyHMAC(t *testing.T, key, msg []byte) bool {
	t.Helper()
	if len(msg) < headerLen {
		return false
	}
	m := append([]byte(nil), msg...)
	var got [16]byte
	copy(got[:], m[48:64])
	clear(m[48:64])
	want := (&hmacSigner{h: hmac.New(sha256.New, key)}).sign(m)
	return got == want
}

// With RequireSigning, unsigned and badly signed requests are refused,
// signed ones are answered with signed responses, and smbclient works
// in every dialect.
func TestRequireSigning(t *testing.T) {
	ts := newTestServer(t, false, func(s *Server) { s.RequireSigning = true })
	c := dialRaw(t, ts.addr)
	if st := c.logon(testUser, testPass); st != StatusSuccess {
		t.Fatalf("logon: 0x%08x", uint32(st))
	}
	h, _ := parseHeader(c.lastResp)
	if h.Flags&flagSigned == 0 || !verifyHMAC(t, c.key, c.lastResp) {
		t.Fatal("final SESSION_SETUP response not signed with the session key")
	}
	if st := c.treeConnect("images"); st != StatusAccessDenied {
		t.Fatalf("unsigned TREE_CONNECT: 0x%08x, want access denied", uint32(st))
	}
	c.sign = true
	if st := c.treeConnect("images"); st != StatusSuccess {
		t.Fatalf("signed TREE_CONNECT: 0x%08x", uint32(st))
	}
	c.sendFrame(c.msg(cmdEcho, []byte{4, 0, 0, 0}, 1, 0))
	r := c.recvFrame()
	if h, _ := parseHeader(r); h.Status != 0 || h.Flags&flagSigned == 0 || !verifyHMAC(t, c.key, r) {
		t.Fatalf("ECHO response not signed correctly: %+v", h)
	}
	// A tampered request fails its signature.
	m := c.msg(cmdCreate, createBody("small.txt", 0x00120089, dispOpen, 0), 1, 0)
	m[len(m)-2] ^= 1
	c.sendFrame(m)
	if h, _ := parseHeader(c.recvFrame()); Status(h.Status) != StatusAccessDenied {
		t.Fatalf("tampered request: 0x%08x, want access denied", h.Status)
	}
	// LOGOFF's response is signed with the session that ended.
	c.sendFrame(c.msg(cmdLogoff, []byte{4, 0, 0, 0}, 1, 0))
	r = c.recvFrame()
	if h, _ := parseHeader(r); h.Status != 0 || h.Flags&flagSigned == 0 || !verifyHMAC(t, c.key, r) {
		t.Fatalf("LOGOFF response not signed correctly: %+v", h)
	}
	for _, m := range []string{"SMB2_02", "SMB2_10", "SMB3_00", "SMB3_11"} {
		out := filepath.Join(t.TempDir(), "out")
		o, err := ts.smbclient(t, "images", "-U", testUser+"%"+testPass, "-m", m, "-c", "get small.txt "+out)
		if err != nil {
			t.Fatalf("%s: %v\n%s", m, err, o)
		}
		sameFile(t, out, []byte("hello smb\n"))
	}
	// Guests cannot sign: with RequireSigning they are refused.
	g := newTestServer(t, false, func(s *Server) { s.RequireSigning, s.Guest = true, true })
	if o, err := g.smbclient(t, "images", "-N", "-m", "SMB3_11", "-c", "ls"); err == nil {
		t.Fatalf("guest logon with RequireSigning succeeded:\n%s", o)
	}
}

// An encrypting share refuses 2.x clients and requests in the clear.
func TestEncryptedShareRefusals(t *testing.T) {
	ts := newTestServer(t, false, func(s *Server) {
		s.Shares = append(s.Shares, Share{Name: "secure", Path: s.Shares[0].Path, Encrypt: true})
	})
	c := dialRaw(t, ts.addr)
	if st := c.logon(testUser, testPass); st != StatusSuccess {
		t.Fatal(st)
	}
	if st := c.treeConnect("secure"); st != StatusAccessDenied {
		t.Fatalf("2.1 TREE_CONNECT to an encrypting share: 0x%08x", uint32(st))
	}
	if o, err := ts.smbclient(t, "secure", "-U", testUser+"%"+testPass, "-m", "SMB2_10", "-c", "ls"); err == nil {
		t.Fatalf("smbclient 2.1 on an encrypting share succeeded:\n%s", o)
	}
}

func TestIdleTimeoutAndCancel(t *testing.T) {
	ts := newTestServer(t, false, func(s *Server) { s.IdleTimeout = 300 * time.Millisecond })
	c := loggedOn(t, ts)
	// CANCEL gets no response; the ECHO after it does.
	c.sendFrame(c.msg(cmdCancel, []byte{4, 0, 0, 0}, 1, 0))
	c.msgID-- // CANCEL takes no message id
	h, _ := c.call(cmdEcho, []byte{4, 0, 0, 0})
	if h.Command != cmdEcho || h.Status != 0 {
		t.Fatalf("after CANCEL: %s 0x%08x", commandName(h.Command), h.Status)
	}
	start := time.Now()
	if r := c.recvFrame(); r != nil {
		t.Fatal("unexpected message")
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("idle connection closed after %v", el)
	}
}

// FSCTL_VALIDATE_NEGOTIATE_INFO ([MS-SMB2] 3.3.5.15.12): what the client
// negotiated comes back; anything else drops the connection.
func TestValidateNegotiate(t *testing.T) {
	ts := newTestServer(t, false, nil)
	in := func(dialects ...uint16) []byte {
		var b le
		b.u32(0)   // Capabilities, as negotiateBody sends
		b.zero(16) // ClientGuid
		b.u16(secModeSigningEnabled)
		b.u16(uint16(len(dialects)))
		for _, d := range dialects {
			b.u16(d)
		}
		return b
	}
	c := loggedOn(t, ts)
	c.sign = true
	h, body := c.call(cmdIoctl, ioctlBody(fsctlValidateNegotiateInfo, relatedFileID, in(dialect202, dialect210), 24))
	if h.Status != 0 {
		t.Fatalf("VALIDATE_NEGOTIATE_INFO: 0x%08x", h.Status)
	}
	out := body[int(binary.LittleEndian.Uint32(body[32:]))-headerLen:]
	if binary.LittleEndian.Uint16(out[22:]) != dialect210 || !bytes.Equal(out[4:20], ts.srv.guid[:]) {
		t.Fatalf("output %x", out[:24])
	}
	c.sendFrame(c.msg(cmdIoctl, ioctlBody(fsctlValidateNegotiateInfo, relatedFileID, in(dialect202), 24), 1, 0))
	if r := c.recvFrame(); r != nil {
		t.Fatal("answer to a VALIDATE_NEGOTIATE_INFO that does not match")
	}
}
