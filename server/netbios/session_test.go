package netbios

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

// Session service vectors, written out from RFC 1002 section 4.3.

// smbserverName is *SMBSERVER<20>, the called name of clients that
// connect by address: '*'=2A 'S'=53 'M'=4D 'B'=42 ... then spaces.
const smbserverName = "\x20CKFDENECFDEFFCFGEFFCCACACACACACA\x00"

// clientName is CLIENT<00>.
const clientName = "\x20EDEMEJEFEOFECACACACACACACACACAAA\x00"

// sessionRequest is what smbclient sends on port 139 when connecting by
// address (68 bytes of names).
var sessionRequest = "\x81\x00\x00\x44" + smbserverName + clientName

func TestReadSessionRequest(t *testing.T) {
	for _, c := range []struct {
		what, in, called, calling string
	}{
		{"by address", sessionRequest, "*SMBSERVER<20>", "CLIENT<00>"},
		{"after keep-alives", "\x85\x00\x00\x00\x85\x00\x00\x00" + sessionRequest, "*SMBSERVER<20>", "CLIENT<00>"},
		{"by name, with a scope", "\x81\x00\x00\x4e" + encodedName[:33] + "\x04CORP\x00" + clientName[:33] + "\x04CORP\x00", "NETDEPLOY<00>.CORP", "CLIENT<00>.CORP"},
	} {
		r := strings.NewReader(c.in + "rest")
		called, calling, err := ReadSessionRequest(r)
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if called != c.called || calling != c.calling {
			t.Errorf("%s: %q %q, want %q %q", c.what, called, calling, c.called, c.calling)
		}
		if rest, _ := io.ReadAll(r); string(rest) != "rest" {
			t.Errorf("%s: read past the request: %q left", c.what, rest)
		}
	}
}

func TestReadSessionRequestErrors(t *testing.T) {
	for _, c := range []struct {
		what, in string
		want     error
	}{
		{"nothing", "", io.EOF},
		{"half a header", "\x81\x00", io.ErrUnexpectedEOF},
		{"half the names", sessionRequest[:40], io.ErrUnexpectedEOF},
		{"a session message", "\x00\x00\x00\x04abcd", ErrMalformed},
		{"a keep-alive with a length", "\x85\x00\x00\x01x", ErrMalformed},
		{"reserved flags", "\x81\x02\x00\x44" + smbserverName + clientName, ErrMalformed},
		{"longer than two names", "\x81\x01\x00\x00", ErrMalformed},
		{"511 bytes", "\x81\x00\x01\xff" + strings.Repeat("A", 511), ErrMalformed},
		{"one name", "\x81\x00\x00\x22" + smbserverName, ErrMalformed},
		{"bytes after the names", "\x81\x00\x00\x45" + smbserverName + clientName + "x", ErrMalformed},
		{"compression pointer", "\x81\x00\x00\x24" + smbserverName + "\xc0\x00", ErrMalformed},
		{"not half-ASCII", "\x81\x00\x00\x44" + smbserverName + "\x20" + strings.Repeat("z", 32) + "\x00", ErrMalformed},
	} {
		_, _, err := ReadSessionRequest(strings.NewReader(c.in))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.what, err, c.want)
		}
	}
}

