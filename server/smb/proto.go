package smb

import (
	"encoding/binary"
	"fmt"
)

// SMB2 packet header ([MS-SMB2] 2.2.1).
const (
	headerLen = 64

	flagResponse = 0x00000001 // SMB2_FLAGS_SERVER_TO_REDIR
	flagAsync    = 0x00000002
	flagRelated  = 0x00000004
	flagSigned   = 0x00000008
)

var (
	protoSMB2      = [4]byte{0xFE, 'S', 'M', 'B'}
	protoSMB1      = [4]byte{0xFF, 'S', 'M', 'B'}
	protoTransform = [4]byte{0xFD, 'S', 'M', 'B'}
)

// Commands ([MS-SMB2] 2.2.1.2).
const (
	cmdNegotiate      = 0x00
	cmdSessionSetup   = 0x01
	cmdLogoff         = 0x02
	cmdTreeConnect    = 0x03
	cmdTreeDisconnect = 0x04
	cmdCreate         = 0x05
	cmdClose          = 0x06
	cmdFlush          = 0x07
	cmdRead           = 0x08
	cmdWrite          = 0x09
	cmdLock           = 0x0A
	cmdIoctl          = 0x0B
	cmdCancel         = 0x0C
	cmdEcho           = 0x0D
	cmdQueryDirectory = 0x0E
	cmdChangeNotify   = 0x0F
	cmdQueryInfo      = 0x10
	cmdSetInfo        = 0x11
	cmdOplockBreak    = 0x12
	numCommands       = 0x13
)

var commandNames = [numCommands]string{
	"NEGOTIATE", "SESSION_SETUP", "LOGOFF", "TREE_CONNECT", "TREE_DISCONNECT",
	"CREATE", "CLOSE", "FLUSH", "READ", "WRITE", "LOCK", "IOCTL", "CANCEL",
	"ECHO", "QUERY_DIRECTORY", "CHANGE_NOTIFY", "QUERY_INFO", "SET_INFO", "OPLOCK_BREAK",
}

func commandName(c uint16) string {
	if int(c) < len(commandNames) {
		return commandNames[c]
	}
	return fmt.Sprintf("0x%04x", c)
}

// Dialects ([MS-SMB2] 2.2.3).
const (
	dialect202      = 0x0202
	dialect210      = 0x0210
	dialect300      = 0x0300
	dialect302      = 0x0302
	dialect311      = 0x0311
	dialectWildcard = 0x02FF
)

func dialectName(d uint16) string {
	switch d {
	case dialect202:
		return "2.0.2"
	case dialect210:
		return "2.1"
	case dialect300:
		return "3.0"
	case dialect302:
		return "3.0.2"
	case dialect311:
		return "3.1.1"
	}
	return fmt.Sprintf("0x%04x", d)
}

// Status is an NTSTATUS value ([MS-ERREF] 2.3) that a request failed
// with; it is what the SMB2 header of the response carries.
type Status uint32

