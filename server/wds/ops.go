package wds

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode"

	"github.com/netdeploy/netdeploy/imaging"
	"github.com/netdeploy/netdeploy/server/dcerpc"
)

// This file holds the decisions for the OS deployment endpoint
// ([MS-WDSOSD]): from a request packet, the caller the RPC runtime
// established and the server's state to a reply packet. Nothing here opens
// a socket or reads the clock.

// OSDeploymentEndpoint is the endpoint GUID of the OS deployment operations
// of [MS-WDSOSD].
var OSDeploymentEndpoint = MustGUID("d8deeb5a-effd-43b2-99fc-1a8a5921c227")

// OpCodes of the OS deployment endpoint ([MS-WDSOSD] 2.2).
const (
	OpImgEnumerate             uint32 = 0x2
	OpLogInit                  uint32 = 0x3
	OpLogMsg                   uint32 = 0x4
	OpGetClientUnattend        uint32 = 0x5
	OpGetUnattendVariables     uint32 = 0x6
	OpGetDomainJoinInformation uint32 = 0x7 // not served: netdeploy joins no domain
	OpResetBootProgram         uint32 = 0x8
)

// OpName names an opcode without the WDS_OP_ prefix.
func OpName(op uint32) string {
	switch op {
	case OpImgEnumerate:
		return "IMG_ENUMERATE"
	case OpLogInit:
		return "LOG_INIT"
	case OpLogMsg:
		return "LOG_MSG"
	case OpGetClientUnattend:
		return "GET_CLIENT_UNATTEND"
	case OpGetUnattendVariables:
		return "GET_UNATTEND_VARIABLES"
	case OpGetDomainJoinInformation:
		return "GET_DOMAIN_JOIN_INFORMATION"
	case OpResetBootProgram:
		return "RESET_BOOT_PROGRAM"
	}
	return fmt.Sprintf("opcode 0x%x", op)
}

// Status is a Win32 error code ([MS-ERREF] 2.2) as a reply carries it in
// the operation header's OpCode/Error-Code field ([MS-WDSC] 2.2.1.2).
type Status uint32

// Statuses the decisions use.
const (
	StatusSuccess          Status = 0x0   // ERROR_SUCCESS
	StatusAccessDenied     Status = 0x5   // ERROR_ACCESS_DENIED: needs an authenticated caller
	StatusInvalidData      Status = 0xD   // ERROR_INVALID_DATA: the packet does not decode
	StatusNotSupported     Status = 0x32  // ERROR_NOT_SUPPORTED: unknown opcode
	StatusInvalidParameter Status = 0x57  // ERROR_INVALID_PARAMETER: a required variable is missing or mistyped
	StatusInternalError    Status = 0x54F // ERROR_INTERNAL_ERROR: the server failed (image store unreadable)
	StatusNotFound         Status = 0x490 // ERROR_NOT_FOUND: no service provider for the endpoint GUID
)

func (s Status) String() string {
	switch s {
	case StatusSuccess:
		return "ERROR_SUCCESS"
	case StatusAccessDenied:
		return "ERROR_ACCESS_DENIED"
	case StatusInvalidData:
		return "ERROR_INVALID_DATA"
	case StatusNotSupported:
		return "ERROR_NOT_SUPPORTED"
	case StatusInvalidParameter:
		return "ERROR_INVALID_PARAMETER"
	case StatusInternalError:
		return "ERROR_INTERNAL_ERROR"
	case StatusNotFound:
		return "ERROR_NOT_FOUND"
	}
	return fmt.Sprintf("0x%x", uint32(s))
}

// Processor architectures of the ARCHITECTURE variable ([MS-WDSOSD] 2.2.8)
// and of an image's XML.
const (
	ArchX86   uint32 = 0x0 // PROCESSOR_ARCHITECTURE_INTEL
	ArchARM   uint32 = 0x5
	ArchIA64  uint32 = 0x6
	ArchAMD64 uint32 = 0x9
	ArchARM64 uint32 = 0xB
)

