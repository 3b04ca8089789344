// Package report is the deployment journal: one JSON line per finished
// deployment in data_dir/deployments.jsonl, appended and fsynced before
// Append returns, so a record that was acknowledged survives a crash.
//
// A crash in the middle of a write can leave a torn last line. Read skips
// it (Scan says how many lines it skipped), and Open repairs the file
// before appending to it: a torn line that is a whole record missing only
// its newline gets the newline; anything else after the last newline,
// which was never acknowledged, is cut off. A line longer than MaxLine is
// an error when reading and is refused by Append.
package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// FileName is the journal's name in data_dir.
const FileName = "deployments.jsonl"

// MaxLine caps one line of the journal, newline included.
const MaxLine = 64 << 10

// Results of a deployment.
const (
	ResultDone   = "done"
	ResultFailed = "failed"
)

// Path is the journal's path in dataDir.
func Path(dataDir string) string { return filepath.Join(dataDir, FileName) }

// Record is one deployment.
type Record struct {
	MAC    string    `json:"mac"`
	IP     string    `json:"ip"`
	Image  string    `json:"image"`
	SHA256 string    `json:"sha256"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Bytes  int64     `json:"bytes"`
	Result string    `json:"result"` // ResultDone or ResultFailed
	Reason string    `json:"reason,omitempty"`
}

// Validate checks what every record must have: Result done or failed, and
// no negative byte count.
func (r Record) Validate() error {
	if r.Result != ResultDone && r.Result != ResultFailed {
		return fmt.Errorf("result %q, want %q or %q", r.Result, ResultDone, ResultFailed)
	}
	if r.Bytes < 0 {
		return fmt.Errorf("bytes %d, want 0 or more", r.Bytes)
	}
	return nil
}

// Duration is End - Start, or 0 when either is missing.
func (r Record) Duration() time.Duration {
	if r.Start.IsZero() || r.End.IsZero() {
		return 0
	}
	return r.End.Sub(r.Start)
}

var (
	errInUse  = errors.New("in use by another process")
	errClosed = errors.New("journal closed")
)

// Journal appends records to a journal file. It is safe for concurrent
// use. A journal file has one writer: Open takes an exclusive lock on it
// (flock) and refuses a file that another Journal holds.
type Journal struct {
	path string
	mu   sync.Mutex
	f    *os.File // nil once closed
	size int64    // bytes acknowledged so far
}

// Open opens the journal at path for appending, creating it (mode 0644)
// if needed; the directory must exist. A torn last line is repaired as the
// package documentation says.
func Open(path string) (*Journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if err := lock(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("report: %s: %w", path, err)
	}
	size, err := repair(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("report: %s: %w", path, err)
	}
	return &Journal{path: path, f: f, size: size}, nil
}

// repair makes the file end with a newline (see the package
// documentation) and returns its size.
func repair(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("not a regular file (%v)", fi.Mode().Type())
	}
	size := fi.Size()
	if size == 0 {
		return 0, nil
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, size-1); err != nil {
		return 0, err
	}
	if last[0] == '\n' {
		return size, nil
	}
	// Find the start of the torn line.
	start, buf := size, make([]byte, 32<<10)
	for start > 0 {
		n := min(int64(len(buf)), start)
		chunk := buf[:n]
		if _, err := f.ReadAt(chunk, start-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			start = start - n + int64(i) + 1
			break
		}
		start -= n
	}
	if size-start < MaxLine {
		tail := make([]byte, size-start)
		if _, err := f.ReadAt(tail, start); err != nil {
			return 0, err
		}
		if _, err := decode(tail); err == nil { // a whole record: keep it
			if _, err := f.Write([]byte{'\n'}); err != nil {
				return 0, err
			}
			return size + 1, f.Sync()
		}
	}
	if err := f.Truncate(start); err != nil {
		return 0, err
	}
	return start, f.Sync()
}

// Append writes r as one line and fsyncs the file before returning. A
// record that does not validate, or whose line would exceed MaxLine, is
// refused. If the write fails the file is cut back to what it was, so a
// failed Append leaves no torn line.
func (j *Journal) Append(r Record) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("report: append: %w", err)
	}
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("report: append: %w", err)
	}
	line = append(line, '\n')
	if len(line) > MaxLine {
		return fmt.Errorf("report: append: record of %d bytes, at most %d", len(line), MaxLine)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return fmt.Errorf("report: append to %s: %w", j.path, errClosed)
	}
	if _, err := j.f.Write(line); err != nil {
		if terr := j.f.Truncate(j.size); terr != nil {
			err = errors.Join(err, terr)
		}
		return fmt.Errorf("report: append to %s: %w", j.path, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("report: append to %s: %w", j.path, err)
	}
	j.size += int64(len(line))
	return nil
}

// Close closes the journal (and releases its lock). Closing twice is
// harmless.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// Read returns the records of the journal at path, as Scan, without the
// count of skipped lines.
func Read(path string) ([]Record, error) {
	recs, _, err := Scan(path)
	return recs, err
}

// Scan returns the records of the journal at path in file order, and the
// number of lines skipped: a last line without its newline that is not a
// whole record (a write cut short by a crash, or in progress). Blank lines
// are ignored. A line longer than MaxLine, or any other line that is not a
// valid record, is an error naming the line. A missing file is an error
// (errors.Is fs.ErrNotExist).
func Scan(path string) ([]Record, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("report: %w", err)
	}
	defer f.Close()
	recs, skipped, err := scan(f)
	if err != nil {
		return nil, 0, fmt.Errorf("report: %s: %w", path, err)
	}
	return recs, skipped, nil
}

func scan(r io.Reader) ([]Record, int, error) {
	br := bufio.NewReaderSize(r, MaxLine)
	var recs []Record
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, 0, fmt.Errorf("line %d: longer than %d bytes", n, MaxLine)
		}
		if err == io.EOF {
			if len(bytes.TrimSpace(line)) == 0 {
				return recs, 0, nil
			}
			rec, derr := decode(line)
			if derr != nil {
				return recs, 1, nil // torn last line
			}
			return append(recs, rec), 0, nil
		}
		if err != nil {
			return nil, 0, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		rec, err := decode(line)
		if err != nil {
			return nil, 0, fmt.Errorf("line %d: %w", n, err)
		}
		recs = append(recs, rec)
	}
}

// decode parses one line: a JSON object that is a valid Record.
func decode(line []byte) (Record, error) {
	var rec Record
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&rec); err != nil {
		return Record{}, fmt.Errorf("not a record: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Record{}, errors.New("not a record: data after the JSON object")
	}
	if err := rec.Validate(); err != nil {
		return Record{}, err
	}
	return rec, nil
}
