package smb

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

func smb1Negotiate(dialects ...string) []byte {
	var data []byte
	for _, d := range dialects {
		data = append(append(append(data, 0x02), d...), 0)
	}
	b := make([]byte, 32)
	copy(b, protoSMB1[:])
	b[4] = 0x72
	b = append(b, 0) // WordCount
	b = binary.LittleEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

// An SMB1 multi-protocol NEGOTIATE is answered in SMB2 ([MS-SMB2]
// 3.3.5.3.1), and SMB1 itself is never spoken.
func TestSMB1NegotiateUpgrade(t *testing.T) {
	ts := newTestServer(t, false, nil)
	for _, tc := range []struct {
		name     string
		dialects []string
		want     uint16 // 0: the connection is closed
	}{
		{"wildcard", []string{"NT LM 0.12", "SMB 2.002", "SMB 2.???"}, dialectWildcard},
		{"2.002 only", []string{"NT LM 0.12", "SMB 2.002"}, dialect202},
		{"SMB1 only", []string{"NT LM 0.12"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, ts.addr)
			c.sendFrame(smb1Negotiate(tc.dialects...))
			r := c.recvFrame()
			if tc.want == 0 {
				if r != nil {
					t.Fatalf("answer %x to an SMB1-only NEGOTIATE", r[:min(len(r), 16)])
				}
				return
			}
			if r == nil {
				t.Fatal("connection closed")
			}
			h, err := parseHeader(r)
			if err != nil || h.Command != cmdNegotiate || h.Flags&flagResponse == 0 || h.MessageID != 0 {
				t.Fatalf("not an SMB2 NEGOTIATE response: %+v, %v", h, err)
			}
			if d := binary.LittleEndian.Uint16(r[headerLen+4:]); d != tc.want {
				t.Fatalf("dialect 0x%04x, want 0x%04x", d, tc.want)
			}
			if h.Credits < 1 {
				t.Fatalf("no credit granted")
			}
			c.msgID = 1
			if tc.want == dialectWildcard {
				h, body := c.call(cmdNegotiate, negotiateBody(dialect202, dialect210, dialect300))
				if Status(h.Status) != StatusSuccess || binary.LittleEndian.Uint16(body[4:]) != dialect300 {
					t.Fatalf("SMB2 NEGOTIATE after the upgrade: 0x%08x dialect 0x%04x", h.Status, binary.LittleEndian.Uint16(body[4:]))
				}
			} else {
				h, _ := c.call(cmdEcho, []byte{4, 0, 0, 0})
				if Status(h.Status) != StatusSuccess {
					t.Fatalf("ECHO after a 2.0.2 upgrade: 0x%08x", h.Status)
				}
			}
		})
	}
	// smbclient with SMB1 allowed sends the multi-protocol NEGOTIATE.
	if needSmbclientOK() {
		o, err := ts.smbclient(t, "images", "-U", testUser+"%"+testPass, "--option=client min protocol = NT1", "-c", "ls small.txt")
		if err != nil || !strings.Contains(o, "small.txt") {
			t.Fatalf("smbclient starting with SMB1: %v\n%s", err, o)
		}
	}
}

