package wds

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"unicode/utf16"
)

// This file is the WDS Control Protocol packet ([MS-WDSC] 2.2.1): an
// endpoint header, an operation header and a list of typed variables. It is
// pure: nothing here knows about RPC, images or clients.

// Sizes of the fixed parts ([MS-WDSC] 2.2.1.1, 2.2.1.2, 2.2.1.3.1).
const (
	EndpointHeaderLen  = 40 // size of header, version, packet size, endpoint GUID, reserved
	OperationHeaderLen = 16 // packet size, version, packet type, pad, opcode/error code, variable count
	varNameFieldLen    = 66 // UTF-16LE name with its NUL
	varHeaderLen       = 80 // name, 2 pad, type, value length, array size
	headerVersion      = 0x0100
	minPacketLen       = EndpointHeaderLen + OperationHeaderLen
)

// Limits on what Decode accepts and Encode produces.
const (
	// MaxPacketSize bounds a whole packet, request or reply.
	MaxPacketSize = 1 << 20
	// MaxVariables bounds the variable count of one packet.
	MaxVariables = 4096
	// MaxNameLen is the longest variable name in UTF-16 code units (the
	// 66-byte name field holds 32 units and the NUL).
	MaxNameLen = varNameFieldLen/2 - 1
)

// Packet types of the operation header ([MS-WDSC] 2.2.1.2.1). Receivers
// must not reject a packet for its type, so Decode keeps whatever it finds.
const (
	PacketRequest uint8 = 1
	PacketReply   uint8 = 2
)

// Base types of a variable ([MS-WDSC] 2.2.1.3.2.1) and the array modifier
// (2.2.1.3.2.2). On the wire the type is one little-endian ULONG with the
// base type in the low word and the modifier in the high word.
const (
	TypeByte    uint16 = 0x0001
	TypeUShort  uint16 = 0x0002
	TypeULong   uint16 = 0x0004
	TypeULong64 uint16 = 0x0008
	TypeString  uint16 = 0x0010 // CHAR string with its NUL
	TypeWString uint16 = 0x0020 // UTF-16LE string with its NUL
	TypeBlob    uint16 = 0x0040

	ModifierArray uint16 = 0x1000
)

// TypeName names a base type the way the specification does.
func TypeName(t uint16) string {
	switch t {
	case TypeByte:
		return "BYTE"
	case TypeUShort:
		return "USHORT"
	case TypeULong:
		return "ULONG"
	case TypeULong64:
		return "ULONG64"
	case TypeString:
		return "STRING"
	case TypeWString:
		return "WSTRING"
	case TypeBlob:
		return "BLOB"
	}
	return fmt.Sprintf("type 0x%04x", t)
}

func knownType(t uint16) bool {
	switch t {
	case TypeByte, TypeUShort, TypeULong, TypeULong64, TypeString, TypeWString, TypeBlob:
		return true
	}
	return false
}

// GUID is a GUID in its wire form ([MS-DTYP] 2.3.4.2: Data1, Data2 and Data3
// little-endian, Data4 as bytes).
type GUID [16]byte

// ParseGUID reads "d8deeb5a-effd-43b2-99fc-1a8a5921c227", with or without
// braces, in either case.
func ParseGUID(s string) (GUID, error) {
	var g GUID
	s = strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	parts := strings.Split(s, "-")
	if len(parts) != 5 || len(parts[0]) != 8 || len(parts[1]) != 4 || len(parts[2]) != 4 || len(parts[3]) != 4 || len(parts[4]) != 12 {
		return g, fmt.Errorf("wds: malformed GUID %q", s)
	}
	raw, err := hex.DecodeString(strings.Join(parts, ""))
	if err != nil {
		return g, fmt.Errorf("wds: malformed GUID %q", s)
	}
	// Data1, Data2, Data3 are stored little-endian.
	g[0], g[1], g[2], g[3] = raw[3], raw[2], raw[1], raw[0]
	g[4], g[5] = raw[5], raw[4]
	g[6], g[7] = raw[7], raw[6]
	copy(g[8:], raw[8:])
	return g, nil
}

