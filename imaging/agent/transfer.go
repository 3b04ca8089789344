package agent

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	smb2 "github.com/hirochachacha/go-smb2"
	"github.com/klauspost/compress/zstd"

	"github.com/netdeploy/netdeploy/server/wds"
)

// target is the file or block device written.
type target struct {
	f      *os.File
	device bool
}

// openTarget opens path for writing: a block device in place (it must
// hold size bytes when size is known), anything else created or
// truncated.
func openTarget(path string, size int64) (*target, error) {
	if fi, err := os.Stat(path); err == nil && fi.Mode()&fs.ModeDevice != 0 && fi.Mode()&fs.ModeCharDevice == 0 {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("agent: target: %w", err)
		}
		end, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("agent: target %s: %w", path, err)
		}
		if size > 0 && end < size {
			f.Close()
			return nil, fmt.Errorf("agent: %w: %s holds %d bytes, the image has %d", ErrTargetSmall, path, end, size)
		}
		return &target{f: f, device: true}, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("agent: target: %w", err)
	}
	return &target{f: f}, nil
}

// applier copies one image onto the target.
type applier struct {
	s     *session
	im    imageInfo
	t     *target
	log   *slog.Logger
	every time.Duration

	written  int64     // uncompressed bytes written
	h        hash.Hash // of the written bytes
	lastSent time.Time
	started  bool // the first apply report went out
}

// run copies the image, retrying the SMB transfer when the connection
// fails: a raw image resumes where it stopped, a compressed one starts
// again from its beginning. It returns the hex SHA-256 of what it wrote
// and the byte count.
func (a *applier) run(ctx context.Context) (string, int64, error) {
	a.h = sha256.New()
	wait := smbBackoff
	for try := 1; ; try++ {
		err := a.attempt(ctx)
		if err == nil {
			break
		}
		if !retriable(err) || try == smbRetries || ctx.Err() != nil {
			return "", a.written, err
		}
		a.log.Warn("agent transfer interrupted; retrying", "path", a.im.Path, "try", try, "wait", wait, "written", a.written, "err", err)
		_ = a.s.logMsg(ctx, wds.MsgClientGenericMessage, fmt.Sprintf("transfer of %s interrupted after %d bytes (%v); retry %d in %v", a.im.Path, a.written, err, try, wait))
		select {
		case <-ctx.Done():
			return "", a.written, ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
	if a.im.Size > 0 && a.written != a.im.Size {
		return "", a.written, fmt.Errorf("agent: %s: %d bytes, the image has %d", a.im.Path, a.written, a.im.Size)
	}
	if a.im.Size == 0 {
		a.im.Size = a.written // the final report finishes the apply stage
	}
	if err := a.progress(ctx, true); err != nil {
		a.log.Warn("agent could not report progress", "err", err)
	}
	return hex.EncodeToString(a.h.Sum(nil)), a.written, nil
}

// syncBeat spaces the LOG_MSGs sent while the target syncs; the server's
// silent timeout is at least 10 s.
const syncBeat = 5 * time.Second

// sync flushes the target to its disk with a LOG_MSG every syncBeat
// meanwhile: a large write-back to a slow disk can take minutes, and a
// silent agent would be marked failed.
func (a *applier) sync(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- a.t.f.Sync() }()
	tick := time.NewTicker(syncBeat)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			if err := a.s.logMsg(ctx, wds.MsgClientGenericMessage, "writing the last bytes to the disk"); err != nil {
				a.log.Warn("agent could not report progress", "err", err)
			}
		}
	}
}

// progress sends an apply report, at most every a.every unless force.
func (a *applier) progress(ctx context.Context, force bool) error {
	if !force && (time.Since(a.lastSent) < a.every || (a.im.Size > 0 && a.written >= a.im.Size)) {
		return nil // the final report says the stage is done
	}
	a.lastSent = time.Now()
	r := wds.ApplyReport{Stage: wds.ApplyStageApply, Bytes: uint64(a.written), Total: uint64(max(a.im.Size, 0)), Image: a.im.Path}
	return a.s.report(ctx, wds.MsgClientGenericMessage, fmt.Sprintf("applying %s: %d of %d bytes", a.im.Path, a.written, a.im.Size), r)
}

// smbError marks an error of the SMB side (connection, logon, read), as
// opposed to the target's or the decompressor's.
type smbError struct{ err error }

func (e *smbError) Error() string { return e.err.Error() }
func (e *smbError) Unwrap() error { return e.err }

// retriable reports whether err is worth another SMB connection: a
// transport failure, not a refusal (no such file, access denied, logon
// failure) nor a local one.
func retriable(err error) bool {
	var se *smbError
	if !errors.As(err, &se) {
		return false
	}
	var re *smb2.ResponseError
	if errors.As(err, &re) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return false
	}
	return true
}