func TestCompoundRelated(t *testing.T) {
	ts := newTestServer(t, false, nil)
	c := loggedOn(t, ts)
	all := relatedFileID
	m1 := c.msg(cmdCreate, createBody("small.txt", 0x00120089, dispOpen, 0), 1, 0)
	m2 := c.msg(cmdRead, readBody(all, 0, 100), 1, flagRelated)
	m3 := c.msg(cmdClose, closeBody(all), 1, flagRelated)
	var chain []byte
	for i, m := range [][]byte{m1, m2, m3} {
		for len(m)%8 != 0 {
			m = append(m, 0)
		}
		if i < 2 {
			binary.LittleEndian.PutUint32(m[20:], uint32(len(m)))
		}
		chain = append(chain, m...)
	}
	c.sendFrame(chain)
	r := c.recvFrame()
	var statuses []Status
	var data []byte
	for len(r) > 0 {
		h, err := parseHeader(r)
		if err != nil {
			t.Fatal(err)
		}
		statuses = append(statuses, Status(h.Status))
		end := len(r)
		if h.NextCommand != 0 {
			if h.NextCommand%8 != 0 {
				t.Fatalf("NextCommand %d not 8-aligned", h.NextCommand)
			}
			end = int(h.NextCommand)
		}
		if h.Command == cmdRead && Status(h.Status) == StatusSuccess {
			off := r[headerLen+2]
			n := binary.LittleEndian.Uint32(r[headerLen+4:])
			data = r[off : int(off)+int(n)]
		}
		r = r[end:]
	}
	if len(statuses) != 3 || statuses[0] != 0 || statuses[1] != 0 || statuses[2] != 0 {
		t.Fatalf("statuses %x, want three successes", statuses)
	}
	if string(data) != "hello smb\n" {
		t.Fatalf("read %q", data)
	}
	// A related chain after a failed CREATE fails throughout.
	m1 = c.msg(cmdCreate, createBody("missing.txt", 0x00120089, dispOpen, 0), 1, 0)
	m2 = c.msg(cmdRead, readBody(all, 0, 100), 1, flagRelated)
	for len(m1)%8 != 0 {
		m1 = append(m1, 0)
	}
	binary.LittleEndian.PutUint32(m1[20:], uint32(len(m1)))
	c.sendFrame(append(m1, m2...))
	r = c.recvFrame()
	h1, _ := parseHeader(r)
	h2, _ := parseHeader(r[h1.NextCommand:])
	if Status(h1.Status) != StatusObjectNameNotFound || Status(h2.Status) != StatusObjectNameNotFound {
		t.Fatalf("statuses 0x%08x 0x%08x, want object name not found twice", h1.Status, h2.Status)
	}
	// Unrelated: FileId 0xFF.. without RELATED is invalid.
	h, _ := c.call(cmdRead, readBody(all, 0, 10))
	if Status(h.Status) != StatusInvalidParameter {
		t.Fatalf("unrelated read of the related FileId: 0x%08x", h.Status)
	}
}

// Credits: a client cannot use ids it was not granted or reuse one, and
// a multi-credit READ must be paid for.
func TestCredits(t *testing.T) {
	ts := newTestServer(t, false, nil)
	c := loggedOn(t, ts)
	f, st := c.open("small.txt")
	if st != StatusSuccess {
		t.Fatal(st)
	}
	// 2.1 with LARGE_MTU: a 128 KiB read costs 2 credits.
	h, _ := c.callCharge(cmdRead, readBody(f, 0, 128<<10), 1)
	if Status(h.Status) != StatusInvalidParameter {
		t.Fatalf("128 KiB read with CreditCharge 1: 0x%08x, want invalid parameter", h.Status)
	}
	h, _ = c.callCharge(cmdRead, readBody(f, 0, 128<<10), 2)
	if Status(h.Status) != StatusSuccess {
		t.Fatalf("128 KiB read with CreditCharge 2: 0x%08x", h.Status)
	}
	// Reusing a message id drops the connection.
	c.msgID--
	c.sendFrame(c.msg(cmdEcho, []byte{4, 0, 0, 0}, 1, 0))
	if r := c.recvFrame(); r != nil {
		t.Fatalf("answer to a reused message id")
	}
	// An id far beyond the window too.
	c = loggedOn(t, ts)
	c.msgID += 100000
	c.sendFrame(c.msg(cmdEcho, []byte{4, 0, 0, 0}, 1, 0))
	if r := c.recvFrame(); r != nil {
		t.Fatalf("answer to a message id outside the window")
	}
}

