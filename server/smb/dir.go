package smb

import (
	"encoding/binary"
	"io/fs"
	"slices"
	"strings"
	"unicode"
)

// QUERY_DIRECTORY ([MS-SMB2] 2.2.33, 2.2.34, 3.3.5.18).
const (
	qdRestartScans      = 0x01
	qdReturnSingleEntry = 0x02
	qdIndexSpecified    = 0x04
	qdReopen            = 0x10
	queryDirectoryFixed = 32
	maxDirEntries       = 1 << 16 // entries read from one directory
)

// dirEntry is one directory entry being enumerated.
type dirEntry struct {
	name string
	info fs.FileInfo
	path string // FS name, for the file id
}

// queryDirectory enumerates a directory with a wildcard pattern.
func (c *conn) queryDirectory(r *request, w *response) (Status, error) {
	b := r.body()
	if len(b) < queryDirectoryFixed || binary.LittleEndian.Uint16(b) != 33 {
		return StatusInvalidParameter, nil
	}
	class, flags := b[2], b[3]
	patRaw, ok := sub(r.msg, uint64(binary.LittleEndian.Uint16(b[24:])), uint64(binary.LittleEndian.Uint16(b[26:])))
	if !ok {
		return StatusInvalidParameter, nil
	}
	outLen := binary.LittleEndian.Uint32(b[28:])
	if !c.chargeCovers(r.h, uint64(outLen)) || outLen > maxReadSize {
		return StatusInvalidParameter, nil
	}
	o, st := c.lookupOpen(r, 8)
	if st != StatusSuccess {
		return st, nil
	}
	if !o.isDir() || o.pipe != nil {
		return StatusInvalidParameter, nil
	}
	switch class {
	case fileDirectoryInformation, fileFullDirectoryInformation, fileBothDirectoryInformation,
		fileIDBothDirectoryInformation, fileIDFullDirectoryInformation, fileNamesInformation:
	default:
		return StatusInvalidInfoClass, nil
	}
	pattern, ok := fromUTF16(patRaw)
	if !ok || strings.ContainsAny(pattern, `\/:`) {
		return StatusObjectNameInvalid, nil
	}
	if pattern == "" {
		pattern = "*"
	}
	if !o.dirStarted || flags&(qdRestartScans|qdReopen) != 0 || (pattern != o.dirPattern && flags&qdIndexSpecified == 0 && o.dirPos == 0) {
		if err := c.loadDir(o, pattern); err != nil {
			return StatusAccessDenied, nil
		}
	}
	first := o.dirPos == 0
	var out le
	lastEntry := -1
	for o.dirPos < len(o.dirList) {
		e := o.dirList[o.dirPos]
		start := len(out)
		if start > 0 {
			out.align(8)
			start = len(out)
		}
		writeDirEntry(&out, class, e)
		if uint32(len(out)) > outLen {
			out = out[:start]
			break
		}
		if lastEntry >= 0 {
			binary.LittleEndian.PutUint32(out[lastEntry:], uint32(start-lastEntry))
		}
		lastEntry = start
		o.dirPos++
		if flags&qdReturnSingleEntry != 0 {
			break
		}
	}
	if lastEntry < 0 {
		if o.dirPos < len(o.dirList) {
			return StatusBufferOverflow, nil // INFO_LENGTH_MISMATCH in Windows for tiny buffers
		}
		if first {
			return StatusNoSuchFile, nil
		}
		return StatusNoMoreFiles, nil
	}
	w.buf.u16(9)
	w.buf.u16(headerLen + 8)
	w.buf.u32(uint32(len(out)))
	w.buf.bytes(out)
	return StatusSuccess, nil
}

// loadDir reads a directory's entries matching pattern, with "." and
// ".." first when they match.
func (c *conn) loadDir(o *open, pattern string) error {
	o.dirStarted, o.dirPos, o.dirPattern, o.dirList = true, 0, pattern, nil
	d, err := o.tree.share.fs.Open(o.name)
	if err != nil {
		return err
	}
	defer d.Close()
	ents, err := d.ReadDir(maxDirEntries)
	if err != nil && len(ents) == 0 && err.Error() != "EOF" {
		return err
	}
	for _, dot := range []string{".", ".."} {
		if wildcardMatch(pattern, dot) {
			o.dirList = append(o.dirList, dirEntry{name: dot, info: o.info, path: o.name})
		}
	}
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	for _, e := range ents {
		if !wildcardMatch(pattern, e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		p := e.Name()
		if o.name != "." {
			p = o.name + "/" + p
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			// Follow links inside the share; skip those that lead out.
			if info, err = o.tree.share.fs.Stat(p); err != nil {
				continue
			}
		}
		if !info.IsDir() && !info.Mode().IsRegular() {
			continue
		}
		o.dirList = append(o.dirList, dirEntry{name: e.Name(), info: info, path: p})
	}
	return nil
}

// writeDirEntry appends one entry of an information class ([MS-FSCC]
// 2.4.10, 2.4.14, 2.4.17, 2.4.18, 2.4.19, 2.4.28); NextEntryOffset is
// patched by the caller.
func writeDirEntry(b *le, class byte, e dirEntry) {
	name := utf16le(e.name)
	b.u32(0) // NextEntryOffset
	b.u32(0) // FileIndex
	if class == fileNamesInformation {
		b.u32(uint32(len(name)))
		b.bytes(name)
		return
	}
	putTimes(b, e.info)
	b.u64(endOfFile(e.info))
	b.u64(allocSize(e.info))
	b.u32(attributes(e.info))
	b.u32(uint32(len(name)))
	switch class {
	case fileFullDirectoryInformation:
		b.u32(0) // EaSize
	case fileIDFullDirectoryInformation:
		b.u32(0)
		b.u32(0)
		b.u64(fileIndex(e.path))
	case fileBothDirectoryInformation:
		b.u32(0)
		b.u8(0) // ShortNameLength
		b.u8(0)
		b.zero(24)
	case fileIDBothDirectoryInformation:
		b.u32(0)
		b.u8(0)
		b.u8(0)
		b.zero(24)
		b.u16(0)
		b.u64(fileIndex(e.path))
	}
	b.bytes(name)
}

// wildcardMatch matches a name against a Windows pattern ([MS-FSA]
// 2.1.4.4) without case: '*' any run, '?' one character, and the DOS
// forms '<' (DOS_STAR, taken as '*'), '>' (DOS_QM: one character or
// none) and '"' (DOS_DOT: a '.' or none). It runs in
// O(len(pattern) x len(name)).
func wildcardMatch(pattern, name string) bool {
	if pattern == "*" {
		return true
	}
	p := []rune(strings.Map(unicode.ToUpper, pattern))
	n := []rune(strings.Map(unicode.ToUpper, name))
	// m[j]: p[:i] matches n[:j].
	m := make([]bool, len(n)+1)
	next := make([]bool, len(n)+1)
	m[0] = true
	for _, pc := range p {
		clear(next)
		switch pc {
		case '*', '<':
			seen := false
			for j := range m {
				seen = seen || m[j]
				next[j] = seen
			}
		case '>', '"':
			for j := range m {
				if !m[j] {
					continue
				}
				next[j] = true // matches nothing
				if j < len(n) && (pc == '>' || n[j] == '.') {
					next[j+1] = true
				}
			}
		default:
			for j := range len(n) {
				if m[j] && (pc == '?' || n[j] == pc) {
					next[j+1] = true
				}
			}
		}
		m, next = next, m
	}
	return m[len(n)]
}
