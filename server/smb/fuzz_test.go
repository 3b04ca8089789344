package smb

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeConn reads from a buffer and discards what is written.
type fakeConn struct {
	r *bytes.Reader
	w bytes.Buffer
}

func (f *fakeConn) Read(b []byte) (int, error)  { return f.r.Read(b) }
func (f *fakeConn) Write(b []byte) (int, error) { f.w.Write(b); return len(b), nil }
func (f *fakeConn) Close() error                { return nil }
func (f *fakeConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 445} }
func (f *fakeConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}
func (f *fakeConn) SetDeadline(time.Time) error      { return nil }
func (f *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }

func FuzzHeader(f *testing.F) {
	c := &rawClient{}
	f.Add(c.msg(cmdEcho, []byte{4, 0, 0, 0}, 1, 0))
	chain := c.msg(cmdEcho, []byte{4, 0, 0, 0, 0, 0, 0, 0}, 1, 0)
	chain[20] = 72
	f.Add(append(chain, c.msg(cmdEcho, []byte{4, 0, 0, 0}, 1, flagRelated)...))
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := parseHeader(b); err == nil {
			out := make([]byte, headerLen)
			h.put(out)
			if h2, _ := parseHeader(out); h2.MessageID != h.MessageID || h2.Command != h.Command {
				t.Fatalf("round trip changed the header")
			}
		}
		if msgs, err := splitCompound(b); err == nil {
			n := 0
			for _, m := range msgs {
				n += len(m)
			}
			if n != len(b) {
				t.Fatalf("split %d bytes into %d", len(b), n)
			}
		}
	})
}

// fuzzConn is a connection negotiated at 2.1 with a logged-on session
// and a tree on a small share, as the request decoders see it.
func fuzzConn(t testing.TB, dir string) (*conn, *fakeConn) {
	s := &Server{Shares: []Share{{Name: "images", Path: dir}}}
	s.init()
	if s.initErr != nil {
		t.Fatal(s.initErr)
	}
	fc := &fakeConn{r: bytes.NewReader(nil)}
	c := newConn(s, fc, false)
	c.dialect = dialect210
	c.serverCaps = capLargeMTU
	sess := &session{id: 1, valid: true, trees: map[uint32]*tree{}}
	sess.trees[1] = &tree{id: 1, share: s.shares[1]}
	sess.trees[2] = &tree{id: 2, share: s.shares[0]}
	c.sessions[1] = sess
	c.credits.high = 1 << 62 // every id is available
	return c, fc
}

func fuzzDir(t testing.TB) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("abc"), 0o644)
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	return dir
}

// FuzzRequest feeds one message (a request or a compound chain, or an
// encrypted or SMB1 frame) to a logged-on connection: it must answer or
// drop the connection, never panic or read out of bounds.
func FuzzRequest(f *testing.F) {
	c := &rawClient{sess: 1, tree: 1}
	all := relatedFileID
	f.Add(c.msg(cmdCreate, createBody("a.txt", 0x00120089, dispOpen, 0), 1, 0))
	f.Add(c.msg(cmdCreate, createBody(`d\..\..\x`, 1, dispOpen, 0), 1, 0))
	m1 := c.msg(cmdCreate, createBody("a.txt", 0x00120089, dispOpen, 0), 1, 0)
	for len(m1)%8 != 0 {
		m1 = append(m1, 0)
	}
	m1[20] = byte(len(m1))
	f.Add(append(m1, c.msg(cmdRead, readBody(all, 0, 3), 1, flagRelated)...))
	f.Add(c.msg(cmdQueryInfo, queryInfoBody(infoFile, fileAllInformation, all, 4096), 1, 0))
	f.Add(c.msg(cmdQueryDirectory, queryDirBody(fileIDBothDirectoryInformation, qdRestartScans, all, "*", 4096), 1, 0))
	f.Add(c.msg(cmdIoctl, ioctlBody(fsctlValidateNegotiateInfo, all, make([]byte, 26), 100), 1, 0))
	f.Add(c.msg(cmdSessionSetup, sessionSetupBody([]byte("NTLMSSP\x00\x01\x00\x00\x00\x05\x02\x88\xa0")), 1, 0))
	f.Add(c.msg(cmdTreeConnect, append([]byte{9, 0, 0, 0, 72, 0, 4, 0}, utf16le("IPC$")...), 1, 0))
	f.Add(c.msg(cmdNegotiate, negotiateBody(dialect311), 1, 0))
	f.Add(smb1Negotiate("SMB 2.???"))
	f.Add(append([]byte{0xFD, 'S', 'M', 'B'}, make([]byte, 120)...))
	dir := fuzzDir(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		if len(msg) < 4 {
			return
		}
		cn, _ := fuzzConn(t, dir)
		// Open a file so that FileIds resolve.
		cn.handleFrame(c.msg(cmdCreate, createBody("a.txt", 0x00120089, dispOpen, 0), 1, 0))
		cn.handleFrame(msg)
		cn.cleanup()
	})
}

// FuzzNegotiate feeds NEGOTIATE requests, 3.1.1 contexts included, to a
// fresh connection.
func FuzzNegotiate(f *testing.F) {
	c := &rawClient{}
	f.Add(negotiateBody(dialect202, dialect210, dialect300, dialect302))
	b311 := negotiateBody(dialect311, 0)
	// Contexts at 8-aligned offset: preauth SHA-512, ciphers, signing.
	ctxOff := headerLen + len(b311)
	for ctxOff%8 != 0 {
		b311 = append(b311, 0)
		ctxOff++
	}
	b311[28], b311[29] = byte(ctxOff), byte(ctxOff>>8)
	b311[32] = 3
	var ctx le
	ctx.u16(ctxPreauth)
	ctx.u16(38)
	ctx.u32(0)
	ctx.u16(1)
	ctx.u16(32)
	ctx.u16(hashSHA512)
	ctx.zero(32)
	ctx.align(8)
	ctx.u16(ctxEncryption)
	ctx.u16(6)
	ctx.u32(0)
	ctx.u16(2)
	ctx.u16(cipherGCM)
	ctx.u16(cipherCCM)
	ctx.align(8)
	ctx.u16(ctxSigning)
	ctx.u16(4)
	ctx.u32(0)
	ctx.u16(1)
	ctx.u16(signGMAC)
	f.Add(append(b311, ctx...))
	dir := fuzzDir(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		cn, _ := fuzzConn(t, dir)
		cn.dialect = 0
		cn.credits.init()
		cn.handleFrame(c.msg(cmdNegotiate, body, 1, 0))
	})
}

// FuzzNetBIOS feeds the start of a port-139 connection: the session
// request and then frames.
func FuzzNetBIOS(f *testing.F) {
	f.Add(sessionRequest("*SMBSERVER", "CLIENT"))
	f.Add(append([]byte{nbKeepAlive, 0, 0, 0}, sessionRequest("NETDEPLOY", "PC")...))
	f.Add(append(sessionRequest("A", "B"), 0, 0, 0, 4, 0xFE, 'S', 'M', 'B'))
	f.Add([]byte{nbSessionRequest, 0, 0, 2, 32, 0})
	dir := fuzzDir(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		cn, fc := fuzzConn(t, dir)
		cn.netbios = true
		cn.dialect = 0
		cn.credits.init()
		fc.r = bytes.NewReader(in)
		cn.serve()
		if out := fc.w.Bytes(); len(out) > 0 && out[0] != nbPositiveResp && out[0] != nbNegativeResp {
			t.Fatalf("first answer %x is not a session response", out[:min(4, len(out))])
		}
	})
}