// MustGUID is ParseGUID for constants.
func MustGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// String formats g as lower-case 8-4-4-4-12 without braces.
func (g GUID) String() string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(g[0:]), binary.LittleEndian.Uint16(g[4:]), binary.LittleEndian.Uint16(g[6:]), g[8:10], g[10:])
}

// Var is one variable of a packet ([MS-WDSC] 2.2.1.3.1). Value holds the
// raw value without padding; for an array it is Count elements of ElemLen
// bytes each.
type Var struct {
	Name    string
	Base    uint16 // TypeByte ... TypeBlob
	Array   bool
	ElemLen uint32 // arrays only: Value-Length, the size of one element
	Count   uint32 // arrays only: Array-Size, never 0
	Value   []byte
}

// ByteVar is a BYTE variable.
func ByteVar(name string, v uint8) Var { return Var{Name: name, Base: TypeByte, Value: []byte{v}} }

// UShortVar is a USHORT variable.
func UShortVar(name string, v uint16) Var {
	return Var{Name: name, Base: TypeUShort, Value: binary.LittleEndian.AppendUint16(nil, v)}
}

// ULongVar is a ULONG variable.
func ULongVar(name string, v uint32) Var {
	return Var{Name: name, Base: TypeULong, Value: binary.LittleEndian.AppendUint32(nil, v)}
}

// ULong64Var is a ULONG64 variable.
func ULong64Var(name string, v uint64) Var {
	return Var{Name: name, Base: TypeULong64, Value: binary.LittleEndian.AppendUint64(nil, v)}
}

// StringVar is a STRING variable: the bytes of s and a NUL.
func StringVar(name, s string) Var {
	return Var{Name: name, Base: TypeString, Value: append([]byte(s), 0)}
}

// WStringVar is a WSTRING variable: s in UTF-16LE and a NUL.
func WStringVar(name, s string) Var {
	return Var{Name: name, Base: TypeWString, Value: utf16le(s, true)}
}

// BlobVar is a BLOB variable (b is copied).
func BlobVar(name string, b []byte) Var {
	return Var{Name: name, Base: TypeBlob, Value: append([]byte{}, b...)}
}

// ULongArrayVar is a ULONG array variable.
func ULongArrayVar(name string, vs ...uint32) Var {
	v := Var{Name: name, Base: TypeULong, Array: true, ElemLen: 4, Count: uint32(len(vs))}
	for _, x := range vs {
		v.Value = binary.LittleEndian.AppendUint32(v.Value, x)
	}
	return v
}

// Packet is a decoded WDSCPL packet.
type Packet struct {
	Endpoint GUID
	Type     uint8  // PacketRequest or PacketReply (kept as received)
	Code     uint32 // the OpCode in a request, the error code in a reply
	Vars     []Var
}

// Errors a decoded packet or a variable lookup can carry; test with
// errors.Is. Decode wraps them in a *DecodeError, the accessors in a
// *VarError.
var (
	ErrTruncated         = errors.New("truncated")
	ErrTooLarge          = errors.New("too large")
	ErrHeader            = errors.New("bad header")
	ErrTooManyVariables  = errors.New("too many variables")
	ErrName              = errors.New("bad variable name")
	ErrDuplicateName     = errors.New("duplicate variable name")
	ErrType              = errors.New("unknown variable type")
	ErrArray             = errors.New("bad array")
	ErrMissing           = errors.New("variable missing")
	ErrWrongType         = errors.New("variable has the wrong type")
	ErrMalformedValue    = errors.New("malformed value")
	errVarCountTooLarge  = fmt.Errorf("%w: more than %d", ErrTooManyVariables, MaxVariables)
	errPacketTooLarge    = fmt.Errorf("%w: more than %d bytes", ErrTooLarge, MaxPacketSize)
	errNameUnterminated  = fmt.Errorf("%w: no NUL within %d bytes", ErrName, varNameFieldLen)
	errNameEmpty         = fmt.Errorf("%w: empty", ErrName)
	errArrayZeroElements = fmt.Errorf("%w: array size 0", ErrArray)
	errArrayZeroLength   = fmt.Errorf("%w: element length 0", ErrArray)
)

