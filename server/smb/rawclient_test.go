package smb

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/oiweiwei/go-msrpc/ssp/credential"
	"github.com/oiweiwei/go-msrpc/ssp/ntlm"
)

// rawClient speaks SMB2 byte by byte, for what real clients never send.
type rawClient struct {
	t        *testing.T
	nc       net.Conn
	msgID    uint64
	sess     uint64
	tree     uint32
	key      []byte // the session key, once logged on
	lastResp []byte // the final SESSION_SETUP response
	sign     bool   // sign requests (2.x HMAC-SHA256)
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc}
}

func (c *rawClient) sendFrame(msg []byte) {
	c.t.Helper()
	hdr := []byte{0, byte(len(msg) >> 16), byte(len(msg) >> 8), byte(len(msg))}
	if _, err := c.nc.Write(append(hdr, msg...)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// recvFrame returns the next frame, or nil when the server closed.
func (c *rawClient) recvFrame() []byte {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [4]byte
	if _, err := io.ReadFull(c.nc, hdr[:]); err != nil {
		return nil
	}
	n := int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
	b := make([]byte, n)
	if _, err := io.ReadFull(c.nc, b); err != nil {
		c.t.Fatalf("short frame: %v", err)
	}
	return b
}

// msg builds one request; charge 0 means 1.
func (c *rawClient) msg(cmd uint16, body []byte, charge uint16, flags uint32) []byte {
	h := header{Command: cmd, CreditCharge: max(charge, 1), Credits: 64, Flags: flags,
		MessageID: c.msgID, SessionID: c.sess, TreeID: c.tree}
	c.msgID += uint64(max(charge, 1))
	b := make([]byte, headerLen, headerLen+len(body))
	if c.sign {
		h.Flags |= flagSigned
	}
	h.put(b)
	b = append(b, body...)
	if c.sign {
		sig := (&hmacSigner{h: hmac.New(sha256.New, c.key)}).sign(b)
		copy(b[48:], sig[:])
	}
	return b
}

// call sends one request and returns the response header and body.
func (c *rawClient) call(cmd uint16, body []byte) (header, []byte) {
	c.t.Helper()
	return c.callCharge(cmd, body, 1)
}

func (c *rawClient) callCharge(cmd uint16, body []byte, charge uint16) (header, []byte) {
	c.t.Helper()
	c.sendFrame(c.msg(cmd, body, charge, 0))
	r := c.recvFrame()
	if r == nil {
		c.t.Fatalf("%s: connection closed", commandName(cmd))
	}
	h, err := parseHeader(r)
	if err != nil {
		c.t.Fatal(err)
	}
	return h, r[headerLen:]
}

func negotiateBody(dialects ...uint16) []byte {
	var b le
	b.u16(36)
	b.u16(uint16(len(dialects)))
	b.u16(secModeSigningEnabled)
	b.u16(0)
	b.u32(0)
	b.zero(16)
	b.zero(8)
	for _, d := range dialects {
		b.u16(d)
	}
	return b
}

func sessionSetupBody(tok []byte) []byte {
	var b le
	b.u16(25)
	b.u8(0)
	b.u8(secModeSigningEnabled)
	b.u32(0)
	b.u32(0)
	b.u16(headerLen + 24)
	b.u16(uint16(len(tok)))
	b.u64(0)
	b.bytes(tok)
	return b
}

// logon negotiates 2.1 and logs on with bare NTLMSSP tokens.
func (c *rawClient) logon(user, pass string) Status {
	c.t.Helper()
	h, _ := c.call(cmdNegotiate, negotiateBody(dialect202, dialect210))
	if Status(h.Status) != StatusSuccess {
		c.t.Fatalf("NEGOTIATE: 0x%08x", h.Status)
	}
	cfg := ntlm.NewConfig()
	cfg.Credential = credential.NewFromPassword(user, pass)
	cli := &ntlm.Authentifier{Config: cfg}
	ctx := context.Background()
	neg, err := cli.Negotiate(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	h, body := c.call(cmdSessionSetup, sessionSetupBody(neg))
	if Status(h.Status) != StatusMoreProcessingRequired {
		return Status(h.Status)
	}
	c.sess = h.SessionID
	off, n := binary.LittleEndian.Uint16(body[4:]), binary.LittleEndian.Uint16(body[6:])
	ch := body[off-headerLen : off-headerLen+n]
	auth, err := cli.Authenticate(ctx, ch)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendFrame(c.msg(cmdSessionSetup, sessionSetupBody(auth), 1, 0))
	r := c.recvFrame()
	h, _ = parseHeader(r)
	c.key = cli.SessionKey()
	c.lastResp = r
	return Status(h.Status)
}

func (c *rawClient) treeConnect(share string) Status {
	c.t.Helper()
	path := utf16le(`\\127.0.0.1\` + share)
	var b le
	b.u16(9)
	b.u16(0)
	b.u16(headerLen + 8)
	b.u16(uint16(len(path)))
	b.bytes(path)
	h, _ := c.call(cmdTreeConnect, b)
	if Status(h.Status) == StatusSuccess {
		c.tree = h.TreeID
	}
	return Status(h.Status)
}

func createBody(name string, access, disp, opts uint32) []byte {
	n := utf16le(name)
	var b le
	b.u16(57)
	b.u8(0)
	b.u8(0)
	b.u32(2) // impersonation
	b.u64(0)
	b.u64(0)
	b.u32(access)
	b.u32(0)
	b.u32(7) // share all
	b.u32(disp)
	b.u32(opts)
	b.u16(headerLen + 56)
	b.u16(uint16(len(n)))
	b.u32(0)
	b.u32(0)
	b.bytes(n)
	if len(n) == 0 {
		b.u8(0)
	}
	return b
}

// open creates name for reading and returns its FileId.
func (c *rawClient) open(name string) (fileID, Status) {
	c.t.Helper()
	h, body := c.call(cmdCreate, createBody(name, 0x00120089, dispOpen, 0))
	if Status(h.Status) != StatusSuccess {
		return fileID{}, Status(h.Status)
	}
	return getFileID(body[64:]), StatusSuccess
}

func readBody(f fileID, off uint64, n uint32) []byte {
	var b le
	b.u16(49)
	b.u8(0)
	b.u8(0)
	b.u32(n)
	b.u64(off)
	b.fid(f)
	b.u32(0)
	b.u32(0)
	b.u32(0)
	b.u16(0)
	b.u16(0)
	b.u8(0)
	return b
}

func closeBody(f fileID) []byte {
	var b le
	b.u16(24)
	b.u16(0)
	b.u32(0)
	b.fid(f)
	return b
}

func queryInfoBody(typ, class byte, f fileID, outLen uint32) []byte {
	var b le
	b.u16(41)
	b.u8(typ)
	b.u8(class)
	b.u32(outLen)
	b.u16(0)
	b.u16(0)
	b.u32(0)
	b.u32(0)
	b.u32(0)
	b.fid(f)
	b.u8(0)
	return b
}

func queryDirBody(class, flags byte, f fileID, pattern string, outLen uint32) []byte {
	p := utf16le(pattern)
	var b le
	b.u16(33)
	b.u8(class)
	b.u8(flags)
	b.u32(0)
	b.fid(f)
	b.u16(headerLen + 32)
	b.u16(uint16(len(p)))
	b.u32(outLen)
	b.bytes(p)
	if len(p) == 0 {
		b.u8(0)
	}
	return b
}

// loggedOn returns a raw client with a session and a tree on images.
func loggedOn(t *testing.T, ts *testServer) *rawClient {
	t.Helper()
	c := dialRaw(t, ts.addr)
	if st := c.logon(testUser, testPass); st != StatusSuccess {
		t.Fatalf("logon: 0x%08x", uint32(st))
	}
	if st := c.treeConnect("images"); st != StatusSuccess {
		t.Fatalf("tree connect: 0x%08x", uint32(st))
	}
	return c
}
