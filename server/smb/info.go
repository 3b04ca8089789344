package smb

import (
	"encoding/binary"
	"io/fs"
)

// QUERY_INFO ([MS-SMB2] 2.2.37, 2.2.38, 3.3.5.20).
const (
	infoFile       = 0x01
	infoFileSystem = 0x02
	infoSecurity   = 0x03
	infoQuota      = 0x04

	// File information classes ([MS-FSCC] 2.4).
	fileDirectoryInformation       = 1
	fileFullDirectoryInformation   = 2
	fileBothDirectoryInformation   = 3
	fileBasicInformation           = 4
	fileStandardInformation        = 5
	fileInternalInformation        = 6
	fileEaInformation              = 7
	fileAccessInformation          = 8
	fileNameInformation            = 9
	fileNamesInformation           = 12
	filePositionInformation        = 14
	fileModeInformation            = 16
	fileAlignmentInformation       = 17
	fileAllInformation             = 18
	fileAlternateNameInformation   = 21
	fileStreamInformation          = 22
	fileCompressionInformation     = 28
	fileNetworkOpenInformation     = 34
	fileAttributeTagInformation    = 35
	fileIDBothDirectoryInformation = 37
	fileIDFullDirectoryInformation = 38

	// File system information classes ([MS-FSCC] 2.5).
	fsVolumeInformation     = 1
	fsSizeInformation       = 3
	fsDeviceInformation     = 4
	fsAttributeInformation  = 5
	fsFullSizeInformation   = 7
	fsObjectIDInformation   = 8
	fsSectorSizeInformation = 11

	queryInfoFixed = 40
)

// queryInfo answers QUERY_INFO for files and file systems.
func (c *conn) queryInfo(r *request, w *response) (Status, error) {
	b := r.body()
	if len(b) < queryInfoFixed || binary.LittleEndian.Uint16(b) != 41 {
		return StatusInvalidParameter, nil
	}
	typ, class := b[2], b[3]
	outLen := binary.LittleEndian.Uint32(b[4:])
	if _, ok := sub(r.msg, uint64(binary.LittleEndian.Uint16(b[8:])), uint64(binary.LittleEndian.Uint32(b[12:]))); !ok {
		return StatusInvalidParameter, nil
	}
	if !c.chargeCovers(r.h, uint64(outLen)) || outLen > maxReadSize {
		return StatusInvalidParameter, nil
	}
	o, st := c.lookupOpen(r, 24)
	if st != StatusSuccess {
		return st, nil
	}
	var data []byte
	variable := false
	switch typ {
	case infoFile:
		data, variable, st = c.fileInfo(o, class)
	case infoFileSystem:
		data, variable, st = c.fsInfo(o, class)
	case infoSecurity:
		data, st = securityDescriptor(o), StatusSuccess
		variable = true
	default:
		st = StatusNotSupported
	}
	if st != StatusSuccess {
		return st, nil
	}
	if uint32(len(data)) > outLen {
		if !variable {
			return StatusInfoLengthMismatch, nil
		}
		if typ == infoSecurity {
			// The client asks again with the size given ([MS-SMB2]
			// 3.3.5.20.3).
			w.buf = w.buf[:headerLen]
			w.buf.u16(9)
			w.buf.u8(0)
			w.buf.u8(0)
			w.buf.u32(4)
			w.buf.u32(uint32(len(data)))
			w.keepBody = true
			return StatusBufferTooSmall, nil
		}
		data = data[:outLen]
		st = StatusBufferOverflow
	}
	w.buf.u16(9)
	w.buf.u16(headerLen + 8)
	w.buf.u32(uint32(len(data)))
	w.buf.bytes(data)
	return st, nil
}

func (c *conn) fileInfo(o *open, class byte) ([]byte, bool, Status) {
	if o.pipe != nil {
		return c.pipeInfo(o, class)
	}
	fi := o.info
	var b le
	switch class {
	case fileBasicInformation:
		basicInfo(&b, fi)
	case fileStandardInformation:
		standardInfo(&b, fi)
	case fileInternalInformation:
		b.u64(fileIndex(o.name))
	case fileEaInformation:
		b.u32(0)
	case fileAccessInformation:
		b.u32(o.access)
	case filePositionInformation:
		b.u64(0)
	case fileModeInformation:
		b.u32(0)
	case fileAlignmentInformation:
		b.u32(0)
	case fileNameInformation:
		n := utf16le(displayName(o.name))
		b.u32(uint32(len(n)))
		b.bytes(n)
		return b, true, StatusSuccess
	case fileAllInformation:
		basicInfo(&b, fi)
		standardInfo(&b, fi)
		b.u64(fileIndex(o.name))
		b.u32(0) // EaSize
		b.u32(o.access)
		b.u64(0) // CurrentByteOffset
		b.u32(0) // Mode
		b.u32(0) // AlignmentRequirement
		n := utf16le(displayName(o.name))
		b.u32(uint32(len(n)))
		b.bytes(n)
		return b, true, StatusSuccess
	case fileAlternateNameInformation:
		return nil, false, StatusObjectNameNotFound
	case fileStreamInformation:
		if fi.IsDir() {
			return nil, true, StatusSuccess
		}
		n := utf16le("::$DATA")
		b.u32(0)
		b.u32(uint32(len(n)))
		b.u64(endOfFile(fi))
		b.u64(allocSize(fi))
		b.bytes(n)
		return b, true, StatusSuccess
	case fileCompressionInformation:
		b.u64(endOfFile(fi))
		b.u16(0)
		b.zero(6)
	case fileNetworkOpenInformation:
		putTimes(&b, fi)
		b.u64(allocSize(fi))
		b.u64(endOfFile(fi))
		b.u32(attributes(fi))
		b.u32(0)
	case fileAttributeTagInformation:
		b.u32(attributes(fi))
		b.u32(0)
	default:
		return nil, false, StatusInvalidInfoClass
	}
	return b, false, StatusSuccess
}

