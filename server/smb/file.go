package smb

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"io"
	"io/fs"
	"path"
	"slices"
	"time"

	"github.com/netdeploy/netdeploy/server/tracker"
)

// open is an open file, directory or pipe ([MS-SMB2] 3.3.1.10 Open).
type open struct {
	id     fileID
	sess   *session
	tree   *tree
	name   string // FS name ("." for the root)
	f      File
	info   fs.FileInfo
	access uint32
	pipe   *pipe

	// Directory enumeration (QUERY_DIRECTORY).
	dirList    []dirEntry
	dirPos     int
	dirPattern string
	dirStarted bool

	// Read progress, for events.
	bytesRead    int64
	lastProgress time.Time
	reported     bool
}

func (o *open) isDir() bool { return o.info != nil && o.info.IsDir() }

// close releases the file and reports a completed transfer.
func (o *open) close(c *conn) {
	if o.f != nil {
		o.f.Close()
		o.f = nil
	}
	if o.pipe != nil {
		o.pipe.close()
	}
	if o.reported && o.info != nil && !o.isDir() {
		size := o.info.Size()
		if o.bytesRead >= size {
			c.event(tracker.Event{Event: tracker.KindDone, File: o.name, Bytes: size, Total: size})
		} else {
			c.event(tracker.Event{Event: tracker.KindProgress, File: o.name, Bytes: o.bytesRead, Total: size,
				Detail: "closed before the end"})
		}
	}
}

// CREATE ([MS-SMB2] 2.2.13, 2.2.14).
const (
	dispSupersede   = 0
	dispOpen        = 1
	dispCreate      = 2
	dispOpenIf      = 3
	dispOverwrite   = 4
	dispOverwriteIf = 5

	optDirectoryFile    = 0x00000001
	optNonDirectoryFile = 0x00000040
	optDeleteOnClose    = 0x00001000
	optOpenByFileID     = 0x00002000

	actionOpened = 1

	// Access rights that modify ([MS-SMB2] 2.2.13.1.1).
	accessWrite = 0x00000002 | 0x00000004 | 0x00000010 | 0x00000040 | 0x00000100 |
		0x00010000 | 0x00040000 | 0x00080000 | 0x40000000 | 0x10000000
	accessReadData     = 0x00000001
	accessGenericRead  = 0x80000000
	accessMaxAllowed   = 0x02000000
	accessGenericAll   = 0x10000000
	accessGenericExec  = 0x20000000
	attrReadonly       = 0x00000001
	attrDirectory      = 0x00000010
	attrArchive        = 0x00000020
	attrNormal         = 0x00000080
	createRequestFixed = 56
)

