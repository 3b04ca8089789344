package imaging

// WIM metadata reader. The layout follows Microsoft's "Windows Imaging File
// Format (WIM)" specification (WIMGAPI 1.00, 2007): the WIM_HEADER_V1
// structure (§2.2), the RESHDR_DISK_SHORT resource header (§2.2.1) and the
// XML data resource (§2.6, UTF-16LE). Flags and versions the specification
// leaves out (LZMS, solid resources, version 0xE00, wimlib's pipable WIMs)
// follow wimlib's include/wimlib/header.h. Only the header and the XML data
// are read; file data and the blob table are not.

import (
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxWIMXMLSize caps the XML data resource read from a WIM. Real WIMs carry
// a few KiB per image; anything near this is corrupt or hostile.
const MaxWIMXMLSize = 16 << 20

const (
	wimHeaderSize = 208                 // WIM_HEADER_V1.cbSize for every known version
	wimMagic      = "MSWIM\x00\x00\x00" // WIM_HEADER_V1.ImageTag
	wimPipeMagic  = "WLPWM\x00\x00\x00" // wimlib --pipable; WIMGAPI cannot apply these
)

// WIM header flags (WIM_HEADER_V1.dwFlags, spec §2.2; LZMS from wimlib).
const (
	WIMFlagCompression     = 0x00000002
	WIMFlagReadOnly        = 0x00000004
	WIMFlagSpanned         = 0x00000008
	WIMFlagResourceOnly    = 0x00000010
	WIMFlagMetadataOnly    = 0x00000020
	WIMFlagWriteInProgress = 0x00000040
	WIMFlagRPFix           = 0x00000080
	WIMFlagCompressXPRESS  = 0x00020000
	WIMFlagCompressLZX     = 0x00040000
	WIMFlagCompressLZMS    = 0x00080000
)

// Resource header flags (RESHDR_DISK_SHORT.Flags, spec §2.2.1; solid from
// wimlib).
const (
	ResourceFree       = 0x01
	ResourceMetadata   = 0x02
	ResourceCompressed = 0x04
	ResourceSpanned    = 0x08
	ResourceSolid      = 0x10
)

// Errors of ReadWIM, wrapped in a *WIMError with the detail; test with
// errors.Is.
var (
	ErrNotWIM       = errors.New("not a WIM file")
	ErrTruncated    = errors.New("truncated")
	ErrOutOfRange   = errors.New("beyond the end of the file")
	ErrCorrupt      = errors.New("corrupt")
	ErrUnsupported  = errors.New("unsupported")
	ErrTooLarge     = errors.New("too large")
	ErrBadXML       = errors.New("bad XML metadata")
	ErrWritePending = errors.New("still being written")
)

// WIMError is the error for a file that cannot be read as a WIM. Part names
// the structure at fault ("header", "xml data", "image 2"); Err wraps one of
// the Err* values above (or the reader's I/O error) with the detail.
type WIMError struct {
	Part string
	Err  error
}

func (e *WIMError) Error() string { return "wim " + e.Part + ": " + e.Err.Error() }
func (e *WIMError) Unwrap() error { return e.Err }

func wimErr(part string, sentinel error, format string, args ...any) error {
	return &WIMError{Part: part, Err: fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)}
}

// Resource is a RESHDR_DISK_SHORT: where a resource lies in the file.
type Resource struct {
	Size         uint64 // bytes on disk (56 bits)
	Flags        uint8  // Resource* flags
	Offset       uint64 // from the start of the file
	OriginalSize uint64 // bytes once decompressed
}

// WIMHeader is the fixed 208-byte WIM_HEADER_V1 at the start of the file.
type WIMHeader struct {
	HeaderSize   uint32
	Version      uint32 // 0x10D00, or 0xE00 for solid (ESD) WIMs
	Flags        uint32 // WIMFlag*
	ChunkSize    uint32
	GUID         [16]byte
	PartNumber   uint16
	TotalParts   uint16
	ImageCount   uint32
	BlobTable    Resource // the offset (lookup) table
	XMLData      Resource
	BootMetadata Resource
	BootIndex    uint32
	Integrity    Resource
}

// Compression names the file data compression from the header flags: "none",
// "xpress", "lzx", "lzms" or "unknown".
func (h WIMHeader) Compression() string {
	if h.Flags&WIMFlagCompression == 0 {
		return "none"
	}
	switch h.Flags & (WIMFlagCompressXPRESS | WIMFlagCompressLZX | WIMFlagCompressLZMS) {
	case WIMFlagCompressXPRESS:
		return "xpress"
	case WIMFlagCompressLZX:
		return "lzx"
	case WIMFlagCompressLZMS:
		return "lzms"
	}
	return "unknown"
}