// DecodeError says where and why a packet could not be decoded.
type DecodeError struct {
	Offset int    // byte offset of the field at fault
	Field  string // what was being read
	Err    error  // one of the Err* values, possibly wrapped
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("wds: packet %s at offset %d: %v", e.Field, e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// VarError is a problem with one variable: missing, of an unexpected type,
// malformed, or (when encoding) badly named.
type VarError struct {
	Name string
	Err  error
}

func (e *VarError) Error() string { return fmt.Sprintf("wds: variable %q: %v", e.Name, e.Err) }

func (e *VarError) Unwrap() error { return e.Err }

func le16(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }
func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

func pad16(n int) int { return (n + 15) &^ 15 }

// nameKey is the case-insensitive identity of a variable name.
func nameKey(s string) string { return strings.ToUpper(s) }

// Decode parses a packet. It checks every length against the buffer and the
// limits, rejects duplicate names and unknown types, and is lenient where
// clients are known to stray ([MS-WDSC] 2.2.1; Metasploit's WDS module):
// the endpoint header's packet size may leave out the header itself (or
// anything else short of the buffer), the packet type is not checked, a
// non-array variable may say array size 0, the last variable may lack its
// padding, and a stray all-zero 16-byte block between variables is skipped.
// Fixed-size values are not checked here: the accessors read by length.
func Decode(b []byte) (*Packet, error) {
	if len(b) > MaxPacketSize {
		return nil, &DecodeError{0, "size", errPacketTooLarge}
	}
	if len(b) < minPacketLen {
		return nil, &DecodeError{0, "headers", fmt.Errorf("%w: %d bytes, headers need %d", ErrTruncated, len(b), minPacketLen)}
	}
	if hs := le16(b[0:]); hs != EndpointHeaderLen {
		return nil, &DecodeError{0, "endpoint header size", fmt.Errorf("%w: %d, want %d", ErrHeader, hs, EndpointHeaderLen)}
	}
	if eps := le32(b[4:]); uint64(eps) > uint64(len(b)) {
		return nil, &DecodeError{4, "endpoint packet size", fmt.Errorf("%w: says %d, have %d", ErrTruncated, eps, len(b))}
	}
	p := &Packet{}
	copy(p.Endpoint[:], b[8:24])

	op := b[EndpointHeaderLen:]
	opSize := uint64(le32(op[0:]))
	end := EndpointHeaderLen + int(min(opSize, uint64(len(b))))
	switch {
	case opSize < OperationHeaderLen:
		return nil, &DecodeError{EndpointHeaderLen, "operation packet size", fmt.Errorf("%w: %d is less than the operation header", ErrHeader, opSize)}
	case opSize > uint64(len(b)-EndpointHeaderLen):
		if opSize != uint64(len(b)) { // some count the endpoint header in
			return nil, &DecodeError{EndpointHeaderLen, "operation packet size", fmt.Errorf("%w: says %d, have %d", ErrTruncated, opSize, len(b)-EndpointHeaderLen)}
		}
		end = len(b)
	}
	p.Type = op[6]
	p.Code = le32(op[8:])
	count := le32(op[12:])
	if count > MaxVariables {
		return nil, &DecodeError{EndpointHeaderLen + 12, "variable count", errVarCountTooLarge}
	}
	p.Vars = make([]Var, 0, min(int(count), (end-minPacketLen)/varHeaderLen))
	seen := make(map[string]struct{}, cap(p.Vars))
	off := minPacketLen
	for i := uint32(0); i < count; i++ {
		// No name starts with NUL, so an all-zero block here is surplus
		// padding (a sender that pads a 16-byte multiple by 16 more).
		if i > 0 && end-off >= 16+varHeaderLen && allZero(b[off:off+16]) {
			off += 16
		}
		v, next, err := decodeVar(b[:end], off)
		if err != nil {
			return nil, err
		}
		k := nameKey(v.Name)
		if _, dup := seen[k]; dup {
			return nil, &DecodeError{off, "variable name", fmt.Errorf("%w: %q", ErrDuplicateName, v.Name)}
		}
		seen[k] = struct{}{}
		p.Vars = append(p.Vars, v)
		off = next
	}
	return p, nil
}

// decodeVar reads the variable block at off in b (which ends where the
// operation header says the variables end) and returns the offset of the
// next block.
func decodeVar(b []byte, off int) (Var, int, error) {
	var v Var
	if len(b)-off < varHeaderLen {
		return v, 0, &DecodeError{off, "variable header", fmt.Errorf("%w: %d bytes left, need %d", ErrTruncated, len(b)-off, varHeaderLen)}
	}
	name, err := decodeName(b[off : off+varNameFieldLen])
	if err != nil {
		return v, 0, &DecodeError{off, "variable name", err}
	}
	v.Name = name
	v.Base = le16(b[off+68:])
	mod := le16(b[off+70:])
	if !knownType(v.Base) {
		return v, 0, &DecodeError{off + 68, "variable type", fmt.Errorf("%w: base 0x%04x of %q", ErrType, v.Base, name)}
	}
	switch mod {
	case 0:
	case ModifierArray:
		v.Array = true
	default:
		return v, 0, &DecodeError{off + 70, "variable type", fmt.Errorf("%w: modifier 0x%04x of %q", ErrType, mod, name)}
	}
	vlen, asize := le32(b[off+72:]), le32(b[off+76:])
	total := uint64(vlen)
	if v.Array {
		if asize == 0 {
			return v, 0, &DecodeError{off + 76, "array size", errArrayZeroElements}
		}
		if vlen == 0 {
			return v, 0, &DecodeError{off + 72, "value length", errArrayZeroLength}
		}
		v.ElemLen, v.Count = vlen, asize
		total = uint64(vlen) * uint64(asize)
	}
	start := off + varHeaderLen
	if total > uint64(len(b)-start) {
		return v, 0, &DecodeError{off + 72, "value length", fmt.Errorf("%w: %q says %d bytes, %d left", ErrTruncated, name, total, len(b)-start)}
	}
	v.Value = append([]byte{}, b[start:start+int(total)]...)
	next := off + pad16(varHeaderLen+int(total))
	return v, min(next, len(b)), nil
}

func decodeName(field []byte) (string, error) {
	units := make([]uint16, 0, MaxNameLen)
	for i := 0; i+1 < len(field); i += 2 {
		u := le16(field[i:])
		if u == 0 {
			if len(units) == 0 {
				return "", errNameEmpty
			}
			return string(utf16.Decode(units)), nil
		}
		units = append(units, u)
	}
	return "", errNameUnterminated
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// checkName reports whether name fits the 66-byte field.
func checkName(name string) error {
	switch {
	case name == "":
		return errNameEmpty
	case strings.ContainsRune(name, 0):
		return fmt.Errorf("%w: contains NUL", ErrName)
	case len(utf16.Encode([]rune(name))) > MaxNameLen:
		return fmt.Errorf("%w: longer than %d UTF-16 units", ErrName, MaxNameLen)
	}
	return nil
}

// checkVar validates v for encoding.
func checkVar(v *Var) error {
	if err := checkName(v.Name); err != nil {
		return &VarError{v.Name, err}
	}
	if !knownType(v.Base) {
		return &VarError{v.Name, fmt.Errorf("%w: base 0x%04x", ErrType, v.Base)}
	}
	if v.Array {
		switch {
		case v.Count == 0:
			return &VarError{v.Name, errArrayZeroElements}
		case v.ElemLen == 0:
			return &VarError{v.Name, errArrayZeroLength}
		case uint64(v.ElemLen)*uint64(v.Count) != uint64(len(v.Value)):
			return &VarError{v.Name, fmt.Errorf("%w: %d elements of %d bytes, value has %d", ErrArray, v.Count, v.ElemLen, len(v.Value))}
		}
	}
	if len(v.Value) > MaxPacketSize {
		return &VarError{v.Name, errPacketTooLarge}
	}
	return nil
}

// EncodedLen is the size of v's variable block on the wire.
func (v Var) EncodedLen() int { return pad16(varHeaderLen + len(v.Value)) }

// Encode builds the packet. Both packet sizes are set as [MS-WDSC] 2.2.1
// defines them: the endpoint header's counts the whole packet, the
// operation header's counts itself and the variables.
func (p *Packet) Encode() ([]byte, error) {
	if len(p.Vars) > MaxVariables {
		return nil, fmt.Errorf("wds: encode: %w", errVarCountTooLarge)
	}
	size := minPacketLen
	seen := make(map[string]struct{}, len(p.Vars))
	for i := range p.Vars {
		v := &p.Vars[i]
		if err := checkVar(v); err != nil {
			return nil, fmt.Errorf("wds: encode: %w", err)
		}
		k := nameKey(v.Name)
		if _, dup := seen[k]; dup {
			return nil, fmt.Errorf("wds: encode: %w", &VarError{v.Name, ErrDuplicateName})
		}
		seen[k] = struct{}{}
		size += v.EncodedLen()
		if size > MaxPacketSize {
			return nil, fmt.Errorf("wds: encode: %w", errPacketTooLarge)
		}
	}
	b := make([]byte, size)
	binary.LittleEndian.PutUint16(b[0:], EndpointHeaderLen)
	binary.LittleEndian.PutUint16(b[2:], headerVersion)
	binary.LittleEndian.PutUint32(b[4:], uint32(size))
	copy(b[8:24], p.Endpoint[:])
	op := b[EndpointHeaderLen:]
	binary.LittleEndian.PutUint32(op[0:], uint32(size-EndpointHeaderLen))
	binary.LittleEndian.PutUint16(op[4:], headerVersion)
	op[6] = p.Type
	binary.LittleEndian.PutUint32(op[8:], p.Code)
	binary.LittleEndian.PutUint32(op[12:], uint32(len(p.Vars)))
	off := minPacketLen
	for _, v := range p.Vars {
		blk := b[off:]
		copy(blk, utf16le(v.Name, false))
		binary.LittleEndian.PutUint16(blk[68:], v.Base)
		vlen, asize := uint32(len(v.Value)), uint32(1)
		if v.Array {
			binary.LittleEndian.PutUint16(blk[70:], ModifierArray)
			vlen, asize = v.ElemLen, v.Count
		}
		binary.LittleEndian.PutUint32(blk[72:], vlen)
		binary.LittleEndian.PutUint32(blk[76:], asize)
		copy(blk[varHeaderLen:], v.Value)
		off += v.EncodedLen()
	}
	return b, nil
}

func utf16le(s string, nul bool) []byte {
	units := utf16.Encode([]rune(s))
	b := make([]byte, 0, 2*len(units)+2)
	for _, u := range units {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	if nul {
		b = append(b, 0, 0)
	}
	return b
}

// Var returns the variable called name (case-insensitive).
func (p *Packet) Var(name string) (*Var, bool) {
	k := nameKey(name)
	for i := range p.Vars {
		if nameKey(p.Vars[i].Name) == k {
			return &p.Vars[i], true
		}
	}
	return nil, false
}

// Has reports whether the packet carries name.
func (p *Packet) Has(name string) bool {
	_, ok := p.Var(name)
	return ok
}

func (p *Packet) scalar(name string) (*Var, error) {
	v, ok := p.Var(name)
	if !ok {
		return nil, &VarError{name, ErrMissing}
	}
	if v.Array {
		return nil, &VarError{name, fmt.Errorf("%w: array", ErrWrongType)}
	}
	return v, nil
}

// ULong reads an unsigned number of at most 32 bits. It goes by the value's
// length, 1, 2 or 4 bytes, whatever the declared integer type: some clients
// send ARCHITECTURE as one byte.
func (p *Packet) ULong(name string) (uint32, error) {
	v, err := p.scalar(name)
	if err != nil {
		return 0, err
	}
	if !isInteger(v.Base) {
		return 0, &VarError{name, fmt.Errorf("%w: %s, want ULONG", ErrWrongType, TypeName(v.Base))}
	}
	switch len(v.Value) {
	case 1:
		return uint32(v.Value[0]), nil
	case 2:
		return uint32(le16(v.Value)), nil
	case 4:
		return le32(v.Value), nil
	}
	return 0, &VarError{name, fmt.Errorf("%w: %d-byte ULONG", ErrMalformedValue, len(v.Value))}
}

// ULong64 reads an unsigned number of 1, 2, 4 or 8 bytes.
func (p *Packet) ULong64(name string) (uint64, error) {
	v, err := p.scalar(name)
	if err != nil {
		return 0, err
	}
	if !isInteger(v.Base) {
		return 0, &VarError{name, fmt.Errorf("%w: %s, want ULONG64", ErrWrongType, TypeName(v.Base))}
	}
	if len(v.Value) == 8 {
		return binary.LittleEndian.Uint64(v.Value), nil
	}
	n, err := p.ULong(name)
	return uint64(n), err
}

func isInteger(t uint16) bool {
	switch t {
	case TypeByte, TypeUShort, TypeULong, TypeULong64:
		return true
	}
	return false
}

// WString reads a WSTRING up to its first NUL (a missing NUL or an odd
// trailing byte is tolerated).
func (p *Packet) WString(name string) (string, error) {
	v, err := p.scalar(name)
	if err != nil {
		return "", err
	}
	if v.Base != TypeWString {
		return "", &VarError{name, fmt.Errorf("%w: %s, want WSTRING", ErrWrongType, TypeName(v.Base))}
	}
	return decodeUTF16(v.Value), nil
}

// String reads a STRING up to its first NUL. Bytes above 0x7f are taken as
// Latin-1.
func (p *Packet) String(name string) (string, error) {
	v, err := p.scalar(name)
	if err != nil {
		return "", err
	}
	if v.Base != TypeString {
		return "", &VarError{name, fmt.Errorf("%w: %s, want STRING", ErrWrongType, TypeName(v.Base))}
	}
	return decodeCHAR(v.Value), nil
}

// Text reads a WSTRING or a STRING.
func (p *Packet) Text(name string) (string, error) {
	v, err := p.scalar(name)
	if err != nil {
		return "", err
	}
	switch v.Base {
	case TypeWString:
		return decodeUTF16(v.Value), nil
	case TypeString:
		return decodeCHAR(v.Value), nil
	}
	return "", &VarError{name, fmt.Errorf("%w: %s, want a string", ErrWrongType, TypeName(v.Base))}
}

// Blob returns a BLOB's bytes (not a copy).
func (p *Packet) Blob(name string) ([]byte, error) {
	v, err := p.scalar(name)
	if err != nil {
		return nil, err
	}
	if v.Base != TypeBlob {
		return nil, &VarError{name, fmt.Errorf("%w: %s, want BLOB", ErrWrongType, TypeName(v.Base))}
	}
	return v.Value, nil
}

// MAC reads a hardware address sent as a string ([MS-WDSOSD] 2.2.3: the
// CLIENT_GUID formats): 12 hex digits, dashed or colon-separated pairs, or
// 32 hex digits (a 16-byte hardware address field) holding the MAC at
// either end with zeros elsewhere.
func (p *Packet) MAC(name string) (net.HardwareAddr, error) {
	s, err := p.Text(name)
	if err != nil {
		return nil, err
	}
	mac, err := ParseClientMAC(s)
	if err != nil {
		return nil, &VarError{name, err}
	}
	return mac, nil
}

// ParseClientMAC reads a CLIENT_MAC string (see Packet.MAC).
func ParseClientMAC(s string) (net.HardwareAddr, error) {
	s = strings.TrimSpace(s)
	h := strings.NewReplacer("-", "", ":", "").Replace(s)
	if len(h) == len(s) || len(s) == len(h)+5 { // bare or 5 separators
		raw, err := hex.DecodeString(h)
		if err == nil {
			switch {
			case len(raw) == 6:
				return net.HardwareAddr(raw), nil
			case len(raw) == 16 && allZero(raw[6:]):
				return net.HardwareAddr(raw[:6]), nil
			case len(raw) == 16 && allZero(raw[:10]):
				return net.HardwareAddr(raw[10:]), nil
			}
		}
	}
	return nil, fmt.Errorf("%w: %q is not a MAC address", ErrMalformedValue, truncate(s, 40))
}

func decodeUTF16(b []byte) string {
	units := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		u := le16(b[i:])
		if u == 0 {
			break
		}
		units = append(units, u)
	}
	return string(utf16.Decode(units))
}

func decodeCHAR(b []byte) string {
	rs := make([]rune, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		rs = append(rs, rune(c))
	}
	return string(rs)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	r := []rune(s)
	if len(r) > n {
		r = r[:n]
	}
	return string(r) + "…"
}
