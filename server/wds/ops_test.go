package wds

import (
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/netdeploy/netdeploy/imaging"
	"github.com/netdeploy/netdeploy/server/dcerpc"
)

// fakeImages is a store with one WIM holding two images and one raw image.
func fakeImages() []imaging.Image {
	return []imaging.Image{
		{Name: "Windows 11 Pro", Description: "Pro edition <x64> & more", Arch: "amd64", Size: 17_179_869_184, Index: 1,
			File: "win11.wim", Path: `Images\win11.wim`, Kind: "wim", FileSize: 5_000_000_000},
		{Name: "Windows 11 Home", Description: "Home edition", Arch: "amd64", Size: 16_000_000_000, Index: 2,
			File: "win11.wim", Path: `Images\win11.wim`, Kind: "wim", FileSize: 5_000_000_000},
		{Name: "Ubuntu Server 24.04", Description: "raw disk", Arch: "arm64", Size: 3_221_225_472, Index: 1,
			File: "linux/ubuntu-24.04.img.zst", Kind: "raw", Compression: "zstd", SHA256: "ab12", Group: "Linux", FileSize: 900_000_000},
	}
}

var (
	anonCaller = dcerpc.Caller{Remote: &net.TCPAddr{IP: net.IPv4(198, 18, 0, 130), Port: 49152}}
	userCaller = dcerpc.Caller{Remote: &net.TCPAddr{IP: net.IPv4(198, 18, 0, 131), Port: 49153},
		AuthType: dcerpc.AuthTypeNTLM, AuthLevel: dcerpc.AuthLevelPrivacy, Account: "deploy", Authenticated: true}
)

func testState() State {
	return State{
		Images:           func() ([]imaging.Image, error) { return fakeImages(), nil },
		LogLevel:         LogLevelWarning,
		NewTransactionID: func() string { return "{11111111-2222-3333-4444-555555555555}" },
		ClientUnattend:   map[uint32][]byte{ArchAMD64: []byte("<unattend/>")},
		UnattendVariables: map[string]UnattendVariables{
			"52:54:00:12:34:56": {MachineName: "LAB-01", MachineDomain: "lab.example", OrgName: "Lab", TimeZone: "UTC"},
		},
	}
}

func decide(t *testing.T, c dcerpc.Caller, st State, op uint32, vars ...Var) Decision {
	t.Helper()
	d := DecideBytes(NewRequest(op, vars...), c, st)
	if d.Reply == nil {
		t.Fatal("no reply")
	}
	if d.Reply.Type != PacketReply || d.Reply.Endpoint != OSDeploymentEndpoint {
		t.Fatalf("reply header: type %d endpoint %v", d.Reply.Type, d.Reply.Endpoint)
	}
	if _, err := d.Reply.Encode(); err != nil {
		t.Fatalf("reply does not encode: %v", err)
	}
	return d
}