// WIMImage is one IMAGE element of the XML data.
type WIMImage struct {
	Index              int // INDEX attribute, 1-based
	Name               string
	DisplayName        string
	Description        string
	DisplayDescription string
	Flags              string // edition flag, e.g. "Professional"
	EditionID          string // WINDOWS/EDITIONID
	ArchCode           int    // WINDOWS/ARCH, a PROCESSOR_ARCHITECTURE value; -1 when absent
	TotalBytes         int64  // TOTALBYTES; -1 when absent
}

// Arch is ArchCode as an Image.Arch name ("" when absent or unknown).
func (im WIMImage) Arch() string { return archName(im.ArchCode) }

// archName maps a PROCESSOR_ARCHITECTURE value (the numbers WIM XML uses in
// WINDOWS/ARCH, winnt.h) to the store's names. WDS's own protocol numbers
// ARM64 differently; that mapping belongs to the protocol, not here.
func archName(code int) string {
	switch code {
	case 0:
		return "x86" // PROCESSOR_ARCHITECTURE_INTEL
	case 5:
		return "arm" // PROCESSOR_ARCHITECTURE_ARM
	case 6:
		return "ia64" // PROCESSOR_ARCHITECTURE_IA64
	case 9:
		return "amd64" // PROCESSOR_ARCHITECTURE_AMD64
	case 12:
		return "arm64" // PROCESSOR_ARCHITECTURE_ARM64
	}
	return ""
}

// WIMInfo is what ReadWIM finds: the header and the XML metadata.
type WIMInfo struct {
	Header     WIMHeader
	TotalBytes int64      // WIM/TOTALBYTES; -1 when absent
	Images     []WIMImage // ordered by Index, which runs 1..ImageCount
}

// ReadWIMHeader reads and checks the header of a WIM of size bytes: the
// magic, the header size, the part numbers, the boot index, and that every
// resource lies inside the file.
func ReadWIMHeader(r io.ReaderAt, size int64) (WIMHeader, error) {
	var h WIMHeader
	var buf [wimHeaderSize]byte
	n := int64(len(buf))
	if size < n {
		n = max(size, 0)
	}
	m, err := r.ReadAt(buf[:n], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return h, &WIMError{Part: "header", Err: err}
	}
	n = int64(m) // the file may have shrunk since size was taken
	magic := string(buf[:min(n, 8)])
	switch {
	case n >= 8 && magic == wimPipeMagic:
		return h, wimErr("header", ErrUnsupported, "pipable WIM (wimlib --pipable), which Windows cannot apply")
	case !strings.HasPrefix(wimMagic, magic) || n == 0:
		return h, wimErr("header", ErrNotWIM, "no MSWIM magic")
	case n < wimHeaderSize:
		return h, wimErr("header", ErrTruncated, "file is %d bytes, the header needs %d", n, wimHeaderSize)
	}
	le := binary.LittleEndian
	h.HeaderSize = le.Uint32(buf[8:])
	h.Version = le.Uint32(buf[12:])
	h.Flags = le.Uint32(buf[16:])
	h.ChunkSize = le.Uint32(buf[20:])
	copy(h.GUID[:], buf[24:40])
	h.PartNumber = le.Uint16(buf[40:])
	h.TotalParts = le.Uint16(buf[42:])
	h.ImageCount = le.Uint32(buf[44:])
	h.BlobTable = parseResource(buf[48:72])
	h.XMLData = parseResource(buf[72:96])
	h.BootMetadata = parseResource(buf[96:120])
	h.BootIndex = le.Uint32(buf[120:])
	h.Integrity = parseResource(buf[124:148])

	if h.HeaderSize < wimHeaderSize || int64(h.HeaderSize) > size {
		return h, wimErr("header", ErrCorrupt, "header size %d (want %d, file is %d bytes)", h.HeaderSize, wimHeaderSize, size)
	}
	if h.TotalParts == 0 || h.PartNumber == 0 || h.PartNumber > h.TotalParts {
		return h, wimErr("header", ErrCorrupt, "part %d of %d", h.PartNumber, h.TotalParts)
	}
	if h.BootIndex > h.ImageCount {
		return h, wimErr("header", ErrCorrupt, "boot index %d of %d images", h.BootIndex, h.ImageCount)
	}
	if h.Flags&WIMFlagWriteInProgress != 0 {
		return h, wimErr("header", ErrWritePending, "write-in-progress flag set")
	}
	for _, res := range []struct {
		name string
		r    Resource
	}{{"blob table", h.BlobTable}, {"xml data", h.XMLData}, {"boot metadata", h.BootMetadata}, {"integrity table", h.Integrity}} {
		if err := checkResource(res.name, res.r, size); err != nil {
			return h, err
		}
	}
	return h, nil
}

