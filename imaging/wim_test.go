package imaging

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
)

// testdata/two.wim was made by wimlib 1.13.6 (Debian wimtools):
//
//	wimcapture one two.wim "Lab Windows" "first image" --image-property WINDOWS/ARCH=9
//	wimappend two two.wim "Second" "second image" --image-property DISPLAYNAME="Second (display)" --image-property WINDOWS/ARCH=12
//
// with one/Windows/readme.txt ("first image\n", 12 bytes) and two/hello.txt
// ("second\n", 7 bytes). It lets the catalogue tests and the fuzz seeds run
// without wimlib; the tests below build their WIMs with wimlib itself.
const twoWIM = "testdata/two.wim"

func readTwoWIM(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(twoWIM)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// needWimlib skips the test when wimlib's tools are not installed.
func needWimlib(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"wimcapture", "wimappend", "wiminfo"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: these tests build WIMs with wimlib; install the Debian package wimtools (apt-get install -y wimtools)", tool)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// wiminfoImage is an image as `wiminfo FILE` prints it: the oracle the
// reader is checked against.
type wiminfoImage struct {
	Index                          int
	Name, Description, DisplayName string
	TotalBytes                     int64
	Arch                           string // mapped to Image.Arch names
}

func wiminfoImages(t *testing.T, file string) []wiminfoImage {
	t.Helper()
	out := run(t, "wiminfo", file)
	_, images, ok := strings.Cut(out, "Available Images:")
	if !ok {
		t.Fatalf("wiminfo output without images:\n%s", out)
	}
	var list []wiminfoImage
	var cur *wiminfoImage
	sc := bufio.NewScanner(strings.NewReader(images))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "Index":
			n, err := strconv.Atoi(val)
			if err != nil {
				t.Fatal(err)
			}
			list = append(list, wiminfoImage{Index: n})
			cur = &list[len(list)-1]
		case "Name":
			cur.Name = val
		case "Description":
			cur.Description = val
		case "Display Name":
			cur.DisplayName = val
		case "Total Bytes":
			n, err := strconv.ParseInt(strings.TrimSuffix(val, " bytes"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			cur.TotalBytes = n
		case "Architecture":
			cur.Arch = map[string]string{"x86": "x86", "x86_64": "amd64", "ARM": "arm", "ARM64": "arm64", "ia64": "ia64"}[val]
		}
	}
	return list
}

// TestReadWIMWimlib builds two-image WIMs with wimlib (LZX, uncompressed,
// and solid LZMS) and checks the reader against wiminfo: the XML resource
// it finds is byte for byte what wiminfo --extract-xml writes, and every
// image's index, name, description, size and architecture match.
func TestReadWIMWimlib(t *testing.T) {
	needWimlib(t)
	src := t.TempDir()
	for dir, files := range map[string]map[string]int{
		"one": {"Windows/readme.txt": 5000, "Windows/System32/config.bin": 70000},
		"two": {"hello.txt": 7},
	} {
		for name, size := range files {
			p := filepath.Join(src, dir, name)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, bytes.Repeat([]byte(name[:3]), size/3+1)[:size], 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		opts        []string
		compression string
		version     uint32
	}{
		{nil, "lzx", 0x10d00},
		{[]string{"--compress=none"}, "none", 0x10d00},
		{[]string{"--solid"}, "lzms", 0xe00},
	} {
		t.Run(tc.compression, func(t *testing.T) {
			wim := filepath.Join(t.TempDir(), "install.wim")
			run(t, "wimcapture", append([]string{filepath.Join(src, "one"), wim, "Windows 11 Pro", "Lab build", "--image-property", "WINDOWS/ARCH=9"}, tc.opts...)...)
			run(t, "wimappend", append([]string{filepath.Join(src, "two"), wim, "Second Ünïcode 😀", "Another one", "--image-property", "WINDOWS/ARCH=12", "--image-property", "DISPLAYNAME=Shown"}, tc.opts...)...)
			f, err := os.Open(wim)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, _ := f.Stat()

			h, err := ReadWIMHeader(f, fi.Size())
			if err != nil {
				t.Fatal(err)
			}
			if h.ImageCount != 2 || h.Version != tc.version || h.Compression() != tc.compression || h.HeaderSize != 208 || h.PartNumber != 1 || h.TotalParts != 1 {
				t.Errorf("header = %+v, compression %s", h, h.Compression())
			}
			xmlFile := filepath.Join(t.TempDir(), "x.xml")
			run(t, "wiminfo", wim, "--extract-xml", xmlFile)
			want, _ := os.ReadFile(xmlFile)
			got := make([]byte, h.XMLData.Size)
			f.ReadAt(got, int64(h.XMLData.Offset))
			if !bytes.Equal(got, want) {
				t.Errorf("XML resource at %d+%d differs from wiminfo --extract-xml (%d bytes)", h.XMLData.Offset, h.XMLData.Size, len(want))
			}

			images, err := ReadWIMImages(f, fi.Size(), "win/install.wim")
			if err != nil {
				t.Fatal(err)
			}
			oracle := wiminfoImages(t, wim)
			if len(images) != 2 || len(oracle) != 2 {
				t.Fatalf("images = %+v, wiminfo = %+v", images, oracle)
			}
			for i, o := range oracle {
				im := images[i]
				if im.Index != o.Index || im.Name != o.Name || im.Description != o.Description || im.Size != o.TotalBytes || im.Arch != o.Arch {
					t.Errorf("image %d = %+v, wiminfo says %+v", i+1, im, o)
				}
				if im.Kind != "wim" || im.File != "win/install.wim" || im.Path != `win\install.wim` || im.Group != "win" || im.FileSize != fi.Size() {
					t.Errorf("image %d location = %+v", i+1, im)
				}
			}
			if images[0].Size != 75000 || images[0].Arch != "amd64" || images[1].Name != "Second Ünïcode 😀" || images[1].Arch != "arm64" {
				t.Errorf("images = %+v", images)
			}
		})
	}
}

// TestReadWIMNameFallback: an image without NAME is named by DISPLAYNAME,
// else by the file name and index.
func TestReadWIMNameFallback(t *testing.T) {
	needWimlib(t)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	wim := filepath.Join(t.TempDir(), "noname.wim")
	run(t, "wimcapture", src, wim, "")
	run(t, "wimappend", src, wim, "", "--image-property", "DISPLAYNAME=Only display")
	f, err := os.Open(wim)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	images, err := ReadWIMImages(f, fi.Size(), "noname.wim")
	if err != nil {
		t.Fatal(err)
	}
	if len(images) != 2 || images[0].Name != "noname.wim #1" || images[1].Name != "Only display" || images[0].Arch != "" || images[0].Size != 1 {
		t.Errorf("images = %+v", images)
	}
}

// TestReadWIMTestdata checks the committed WIM, so the reader is exercised
// on wimlib's output even where wimlib is not installed.
func TestReadWIMTestdata(t *testing.T) {
	b := readTwoWIM(t)
	info, err := ReadWIM(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	want := []WIMImage{
		{Index: 1, Name: "Lab Windows", Description: "first image", ArchCode: 9, TotalBytes: 12},
		{Index: 2, Name: "Second", DisplayName: "Second (display)", Description: "second image", ArchCode: 12, TotalBytes: 7},
	}
	if fmt.Sprint(info.Images) != fmt.Sprint(want) || info.Header.Compression() != "lzx" || info.TotalBytes <= 0 {
		t.Errorf("info = %+v\nwant images %+v", info, want)
	}
}

// setXMLOffset rewrites the XML data resource's offset in a WIM header.
func setXMLOffset(b []byte, off uint64) { binary.LittleEndian.PutUint64(b[72+8:], off) }

// TestReadWIMMalformed: every malformed file gives a *WIMError wrapping the
// right sentinel, never a panic and never images.
func TestReadWIMMalformed(t *testing.T) {
	good := readTwoWIM(t)
	h, err := ReadWIMHeader(bytes.NewReader(good), int64(len(good)))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty file", nil, ErrNotWIM},
		{"text named .wim", []byte("this is not a WIM at all, just some text that is long enough to fill a header...................................................................................................................."), ErrNotWIM},
		{"zip named .wim", append([]byte("PK\x03\x04"), make([]byte, 300)...), ErrNotWIM},
		{"magic only", []byte("MSWIM\x00\x00\x00"), ErrTruncated},
		{"half a magic", []byte("MSW"), ErrTruncated},
		{"truncated header", good[:100], ErrTruncated},
		{"truncated to header", good[:208], ErrOutOfRange},
		{"truncated in the middle", good[:len(good)/2], ErrOutOfRange},
		{"truncated by one byte", good[:len(good)-1], ErrOutOfRange},
		{"xml offset beyond the file", edit(func(b []byte) { setXMLOffset(b, uint64(len(good))+1000) }), ErrOutOfRange},
		{"xml offset overflowing", edit(func(b []byte) { setXMLOffset(b, 1<<64-2) }), ErrOutOfRange},
		{"xml offset inside the header", edit(func(b []byte) { setXMLOffset(b, 8) }), ErrCorrupt},
		{"xml offset at file data", edit(func(b []byte) { setXMLOffset(b, 208) }), ErrBadXML},
		{"xml offset one byte early", edit(func(b []byte) { setXMLOffset(b, h.XMLData.Offset-1) }), ErrBadXML},
		{"xml offset one byte late", edit(func(b []byte) { setXMLOffset(b, h.XMLData.Offset+1) }), ErrOutOfRange},
		{"xml size zero", edit(func(b []byte) { binary.LittleEndian.PutUint64(b[72:], 0) }), ErrCorrupt},
		{"xml compressed", edit(func(b []byte) { b[72+7] |= ResourceCompressed }), ErrUnsupported},
		{"xml original size differs", edit(func(b []byte) { binary.LittleEndian.PutUint64(b[72+16:], 4) }), ErrCorrupt},
		{"blob table beyond the file", edit(func(b []byte) { binary.LittleEndian.PutUint64(b[48+8:], 1<<40) }), ErrOutOfRange},
		{"header size too small", edit(func(b []byte) { binary.LittleEndian.PutUint32(b[8:], 100) }), ErrCorrupt},
		{"header size beyond the file", edit(func(b []byte) { binary.LittleEndian.PutUint32(b[8:], 1<<30) }), ErrCorrupt},
		{"part 0 of 0", edit(func(b []byte) { binary.LittleEndian.PutUint32(b[40:], 0) }), ErrCorrupt},
		{"boot index beyond the images", edit(func(b []byte) { binary.LittleEndian.PutUint32(b[120:], 3) }), ErrCorrupt},
		{"more images in the header", edit(func(b []byte) { binary.LittleEndian.PutUint32(b[44:], 3) }), ErrCorrupt},
		{"fewer images in the header", edit(func(b []byte) { binary.LittleEndian.PutUint32(b[44:], 1) }), ErrCorrupt},
		{"being written", edit(func(b []byte) { b[16] |= WIMFlagWriteInProgress }), ErrWritePending},
		{"pipable", edit(func(b []byte) { copy(b, "WLPWM\x00\x00\x00") }), ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			images, err := ReadWIMImages(bytes.NewReader(tc.data), int64(len(tc.data)), "x.wim")
			var we *WIMError
			if !errors.As(err, &we) || !errors.Is(err, tc.want) || images != nil {
				t.Fatalf("err = %v (%T), want a *WIMError wrapping %q; images %+v", err, err, tc.want, images)
			}
			if !strings.HasPrefix(err.Error(), "wim ") {
				t.Errorf("message %q", err)
			}
		})
	}
}

// utf16le encodes s as the XML data resource stores it.
func utf16le(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return b
}

// synthWIM builds a minimal uncompressed WIM: the header and the XML data
// (with a byte order mark) right after it, the image count taken from the
// IMAGE elements.
func synthWIM(xmlText string) []byte {
	x := utf16le("\ufeff" + xmlText)
	b := make([]byte, 208, 208+len(x))
	le := binary.LittleEndian
	copy(b, "MSWIM\x00\x00\x00")
	le.PutUint32(b[8:], 208)
	le.PutUint32(b[12:], 0x10d00)
	le.PutUint16(b[40:], 1)
	le.PutUint16(b[42:], 1)
	le.PutUint32(b[44:], uint32(strings.Count(xmlText, "<IMAGE")))
	le.PutUint64(b[72:], uint64(len(x))|ResourceMetadata<<56)
	le.PutUint64(b[80:], 208)
	le.PutUint64(b[88:], uint64(len(x)))
	return append(b, x...)
}

// sparseFile is a large file of zeros with some bytes at the start, for
// sizes no test should write to disk.
type sparseFile struct {
	head []byte
	size int64
}

func (s sparseFile) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	if off < int64(len(s.head)) {
		copy(p, s.head[off:])
	}
	return len(p), nil
}

func TestReadWIMSynthetic(t *testing.T) {
	for _, tc := range []struct {
		name string
		xml  string
		want string // fmt %v of the images' Index, Name, Description, Arch, Size, or the error sentinel
		err  error
	}{
		{"names and arches", `<WIM><TOTALBYTES>1</TOTALBYTES><IMAGE INDEX="2"><NAME>B</NAME><WINDOWS><ARCH>0</ARCH></WINDOWS><TOTALBYTES>0x10</TOTALBYTES></IMAGE><IMAGE INDEX="1"><DISPLAYNAME>Shown</DISPLAYNAME><DISPLAYDESCRIPTION>dd</DISPLAYDESCRIPTION><WINDOWS><ARCH>5</ARCH></WINDOWS><TOTALBYTES> 42 </TOTALBYTES></IMAGE></WIM>`,
			"[1 Shown dd arm 42] [2 B  x86 16]", nil},
		{"ia64, unknown arch, no size", `<WIM><IMAGE INDEX="1"><NAME>I</NAME><WINDOWS><ARCH>6</ARCH></WINDOWS></IMAGE><IMAGE INDEX="2"><NAME>U</NAME><WINDOWS><ARCH>99</ARCH></WINDOWS></IMAGE><IMAGE INDEX="3"/></WIM>`,
			"[1 I  ia64 0] [2 U   0] [3 f.wim #3   0]", nil},
		{"declaration saying utf-16", `<?xml version="1.0" encoding="UTF-16"?><WIM><IMAGE INDEX="1"><NAME>a &amp; b</NAME></IMAGE></WIM>`, "[1 a & b   0]", nil},
		{"no images", `<WIM><TOTALBYTES>0</TOTALBYTES></WIM>`, "", nil},
		{"index missing", `<WIM><IMAGE><NAME>x</NAME></IMAGE></WIM>`, "", ErrBadXML},
		{"index zero", `<WIM><IMAGE INDEX="0"/></WIM>`, "", ErrBadXML},
		{"index beyond the count", `<WIM><IMAGE INDEX="2"/></WIM>`, "", ErrBadXML},
		{"index repeated", `<WIM><IMAGE INDEX="1"/><IMAGE INDEX="1"/></WIM>`, "", ErrBadXML},
		{"index not a number", `<WIM><IMAGE INDEX="one"/></WIM>`, "", ErrBadXML},
		{"negative size", `<WIM><IMAGE INDEX="1"><TOTALBYTES>-5</TOTALBYTES></IMAGE></WIM>`, "", ErrBadXML},
		{"arch not a number", `<WIM><IMAGE INDEX="1"><WINDOWS><ARCH>amd64</ARCH></WINDOWS></IMAGE></WIM>`, "", ErrBadXML},
		{"other root", `<NOTWIM><IMAGE INDEX="1"/></NOTWIM>`, "", ErrBadXML},
		{"not xml", `hello`, "", ErrBadXML},
		{"unclosed", `<WIM><IMAGE INDEX="1">`, "", ErrBadXML},
		{"blank", `   `, "", ErrBadXML},
		{"other encoding", `<?xml version="1.0" encoding="koi8-r"?><WIM></WIM>`, "", ErrBadXML},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := synthWIM(tc.xml)
			images, err := ReadWIMImages(bytes.NewReader(b), int64(len(b)), "dir/f.wim")
			if tc.err != nil {
				var we *WIMError
				if !errors.As(err, &we) || !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, im := range images {
				got = append(got, fmt.Sprint([]any{im.Index, im.Name, im.Description, im.Arch, im.Size}))
			}
			if s := strings.Join(got, " "); s != tc.want {
				t.Errorf("images = %s, want %s", s, tc.want)
			}
		})
	}

	t.Run("raw bytes", func(t *testing.T) {
		b := synthWIM(`<WIM><IMAGE INDEX="1"><NAME>x</NAME></IMAGE></WIM>`)
		for _, c := range []struct {
			name string
			edit func([]byte) []byte
			err  error
		}{
			{"big-endian", func(b []byte) []byte { b[208], b[209] = 0xFE, 0xFF; return b }, ErrBadXML},
			{"odd length", func(b []byte) []byte {
				binary.LittleEndian.PutUint64(b[72:], uint64(len(b)-209))
				binary.LittleEndian.PutUint64(b[88:], uint64(len(b)-209))
				return b
			}, ErrBadXML},
			{"NUL padding", func(b []byte) []byte {
				b = append(b, 0, 0, 0, 0)
				binary.LittleEndian.PutUint64(b[72:], uint64(len(b)-208))
				binary.LittleEndian.PutUint64(b[88:], uint64(len(b)-208))
				return b
			}, nil},
			{"lone surrogate", func(b []byte) []byte {
				i := bytes.Index(b, utf16le("x"))
				b[i], b[i+1] = 0x00, 0xD8
				return b
			}, nil},
		} {
			data := c.edit(bytes.Clone(b))
			_, err := ReadWIM(bytes.NewReader(data), int64(len(data)))
			if !errors.Is(err, c.err) {
				t.Errorf("%s: err = %v, want %v", c.name, err, c.err)
			}
		}
	})

	t.Run("xml too large", func(t *testing.T) {
		head := synthWIM(`<WIM></WIM>`)[:208]
		binary.LittleEndian.PutUint64(head[72:], MaxWIMXMLSize+2)
		binary.LittleEndian.PutUint64(head[88:], MaxWIMXMLSize+2)
		_, err := ReadWIM(sparseFile{head, 1 << 30}, 1<<30)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v", err)
		}
	})
}

