package agent

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
)

// frame is a Direct TCP frame of an SMB2 message: command, flags,
// NextCommand, a signature of 0xaa bytes, and body.
func frame(cmd uint16, flags, next uint32, body []byte) []byte {
	m := make([]byte, smb2HdrLen, smb2HdrLen+len(body))
	copy(m, smb2Magic[:])
	binary.LittleEndian.PutUint16(m[4:], 64)
	binary.LittleEndian.PutUint16(m[12:], cmd)
	binary.LittleEndian.PutUint32(m[16:], flags)
	binary.LittleEndian.PutUint32(m[20:], next)
	for i := 48; i < 64; i++ {
		m[i] = 0xaa
	}
	m = append(m, body...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(m))), m...)
}

// negotiateResponse is a NEGOTIATE response frame with securityMode.
func negotiateResponse(securityMode uint16) []byte {
	body := make([]byte, 65)
	binary.LittleEndian.PutUint16(body, 65)
	binary.LittleEndian.PutUint16(body[2:], securityMode)
	return frame(smb2CmdNegotiate, smb2FlagResponse, 0, body)
}

// fakeConn reads from r and records what is written.
type fakeConn struct {
	net.Conn
	r io.Reader
	w bytes.Buffer
}

func (f *fakeConn) Read(p []byte) (int, error)  { return f.r.Read(p) }
func (f *fakeConn) Write(p []byte) (int, error) { return f.w.Write(p) }

// oneByte returns one byte per Read.
type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:min(len(p), 1)]) }

func TestUnsignedReads(t *testing.T) {
	readBody := bytes.Repeat([]byte{0x31}, 49)
	signedRead := frame(smb2CmdRead, smb2FlagSigned, 0, readBody)
	unsignedRead := frame(smb2CmdRead, 0, 0, readBody)
	copy(unsignedRead[4+48:4+64], make([]byte, 16))
	signedCreate := frame(0x0005, smb2FlagSigned, 0, bytes.Repeat([]byte{7}, 57))
	compound := frame(smb2CmdRead, smb2FlagSigned, 120, readBody)
	short := []byte{0, 0, 0, 3, 1, 2, 3}
	encrypted := append([]byte{0, 0, 0, 68, 0xfd, 'S', 'M', 'B'}, bytes.Repeat([]byte{0x44}, 64)...)
	// The signed READ again, cut at every byte.
	split := func(w io.Writer, b []byte) {
		for i := range b {
			w.Write(b[i : i+1])
		}
	}
	for _, tc := range []struct {
		name   string
		in     []byte // what the server sent before
		unsign bool   // whether the READs go out unsigned
	}{
		{"signing enabled", negotiateResponse(0x0001), true},
		{"signing required", negotiateResponse(0x0003), false},
		{"no negotiate yet", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := &fakeConn{r: oneByte{bytes.NewReader(tc.in)}}
			c := &unsignedReads{Conn: fc}
			if got, _ := io.ReadAll(c); !bytes.Equal(got, tc.in) {
				t.Fatalf("read %x, want %x", got, tc.in)
			}
			sent := bytes.Clone(signedRead)
			var want []byte
			for _, w := range []struct {
				b []byte
				f func(io.Writer, []byte)
			}{
				{signedRead, nil}, {signedCreate, nil}, {compound, nil}, {short, nil},
				{encrypted, nil}, {signedRead, split},
				{append(bytes.Clone(signedRead), signedCreate...), nil},
			} {
				if w.f != nil {
					w.f(c, w.b)
				} else if n, err := c.Write(w.b); n != len(w.b) || err != nil {
					t.Fatalf("Write: %d, %v", n, err)
				}
				out := bytes.Clone(w.b)
				if tc.unsign {
					for i := 0; i+len(signedRead) <= len(out); i++ {
						if bytes.Equal(out[i:i+len(signedRead)], signedRead) {
							copy(out[i:], unsignedRead)
						}
					}
				}
				want = append(want, out...)
			}
			if !bytes.Equal(sent, signedRead) {
				t.Error("the caller's buffer was changed")
			}
			if !bytes.Equal(fc.w.Bytes(), want) {
				t.Errorf("sent\n%x\nwant\n%x", fc.w.Bytes(), want)
			}
			n := int64(0)
			if tc.unsign {
				n = 3
			}
			if got := c.unsigned.Load(); got != n {
				t.Errorf("%d READs unsigned, want %d", got, n)
			}
		})
	}
}

// TestRunSigning: the agent's READs go unsigned when the server does not
// require signing and the manifest has a SHA-256, signed otherwise.
func TestRunSigning(t *testing.T) {
	defer func() { dialedSMB = nil }()
	im := newImages(t)
	for _, required := range []bool{false, true} {
		smbRequireSigning = required
		s := startServers(t, im.dir)
		smbRequireSigning = false
		for _, tc := range []struct {
			image, path string
			unsigned    bool
		}{
			{"alpha", `raw\alpha.img`, !required},
			{"gamma.img.gz", `gamma.img.gz`, false}, // no manifest
		} {
			var mu sync.Mutex
			var conns []net.Conn
			dialedSMB = func(c net.Conn) { mu.Lock(); conns = append(conns, c); mu.Unlock() }
			cfg := s.config(t, tc.image)
			res, err := Run(testContext(t), cfg)
			if err != nil {
				t.Fatalf("required %v, %s: %v", required, tc.image, err)
			}
			if res.SHA256 != sum(im.data[tc.path]) {
				t.Errorf("required %v, %s: sha256 %s", required, tc.image, res.SHA256)
			}
			mu.Lock()
			if len(conns) != 1 {
				t.Fatalf("required %v, %s: %d SMB connections", required, tc.image, len(conns))
			}
			u, ok := conns[0].(*unsignedReads)
			mu.Unlock()
			if got := ok && u.unsigned.Load() > 0; got != tc.unsigned {
				t.Errorf("required %v, %s: READs unsigned %v, want %v", required, tc.image, got, tc.unsigned)
			}
		}
	}
}