// ArchOf maps an imaging.Image architecture to its processor architecture
// value.
func ArchOf(s string) (uint32, bool) {
	switch strings.ToLower(s) {
	case "x86", "i386", "i686", "intel":
		return ArchX86, true
	case "arm":
		return ArchARM, true
	case "ia64":
		return ArchIA64, true
	case "amd64", "x64", "x86_64":
		return ArchAMD64, true
	case "arm64", "aarch64":
		return ArchARM64, true
	}
	return 0, false
}

// ArchName is the imaging.Image name of a processor architecture value.
func ArchName(a uint32) string {
	switch a {
	case ArchX86:
		return "x86"
	case ArchARM:
		return "arm"
	case ArchIA64:
		return "ia64"
	case ArchAMD64:
		return "amd64"
	case ArchARM64:
		return "arm64"
	}
	return fmt.Sprintf("arch-%d", a)
}

// FIRMWARE values of GET_CLIENT_UNATTEND.
const (
	FirmwareBIOS uint32 = 0
	FirmwareUEFI uint32 = 1
)

// LOGLEVEL values of LOG_INIT ([MS-WDSOSD] 2.2.1).
const (
	LogLevelDisabled uint32 = 0
	LogLevelError    uint32 = 1
	LogLevelWarning  uint32 = 2
	LogLevelInfo     uint32 = 3
)

// FLAGS of GET_CLIENT_UNATTEND ([MS-WDSOSD] 2.2.3).
const (
	FlagClientUnattendPresent  uint32 = 0x1 // WdsCliClientUnattendPresent
	FlagClientUnattendOverride uint32 = 0x2 // WdsCliClientUnattendOverride
)

// IMG_ENUMERATE capability flags: CC in the request ([MS-WDSOSD] 2.2.6) and
// SC in a version 2.0 reply.
const (
	ClientCapV2   uint32 = 0x1 // CLIENT_CAP_SUPPORT_V2
	ClientCapVHDX uint32 = 0x2 // CLIENT_CAP_SUPPORT_VHDX
	ServerCapV2   uint32 = 0x1
)

// Image types of a version 2.0 IMG_ENUMERATE reply (IL.Type).
const (
	ImageTypeVHD  uint32 = 1
	ImageTypeWIM  uint32 = 2
	ImageTypeVHDX uint32 = 3
)

// DefaultImageGroup is the GROUP reported for an image without one.
const DefaultImageGroup = "Default"

// Variable names ([MS-WDSOSD] 2.2).
const (
	VarVersion        = "VERSION"
	VarArchitecture   = "ARCHITECTURE"
	VarClientMAC      = "CLIENT_MAC"
	VarClientGUID     = "CLIENT_GUID"
	VarClientAddress  = "CLIENT_ADDRESS"
	VarClientUUID     = "CLIENT_UUID"
	VarTransactionID  = "TRANSACTION_ID"
	VarLogLevel       = "LOGLEVEL"
	VarMessageType    = "MESSAGE_TYPE"
	VarMessage        = "MESSAGE"
	VarFlags          = "FLAGS"
	VarClientUnattend = "CLIENT_UNATTEND"
	VarFirmware       = "FIRMWARE"
	VarMachineName    = "MACHINENAME"
	VarMachineDomain  = "MACHINEDOMAIN"
	VarOrgName        = "ORGNAME"
	VarTimeZone       = "TIMEZONE"
	VarCC             = "CC"
	VarSC             = "SC"
	VarOptions        = "OPTIONS"
	VarImageCount     = "IL.Count"
)

// V1ImageVar names image n's (from 1) variable of a version 1.0
// IMG_ENUMERATE reply, e.g. XML_1:
// field is one of XML, PATH, GROUP, INDEX, NAMESPACE, RESOURCEFILEPATH,
// NAMESPACE_SIZE.
func V1ImageVar(field string, n int) string { return field + "_" + strconv.Itoa(n) }

// V2ImageVar names image i's (from 0) variable of a version 2.0
// IMG_ENUMERATE reply, e.g. IL.Xml[0]:
// field is one of Type, Xml, Path, ResPath, Group, Index, NS.
func V2ImageVar(field string, i int) string { return "IL." + field + "[" + strconv.Itoa(i) + "]" }