func parseResource(b []byte) Resource {
	le := binary.LittleEndian
	return Resource{
		Size:         le.Uint64(b[0:]) & (1<<56 - 1),
		Flags:        b[7],
		Offset:       le.Uint64(b[8:]),
		OriginalSize: le.Uint64(b[16:]),
	}
}

// checkResource reports a resource that does not lie inside a file of size
// bytes (an empty resource is fine wherever it points).
func checkResource(name string, r Resource, size int64) error {
	if r.Size == 0 {
		return nil
	}
	if r.Offset > uint64(size) || r.Size > uint64(size)-r.Offset {
		return wimErr(name, ErrOutOfRange, "offset %d + size %d, file is %d bytes", r.Offset, r.Size, size)
	}
	if r.Offset < wimHeaderSize {
		return wimErr(name, ErrCorrupt, "offset %d lies inside the header", r.Offset)
	}
	return nil
}

// ReadWIM reads the header and the XML metadata of a WIM of size bytes.
// Every failure is a *WIMError; a malformed file never panics.
func ReadWIM(r io.ReaderAt, size int64) (*WIMInfo, error) {
	h, err := ReadWIMHeader(r, size)
	if err != nil {
		return nil, err
	}
	x := h.XMLData
	switch {
	case x.Size == 0:
		return nil, wimErr("xml data", ErrCorrupt, "no XML data resource")
	case x.Flags&(ResourceCompressed|ResourceSolid|ResourceSpanned) != 0:
		// WIMGAPI and wimlib always store the XML data uncompressed.
		return nil, wimErr("xml data", ErrUnsupported, "compressed XML data (resource flags %#x)", x.Flags)
	case x.Size != x.OriginalSize:
		return nil, wimErr("xml data", ErrCorrupt, "uncompressed resource of %d bytes claims %d", x.Size, x.OriginalSize)
	case x.Size > MaxWIMXMLSize:
		return nil, wimErr("xml data", ErrTooLarge, "%d bytes, at most %d read", x.Size, MaxWIMXMLSize)
	case x.Size%2 != 0:
		return nil, wimErr("xml data", ErrBadXML, "odd length %d for UTF-16 text", x.Size)
	}
	raw := make([]byte, x.Size)
	if _, err := r.ReadAt(raw, int64(x.Offset)); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, wimErr("xml data", ErrTruncated, "short read at offset %d", x.Offset)
		}
		return nil, &WIMError{Part: "xml data", Err: err}
	}
	info, err := parseWIMXML(raw, h.ImageCount)
	if err != nil {
		return nil, err
	}
	info.Header = h
	return info, nil
}

// The XML data (spec §2.6). Numbers are kept as text and parsed below.
type wimXMLDoc struct {
	XMLName    xml.Name      `xml:"WIM"`
	TotalBytes *string       `xml:"TOTALBYTES"`
	Images     []wimXMLImage `xml:"IMAGE"`
}

type wimXMLImage struct {
	Index              *string `xml:"INDEX,attr"`
	Name               string  `xml:"NAME"`
	DisplayName        string  `xml:"DISPLAYNAME"`
	Description        string  `xml:"DESCRIPTION"`
	DisplayDescription string  `xml:"DISPLAYDESCRIPTION"`
	Flags              string  `xml:"FLAGS"`
	TotalBytes         *string `xml:"TOTALBYTES"`
	Windows            *struct {
		Arch      *string `xml:"ARCH"`
		EditionID string  `xml:"EDITIONID"`
	} `xml:"WINDOWS"`
}