// create opens an existing file or directory ([MS-SMB2] 3.3.5.9).
// Shares are read-only: anything that would write fails with
// STATUS_ACCESS_DENIED.
func (c *conn) create(r *request, w *response) (Status, error) {
	b := r.body()
	if len(b) < createRequestFixed || binary.LittleEndian.Uint16(b) != 57 {
		return StatusInvalidParameter, nil
	}
	access := binary.LittleEndian.Uint32(b[24:])
	disp := binary.LittleEndian.Uint32(b[36:])
	opts := binary.LittleEndian.Uint32(b[40:])
	nameRaw, ok := sub(r.msg, uint64(binary.LittleEndian.Uint16(b[44:])), uint64(binary.LittleEndian.Uint16(b[46:])))
	if !ok {
		return StatusInvalidParameter, nil
	}
	if _, ok := sub(r.msg, uint64(binary.LittleEndian.Uint32(b[48:])), uint64(binary.LittleEndian.Uint32(b[52:]))); !ok {
		return StatusInvalidParameter, nil
	}
	smbName, ok := fromUTF16(nameRaw)
	if !ok {
		return StatusObjectNameInvalid, nil
	}
	if disp > dispOverwriteIf {
		return StatusInvalidParameter, nil
	}
	if r.tree.share.ipc {
		return c.createPipe(r, w, smbName, access)
	}
	if opts&optOpenByFileID != 0 {
		return StatusNotSupported, nil
	}
	if access&accessWrite != 0 || opts&optDeleteOnClose != 0 {
		return StatusAccessDenied, nil
	}
	switch disp {
	case dispOpen, dispOpenIf:
	default:
		return StatusAccessDenied, nil
	}
	name, st := resolve(smbName)
	if st != StatusSuccess {
		c.log.Info("smb refused path", "path", smbName, "status", st.Error())
		return st, nil
	}
	if len(c.opens) >= MaxOpens {
		return StatusTooManyOpenedFiles, nil
	}
	fsys := r.tree.share.fs
	f, err := fsys.Open(name)
	if err != nil {
		st := fsStatus(err)
		if st == StatusObjectNameNotFound && disp == dispOpenIf {
			return StatusAccessDenied, nil // cannot create on a read-only share
		}
		if st == StatusObjectNameNotFound && path.Dir(name) != "." {
			if _, err := fsys.Stat(path.Dir(name)); err != nil {
				st = StatusObjectPathNotFound
			}
		}
		if st == StatusAccessDenied {
			c.log.Info("smb refused path", "path", smbName, "err", err)
		}
		return st, nil
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return StatusAccessDenied, nil
	}
	if !info.IsDir() && !info.Mode().IsRegular() {
		f.Close()
		return StatusAccessDenied, nil
	}
	if info.IsDir() && opts&optNonDirectoryFile != 0 {
		f.Close()
		return StatusFileIsADirectory, nil
	}
	if !info.IsDir() && opts&optDirectoryFile != 0 {
		f.Close()
		return StatusNotADirectory, nil
	}
	c.nextFile++
	o := &open{id: fileID{c.nextFile, c.nextFile}, sess: r.sess, tree: r.tree, name: name, f: f, info: info, access: access}
	c.opens[o.id.Volatile] = o
	w.fid, w.hasFID = o.id, true
	// Response ([MS-SMB2] 2.2.14).
	w.buf.u16(89)
	w.buf.u8(0) // OplockLevel: none
	w.buf.u8(0)
	w.buf.u32(actionOpened)
	putTimes(&w.buf, info)
	w.buf.u64(allocSize(info))
	w.buf.u64(endOfFile(info))
	w.buf.u32(attributes(info))
	w.buf.u32(0)
	w.buf.fid(o.id)
	w.buf.u32(0) // no create contexts
	w.buf.u32(0)
	if !info.IsDir() {
		o.reported = true
		c.event(tracker.Event{Event: tracker.KindStart, File: name, Total: info.Size()})
	}
	return StatusSuccess, nil
}

// lookupOpen finds the open named by the FileId at off in the body.
func (c *conn) lookupOpen(r *request, off int) (*open, Status) {
	fid, ok := r.fileID(off)
	if !ok {
		return nil, StatusInvalidParameter
	}
	o := c.opens[fid.Volatile]
	if o == nil || o.id != fid || o.sess != r.sess {
		return nil, StatusFileClosed
	}
	if o.tree != r.tree {
		return nil, StatusFileClosed
	}
	return o, StatusSuccess
}

// closeFile ([MS-SMB2] 2.2.15, 2.2.16, 3.3.5.10).
func (c *conn) closeFile(r *request, w *response) (Status, error) {
	b := r.body()
	if len(b) < 24 || binary.LittleEndian.Uint16(b) != 24 {
		return StatusInvalidParameter, nil
	}
	o, st := c.lookupOpen(r, 8)
	if st != StatusSuccess {
		return st, nil
	}
	flags := binary.LittleEndian.Uint16(b[2:])
	o.close(c)
	delete(c.opens, o.id.Volatile)
	w.fid, w.hasFID = o.id, true
	w.buf.u16(60)
	w.buf.u16(flags & 1)
	w.buf.u32(0)
	if flags&1 != 0 && o.info != nil {
		putTimes(&w.buf, o.info)
		w.buf.u64(allocSize(o.info))
		w.buf.u64(endOfFile(o.info))
		w.buf.u32(attributes(o.info))
	} else {
		w.buf.zero(52)
	}
	return StatusSuccess, nil
}