func basicInfo(b *le, fi fs.FileInfo) {
	putTimes(b, fi)
	b.u32(attributes(fi))
	b.u32(0)
}

func standardInfo(b *le, fi fs.FileInfo) {
	b.u64(allocSize(fi))
	b.u64(endOfFile(fi))
	b.u32(1) // NumberOfLinks
	b.u8(0)  // DeletePending
	if fi.IsDir() {
		b.u8(1)
	} else {
		b.u8(0)
	}
	b.u16(0)
}

// displayName is an FS name as SMB shows it: backslashes from the root.
func displayName(name string) string {
	if name == "." {
		return `\`
	}
	out := []byte{'\\'}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' {
			out = append(out, '\\')
		} else {
			out = append(out, name[i])
		}
	}
	return string(out)
}

// fsInfo answers the file system classes for a share.
func (c *conn) fsInfo(o *open, class byte) ([]byte, bool, Status) {
	var b le
	total, free, bsize := diskSpace(o)
	const sectorSize = 512
	perUnit := uint32(max(bsize/sectorSize, 1))
	unit := uint64(perUnit) * sectorSize
	switch class {
	case fsVolumeInformation:
		label := utf16le(o.tree.share.name)
		b.u64(filetime(c.srv.startTime))
		b.u32(uint32(fileIndex(o.tree.share.name)))
		b.u32(uint32(len(label)))
		b.u8(0)
		b.u8(0)
		b.bytes(label)
		return b, true, StatusSuccess
	case fsSizeInformation:
		b.u64(total / unit)
		b.u64(free / unit)
		b.u32(perUnit)
		b.u32(sectorSize)
	case fsFullSizeInformation:
		b.u64(total / unit)
		b.u64(free / unit)
		b.u64(free / unit)
		b.u32(perUnit)
		b.u32(sectorSize)
	case fsDeviceInformation:
		b.u32(0x07) // FILE_DEVICE_DISK
		b.u32(0x20) // FILE_DEVICE_IS_MOUNTED
	case fsAttributeInformation:
		n := utf16le("NTFS")
		// FILE_CASE_SENSITIVE_SEARCH | FILE_CASE_PRESERVED_NAMES |
		// FILE_UNICODE_ON_DISK | FILE_READ_ONLY_VOLUME.
		b.u32(0x00000001 | 0x00000002 | 0x00000004 | 0x00080000)
		b.u32(255)
		b.u32(uint32(len(n)))
		b.bytes(n)
		return b, true, StatusSuccess
	case fsSectorSizeInformation:
		b.u32(sectorSize)
		b.u32(sectorSize)
		b.u32(sectorSize)
		b.u32(sectorSize)
		b.u32(0x3) // ALIGNED_DEVICE | PARTITION_ALIGNED_ON_DEVICE
		b.u32(0)
		b.u32(0)
	case fsObjectIDInformation:
		b.zero(64)
	default:
		return nil, false, StatusInvalidInfoClass
	}
	return b, false, StatusSuccess
}

// diskSpace returns a share's size, free space and block size; shares
// that are not directories report their files' sizes.
func diskSpace(o *open) (total, free, bsize uint64) {
	if d, ok := o.tree.share.fs.(interface{ dir() string }); ok {
		if t, f, bs, ok := statfs(d.dir()); ok {
			return t, f, bs
		}
	}
	return 1 << 40, 0, 4096
}

// securityDescriptor returns a self-relative security descriptor
// ([MS-DTYP] 2.4.6) granting Everyone read access: owner and group
// S-1-5-32-544, a DACL with one ACCESS_ALLOWED ACE for S-1-1-0.
func securityDescriptor(o *open) []byte {
	sidAdmins := []byte{1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 0x20, 0x02, 0, 0}
	sidEveryone := []byte{1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}
	var ace le
	ace.u8(0) // ACCESS_ALLOWED_ACE_TYPE
	ace.u8(0) // flags
	ace.u16(uint16(8 + len(sidEveryone)))
	ace.u32(accessReadOnly)
	ace.bytes(sidEveryone)
	var acl le
	acl.u8(2)
	acl.u8(0)
	acl.u16(uint16(8 + len(ace)))
	acl.u16(1)
	acl.u16(0)
	acl.bytes(ace)
	var b le
	b.u8(1)
	b.u8(0)
	b.u16(0x8004) // SE_SELF_RELATIVE | SE_DACL_PRESENT
	owner := 20
	group := owner + len(sidAdmins)
	dacl := group + len(sidAdmins)
	b.u32(uint32(owner))
	b.u32(uint32(group))
	b.u32(0)
	b.u32(uint32(dacl))
	b.bytes(sidAdmins)
	b.bytes(sidAdmins)
	b.bytes(acl)
	return b
}