// Status values the server returns.
const (
	StatusSuccess                 Status = 0x00000000
	StatusPending                 Status = 0x00000103
	StatusNoMoreFiles             Status = 0x80000006
	StatusBufferOverflow          Status = 0x80000005
	StatusInvalidParameter        Status = 0xC000000D
	StatusNoSuchFile              Status = 0xC000000F
	StatusEndOfFile               Status = 0xC0000011
	StatusMoreProcessingRequired  Status = 0xC0000016
	StatusAccessDenied            Status = 0xC0000022
	StatusBufferTooSmall          Status = 0xC0000023
	StatusObjectNameInvalid       Status = 0xC0000033
	StatusObjectNameNotFound      Status = 0xC0000034
	StatusObjectNameCollision     Status = 0xC0000035
	StatusObjectPathInvalid       Status = 0xC0000039
	StatusObjectPathNotFound      Status = 0xC000003A
	StatusObjectPathSyntaxBad     Status = 0xC000003B
	StatusInfoLengthMismatch      Status = 0xC0000004
	StatusInvalidInfoClass        Status = 0xC0000003
	StatusNotImplemented          Status = 0xC0000002
	StatusInvalidHandle           Status = 0xC0000008
	StatusInvalidDeviceRequest    Status = 0xC0000010
	StatusLogonFailure            Status = 0xC000006D
	StatusInsufficientResources   Status = 0xC000009A
	StatusFileIsADirectory        Status = 0xC00000BA
	StatusNotSupported            Status = 0xC00000BB
	StatusBadNetworkName          Status = 0xC00000CC
	StatusRequestNotAccepted      Status = 0xC00000D0
	StatusNotADirectory           Status = 0xC0000103
	StatusCancelled               Status = 0xC0000120
	StatusFileClosed              Status = 0xC0000128
	StatusUserSessionDeleted      Status = 0xC0000203
	StatusNetworkNameDeleted      Status = 0xC00000C9
	StatusNotFound                Status = 0xC0000225
	StatusFSDriverRequired        Status = 0xC000019C
	StatusNetworkSessionExpired   Status = 0xC000035C
	StatusInvalidNetworkResponse  Status = 0xC00000C3
	StatusTooManyOpenedFiles      Status = 0xC000011F
	StatusPipeDisconnected        Status = 0xC00000B0
	StatusPipeBroken              Status = 0xC000014B
	StatusMediaWriteProtected     Status = 0xC00000A2
	StatusSharingViolation        Status = 0xC0000043
	StatusDeletePending           Status = 0xC0000056
	StatusFileNotAvailable        Status = 0xC0000467
	StatusInternalError           Status = 0xC00000E5
	StatusNotADirectoryOrFileName Status = StatusObjectNameInvalid
)

func (s Status) Error() string { return fmt.Sprintf("smb: status 0x%08x", uint32(s)) }

// header is a decoded SMB2 header ([MS-SMB2] 2.2.1.1, 2.2.1.2).
type header struct {
	CreditCharge  uint16
	Status        uint32 // ChannelSequence/Reserved in requests
	Command       uint16
	Credits       uint16 // CreditRequest / CreditResponse
	Flags         uint32
	NextCommand   uint32
	MessageID     uint64
	AsyncID       uint64 // ASYNC_COMMAND only
	ProcessID     uint32 // sync only (Reserved)
	TreeID        uint32 // sync only
	SessionID     uint64
	Signature     [16]byte
	StructureSize uint16
}

// parseHeader decodes the SMB2 header at the start of b.
func parseHeader(b []byte) (header, error) {
	var h header
	if len(b) < headerLen {
		return h, fmt.Errorf("smb: header of %d bytes", len(b))
	}
	if [4]byte(b[:4]) != protoSMB2 {
		return h, fmt.Errorf("smb: protocol id %x", b[:4])
	}
	if binary.LittleEndian.Uint16(b[4:]) != headerLen {
		return h, fmt.Errorf("smb: header structure size %d", binary.LittleEndian.Uint16(b[4:]))
	}
	h.CreditCharge = binary.LittleEndian.Uint16(b[6:])
	h.Status = binary.LittleEndian.Uint32(b[8:])
	h.Command = binary.LittleEndian.Uint16(b[12:])
	h.Credits = binary.LittleEndian.Uint16(b[14:])
	h.Flags = binary.LittleEndian.Uint32(b[16:])
	h.NextCommand = binary.LittleEndian.Uint32(b[20:])
	h.MessageID = binary.LittleEndian.Uint64(b[24:])
	if h.Flags&flagAsync != 0 {
		h.AsyncID = binary.LittleEndian.Uint64(b[32:])
	} else {
		h.ProcessID = binary.LittleEndian.Uint32(b[32:])
		h.TreeID = binary.LittleEndian.Uint32(b[36:])
	}
	h.SessionID = binary.LittleEndian.Uint64(b[40:])
	copy(h.Signature[:], b[48:64])
	if len(b) >= headerLen+2 {
		h.StructureSize = binary.LittleEndian.Uint16(b[64:])
	}
	return h, nil
}