func mustULong(t *testing.T, p *Packet, name string) uint32 {
	t.Helper()
	v, err := p.ULong(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustWString(t *testing.T, p *Packet, name string) string {
	t.Helper()
	v, err := p.WString(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestLogInit(t *testing.T) {
	d := decide(t, anonCaller, testState(), OpLogInit, ULongVar(VarVersion, 1))
	if d.Status != StatusSuccess || d.Op != OpLogInit {
		t.Fatalf("status %v op %v", d.Status, d.Op)
	}
	if v := mustULong(t, d.Reply, VarVersion); v != 1 {
		t.Errorf("VERSION %d", v)
	}
	if v := mustULong(t, d.Reply, VarLogLevel); v != LogLevelWarning {
		t.Errorf("LOGLEVEL %d", v)
	}
	if id := mustWString(t, d.Reply, VarTransactionID); id != "{11111111-2222-3333-4444-555555555555}" {
		t.Errorf("TRANSACTION_ID %q", id)
	}
	st := testState()
	st.NewTransactionID, st.LogLevel = nil, 99
	d1, d2 := decide(t, anonCaller, st, OpLogInit), decide(t, anonCaller, st, OpLogInit)
	id1, id2 := mustWString(t, d1.Reply, VarTransactionID), mustWString(t, d2.Reply, VarTransactionID)
	if _, err := ParseGUID(id1); err != nil || id1 == id2 || !strings.HasPrefix(id1, "{") {
		t.Errorf("random transaction IDs %q %q (%v)", id1, id2, err)
	}
	if v := mustULong(t, d1.Reply, VarLogLevel); v != LogLevelInfo {
		t.Errorf("LOGLEVEL out of range not clamped: %d", v)
	}
}

func TestLogMsg(t *testing.T) {
	d := decide(t, anonCaller, testState(), OpLogMsg,
		ULongVar(VarVersion, 1), ULongVar(VarMessageType, MsgClientError), ULongVar(VarArchitecture, ArchAMD64),
		WStringVar(VarClientMAC, "52-54-00-12-34-56"), WStringVar(VarTransactionID, "{T}"),
		WStringVar(VarMessage, "disk 0 not found\r\nsecond line"))
	if d.Status != StatusSuccess || len(d.Reply.Vars) != 0 {
		t.Fatalf("status %v, reply vars %v", d.Status, d.Reply.Vars)
	}
	if d.Log == nil || d.Log.Type != MsgClientError || d.Log.TransactionID != "{T}" {
		t.Fatalf("log %+v", d.Log)
	}
	if s := d.Log.String(); s != "ERROR: disk 0 not found second line" {
		t.Errorf("rendering %q", s)
	}
	if d.MAC.String() != "52:54:00:12:34:56" {
		t.Errorf("MAC %v", d.MAC)
	}

	d = decide(t, anonCaller, testState(), OpLogMsg, ULongVar(VarMessageType, MsgClientImageSelected),
		WStringVar("IMAGE_NAME", "Windows 11 Pro"), StringVar("GROUP_NAME", "Default"), ULongVar("COUNT", 3), BlobVar("RAW", []byte{1, 2}))
	if s := d.Log.String(); s != "IMAGE_SELECTED: IMAGE_NAME=Windows 11 Pro, GROUP_NAME=Default, COUNT=3, RAW=<2 bytes>" {
		t.Errorf("rendering %q", s)
	}
	d = decide(t, anonCaller, testState(), OpLogMsg, ULongVar(VarMessageType, 0x99), WStringVar(VarMessage, strings.Repeat("x", 2000)))
	if s := d.Log.String(); !strings.HasPrefix(s, "message type 0x99: xxx") || len(s) > maxLogDetail+len("…") {
		t.Errorf("unknown type or long text: %q (%d bytes)", s[:40], len(s))
	}
	d = decide(t, anonCaller, testState(), OpLogMsg, ULongVar(VarMessageType, MsgClientStarted))
	if s := d.Log.String(); s != "STARTED" {
		t.Errorf("rendering %q", s)
	}
	if d := decide(t, anonCaller, testState(), OpLogMsg, WStringVar(VarMessage, "no type")); d.Status != StatusInvalidParameter {
		t.Errorf("LOG_MSG without MESSAGE_TYPE: %v", d.Status)
	}
}

func TestMessageTypeNames(t *testing.T) {
	for typ := uint32(1); typ <= 0x16; typ++ {
		if n := MessageTypeName(typ); !strings.HasPrefix(n, "WDS_LOG_TYPE_CLIENT_") {
			t.Errorf("type %#x has no name: %q", typ, n)
		}
	}
	if n := MessageTypeName(0); n != "message type 0x0" {
		t.Errorf("type 0: %q", n)
	}
}

func TestClientUnattend(t *testing.T) {
	mac, guid := WStringVar(VarClientMAC, "525400123456"), WStringVar(VarClientGUID, "525400123456")
	cases := []struct {
		name     string
		arch     Var
		extra    []Var
		unattend string
		firmware uint32
	}{
		{"amd64 has one", ULongVar(VarArchitecture, ArchAMD64), nil, "<unattend/>", FirmwareBIOS},
		{"amd64 uefi asked", ULongVar(VarArchitecture, ArchAMD64), []Var{ULongVar(VarFirmware, FirmwareUEFI)}, "<unattend/>", FirmwareUEFI},
		{"x86 one-byte arch", ByteVar(VarArchitecture, byte(ArchX86)), nil, "", FirmwareBIOS},
		{"arm64 is uefi", ULongVar(VarArchitecture, ArchARM64), nil, "", FirmwareUEFI},
		{"ia64 is efi", ULongVar(VarArchitecture, ArchIA64), nil, "", FirmwareUEFI},
		{"bogus firmware ignored", ULongVar(VarArchitecture, ArchARM), []Var{ULongVar(VarFirmware, 7)}, "", FirmwareUEFI},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vars := append([]Var{ULongVar(VarVersion, 1), c.arch, mac, guid}, c.extra...)
			d := decide(t, anonCaller, testState(), OpGetClientUnattend, vars...)
			if d.Status != StatusSuccess {
				t.Fatalf("status %v (%s)", d.Status, d.Reason)
			}
			blob, err := d.Reply.Blob(VarClientUnattend)
			if err != nil || string(blob) != c.unattend {
				t.Errorf("CLIENT_UNATTEND %q, %v", blob, err)
			}
			wantFlags := uint32(0)
			if c.unattend != "" {
				wantFlags = FlagClientUnattendPresent
			}
			if f := mustULong(t, d.Reply, VarFlags); f != wantFlags {
				t.Errorf("FLAGS %#x", f)
			}
			if fw := mustULong(t, d.Reply, VarFirmware); fw != c.firmware {
				t.Errorf("FIRMWARE %d, want %d", fw, c.firmware)
			}
			if v := mustULong(t, d.Reply, VarVersion); v != 1 {
				t.Errorf("VERSION %d", v)
			}
		})
	}
	if d := decide(t, anonCaller, testState(), OpGetClientUnattend, ULongVar(VarVersion, 1), mac); d.Status != StatusInvalidParameter {
		t.Errorf("without ARCHITECTURE: %v", d.Status)
	}
	if d := decide(t, anonCaller, testState(), OpGetClientUnattend, WStringVar(VarArchitecture, "9")); d.Status != StatusInvalidParameter || len(d.Reply.Vars) != 0 {
		t.Errorf("ARCHITECTURE as a string: %v", d.Status)
	}
}

func TestUnattendVariables(t *testing.T) {
	d := decide(t, userCaller, testState(), OpGetUnattendVariables, ULongVar(VarVersion, 1), WStringVar(VarClientMAC, "525400123456"))
	if d.Status != StatusSuccess {
		t.Fatalf("status %v", d.Status)
	}
	for name, want := range map[string]string{VarMachineName: "LAB-01", VarMachineDomain: "lab.example", VarOrgName: "Lab", VarTimeZone: "UTC"} {
		if got := mustWString(t, d.Reply, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	d = decide(t, userCaller, testState(), OpGetUnattendVariables, WStringVar(VarClientMAC, "525400999999"))
	for _, name := range []string{VarMachineName, VarMachineDomain, VarOrgName, VarTimeZone} {
		if got := mustWString(t, d.Reply, name); got != "" {
			t.Errorf("unknown client %s = %q", name, got)
		}
	}
	d = decide(t, anonCaller, testState(), OpGetUnattendVariables, WStringVar(VarClientMAC, "525400123456"))
	if d.Status != StatusAccessDenied || !d.Refused || len(d.Reply.Vars) != 0 || d.MAC.String() != "52:54:00:12:34:56" {
		t.Errorf("anonymous: %+v", d)
	}
}

// enumerated is one image as a reply describes it.
type enumerated struct {
	XML, Path, Group, Namespace, ResPath string
	Index, Type                          uint32
}

// readImagesV1 reads XML_n ... from n = 1 until XML_n is missing.
func readImagesV1(t *testing.T, p *Packet) []enumerated {
	t.Helper()
	var out []enumerated
	for n := 1; p.Has(V1ImageVar("XML", n)); n++ {
		e := enumerated{
			XML:       mustWString(t, p, V1ImageVar("XML", n)),
			Path:      mustWString(t, p, V1ImageVar("PATH", n)),
			Group:     mustWString(t, p, V1ImageVar("GROUP", n)),
			Namespace: mustWString(t, p, V1ImageVar("NAMESPACE", n)),
			ResPath:   mustWString(t, p, V1ImageVar("RESOURCEFILEPATH", n)),
			Index:     mustULong(t, p, V1ImageVar("INDEX", n)),
		}
		if sz, err := p.ULong64(V1ImageVar("NAMESPACE_SIZE", n)); err != nil || sz != 0 {
			t.Errorf("NAMESPACE_SIZE_%d = %d, %v", n, sz, err)
		}
		out = append(out, e)
	}
	return out
}

func readImagesV2(t *testing.T, p *Packet) []enumerated {
	t.Helper()
	count := mustULong(t, p, VarImageCount)
	var out []enumerated
	for i := 0; i < int(count); i++ {
		out = append(out, enumerated{
			Type:      mustULong(t, p, V2ImageVar("Type", i)),
			XML:       mustWString(t, p, V2ImageVar("Xml", i)),
			Path:      mustWString(t, p, V2ImageVar("Path", i)),
			Group:     mustWString(t, p, V2ImageVar("Group", i)),
			Namespace: mustWString(t, p, V2ImageVar("NS", i)),
			ResPath:   mustWString(t, p, V2ImageVar("ResPath", i)),
			Index:     mustULong(t, p, V2ImageVar("Index", i)),
		})
	}
	if p.Has(V2ImageVar("Xml", int(count))) {
		t.Errorf("IL.Count %d but more images follow", count)
	}
	return out
}

// wimXML is the part of an image's XML the tests check.
type wimXML struct {
	Image struct {
		Index       int    `xml:"INDEX,attr"`
		Name        string `xml:"NAME"`
		Description string `xml:"DESCRIPTION"`
		Arch        *int   `xml:"WINDOWS>ARCH"`
		TotalBytes  int64  `xml:"TOTALBYTES"`
		Kind        string `xml:"NETDEPLOY>KIND"`
		Compression string `xml:"NETDEPLOY>COMPRESSION"`
	} `xml:"IMAGE"`
}

func parseXML(t *testing.T, s string) wimXML {
	t.Helper()
	var w wimXML
	if err := xml.Unmarshal([]byte(s), &w); err != nil {
		t.Fatalf("image XML %q: %v", s, err)
	}
	return w
}

// checkEnumerated compares a reply's images with fakeImages.
func checkEnumerated(t *testing.T, got []enumerated, v2 bool) {
	t.Helper()
	want := []struct {
		name, desc, path, group string
		index, typ              uint32
		arch                    int // -1: no WINDOWS element
		kind                    string
	}{
		{"Windows 11 Pro", "Pro edition <x64> & more", `Images\win11.wim`, DefaultImageGroup, 1, ImageTypeWIM, 9, "wim"},
		{"Windows 11 Home", "Home edition", `Images\win11.wim`, DefaultImageGroup, 2, ImageTypeWIM, 9, "wim"},
		{"Ubuntu Server 24.04", "raw disk", `linux\ubuntu-24.04.img.zst`, "Linux", 1, ImageTypeVHD, 0xB, "raw"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d images, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		x := parseXML(t, g.XML)
		if x.Image.Name != w.name || x.Image.Description != w.desc || uint32(x.Image.Index) != w.index || x.Image.Kind != w.kind {
			t.Errorf("image %d XML %+v", i, x.Image)
		}
		if x.Image.Arch == nil || *x.Image.Arch != w.arch {
			t.Errorf("image %d ARCH %v, want %d", i, x.Image.Arch, w.arch)
		}
		if g.Path != w.path || g.Group != w.group || g.Index != w.index || g.Namespace != "" || g.ResPath != "" {
			t.Errorf("image %d: %+v", i, g)
		}
		if v2 && g.Type != w.typ {
			t.Errorf("image %d IL.Type %d, want %d", i, g.Type, w.typ)
		}
	}
}

func TestImgEnumerateV1(t *testing.T) {
	d := decide(t, userCaller, testState(), OpImgEnumerate, ULongVar(VarVersion, 1))
	if d.Status != StatusSuccess || d.Images != 3 || d.V2 {
		t.Fatalf("status %v images %d v2 %v (%s)", d.Status, d.Images, d.V2, d.Reason)
	}
	if mustULong(t, d.Reply, VarVersion) != 1 || d.Reply.Has(VarSC) || d.Reply.Has(VarImageCount) {
		t.Errorf("v1 reply variables: %v", names(d.Reply))
	}
	checkEnumerated(t, readImagesV1(t, d.Reply), false)
	// A CC without the V2 bit keeps version 1.0.
	d = decide(t, userCaller, testState(), OpImgEnumerate, ULongVar(VarVersion, 1), ULongVar(VarCC, ClientCapVHDX))
	if d.V2 || d.Reply.Has(V2ImageVar("Xml", 0)) {
		t.Errorf("CC=VHDX answered in version 2.0")
	}
}

func TestImgEnumerateV2(t *testing.T) {
	d := decide(t, userCaller, testState(), OpImgEnumerate, ULongVar(VarVersion, 1), ULongVar(VarCC, ClientCapV2))
	if d.Status != StatusSuccess || d.Images != 3 || !d.V2 {
		t.Fatalf("status %v images %d v2 %v", d.Status, d.Images, d.V2)
	}
	if sc := mustULong(t, d.Reply, VarSC); sc&ServerCapV2 == 0 {
		t.Errorf("SC %#x", sc)
	}
	if d.Reply.Has(V1ImageVar("XML", 1)) {
		t.Errorf("v2 reply carries v1 variables")
	}
	checkEnumerated(t, readImagesV2(t, d.Reply), true)
}

func TestImgEnumerateEdges(t *testing.T) {
	st := testState()
	st.Images = nil
	d := decide(t, userCaller, st, OpImgEnumerate, ULongVar(VarVersion, 1))
	if d.Status != StatusSuccess || d.Images != 0 || d.Reply.Has(V1ImageVar("XML", 1)) {
		t.Errorf("empty store: %+v", d)
	}
	st.Images = func() ([]imaging.Image, error) { return nil, errors.New("disk on fire") }
	d = decide(t, userCaller, st, OpImgEnumerate, ULongVar(VarVersion, 1))
	if d.Status != StatusInternalError || len(d.Reply.Vars) != 0 || !strings.Contains(d.Reason, "disk on fire") {
		t.Errorf("store error: %+v", d)
	}
	// More images than one reply holds: the list is cut, and says so.
	many := make([]imaging.Image, 2000)
	for i := range many {
		many[i] = imaging.Image{Name: fmt.Sprintf("image %d %s", i, strings.Repeat("n", 100)), Kind: "wim", Index: 1, File: "x.wim"}
	}
	st.Images = func() ([]imaging.Image, error) { return many, nil }
	for _, cc := range []uint32{0, ClientCapV2} {
		d = decide(t, userCaller, st, OpImgEnumerate, ULongVar(VarCC, cc))
		if d.Status != StatusSuccess || d.Images == 0 || d.Omitted == 0 || d.Images+d.Omitted != len(many) {
			t.Errorf("cc %d: images %d omitted %d", cc, d.Images, d.Omitted)
		}
		if cc == ClientCapV2 && mustULong(t, d.Reply, VarImageCount) != uint32(d.Images) {
			t.Errorf("IL.Count does not match the images sent")
		}
	}
	if d := decide(t, userCaller, testState(), OpImgEnumerate, WStringVar(VarCC, "1")); d.Status != StatusInvalidParameter {
		t.Errorf("CC as a string: %v", d.Status)
	}
}

func names(p *Packet) []string {
	var out []string
	for _, v := range p.Vars {
		out = append(out, v.Name)
	}
	return out
}

func TestAccess(t *testing.T) {
	listed := false
	st := testState()
	st.Images = func() ([]imaging.Image, error) { listed = true; return fakeImages(), nil }
	for _, op := range []uint32{OpImgEnumerate, OpGetUnattendVariables, OpResetBootProgram} {
		d := decide(t, anonCaller, st, op, ULongVar(VarVersion, 1), WStringVar(VarClientMAC, "525400123456"))
		if d.Status != StatusAccessDenied || !d.Refused || d.Reply.Code != 5 || len(d.Reply.Vars) != 0 || d.Op != op {
			t.Errorf("anonymous %s: %+v", OpName(op), d)
		}
		d = decide(t, dcerpc.Caller{AuthType: dcerpc.AuthTypeNTLM, Account: "guest"}, st, op)
		if d.Status != StatusAccessDenied {
			t.Errorf("failed logon %s: %v", OpName(op), d.Status)
		}
	}
	if listed {
		t.Error("the image store was listed for an unauthenticated caller")
	}
	for _, op := range []uint32{OpLogInit, OpLogMsg, OpGetClientUnattend} {
		if !Authorized(op, anonCaller) {
			t.Errorf("%s closed to anonymous callers", OpName(op))
		}
	}
	d := decide(t, userCaller, st, OpResetBootProgram, WStringVar(VarClientMAC, "525400123456"), WStringVar(VarClientGUID, "x"))
	if d.Status != StatusSuccess || len(d.Reply.Vars) != 0 || d.MAC == nil {
		t.Errorf("RESET_BOOT_PROGRAM: %+v", d)
	}
}

func TestUnknownOpcodeAndEndpoint(t *testing.T) {
	for _, c := range []dcerpc.Caller{anonCaller, userCaller} {
		for _, op := range []uint32{0, 1, OpGetDomainJoinInformation, 0xC8, 0xFFFFFFFF} {
			d := decide(t, c, testState(), op, ULongVar(VarVersion, 1))
			if d.Status != StatusNotSupported || d.Reply.Code != uint32(StatusNotSupported) || len(d.Reply.Vars) != 0 {
				t.Errorf("opcode %#x: %v", op, d.Status)
			}
		}
	}
	other := MustGUID("01234567-89ab-cdef-0123-456789abcdef")
	b, _ := EncodeRequest(other, OpLogInit, ULongVar(VarVersion, 1))
	d := DecideBytes(b, userCaller, testState())
	if d.Status != StatusNotFound || d.Reply.Endpoint != other || len(d.Reply.Vars) != 0 {
		t.Errorf("unknown endpoint: %+v", d)
	}
}

func TestMalformedDecision(t *testing.T) {
	good := NewRequest(OpLogInit, ULongVar(VarVersion, 1))
	for _, b := range [][]byte{nil, {1}, good[:30], good[:60], append(good[:56:56], 0xff)} {
		d := DecideBytes(b, userCaller, testState())
		if d.Status != StatusInvalidData || d.Reply == nil || d.Reply.Code != uint32(StatusInvalidData) || len(d.Reply.Vars) != 0 {
			t.Errorf("% x: %+v", b, d)
		}
		if len(b) >= 24 && d.Reply.Endpoint != OSDeploymentEndpoint {
			t.Errorf("error reply to endpoint %v", d.Reply.Endpoint)
		}
		if _, err := d.Reply.Encode(); err != nil {
			t.Error(err)
		}
	}
}

func TestImageXMLEscaping(t *testing.T) {
	im := imaging.Image{Name: "a<b>&\"c'\x00\x01", Description: "\uFFFE ok", Index: 3, Kind: "wim"}
	s := ImageXML(im)
	x := parseXML(t, s)
	if x.Image.Name != "a<b>&\"c'" || x.Image.Description != " ok" || x.Image.Index != 3 || x.Image.Arch != nil {
		t.Errorf("%q parsed as %+v", s, x.Image)
	}
	for a, want := range map[string]uint32{"x86": 0, "arm": 5, "ia64": 6, "amd64": 9, "arm64": 0xB} {
		if got, ok := ArchOf(a); !ok || got != want || ArchName(want) != a {
			t.Errorf("arch %s = %d, %v", a, got, ok)
		}
	}
	if _, ok := ArchOf(""); ok {
		t.Error("empty architecture mapped")
	}
}