func FuzzReadWIM(f *testing.F) {
	good := readTwoWIM(f)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(good[:208])
	f.Add([]byte{})
	f.Add([]byte("MSWIM\x00\x00\x00"))
	f.Add(synthWIM(`<WIM><TOTALBYTES>1</TOTALBYTES><IMAGE INDEX="2"><NAME>B</NAME><WINDOWS><ARCH>0</ARCH></WINDOWS></IMAGE><IMAGE INDEX="1"><DISPLAYNAME>Shown</DISPLAYNAME></IMAGE></WIM>`))
	f.Add(synthWIM(`<WIM><IMAGE INDEX="1"/></WIM>`))
	f.Add(synthWIM(`<?xml version="1.0" encoding="UTF-16"?><WIM></WIM>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		images, err := ReadWIMImages(bytes.NewReader(data), int64(len(data)), "f.wim")
		if err != nil {
			var we *WIMError
			if !errors.As(err, &we) {
				t.Fatalf("error %v is a %T, not a *WIMError", err, err)
			}
			return
		}
		h, err := ReadWIMHeader(bytes.NewReader(data), int64(len(data)))
		if err != nil || uint64(len(images)) != uint64(h.ImageCount) {
			t.Fatalf("%d images, header %+v, %v", len(images), h, err)
		}
		for i, im := range images {
			if im.Index != i+1 || im.Name == "" || im.Kind != KindWIM || im.Size < 0 || im.FileSize != int64(len(data)) {
				t.Fatalf("image %d = %+v", i, im)
			}
		}
	})
}