// Malformed requests fail with a status and the connection lives on.
func TestMalformedRequests(t *testing.T) {
	ts := newTestServer(t, false, nil)
	c := loggedOn(t, ts)
	f, _ := c.open("small.txt")
	bad := createBody("small.txt", 0x00120089, dispOpen, 0)
	binary.LittleEndian.PutUint16(bad[46:], 5000) // name length beyond the message
	for name, tc := range map[string]struct {
		cmd  uint16
		body []byte
		want Status
	}{
		"short create":           {cmdCreate, []byte{57, 0}, StatusInvalidParameter},
		"name out of bounds":     {cmdCreate, bad, StatusInvalidParameter},
		"empty name is the root": {cmdCreate, createBody("", 0x00120089, dispOpen, 0), StatusSuccess},
		"dotdot":                 {cmdCreate, createBody(`sub\..\..\x`, 0x00120089, dispOpen, 0), StatusAccessDenied},
		"absolute":               {cmdCreate, createBody(`\small.txt`, 0x00120089, dispOpen, 0), StatusAccessDenied},
		"stream":                 {cmdCreate, createBody(`small.txt:x:$DATA`, 0x00120089, dispOpen, 0), StatusObjectNameInvalid},
		"write access":           {cmdCreate, createBody(`small.txt`, 0x2, dispOpen, 0), StatusAccessDenied},
		"overwrite":              {cmdCreate, createBody(`small.txt`, 0x1, dispOverwriteIf, 0), StatusAccessDenied},
		"dir as file":            {cmdCreate, createBody(`sub`, 0x1, dispOpen, optNonDirectoryFile), StatusFileIsADirectory},
		"file as dir":            {cmdCreate, createBody(`small.txt`, 0x1, dispOpen, optDirectoryFile), StatusNotADirectory},
		"missing parent":         {cmdCreate, createBody(`nodir\x`, 0x1, dispOpen, 0), StatusObjectPathNotFound},
		"read past end":          {cmdRead, readBody(f, 1000, 10), StatusEndOfFile},
		"read unknown file":      {cmdRead, readBody(fileID{1, 2}, 0, 10), StatusFileClosed},
		"short read":             {cmdRead, readBody(f, 0, 10)[:20], StatusInvalidParameter},
		"bad info class":         {cmdQueryInfo, queryInfoBody(infoFile, 99, f, 1000), StatusInvalidInfoClass},
		"info too small":         {cmdQueryInfo, queryInfoBody(infoFile, fileBasicInformation, f, 8), StatusInfoLengthMismatch},
		"dir on a file":          {cmdQueryDirectory, queryDirBody(fileNamesInformation, 0, f, "*", 1000), StatusInvalidParameter},
		"set info":               {cmdSetInfo, make([]byte, 40), StatusAccessDenied},
		"unknown ioctl":          {cmdIoctl, ioctlBody(0x00090000, f, nil, 100), StatusNotSupported},
		"dfs referral":           {cmdIoctl, ioctlBody(fsctlDFSGetReferrals, relatedFileIDValue(), []byte{4, 0}, 1000), StatusNotFound},
	} {
		t.Run(name, func(t *testing.T) {
			h, _ := c.call(tc.cmd, tc.body)
			if Status(h.Status) != tc.want {
				t.Fatalf("status 0x%08x, want 0x%08x", h.Status, uint32(tc.want))
			}
		})
	}
	// Still alive.
	h, _ := c.call(cmdEcho, []byte{4, 0, 0, 0})
	if h.Status != 0 {
		t.Fatalf("ECHO: 0x%08x", h.Status)
	}
	// A tree id that does not exist, and a session that does not.
	c.tree = 999
	if h, _ := c.call(cmdCreate, createBody("small.txt", 1, dispOpen, 0)); Status(h.Status) != StatusNetworkNameDeleted {
		t.Fatalf("unknown tree: 0x%08x", h.Status)
	}
	c.sess = 12345
	if h, _ := c.call(cmdCreate, createBody("small.txt", 1, dispOpen, 0)); Status(h.Status) != StatusUserSessionDeleted {
		t.Fatalf("unknown session: 0x%08x", h.Status)
	}
}

func relatedFileIDValue() fileID { return relatedFileID }

func ioctlBody(code uint32, f fileID, in []byte, maxOut uint32) []byte {
	var b le
	b.u16(57)
	b.u16(0)
	b.u32(code)
	b.fid(f)
	b.u32(headerLen + 56)
	b.u32(uint32(len(in)))
	b.u32(0)
	b.u32(0)
	b.u32(0)
	b.u32(maxOut)
	b.u32(ioctlIsFsctl)
	b.u32(0)
	b.bytes(in)
	return b
}

