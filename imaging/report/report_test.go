package report

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func sample(i int) Record {
	start := time.Date(2026, 11, 26, 9, 0, i, 0, time.FixedZone("CET", 3600))
	r := Record{
		MAC: fmt.Sprintf("02:de:00:00:00:%02x", i), IP: fmt.Sprintf("198.18.0.%d", 100+i),
		Image: "win11.img.zst", SHA256: strings.Repeat("ab", 32),
		Start: start, End: start.Add(83 * time.Second), Bytes: 3 << 30, Result: ResultDone,
	}
	if i%2 == 1 {
		r.Result, r.Reason, r.Bytes = ResultFailed, "disk nvme0n1 not found", 1234
	}
	return r
}

func same(a, b Record) bool {
	return a.MAC == b.MAC && a.IP == b.IP && a.Image == b.Image && a.SHA256 == b.SHA256 &&
		a.Start.Equal(b.Start) && a.End.Equal(b.End) && a.Bytes == b.Bytes && a.Result == b.Result && a.Reason == b.Reason
}

func TestRoundTrip(t *testing.T) {
	p := Path(t.TempDir())
	j, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := j.Append(sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A second writer is refused while the first holds the journal.
	if j2, err := Open(p); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Open: %v", err)
		if j2 != nil {
			j2.Close()
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if err := j.Append(sample(9)); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("append after close: %v", err)
	}
	// Reopen and append more: the old records stay.
	j, err = Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(sample(3)); err != nil {
		t.Fatal(err)
	}
	j.Close()
	recs, skipped, err := Scan(p)
	if err != nil || skipped != 0 || len(recs) != 4 {
		t.Fatalf("scan: %d records, %d skipped, %v", len(recs), skipped, err)
	}
	for i, r := range recs {
		if !same(r, sample(i)) {
			t.Errorf("record %d: %+v, want %+v", i, r, sample(i))
		}
	}
	data, _ := os.ReadFile(p)
	if lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n"); len(lines) != 4 || !strings.HasPrefix(lines[1], `{"mac":"02:de:00:00:00:01",`) {
		t.Errorf("file:\n%s", data)
	}
}

func TestAppendRefuses(t *testing.T) {
	p := Path(t.TempDir())
	j, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	bad := sample(0)
	bad.Result = "ok"
	if err := j.Append(bad); err == nil || !strings.Contains(err.Error(), `result "ok"`) {
		t.Errorf("bad result: %v", err)
	}
	big := sample(1)
	big.Reason = strings.Repeat("x", MaxLine)
	if err := j.Append(big); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("huge record: %v", err)
	}
	if fi, _ := os.Stat(p); fi.Size() != 0 {
		t.Errorf("refused records wrote %d bytes", fi.Size())
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing", FileName)); err == nil || !strings.HasPrefix(err.Error(), "report: ") {
		t.Errorf("missing directory: %v", err)
	}
}