// attempt runs one SMB connection's worth of transfer.
func (a *applier) attempt(ctx context.Context) error {
	f, closeAll, err := a.openSMB(ctx)
	if err != nil {
		return err
	}
	defer closeAll()
	st, err := f.Stat()
	if err != nil {
		return &smbError{fmt.Errorf("agent: smb stat %s: %w", a.im.Path, err)}
	}
	size := st.Size()
	if !a.started {
		// The apply stage starts once the image is open on the share,
		// so the events read smb, then apply.
		a.started = true
		if err := a.progress(ctx, true); err != nil {
			a.log.Warn("agent could not report progress", "err", err)
		}
	}
	var src io.Reader
	switch a.im.Compression {
	case "":
		// Resume at the offset reached: raw bytes map one to one.
		if a.written > size {
			return fmt.Errorf("agent: %s shrank to %d bytes after %d were written", a.im.Path, size, a.written)
		}
		ra := newReadAhead(f, a.written, size-a.written, readChunk, readDepth)
		defer ra.Close()
		src = ra
	case "zstd", "gzip":
		// The stream starts again from its beginning.
		a.written = 0
		a.h.Reset()
		ra := newReadAhead(f, 0, size, readChunk, readDepth)
		defer ra.Close()
		sr := &smbReader{r: ra}
		if a.im.Compression == "zstd" {
			d, err := zstd.NewReader(sr, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<30))
			if err != nil {
				return a.streamErr(sr, err)
			}
			defer d.Close()
			src = d
		} else {
			z, err := gzip.NewReader(sr)
			if err != nil {
				return a.streamErr(sr, err)
			}
			defer z.Close()
			src = z
		}
		return a.streamErr(sr, a.copy(ctx, src))
	default:
		return fmt.Errorf("agent: %s: %w: compression %q", a.im.Path, ErrUnsupported, a.im.Compression)
	}
	sr := &smbReader{r: src}
	return a.streamErr(sr, a.copy(ctx, sr))
}

// streamErr attributes err to SMB when the reader under the
// decompressor failed.
func (a *applier) streamErr(sr *smbReader, err error) error {
	if err == nil {
		return nil
	}
	var ve *verifyError
	if errors.As(err, &ve) {
		return err // final, whatever the reader did
	}
	if sr.err != nil {
		return &smbError{fmt.Errorf("agent: smb read %s: %w", a.im.Path, sr.err)}
	}
	return fmt.Errorf("agent: %s: %w", a.im.Path, err)
}

// smbReader remembers the error its reader returned (other than EOF).
type smbReader struct {
	r   io.Reader
	err error
}

func (r *smbReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// chunkSize is the size of a write and of a check.
const chunkSize = 1 << 20

// readChunk is the size of an SMB READ (go-smb2 sends none larger than
// 1 MiB), readDepth how many are outstanding: variables for tests.
var readChunk, readDepth = 1 << 20, 4

// dialedSMB is called with each connection go-smb2 gets (tests).
var dialedSMB func(net.Conn)

// afterWrite is called after each write (tests).
var afterWrite func(written int64)

// copy writes src onto the target at a.written onwards, each chunk
// read back and hashed by a checker while the next is read and written.
func (a *applier) copy(ctx context.Context, src io.Reader) error {
	chk := newChecker(a.t.f, a.h, a.im.SHA256 != "", a.t.device, chunkSize)
	for {
		if err := ctx.Err(); err != nil {
			chk.wait()
			return err
		}
		buf := chk.buffer()
		n, rerr := io.ReadFull(src, buf)
		if n == 0 {
			chk.giveBack(buf)
		} else {
			if a.t.device && a.im.Size == 0 {
				// Unknown size on a device: stop at its end.
				if end, err := a.t.f.Seek(0, io.SeekEnd); err == nil && a.written+int64(n) > end {
					chk.wait()
					return fmt.Errorf("agent: %w: %s holds %d bytes", ErrTargetSmall, a.t.f.Name(), end)
				}
			}
			if _, err := a.t.f.WriteAt(buf[:n], a.written); err != nil {
				chk.wait()
				return fmt.Errorf("agent: write %s: %w", a.t.f.Name(), err)
			}
			if a.t.device {
				startWriteback(a.t.f, a.written, int64(n))
			}
			chk.add(buf[:n], a.written)
			a.written += int64(n)
			if afterWrite != nil {
				afterWrite(a.written)
			}
			if err := a.progress(ctx, false); err != nil {
				a.log.Warn("agent could not report progress", "err", err)
			}
		}
		switch {
		case chk.failed():
			return chk.wait()
		case rerr == nil:
		case errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF):
			return chk.wait()
		default:
			if err := chk.wait(); err != nil {
				return err
			}
			return rerr
		}
	}
}

// openSMB logs on to the server's images share and opens the image.
func (a *applier) openSMB(ctx context.Context) (*smb2.File, func(), error) {
	cfg := a.s.cfg
	port := cfg.SMBPort
	if port == 0 {
		port = 445
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(a.s.server, strconv.Itoa(port)))
	if err != nil {
		return nil, nil, &smbError{fmt.Errorf("agent: smb dial: %w", err)}
	}
	if a.im.SHA256 != "" {
		// The SHA-256 from the sealed RPC channel checks the bytes.
		conn = &unsignedReads{Conn: conn}
	}
	if dialedSMB != nil {
		dialedSMB(conn)
	}
	sd := &smb2.Dialer{Initiator: &smb2.NTLMInitiator{User: cfg.Account, Password: cfg.Password}}
	sess, err := sd.DialContext(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, nil, &smbError{fmt.Errorf("agent: smb logon: %w", err)}
	}
	share, err := sess.Mount(`\\` + a.s.server + `\images`)
	if err != nil {
		sess.Logoff()
		conn.Close()
		return nil, nil, &smbError{fmt.Errorf("agent: smb tree connect: %w", err)}
	}
	share = share.WithContext(ctx)
	f, err := share.Open(a.im.Path)
	if err != nil {
		share.Umount()
		sess.Logoff()
		conn.Close()
		return nil, nil, &smbError{fmt.Errorf("agent: smb open %s: %w", a.im.Path, err)}
	}
	return f, func() {
		f.Close()
		share.Umount()
		sess.Logoff()
		conn.Close()
	}, nil
}