// Every file and file-system information class the server answers, with
// the sizes [MS-FSCC] gives.
func TestQueryInfoClasses(t *testing.T) {
	ts := newTestServer(t, false, nil)
	c := loggedOn(t, ts)
	f, _ := c.open("small.txt")
	root, st := c.open("")
	if st != StatusSuccess {
		t.Fatalf("open root: 0x%08x", uint32(st))
	}
	for _, tc := range []struct {
		name  string
		typ   byte
		class byte
		f     fileID
		size  int // -1: at least the fixed part
		check func([]byte) bool
	}{
		{"basic", infoFile, fileBasicInformation, f, 40, func(b []byte) bool { return binary.LittleEndian.Uint32(b[32:])&attrDirectory == 0 }},
		{"standard", infoFile, fileStandardInformation, f, 24, func(b []byte) bool { return binary.LittleEndian.Uint64(b[8:]) == 10 && b[21] == 0 }},
		{"standard dir", infoFile, fileStandardInformation, root, 24, func(b []byte) bool { return b[21] == 1 }},
		{"internal", infoFile, fileInternalInformation, f, 8, nil},
		{"ea", infoFile, fileEaInformation, f, 4, nil},
		{"network open", infoFile, fileNetworkOpenInformation, f, 56, func(b []byte) bool { return binary.LittleEndian.Uint64(b[40:]) == 10 }},
		{"all", infoFile, fileAllInformation, f, 100 + len(utf16le(`\small.txt`)), func(b []byte) bool { return binary.LittleEndian.Uint64(b[48:]) == 10 }},
		{"stream", infoFile, fileStreamInformation, f, 24 + 14, func(b []byte) bool { return bytes.Equal(b[24:], utf16le("::$DATA")) }},
		{"stream dir", infoFile, fileStreamInformation, root, 0, nil},
		{"attribute tag", infoFile, fileAttributeTagInformation, f, 8, nil},
		{"fs volume", infoFileSystem, fsVolumeInformation, root, 18 + len(utf16le("images")), nil},
		{"fs size", infoFileSystem, fsSizeInformation, root, 24, nil},
		{"fs full size", infoFileSystem, fsFullSizeInformation, root, 32, nil},
		{"fs attribute", infoFileSystem, fsAttributeInformation, root, 12 + 8, func(b []byte) bool { return bytes.Equal(b[12:], utf16le("NTFS")) }},
		{"fs device", infoFileSystem, fsDeviceInformation, root, 8, func(b []byte) bool { return b[0] == 7 }},
		{"fs sector size", infoFileSystem, fsSectorSizeInformation, root, 28, nil},
		{"security", infoSecurity, 0, f, -1, func(b []byte) bool { return b[0] == 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, body := c.call(cmdQueryInfo, queryInfoBody(tc.typ, tc.class, tc.f, 4096))
			if Status(h.Status) != StatusSuccess {
				t.Fatalf("status 0x%08x", h.Status)
			}
			off := binary.LittleEndian.Uint16(body[2:])
			n := binary.LittleEndian.Uint32(body[4:])
			if tc.size >= 0 && int(n) != tc.size {
				t.Fatalf("%d bytes, want %d", n, tc.size)
			}
			data := body[int(off)-headerLen:][:n]
			if tc.check != nil && !tc.check(data) {
				t.Fatalf("unexpected contents %x", data)
			}
		})
	}
	// Too small a buffer for a variable-size class: BUFFER_OVERFLOW
	// with what fits.
	h, body := c.call(cmdQueryInfo, queryInfoBody(infoFile, fileAllInformation, f, 100))
	if Status(h.Status) != StatusBufferOverflow || binary.LittleEndian.Uint32(body[4:]) != 100 {
		t.Fatalf("FileAllInformation in 100 bytes: 0x%08x, %d bytes", h.Status, binary.LittleEndian.Uint32(body[4:]))
	}
}