// UnattendVariables are the GET_UNATTEND_VARIABLES answers for one client.
type UnattendVariables struct {
	MachineName   string
	MachineDomain string
	OrgName       string
	TimeZone      string
}

// State is what the decisions need from the server.
type State struct {
	// Images lists the image store. It is called only for an authorized
	// IMG_ENUMERATE; nil is an empty store.
	Images func() ([]imaging.Image, error)
	// LogLevel is LOG_INIT's LOGLEVEL (LogLevelDisabled .. LogLevelInfo).
	LogLevel uint32
	// NewTransactionID makes LOG_INIT's TRANSACTION_ID; nil uses a random
	// GUID in braces.
	NewTransactionID func() string
	// ClientUnattend is the deployment agent's unattend file by
	// ARCHITECTURE; an architecture without one gets an empty
	// CLIENT_UNATTEND.
	ClientUnattend map[uint32][]byte
	// UnattendVariables answers GET_UNATTEND_VARIABLES by client MAC
	// (net.HardwareAddr.String form); other clients get empty values.
	UnattendVariables map[string]UnattendVariables
	// Join registers a client in the multicast session of an image (named
	// as IMG_ENUMERATE names it); nil: multicast is off.
	Join func(JoinRequest) (MulticastJoin, error)
}

// Decision is the outcome of one request.
type Decision struct {
	Reply   *Packet // always set
	Op      uint32  // the request's opcode (0 when the packet did not decode)
	Status  Status  // the reply's error code
	Reason  string  // why Status is not StatusSuccess, for the debug log
	Refused bool    // StatusAccessDenied: the operation needs an authenticated caller

	MAC net.HardwareAddr // CLIENT_MAC, when present and readable

	Log             *LogMessage    // LOG_MSG: the client's own log line
	Images          int            // IMG_ENUMERATE: images in the reply
	Omitted         int            // IMG_ENUMERATE: images left out to stay within the packet limits
	V2              bool           // IMG_ENUMERATE: the version 2.0 format was used
	UnattendPresent bool           // GET_CLIENT_UNATTEND: an unattend file was sent
	Firmware        uint32         // GET_CLIENT_UNATTEND: the FIRMWARE sent
	Join            *MulticastJoin // ND_MC_JOIN: the client's session
}

// AnonymousAllowed reports whether an unauthenticated caller may use op:
// logging and the deployment agent's unattend file are open (they run
// before the client has credentials), the rest needs a logon.
func AnonymousAllowed(op uint32) bool {
	switch op {
	case OpLogInit, OpLogMsg, OpGetClientUnattend:
		return true
	}
	return false
}

// Authorized reports whether c may use op.
func Authorized(op uint32, c dcerpc.Caller) bool {
	return AnonymousAllowed(op) || c.Authenticated
}

// DecideBytes decodes a request and decides it. A packet that does not
// decode gets a reply with StatusInvalidData, addressed to the request's
// endpoint GUID when the header got that far.
func DecideBytes(b []byte, c dcerpc.Caller, st State) Decision {
	req, err := Decode(b)
	if err != nil {
		ep := OSDeploymentEndpoint
		if len(b) >= 24 {
			copy(ep[:], b[8:24])
		}
		return failed(ep, 0, StatusInvalidData, err.Error())
	}
	return Decide(req, c, st)
}