// read ([MS-SMB2] 2.2.19, 2.2.20, 3.3.5.12).
func (c *conn) read(r *request, w *response) (Status, error) {
	b := r.body()
	if len(b) < 48 || binary.LittleEndian.Uint16(b) != 49 {
		return StatusInvalidParameter, nil
	}
	length := binary.LittleEndian.Uint32(b[4:])
	offset := binary.LittleEndian.Uint64(b[8:])
	minCount := binary.LittleEndian.Uint32(b[32:])
	if !c.chargeCovers(r.h, uint64(length)) {
		return StatusInvalidParameter, nil
	}
	maxRead := uint32(maxReadSize)
	if c.dialect == dialect202 {
		maxRead = 65536
	}
	if length > maxRead {
		return StatusInvalidParameter, nil
	}
	o, st := c.lookupOpen(r, 16)
	if st != StatusSuccess {
		return st, nil
	}
	if o.pipe != nil {
		return c.readPipe(o, w, length)
	}
	if o.isDir() || o.f == nil {
		return StatusInvalidDeviceRequest, nil
	}
	if o.access&(accessReadData|accessGenericRead|accessMaxAllowed|accessGenericAll|accessGenericExec) == 0 {
		return StatusAccessDenied, nil
	}
	if offset > 1<<62 {
		return StatusInvalidParameter, nil
	}
	size := o.info.Size()
	if int64(offset) >= size && length > 0 {
		return StatusEndOfFile, nil
	}
	n := int(min(uint64(length), uint64(size)-offset))
	const dataOff = headerLen + 16
	w.buf.u16(17)
	w.buf.u8(dataOff)
	w.buf.u8(0)
	lenPos := len(w.buf)
	w.buf.u32(0)
	w.buf.u32(0)
	w.buf.u32(0)
	if c.chainRead+int64(n) > maxReadSize {
		return StatusInsufficientResources, nil
	}
	c.chainRead += int64(n)
	start := len(w.buf)
	c.srv.takeBuffer(int64(n))
	w.budget += int64(n)
	// Large reads reuse pooled buffers (8 MiB each would otherwise be
	// allocated per READ); the message handler returns them after the
	// write. ReadAt fills the data: no zeroing pass, no copy.
	if n >= pooledRead {
		bp := c.srv.getReadBuf(start + n)
		copy(*bp, w.buf[:start])
		w.buf = (*bp)[:start+n]
		w.pooled = append(w.pooled, bp)
	} else {
		w.buf = slices.Grow(w.buf, n)[:start+n]
	}
	got, err := o.f.ReadAt(w.buf[start:], int64(offset))
	if err != nil && !errors.Is(err, io.EOF) {
		c.log.Warn("smb read failed", "file", o.name, "err", err)
		return StatusInternalError, nil
	}
	if got < int(minCount) {
		return StatusEndOfFile, nil
	}
	w.buf = w.buf[:start+got]
	w.buf.at32(lenPos, uint32(got))
	c.readProgress(o, int64(got))
	return StatusSuccess, nil
}

// readProgress reports reading progress at most every 250 ms.
func (c *conn) readProgress(o *open, n int64) {
	o.bytesRead += n
	now := time.Now()
	size := o.info.Size()
	if now.Sub(o.lastProgress) >= 250*time.Millisecond && o.bytesRead < size {
		o.lastProgress = now
		c.event(tracker.Event{Event: tracker.KindProgress, File: o.name, Bytes: o.bytesRead, Total: size})
	}
}

// write ([MS-SMB2] 3.3.5.13): pipes only, the shares are read-only.
func (c *conn) write(r *request, w *response) (Status, error) {
	b := r.body()
	if len(b) < 48 || binary.LittleEndian.Uint16(b) != 49 {
		return StatusInvalidParameter, nil
	}
	data, ok := sub(r.msg, uint64(binary.LittleEndian.Uint16(b[2:])), uint64(binary.LittleEndian.Uint32(b[4:])))
	if !ok || !c.chargeCovers(r.h, uint64(len(data))) {
		return StatusInvalidParameter, nil
	}
	o, st := c.lookupOpen(r, 16)
	if st != StatusSuccess {
		return st, nil
	}
	if o.pipe == nil {
		return StatusAccessDenied, nil
	}
	return c.writePipe(o, w, data)
}

// File attributes and times from fs.FileInfo ([MS-FSCC] 2.6).
func attributes(fi fs.FileInfo) uint32 {
	a := uint32(attrReadonly)
	if fi.IsDir() {
		a |= attrDirectory
	} else {
		a |= attrArchive
	}
	return a
}

func endOfFile(fi fs.FileInfo) uint64 {
	if fi.IsDir() {
		return 0
	}
	return uint64(fi.Size())
}

func allocSize(fi fs.FileInfo) uint64 {
	if fi.IsDir() {
		return 0
	}
	return (uint64(fi.Size()) + 4095) &^ 4095
}

// putTimes writes CreationTime, LastAccessTime, LastWriteTime and
// ChangeTime; only the modification time is known portably.
func putTimes(b *le, fi fs.FileInfo) {
	t := filetime(fi.ModTime())
	b.u64(t)
	b.u64(t)
	b.u64(t)
	b.u64(t)
}

// fileIndex is a stable 64-bit id for a name (FileInternalInformation).
func fileIndex(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64() >> 1
}