// parseWIMXML decodes the UTF-16LE XML data and checks that its IMAGE
// elements are exactly the indices 1..count.
func parseWIMXML(raw []byte, count uint32) (*WIMInfo, error) {
	text, err := decodeUTF16LE(raw)
	if err != nil {
		return nil, err
	}
	dec := xml.NewDecoder(strings.NewReader(text))
	dec.CharsetReader = func(label string, in io.Reader) (io.Reader, error) {
		// The text is already decoded; a declaration may still say UTF-16.
		switch strings.ToLower(label) {
		case "utf-16", "utf-16le", "utf16", "unicode", "utf-8":
			return in, nil
		}
		return nil, fmt.Errorf("encoding %q", label)
	}
	var doc wimXMLDoc
	if err := dec.Decode(&doc); err != nil {
		return nil, wimErr("xml data", ErrBadXML, "%v", err)
	}
	info := &WIMInfo{TotalBytes: -1}
	if doc.TotalBytes != nil {
		if info.TotalBytes, err = parseXMLNumber(*doc.TotalBytes); err != nil {
			return nil, wimErr("xml data", ErrBadXML, "WIM/TOTALBYTES: %v", err)
		}
	}
	if uint64(len(doc.Images)) != uint64(count) {
		return nil, wimErr("xml data", ErrCorrupt, "%d IMAGE elements, the header says %d images", len(doc.Images), count)
	}
	info.Images = make([]WIMImage, len(doc.Images))
	seen := make([]bool, len(doc.Images))
	for i, x := range doc.Images {
		part := fmt.Sprintf("image %d", i+1)
		if x.Index == nil {
			return nil, wimErr(part, ErrBadXML, "IMAGE without INDEX")
		}
		idx, err := parseXMLNumber(*x.Index)
		if err != nil || idx < 1 || idx > int64(len(doc.Images)) {
			return nil, wimErr(part, ErrBadXML, "INDEX %q, want 1 to %d", *x.Index, len(doc.Images))
		}
		if seen[idx-1] {
			return nil, wimErr(part, ErrBadXML, "INDEX %d repeated", idx)
		}
		seen[idx-1] = true
		part = fmt.Sprintf("image %d", idx)
		im := WIMImage{
			Index: int(idx), Name: x.Name, DisplayName: x.DisplayName, Description: x.Description,
			DisplayDescription: x.DisplayDescription, Flags: x.Flags, ArchCode: -1, TotalBytes: -1,
		}
		if x.TotalBytes != nil {
			if im.TotalBytes, err = parseXMLNumber(*x.TotalBytes); err != nil {
				return nil, wimErr(part, ErrBadXML, "TOTALBYTES: %v", err)
			}
		}
		if w := x.Windows; w != nil {
			im.EditionID = w.EditionID
			if w.Arch != nil {
				a, err := parseXMLNumber(*w.Arch)
				if err != nil || a > 0xffff {
					return nil, wimErr(part, ErrBadXML, "WINDOWS/ARCH %q", *w.Arch)
				}
				im.ArchCode = int(a)
			}
		}
		info.Images[idx-1] = im
	}
	return info, nil
}

// decodeUTF16LE turns the XML data into UTF-8, dropping the byte order mark
// and any NUL padding at the end.
func decodeUTF16LE(raw []byte) (string, error) {
	if len(raw) >= 2 && raw[0] == 0xFE && raw[1] == 0xFF {
		return "", wimErr("xml data", ErrBadXML, "big-endian UTF-16, want little-endian")
	}
	if len(raw) >= 2 && raw[0] == 0xFF && raw[1] == 0xFE {
		raw = raw[2:]
	}
	out := make([]byte, 0, len(raw)/2)
	for i := 0; i+1 < len(raw); i += 2 {
		u := rune(binary.LittleEndian.Uint16(raw[i:]))
		if utf16.IsSurrogate(u) && i+3 < len(raw) {
			if r := utf16.DecodeRune(u, rune(binary.LittleEndian.Uint16(raw[i+2:]))); r != utf8.RuneError {
				out = utf8.AppendRune(out, r)
				i += 2
				continue
			}
		}
		out = utf8.AppendRune(out, u) // a lone surrogate becomes U+FFFD
	}
	out = bytes.TrimRight(out, "\x00")
	if len(bytes.TrimSpace(out)) == 0 {
		return "", wimErr("xml data", ErrBadXML, "empty")
	}
	return string(out), nil
}

// parseXMLNumber reads a non-negative number as WIMGAPI writes them: decimal,
// or hexadecimal with 0x.
func parseXMLNumber(s string) (int64, error) {
	s = strings.TrimSpace(s)
	base := 10
	if len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X") {
		s, base = s[2:], 16
	}
	n, err := strconv.ParseInt(s, base, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n < 0 {
		return 0, fmt.Errorf("%d is negative", n)
	}
	return n, nil
}

// ReadWIMImages reads a WIM of size bytes and returns one Image per index.
// file is the WIM's path relative to images_dir (forward slashes); it
// fills File, Path and Group, and names images that have neither NAME nor
// DISPLAYNAME ("install.wim #2").
func ReadWIMImages(r io.ReaderAt, size int64, file string) ([]Image, error) {
	info, err := ReadWIM(r, size)
	if err != nil {
		return nil, err
	}
	out := make([]Image, 0, len(info.Images))
	for _, w := range info.Images {
		im := Image{
			Name: w.Name, Description: w.Description, Arch: w.Arch(), Size: max(w.TotalBytes, 0),
			Index: w.Index, Kind: KindWIM, FileSize: size,
		}
		if im.Name == "" {
			im.Name = w.DisplayName
		}
		if im.Name == "" {
			im.Name = fmt.Sprintf("%s #%d", path.Base(file), w.Index)
		}
		if im.Description == "" {
			im.Description = w.DisplayDescription
		}
		setLocation(&im, file)
		out = append(out, im)
	}
	return out, nil
}