func TestTornLastLine(t *testing.T) {
	dir := t.TempDir()
	p := Path(dir)
	j, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := j.Append(sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	good, _ := os.ReadFile(p)

	// A crash cut the third record short.
	third := `{"mac":"02:de:00:00:00:02","ip":"198.18.0.102","image":"win`
	if err := os.WriteFile(p, append(append([]byte(nil), good...), third...), 0o644); err != nil {
		t.Fatal(err)
	}
	recs, skipped, err := Scan(p)
	if err != nil || skipped != 1 || len(recs) != 2 || !same(recs[1], sample(1)) {
		t.Fatalf("scan torn: %d records, %d skipped, %v", len(recs), skipped, err)
	}
	if recs, err := Read(p); err != nil || len(recs) != 2 {
		t.Fatalf("read torn: %d records, %v", len(recs), err)
	}
	// Open cuts the torn line off, so the next record starts on its own line.
	j, err = Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(sample(2)); err != nil {
		t.Fatal(err)
	}
	j.Close()
	recs, skipped, err = Scan(p)
	if err != nil || skipped != 0 || len(recs) != 3 || !same(recs[2], sample(2)) {
		t.Fatalf("after repair: %d records, %d skipped, %v", len(recs), skipped, err)
	}

	// A whole record missing only its newline is kept, by Scan and by Open.
	data, _ := os.ReadFile(p)
	if err := os.WriteFile(p, bytes.TrimSuffix(data, []byte("\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if recs, skipped, err := Scan(p); err != nil || skipped != 0 || len(recs) != 3 {
		t.Fatalf("no final newline: %d records, %d skipped, %v", len(recs), skipped, err)
	}
	j, err = Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(sample(3)); err != nil {
		t.Fatal(err)
	}
	j.Close()
	if recs, skipped, err := Scan(p); err != nil || skipped != 0 || len(recs) != 4 {
		t.Fatalf("after newline repair: %d records, %d skipped, %v", len(recs), skipped, err)
	}
}

func TestScanErrors(t *testing.T) {
	dir := t.TempDir()
	line, _ := os.ReadFile(writeOne(t, dir))
	for name, tc := range map[string]struct {
		content string
		want    string
	}{
		"bad middle line": {string(line) + "{not json\n" + string(line), "line 2: not a record"},
		"bad result":      {string(line) + `{"mac":"x","result":"maybe"}` + "\n", `line 2: result "maybe"`},
		"trailing data":   {`{"result":"done"}}` + "\n", "line 1: not a record: data after"},
		"long line":       {string(line) + `{"reason":"` + strings.Repeat("y", MaxLine) + `"}` + "\n", "line 2: longer than 65536 bytes"},
		"long torn line":  {string(line) + strings.Repeat("y", MaxLine+10), "line 2: longer than"},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err := Scan(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want %q naming the file", name, err, tc.want)
		}
	}
	if _, err := Read(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	// Blank lines are ignored.
	p := filepath.Join(dir, "blank")
	os.WriteFile(p, []byte("\n"+string(line)+"\n  \n"), 0o644)
	if recs, skipped, err := Scan(p); err != nil || skipped != 0 || len(recs) != 1 {
		t.Errorf("blank lines: %d, %d, %v", len(recs), skipped, err)
	}
}

func writeOne(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "one.jsonl")
	j, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.Append(sample(0)); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConcurrentAppends(t *testing.T) {
	p := Path(t.TempDir())
	j, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r := sample(i)
				r.MAC = fmt.Sprintf("02:00:00:00:%02x:%02x", w, i)
				r.Reason = strings.Repeat("z", 2000) // long enough to interleave if unsynchronised
				if err := j.Append(r); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	j.Close()
	recs, skipped, err := Scan(p)
	if err != nil || skipped != 0 || len(recs) != writers*each {
		t.Fatalf("%d records, %d skipped, %v; want %d", len(recs), skipped, err, writers*each)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		seen[r.MAC] = true
	}
	if len(seen) != writers*each {
		t.Errorf("%d distinct records, want %d", len(seen), writers*each)
	}
}

func TestWriteTableAndCSV(t *testing.T) {
	recs := []Record{sample(0), sample(1)}
	recs[1].Reason = "line one\nline two"
	var tb bytes.Buffer
	if err := WriteTable(&tb, recs); err != nil {
		t.Fatal(err)
	}
	want := `MAC                IP            IMAGE          RESULT  BYTES   DURATION  START                SHA256        REASON
02:de:00:00:00:00  198.18.0.100  win11.img.zst  done    3.0GiB  1:23      2026-11-26 09:00:00  abababababab  -
02:de:00:00:00:01  198.18.0.101  win11.img.zst  failed  1.2KiB  1:23      2026-11-26 09:00:01  abababababab  line one line two
`
	if tb.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", tb.String(), want)
	}

	var cb bytes.Buffer
	if err := WriteCSV(&cb, recs); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&cb).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || strings.Join(rows[0], ",") != "mac,ip,image,sha256,start,end,bytes,result,reason" {
		t.Fatalf("csv rows %q", rows)
	}
	if got := strings.Join(rows[2], "|"); got != "02:de:00:00:00:01|198.18.0.101|win11.img.zst|"+strings.Repeat("ab", 32)+"|2026-11-26T09:00:01+01:00|2026-11-26T09:01:24+01:00|1234|failed|line one\nline two" {
		t.Errorf("csv row %q", got)
	}
	if rows[1][6] != "3221225472" || rows[1][8] != "" {
		t.Errorf("csv row %q", rows[1])
	}
}