// Decide answers one decoded request from caller c.
func Decide(req *Packet, c dcerpc.Caller, st State) Decision {
	op := req.Code
	if req.Endpoint == MulticastEndpoint {
		return decideMulticast(req, c, st)
	}
	if req.Endpoint != OSDeploymentEndpoint {
		return failed(req.Endpoint, op, StatusNotFound, "no service provider for endpoint "+req.Endpoint.String())
	}
	var d Decision
	switch op {
	case OpImgEnumerate, OpLogInit, OpLogMsg, OpGetClientUnattend, OpGetUnattendVariables, OpResetBootProgram:
	default:
		return failed(req.Endpoint, op, StatusNotSupported, "unsupported "+OpName(op))
	}
	if req.Has(VarClientMAC) {
		d.MAC, _ = req.MAC(VarClientMAC) // informational: a bad one only loses the MAC
	}
	if !Authorized(op, c) {
		d = withStatus(d, req.Endpoint, op, StatusAccessDenied, OpName(op)+" needs an authenticated caller")
		d.Refused = true
		return d
	}
	var err error
	switch op {
	case OpLogInit:
		err = logInit(st, &d)
	case OpLogMsg:
		err = logMsg(req, &d)
	case OpGetClientUnattend:
		err = clientUnattend(req, st, &d)
	case OpGetUnattendVariables:
		unattendVariables(st, &d)
	case OpImgEnumerate:
		err = imgEnumerate(req, st, &d)
	case OpResetBootProgram:
		d.Reply = reply(nil)
	}
	if err != nil {
		status := StatusInvalidParameter
		var se statusError
		if errors.As(err, &se) {
			status = se.status
		}
		return withStatus(d, req.Endpoint, op, status, err.Error())
	}
	d.Op = op
	d.Reply.Endpoint = req.Endpoint
	return d
}

type statusError struct {
	status Status
	msg    string
}

func (e statusError) Error() string { return e.msg }

func reply(vars []Var) *Packet {
	return &Packet{Endpoint: OSDeploymentEndpoint, Type: PacketReply, Vars: vars}
}

func failed(ep GUID, op uint32, s Status, reason string) Decision {
	return withStatus(Decision{}, ep, op, s, reason)
}

// withStatus turns d into an error reply: the code in the operation header
// and no variables, so nothing the operation would have said leaks.
func withStatus(d Decision, ep GUID, op uint32, s Status, reason string) Decision {
	d.Reply = &Packet{Endpoint: ep, Type: PacketReply, Code: uint32(s)}
	d.Op, d.Status, d.Reason = op, s, reason
	d.Log, d.Images, d.Omitted, d.V2, d.UnattendPresent, d.Join = nil, 0, 0, false, false, nil
	return d
}

// LOG_INIT ([MS-WDSOSD] 2.2.1, 3.1.5.1).
func logInit(st State, d *Decision) error {
	id := ""
	if st.NewTransactionID != nil {
		id = st.NewTransactionID()
	} else {
		id = randomGUID()
	}
	level := min(st.LogLevel, LogLevelInfo)
	d.Reply = reply([]Var{ULongVar(VarVersion, 1), ULongVar(VarLogLevel, level), WStringVar(VarTransactionID, id)})
	return nil
}

func randomGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("{%X-%X-%X-%X-%X}", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// GET_CLIENT_UNATTEND ([MS-WDSOSD] 2.2.3, 3.1.5.3).
func clientUnattend(req *Packet, st State, d *Decision) error {
	arch, err := req.ULong(VarArchitecture)
	if err != nil {
		return err
	}
	fw := FirmwareBIOS
	switch arch {
	case ArchARM, ArchARM64, ArchIA64: // no BIOS on these
		fw = FirmwareUEFI
	}
	if req.Has(VarFirmware) {
		f, err := req.ULong(VarFirmware)
		if err != nil {
			return err
		}
		if f == FirmwareBIOS || f == FirmwareUEFI {
			fw = f
		}
	}
	unattend := st.ClientUnattend[arch]
	flags := uint32(0)
	if len(unattend) > 0 {
		flags |= FlagClientUnattendPresent
	}
	d.UnattendPresent, d.Firmware = flags&FlagClientUnattendPresent != 0, fw
	d.Reply = reply([]Var{ULongVar(VarVersion, 1), ULongVar(VarFlags, flags), BlobVar(VarClientUnattend, unattend), ULongVar(VarFirmware, fw)})
	return nil
}

// GET_UNATTEND_VARIABLES ([MS-WDSOSD] 2.2.4).
func unattendVariables(st State, d *Decision) {
	var u UnattendVariables
	if d.MAC != nil {
		u = st.UnattendVariables[d.MAC.String()]
	}
	d.Reply = reply([]Var{
		WStringVar(VarMachineName, u.MachineName),
		WStringVar(VarMachineDomain, u.MachineDomain),
		WStringVar(VarOrgName, u.OrgName),
		WStringVar(VarTimeZone, u.TimeZone),
	})
}

// IMG_ENUMERATE ([MS-WDSOSD] 2.2.6, 3.1.5.6).
func imgEnumerate(req *Packet, st State, d *Decision) error {
	var cc uint32
	if req.Has(VarCC) {
		var err error
		if cc, err = req.ULong(VarCC); err != nil {
			return err
		}
	}
	var list []imaging.Image
	if st.Images != nil {
		var err error
		if list, err = st.Images(); err != nil {
			return statusError{StatusInternalError, "image store: " + err.Error()}
		}
	}
	d.V2 = cc&ClientCapV2 != 0
	vars := []Var{ULongVar(VarVersion, 1), ULongVar(VarOptions, 0)}
	if d.V2 {
		vars = append(vars, ULongVar(VarSC, ServerCapV2), ULongVar(VarImageCount, 0))
	}
	size := minPacketLen
	for _, v := range vars {
		size += v.EncodedLen()
	}
	n := 0
	for _, im := range list {
		var iv []Var
		if d.V2 {
			iv = imageVarsV2(im, n)
		} else {
			iv = imageVarsV1(im, n+1)
		}
		add := 0
		for _, v := range iv {
			add += v.EncodedLen()
		}
		if len(vars)+len(iv) > MaxVariables || size+add > MaxPacketSize {
			d.Omitted = len(list) - n
			break
		}
		vars, size, n = append(vars, iv...), size+add, n+1
	}
	if d.V2 {
		vars[3] = ULongVar(VarImageCount, uint32(n))
	}
	d.Images = n
	d.Reply = reply(vars)
	return nil
}

func imageVarsV1(im imaging.Image, n int) []Var {
	return []Var{
		WStringVar(V1ImageVar("XML", n), ImageXML(im)),
		WStringVar(V1ImageVar("PATH", n), imagePath(im)),
		WStringVar(V1ImageVar("GROUP", n), imageGroup(im)),
		ULongVar(V1ImageVar("INDEX", n), imageIndex(im)),
		WStringVar(V1ImageVar("NAMESPACE", n), ""), // no multicast: the client copies over SMB
		WStringVar(V1ImageVar("RESOURCEFILEPATH", n), ""),
		ULong64Var(V1ImageVar("NAMESPACE_SIZE", n), 0),
	}
}

func imageVarsV2(im imaging.Image, i int) []Var {
	typ := ImageTypeWIM
	if !strings.EqualFold(im.Kind, "wim") {
		typ = ImageTypeVHD // a raw disk image is the nearest to a (fixed) VHD
	}
	return []Var{
		ULongVar(V2ImageVar("Type", i), typ),
		WStringVar(V2ImageVar("Xml", i), ImageXML(im)),
		WStringVar(V2ImageVar("Path", i), imagePath(im)),
		WStringVar(V2ImageVar("ResPath", i), ""),
		WStringVar(V2ImageVar("Group", i), imageGroup(im)),
		ULongVar(V2ImageVar("Index", i), imageIndex(im)),
		WStringVar(V2ImageVar("NS", i), ""),
	}
}

func imagePath(im imaging.Image) string {
	if im.Path != "" {
		return im.Path
	}
	return strings.ReplaceAll(im.File, "/", `\`)
}

func imageGroup(im imaging.Image) string {
	if im.Group != "" {
		return im.Group
	}
	return DefaultImageGroup
}

func imageIndex(im imaging.Image) uint32 {
	if im.Index < 1 {
		return 1
	}
	return uint32(im.Index)
}

// ImageXML describes one image the way a WIM's XML metadata does:
//
//	<WIM><IMAGE INDEX="1"><NAME>…</NAME><DESCRIPTION>…</DESCRIPTION>
//	<WINDOWS><ARCH>9</ARCH></WINDOWS><TOTALBYTES>…</TOTALBYTES>
//	<NETDEPLOY><KIND>wim</KIND>…</NETDEPLOY></IMAGE></WIM>
//
// WINDOWS is left out when the architecture is unknown. NETDEPLOY carries
// what netdeploy's own agent needs (kind, compression, SHA-256, file size);
// Windows clients ignore elements they do not know.
func ImageXML(im imaging.Image) string {
	var b strings.Builder
	b.WriteString(`<WIM><IMAGE INDEX="`)
	b.WriteString(strconv.FormatUint(uint64(imageIndex(im)), 10))
	b.WriteString(`">`)
	element(&b, "NAME", im.Name)
	element(&b, "DESCRIPTION", im.Description)
	if a, ok := ArchOf(im.Arch); ok {
		b.WriteString("<WINDOWS>")
		element(&b, "ARCH", strconv.FormatUint(uint64(a), 10))
		b.WriteString("</WINDOWS>")
	}
	element(&b, "TOTALBYTES", strconv.FormatInt(max(im.Size, 0), 10))
	b.WriteString("<NETDEPLOY>")
	element(&b, "KIND", im.Kind)
	if im.Compression != "" {
		element(&b, "COMPRESSION", im.Compression)
	}
	if im.SHA256 != "" {
		element(&b, "SHA256", im.SHA256)
	}
	element(&b, "FILESIZE", strconv.FormatInt(max(im.FileSize, 0), 10))
	b.WriteString("</NETDEPLOY></IMAGE></WIM>")
	return b.String()
}

func element(b *strings.Builder, name, text string) {
	b.WriteString("<" + name + ">")
	xmlEscape(b, text)
	b.WriteString("</" + name + ">")
}

// xmlEscape writes s as XML character data, dropping characters XML 1.0
// cannot carry.
func xmlEscape(b *strings.Builder, s string) {
	for _, r := range s {
		switch {
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '&':
			b.WriteString("&amp;")
		case r == '"':
			b.WriteString("&quot;")
		case r == '\'':
			b.WriteString("&apos;")
		case r == '\t' || r == '\n' || r == '\r' || (r >= 0x20 && r != 0xFFFE && r != 0xFFFF && !(r >= 0xD800 && r <= 0xDFFF)):
			b.WriteRune(r)
		}
	}
}

// Status message types of LOG_MSG ([MS-WDSOSD] 2.2.2; wdsclientapi.h).
var messageTypes = []string{
	1:    "WDS_LOG_TYPE_CLIENT_ERROR",
	2:    "WDS_LOG_TYPE_CLIENT_STARTED",
	3:    "WDS_LOG_TYPE_CLIENT_FINISHED",
	4:    "WDS_LOG_TYPE_CLIENT_IMAGE_SELECTED",
	5:    "WDS_LOG_TYPE_CLIENT_APPLY_STARTED",
	6:    "WDS_LOG_TYPE_CLIENT_APPLY_FINISHED",
	7:    "WDS_LOG_TYPE_CLIENT_GENERIC_MESSAGE",
	8:    "WDS_LOG_TYPE_CLIENT_UNATTEND_MODE",
	9:    "WDS_LOG_TYPE_CLIENT_TRANSFER_START",
	0xA:  "WDS_LOG_TYPE_CLIENT_TRANSFER_END",
	0xB:  "WDS_LOG_TYPE_CLIENT_TRANSFER_DOWNGRADE",
	0xC:  "WDS_LOG_TYPE_CLIENT_DOMAINJOINERROR",
	0xD:  "WDS_LOG_TYPE_CLIENT_POST_ACTIONS_START",
	0xE:  "WDS_LOG_TYPE_CLIENT_POST_ACTIONS_END",
	0xF:  "WDS_LOG_TYPE_CLIENT_APPLY_STARTED_2",
	0x10: "WDS_LOG_TYPE_CLIENT_APPLY_FINISHED_2",
	0x11: "WDS_LOG_TYPE_CLIENT_DOMAINJOINERROR_2",
	0x12: "WDS_LOG_TYPE_CLIENT_DRIVER_PACKAGE_NOT_ACCESSIBLE",
	0x13: "WDS_LOG_TYPE_CLIENT_OFFLINE_DRIVER_INJECTION_START",
	0x14: "WDS_LOG_TYPE_CLIENT_OFFLINE_DRIVER_INJECTION_END",
	0x15: "WDS_LOG_TYPE_CLIENT_OFFLINE_DRIVER_INJECTION_FAILURE",
	0x16: "WDS_LOG_TYPE_CLIENT_IMAGE_SELECTED2",
	0x17: "WDS_LOG_TYPE_CLIENT_IMAGE_SELECTED3",
}

// Message types with a name of their own in this package.
const (
	MsgClientError          uint32 = 0x1
	MsgClientStarted        uint32 = 0x2
	MsgClientFinished       uint32 = 0x3
	MsgClientImageSelected  uint32 = 0x4
	MsgClientGenericMessage uint32 = 0x7
)

// MessageTypeName is the specification's name of a LOG_MSG type.
func MessageTypeName(t uint32) string {
	if t < uint32(len(messageTypes)) && messageTypes[t] != "" {
		return messageTypes[t]
	}
	return fmt.Sprintf("message type 0x%x", t)
}

// LogMessage is a status message a client sent with LOG_MSG.
type LogMessage struct {
	Type          uint32
	TransactionID string
	Text          string   // the MESSAGE variable, if any
	Extras        []string // the type's other variables as NAME=value, in packet order
}

// maxLogDetail bounds the rendering of one client log line.
const maxLogDetail = 512

// String renders the message on one line: the type's name without the
// WDS_LOG_TYPE_CLIENT_ prefix, then the text and the extras, e.g.
// "ERROR: disk 0 not found" or "IMAGE_SELECTED: IMAGE_NAME=Windows 11,
// GROUP_NAME=Default". Control characters become spaces and the line is
// cut at 512 bytes: the text comes from the client.
func (m LogMessage) String() string {
	s := strings.TrimPrefix(MessageTypeName(m.Type), "WDS_LOG_TYPE_CLIENT_")
	var parts []string
	if m.Text != "" {
		parts = append(parts, m.Text)
	}
	parts = append(parts, m.Extras...)
	if len(parts) > 0 {
		s += ": " + strings.Join(parts, ", ")
	}
	return oneLine(s, maxLogDetail)
}

func oneLine(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8RuneStart(c byte) bool { return c&0xC0 != 0x80 }

// commonLogVars are LOG_MSG's variables for every message type (3.1.5.2).
var commonLogVars = map[string]bool{
	VarVersion: true, VarMessageType: true, VarArchitecture: true, VarClientAddress: true,
	VarClientUUID: true, VarClientGUID: true, VarClientMAC: true, VarTransactionID: true, VarMessage: true,
}

// LOG_MSG ([MS-WDSOSD] 2.2.2, 3.1.5.2). The reply has no variables.
func logMsg(req *Packet, d *Decision) error {
	t, err := req.ULong(VarMessageType)
	if err != nil {
		return err
	}
	m := &LogMessage{Type: t}
	m.TransactionID, _ = req.Text(VarTransactionID)
	if req.Has(VarMessage) {
		if m.Text, err = req.Text(VarMessage); err != nil {
			return err
		}
	}
	for _, v := range req.Vars {
		if commonLogVars[nameKey(v.Name)] {
			continue
		}
		m.Extras = append(m.Extras, v.Name+"="+renderValue(v))
		if len(m.Extras) == 16 {
			break
		}
	}
	d.Log = m
	d.Reply = reply(nil)
	return nil
}

func renderValue(v Var) string {
	if v.Array {
		return fmt.Sprintf("<%d × %s>", v.Count, TypeName(v.Base))
	}
	switch v.Base {
	case TypeWString:
		return truncate(decodeUTF16(v.Value), 200)
	case TypeString:
		return truncate(decodeCHAR(v.Value), 200)
	case TypeBlob:
		return fmt.Sprintf("<%d bytes>", len(v.Value))
	}
	p := Packet{Vars: []Var{v}}
	if n, err := p.ULong64(v.Name); err == nil {
		return strconv.FormatUint(n, 10)
	}
	return fmt.Sprintf("<%d bytes>", len(v.Value))
}