// QUERY_DIRECTORY: every class, patterns, single entry and restart.
func TestQueryDirectory(t *testing.T) {
	ts := newTestServer(t, false, nil)
	c := loggedOn(t, ts)
	list := func(f fileID, class, flags byte, pattern string, outLen uint32) ([]string, Status) {
		t.Helper()
		h, body := c.call(cmdQueryDirectory, queryDirBody(class, flags, f, pattern, outLen))
		if Status(h.Status) != StatusSuccess {
			return nil, Status(h.Status)
		}
		off := binary.LittleEndian.Uint16(body[2:])
		n := binary.LittleEndian.Uint32(body[4:])
		buf := body[int(off)-headerLen:][:n]
		nameAt := map[byte]int{fileDirectoryInformation: 64, fileFullDirectoryInformation: 68,
			fileBothDirectoryInformation: 94, fileIDBothDirectoryInformation: 104,
			fileIDFullDirectoryInformation: 80, fileNamesInformation: 12}[class]
		lenAt := map[byte]int{fileNamesInformation: 8}[class]
		if lenAt == 0 {
			lenAt = 60
		}
		var names []string
		for {
			nl := binary.LittleEndian.Uint32(buf[lenAt:])
			s, _ := fromUTF16(buf[nameAt : nameAt+int(nl)])
			names = append(names, s)
			next := binary.LittleEndian.Uint32(buf)
			if next == 0 {
				break
			}
			if next%8 != 0 {
				t.Fatalf("NextEntryOffset %d not 8-aligned", next)
			}
			buf = buf[next:]
		}
		return names, StatusSuccess
	}
	for _, class := range []byte{fileDirectoryInformation, fileFullDirectoryInformation, fileBothDirectoryInformation,
		fileIDBothDirectoryInformation, fileIDFullDirectoryInformation, fileNamesInformation} {
		root, _ := c.open("")
		names, st := list(root, class, 0, "*", 65536)
		if st != StatusSuccess {
			t.Fatalf("class %d: 0x%08x", class, uint32(st))
		}
		want := ".,..,link.txt,readme.md,small.txt,sub"
		if strings.Join(names, ",") != want {
			t.Errorf("class %d: %v, want %s", class, names, want)
		}
		if _, st := list(root, class, 0, "*", 65536); st != StatusNoMoreFiles {
			t.Errorf("class %d second query: 0x%08x, want no more files", class, uint32(st))
		}
		c.call(cmdClose, closeBody(root))
	}
	root, _ := c.open("")
	for pattern, want := range map[string]string{
		"*.txt": "link.txt,small.txt", "S?ALL.*": "small.txt", "<.md": "readme.md", "sub": "sub", "small.txt": "small.txt",
	} {
		names, st := list(root, fileNamesInformation, qdRestartScans, pattern, 65536)
		if st != StatusSuccess || strings.Join(names, ",") != want {
			t.Errorf("pattern %q: %v 0x%08x, want %s", pattern, names, uint32(st), want)
		}
	}
	if _, st := list(root, fileNamesInformation, qdRestartScans, "zzz*", 65536); st != StatusNoSuchFile {
		t.Errorf("unmatched pattern: 0x%08x, want no such file", uint32(st))
	}
	// One entry at a time, then restart.
	var got []string
	for i := 0; ; i++ {
		flags := byte(qdReturnSingleEntry)
		if i == 0 {
			flags |= qdRestartScans
		}
		names, st := list(root, fileNamesInformation, flags, "*", 65536)
		if st == StatusNoMoreFiles {
			break
		}
		if st != StatusSuccess || len(names) != 1 {
			t.Fatalf("single entry: %v 0x%08x", names, uint32(st))
		}
		got = append(got, names[0])
	}
	if len(got) != 6 {
		t.Errorf("single entries %v", got)
	}
	// A small buffer spreads the listing over several responses.
	got = nil
	for i := 0; i < 20; i++ {
		flags := byte(0)
		if i == 0 {
			flags = qdRestartScans
		}
		names, st := list(root, fileIDBothDirectoryInformation, flags, "*", 240)
		if st == StatusNoMoreFiles {
			break
		}
		got = append(got, names...)
	}
	if len(got) != 6 {
		t.Errorf("listing in small buffers: %v", got)
	}
}

func TestWildcardMatch(t *testing.T) {
	for _, tc := range []struct {
		p, n string
		want bool
	}{
		{"*", "anything", true}, {"*.txt", "a.TXT", true}, {"*.txt", "a.txt.bak", false},
		{"a?c", "abc", true}, {"a?c", "ac", false}, {"<.md", "readme.md", true},
		{"foo>>>", "foo", true}, {"foo\"txt", "foo.txt", true}, {"**a*b*c**", "xaybzc", true},
		{strings.Repeat("*a", 200), strings.Repeat("a", 100) + "b", false},
	} {
		if got := wildcardMatch(tc.p, tc.n); got != tc.want {
			t.Errorf("wildcardMatch(%q, %q) = %t", tc.p, tc.n, got)
		}
	}
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		st      Status
	}{
		{"", ".", StatusSuccess}, {`sub\inner.txt`, "sub/inner.txt", StatusSuccess}, {`sub\`, "sub", StatusSuccess},
		{`a\.\b`, "a/b", StatusSuccess}, {`..`, "", StatusAccessDenied}, {`a\..\b`, "", StatusAccessDenied},
		{`\a`, "", StatusAccessDenied}, {`a:b`, "", StatusObjectNameInvalid}, {`C:\x`, "", StatusObjectNameInvalid},
		{`a/b`, "", StatusObjectNameInvalid}, {"a\x00b", "", StatusObjectNameInvalid}, {`a|b`, "", StatusObjectNameInvalid},
		{strings.Repeat("x", 256), "", StatusObjectNameInvalid},
	} {
		out, st := resolve(tc.in)
		if out != tc.out || st != tc.st {
			t.Errorf("resolve(%q) = %q, 0x%08x; want %q, 0x%08x", tc.in, out, uint32(st), tc.out, uint32(tc.st))
		}
	}
}