// put encodes h into b[:64].
func (h *header) put(b []byte) {
	copy(b[:4], protoSMB2[:])
	binary.LittleEndian.PutUint16(b[4:], headerLen)
	binary.LittleEndian.PutUint16(b[6:], h.CreditCharge)
	binary.LittleEndian.PutUint32(b[8:], h.Status)
	binary.LittleEndian.PutUint16(b[12:], h.Command)
	binary.LittleEndian.PutUint16(b[14:], h.Credits)
	binary.LittleEndian.PutUint32(b[16:], h.Flags)
	binary.LittleEndian.PutUint32(b[20:], h.NextCommand)
	binary.LittleEndian.PutUint64(b[24:], h.MessageID)
	if h.Flags&flagAsync != 0 {
		binary.LittleEndian.PutUint64(b[32:], h.AsyncID)
	} else {
		binary.LittleEndian.PutUint32(b[32:], h.ProcessID)
		binary.LittleEndian.PutUint32(b[36:], h.TreeID)
	}
	binary.LittleEndian.PutUint64(b[40:], h.SessionID)
	copy(b[48:64], h.Signature[:])
}

// splitCompound splits a message into its chained requests ([MS-SMB2]
// 3.3.5.2.7): each NextCommand is 8-byte aligned, at least a header
// long and inside the message.
func splitCompound(msg []byte) ([][]byte, error) {
	var out [][]byte
	for len(msg) > 0 {
		if len(msg) < headerLen || [4]byte(msg[:4]) != protoSMB2 {
			return nil, fmt.Errorf("smb: compound element of %d bytes", len(msg))
		}
		next := binary.LittleEndian.Uint32(msg[20:])
		if next == 0 {
			out = append(out, msg)
			break
		}
		if next%8 != 0 || next < headerLen || uint64(next) > uint64(len(msg)) {
			return nil, fmt.Errorf("smb: NextCommand %d in a message of %d bytes", next, len(msg))
		}
		if len(out) >= maxCompound {
			return nil, fmt.Errorf("smb: more than %d compounded requests", maxCompound)
		}
		out = append(out, msg[:next])
		msg = msg[next:]
	}
	return out, nil
}

// maxCompound caps the requests in one compound message.
const maxCompound = 64

// fileID is an SMB2_FILEID ([MS-SMB2] 2.2.14.1).
type fileID struct{ Persistent, Volatile uint64 }

var relatedFileID = fileID{^uint64(0), ^uint64(0)}

func getFileID(b []byte) fileID {
	return fileID{binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])}
}

func putFileID(b []byte, f fileID) {
	binary.LittleEndian.PutUint64(b, f.Persistent)
	binary.LittleEndian.PutUint64(b[8:], f.Volatile)
}

// sub returns b[off:off+n] when that lies inside b, where off counts from
// the start of the SMB2 header (as every SMB2 offset field does) and b is
// the whole message.
func sub(b []byte, off, n uint64) ([]byte, bool) {
	if n == 0 {
		return nil, true
	}
	if off < headerLen || off > uint64(len(b)) || n > uint64(len(b))-off {
		return nil, false
	}
	return b[off : off+n], true
}

// le is a small little-endian encoder.
type le []byte

func (b *le) u8(v uint8)          { *b = append(*b, v) }
func (b *le) u16(v uint16)        { *b = binary.LittleEndian.AppendUint16(*b, v) }
func (b *le) u32(v uint32)        { *b = binary.LittleEndian.AppendUint32(*b, v) }
func (b *le) u64(v uint64)        { *b = binary.LittleEndian.AppendUint64(*b, v) }
func (b *le) bytes(v []byte)      { *b = append(*b, v...) }
func (b *le) zero(n int)          { *b = append(*b, make([]byte, n)...) }
func (b *le) align(n int)         { b.zero((n - len(*b)%n) % n) }
func (b *le) fid(f fileID)        { b.u64(f.Persistent); b.u64(f.Volatile) }
func (b le) at16(o int, v uint16) { binary.LittleEndian.PutUint16(b[o:], v) }
func (b le) at32(o int, v uint32) { binary.LittleEndian.PutUint32(b[o:], v) }