func TestWriteResponses(t *testing.T) {
	var b bytes.Buffer
	if err := WritePositiveResponse(&b); err != nil || b.String() != "\x82\x00\x00\x00" {
		t.Fatalf("positive: %q %v", b.Bytes(), err)
	}
	for code, want := range map[NegativeCode]string{
		NotListeningOnCalled:   "\x83\x00\x00\x01\x80",
		NotListeningForCalling: "\x83\x00\x00\x01\x81",
		CalledNotPresent:       "\x83\x00\x00\x01\x82",
		InsufficientResources:  "\x83\x00\x00\x01\x83",
		UnspecifiedError:       "\x83\x00\x00\x01\x8f",
	} {
		b.Reset()
		if err := WriteNegativeResponse(&b, code); err != nil || b.String() != want {
			t.Errorf("negative %#x: %q %v", code, b.Bytes(), err)
		}
	}
	if err := WritePositiveResponse(failWriter{}); err == nil {
		t.Error("write error lost")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestReadFrame(t *testing.T) {
	big := strings.Repeat("x", 0x1ffff)
	for _, c := range []struct {
		what  string
		f     Framing
		in    string
		limit int
		want  string
	}{
		{"netbios message", NetBIOS, "\x00\x00\x00\x05hello", 0, "hello"},
		{"empty message", NetBIOS, "\x00\x00\x00\x00", 100, ""},
		{"keep-alives skipped", NetBIOS, "\x85\x00\x00\x00\x85\x00\x00\x00\x00\x00\x00\x02hi", 0, "hi"},
		{"17-bit length (E bit)", NetBIOS, "\x00\x01\xff\xff" + big, 0, big},
		{"direct message", Direct, "\x00\x00\x00\x05hello", 10, "hello"},
		{"direct keep-alive", Direct, "\x85\x00\x00\x00\x00\x00\x00\x02hi", 0, "hi"},
		{"direct 24-bit length", Direct, "\x00\x01\xff\xff" + big, 0x20000, big},
		{"at the limit", NetBIOS, "\x00\x00\x00\x05hello", 5, "hello"},
	} {
		r := strings.NewReader(c.in + "\x00\x00\x00\x01z")
		got, err := ReadFrame(r, c.f, c.limit)
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if string(got) != c.want {
			t.Errorf("%s: %d bytes %.20q, want %d", c.what, len(got), got, len(c.want))
		}
		if next, err := ReadFrame(r, c.f, c.limit); err != nil || string(next) != "z" {
			t.Errorf("%s: next frame %q %v", c.what, next, err)
		}
		if _, err := ReadFrame(r, c.f, c.limit); err != io.EOF {
			t.Errorf("%s: at the end: %v, want io.EOF", c.what, err)
		}
	}
}

func TestReadFrameErrors(t *testing.T) {
	for _, c := range []struct {
		what  string
		f     Framing
		in    string
		limit int
		want  error
	}{
		{"empty", NetBIOS, "", 0, io.EOF},
		{"half a header", NetBIOS, "\x00\x00", 0, io.ErrUnexpectedEOF},
		{"half a message", NetBIOS, "\x00\x00\x00\x05hel", 0, io.ErrUnexpectedEOF},
		{"message missing", Direct, "\x00\x00\x00\x05", 0, io.ErrUnexpectedEOF},
		{"over the limit", NetBIOS, "\x00\x00\x00\x06hello!", 5, ErrTooLarge},
		{"over the limit, direct", Direct, "\x00\xff\xff\xff", 1 << 20, ErrTooLarge},
		{"reserved flags (netbios)", NetBIOS, "\x00\x02\x00\x00", 0, ErrMalformed},
		{"session request mid-stream", NetBIOS, sessionRequest, 0, ErrMalformed},
		{"positive response", Direct, "\x82\x00\x00\x00", 0, ErrMalformed},
		{"keep-alive with a length", NetBIOS, "\x85\x00\x00\x04abcd", 0, ErrMalformed},
		{"keep-alive with flags", Direct, "\x85\x01\x00\x00", 0, ErrMalformed},
		{"SMB1 signature as type", Direct, "\xffSMB", 0, ErrMalformed},
	} {
		_, err := ReadFrame(strings.NewReader(c.in), c.f, c.limit)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.what, err, c.want)
		}
	}
}

func TestWriteFrame(t *testing.T) {
	for _, c := range []struct {
		f    Framing
		n    int
		head string
	}{
		{NetBIOS, 5, "\x00\x00\x00\x05"},
		{NetBIOS, 0, "\x00\x00\x00\x00"},
		{NetBIOS, 0x1ffff, "\x00\x01\xff\xff"},
		{Direct, 0x20000, "\x00\x02\x00\x00"},
		{Direct, 0x123456, "\x00\x12\x34\x56"},
	} {
		msg := bytes.Repeat([]byte{0xfe}, c.n)
		var b bytes.Buffer
		if err := WriteFrame(&b, c.f, msg); err != nil {
			t.Fatalf("%s %d: %v", c.f, c.n, err)
		}
		if got := b.Bytes(); string(got[:4]) != c.head || !bytes.Equal(got[4:], msg) {
			t.Errorf("%s %d: header %q", c.f, c.n, got[:4])
		}
		back, err := ReadFrame(&b, c.f, 0)
		if err != nil || !bytes.Equal(back, msg) {
			t.Errorf("%s %d: read back %d bytes, %v", c.f, c.n, len(back), err)
		}
	}
	if err := WriteFrame(io.Discard, NetBIOS, make([]byte, 0x20000)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("131072 bytes in NetBIOS framing: %v", err)
	}
	if err := WriteFrame(io.Discard, Direct, make([]byte, 1<<24)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("16 MiB in direct framing: %v", err)
	}
	if err := WriteFrame(failWriter{}, Direct, []byte("x")); err == nil {
		t.Error("write error lost")
	}
}

// TestSessionOverTCP runs a session as the SMB server would on port 139:
// request, positive response, a message each way in one write each.
func TestSessionOverTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		called, calling, err := ReadSessionRequest(c)
		if err != nil {
			errc <- err
			return
		}
		if called != "*SMBSERVER<20>" || calling != "CLIENT<00>" {
			WriteNegativeResponse(c, NotListeningOnCalled)
			errc <- errors.New("names " + called + " " + calling)
			return
		}
		if err := WritePositiveResponse(c); err != nil {
			errc <- err
			return
		}
		msg, err := ReadFrame(c, NetBIOS, 1<<16)
		if err != nil {
			errc <- err
			return
		}
		errc <- WriteFrame(c, NetBIOS, append([]byte("echo "), msg...))
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, sessionRequest); err != nil {
		t.Fatal(err)
	}
	var resp [4]byte
	if _, err := io.ReadFull(c, resp[:]); err != nil || resp != [4]byte{0x82} {
		t.Fatalf("response %x %v", resp, err)
	}
	if err := WriteFrame(c, NetBIOS, []byte("\xfeSMB")); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFrame(c, NetBIOS, 100)
	if err != nil || string(got) != "echo \xfeSMB" {
		t.Fatalf("echo %q %v", got, err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
