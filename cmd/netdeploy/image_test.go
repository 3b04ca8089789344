package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/netdeploy/netdeploy/imaging"
	"github.com/netdeploy/netdeploy/imaging/report"
)

// execCmd runs a command built by newImage or newReport with args and
// returns its standard output and error output.
func execCmd(t *testing.T, cmd *cobra.Command, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), errb.String(), err
}

func TestImageAddAndList(t *testing.T) {
	dataDir := t.TempDir()
	store := filepath.Join(dataDir, "images")
	if err := os.MkdirAll(filepath.Join(store, "lab"), 0o755); err != nil {
		t.Fatal(err)
	}
	raw := bytes.Repeat([]byte("netdeploy raw image "), 50000)
	sum := sha256.Sum256(raw)
	want := hex.EncodeToString(sum[:])
	var gz bytes.Buffer
	z := gzip.NewWriter(&gz)
	z.Write(raw)
	z.Close()
	img := filepath.Join(store, "lab", "ubuntu.img.gz")
	if err := os.WriteFile(img, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	// images_dir follows --data-dir, as in serve.
	out, errOut, err := execCmd(t, newImage(), "add", img, "--name", "Ubuntu 24.04", "--arch", "amd64",
		"--target-disk", "/dev/sda", "--description", "lab build", "--data-dir", dataDir)
	if err != nil {
		t.Fatalf("add: %v\n%s", err, errOut)
	}
	for _, s := range []string{
		"wrote " + img + ".json\n", "Ubuntu 24.04", "lab build", "amd64", "/dev/sda",
		"976.6KiB (1000000 bytes uncompressed)", want, "listed in the image store " + store + " as lab/ubuntu.img.gz",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("add output lacks %q:\n%s", s, out)
		}
	}
	// Not a terminal: no bar, one plain line at the end.
	if strings.Contains(errOut, "\r") || !strings.HasPrefix(errOut, "netdeploy: read "+img+" (") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("stderr %q", errOut)
	}

	// A WIM is refused with a usage error, and so is a missing --name.
	wim := filepath.Join(store, "install.wim")
	os.WriteFile(wim, []byte("MSWIM"), 0o644)
	_, _, err = execCmd(t, newImage(), "add", wim, "--name", "x", "--images-dir", store)
	var ue usageError
	if !errors.As(err, &ue) || !errors.Is(err, imaging.ErrWIM) {
		t.Errorf("wim: %v", err)
	}
	_, _, err = execCmd(t, newImage(), "add", img, "--images-dir", store)
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--name is required") {
		t.Errorf("no name: %v", err)
	}
	if _, _, err = execCmd(t, newImage(), "add", "--name", "x"); !errors.As(err, &ue) {
		t.Errorf("no file: %v", err)
	}

	// list: the raw image with its manifest, and the broken WIM as a problem.
	out, _, err = execCmd(t, newImage(), "list", "--images-dir", store)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "SHA256") {
		t.Errorf("header %q", lines[0])
	}
	if f := strings.Fields(lines[1]); len(f) != 7 || f[0]+" "+f[1] != "Ubuntu 24.04" || f[2] != "amd64" || f[3] != "976.6KiB" ||
		f[4] != "raw+gzip" || f[5] != "lab/ubuntu.img.gz" || f[6] != want[:12] {
		t.Errorf("row %q", lines[1])
	}
	if !strings.Contains(out, "\n1 problem:\n  install.wim: ") {
		t.Errorf("problems missing:\n%s", out)
	}

	out, _, err = execCmd(t, newImage(), "list", "--images-dir", store, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var doc imageListJSON
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if doc.ImagesDir != store || len(doc.Images) != 1 || doc.Images[0].SHA256 != want || doc.Images[0].TargetDisk != "/dev/sda" ||
		len(doc.Problems) != 1 || doc.Problems[0].File != "install.wim" {
		t.Errorf("json %+v", doc)
	}
}

func TestImageAddOutsideStore(t *testing.T) {
	store := t.TempDir()
	img := filepath.Join(t.TempDir(), "disk.img")
	os.WriteFile(img, []byte("0123456789"), 0o644)
	var out, errOut bytes.Buffer
	if err := runImageAdd(img, imaging.AddOptions{Name: "d"}, store, &out, &errOut, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "note: "+img+" is outside the image store "+store) {
		t.Errorf("output:\n%s", out.String())
	}
	if _, err := os.Stat(img + ".json"); err != nil {
		t.Error(err)
	}
	// Again: the manifest is replaced, and said so.
	out.Reset()
	if err := runImageAdd(img, imaging.AddOptions{Name: "d2"}, store, &out, &errOut, false); err != nil || !strings.HasPrefix(out.String(), "replaced "+img+".json\n") {
		t.Errorf("second add: %v\n%s", err, out.String())
	}
}

func TestImageListEmpty(t *testing.T) {
	var out bytes.Buffer
	dir := filepath.Join(t.TempDir(), "nothing")
	if err := runImageList(dir, false, &out); err != nil || out.String() != "no images in "+dir+" (the directory does not exist)\n" {
		t.Errorf("%v %q", err, out.String())
	}
	out.Reset()
	if err := runImageList(dir, true, &out); err != nil || !strings.Contains(out.String(), `"images": []`) || !strings.Contains(out.String(), `"problems": []`) {
		t.Errorf("%v %q", err, out.String())
	}
}

func TestImageProgressBar(t *testing.T) {
	if got := barLine(50<<20, 100<<20, 2*time.Second); got != "[###############...............]  50%  25.0 MiB/s  ETA 0:02" {
		t.Errorf("bar %q", got)
	}
	if got := barLine(0, 100<<20, 0); got != "[..............................]   0%  -- MiB/s  ETA --:--" {
		t.Errorf("bar %q", got)
	}
	var w bytes.Buffer
	clock := time.Unix(0, 0)
	p := &progressBar{w: &w, tty: true, now: func() time.Time { return clock }, start: clock}
	const total = 200 << 20
	p.update(10<<20, total)
	clock = clock.Add(50 * time.Millisecond)
	p.update(20<<20, total) // too soon: not drawn
	clock = clock.Add(time.Second)
	p.update(100<<20, total)
	p.update(total, total) // the end is always drawn
	p.clear()
	frames := strings.Count(w.String(), "\r[")
	if frames != 3 || !strings.Contains(w.String(), " 50% ") || !strings.HasSuffix(w.String(), "\r\x1b[K") {
		t.Errorf("%d frames: %q", frames, w.String())
	}
	// Small files and non-terminals get no bar.
	w.Reset()
	(&progressBar{w: &w, tty: true, now: time.Now}).update(1, 2)
	(&progressBar{w: &w, tty: false, now: time.Now}).update(total/2, total)
	if w.Len() != 0 {
		t.Errorf("unexpected bar %q", w.String())
	}
}

func TestReportCommand(t *testing.T) {
	dataDir := t.TempDir()
	// No journal yet.
	out, errOut, err := execCmd(t, newReport(), "--data-dir", dataDir)
	if err != nil || out != "" || !strings.Contains(errOut, "no deployments recorded yet") {
		t.Errorf("empty: %v %q %q", err, out, errOut)
	}

	j, err := report.Open(report.Path(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	recs := []report.Record{
		{MAC: "02:de:00:00:00:01", IP: "198.18.0.128", Image: "lab/ubuntu.img.gz", SHA256: strings.Repeat("0f", 32),
			Start: start, End: start.Add(95 * time.Second), Bytes: 5 << 30, Result: report.ResultDone},
		{MAC: "02:de:00:00:00:02", IP: "198.18.0.129", Image: "lab/ubuntu.img.gz",
			Start: start, End: start.Add(3 * time.Second), Bytes: 0, Result: report.ResultFailed, Reason: "no disk, found none"},
	}
	for _, r := range recs {
		if err := j.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	// A torn line after a crash.
	f, _ := os.OpenFile(report.Path(dataDir), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"mac":"02:de:00:00`)
	f.Close()

	out, errOut, err = execCmd(t, newReport(), "--data-dir", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	want := `MAC                IP            IMAGE              RESULT  BYTES   DURATION  START                SHA256        REASON
02:de:00:00:00:01  198.18.0.128  lab/ubuntu.img.gz  done    5.0GiB  1:35      2026-11-26 10:00:00  0f0f0f0f0f0f  -
02:de:00:00:00:02  198.18.0.129  lab/ubuntu.img.gz  failed  0B      0:03      2026-11-26 10:00:00  -             no disk, found none

2 deployments: 1 done, 1 failed
`
	if out != want {
		t.Errorf("table:\n%s\nwant:\n%s", out, want)
	}
	if !strings.Contains(errOut, "skipped 1 torn line at the end of "+report.Path(dataDir)) {
		t.Errorf("stderr %q", errOut)
	}

	out, _, err = execCmd(t, newReport(), "--data-dir", dataDir, "--csv")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0][0] != "mac" || rows[1][4] != "2026-11-26T10:00:00Z" || rows[1][6] != "5368709120" ||
		rows[2][7] != "failed" || rows[2][8] != "no disk, found none" {
		t.Errorf("csv %q", rows)
	}

	// A corrupt line in the middle is an error naming the file and line.
	os.WriteFile(report.Path(dataDir), []byte("garbage\n"), 0o644)
	if _, _, err := execCmd(t, newReport(), "--data-dir", dataDir); err == nil || !strings.Contains(err.Error(), "deployments.jsonl: line 1") {
		t.Errorf("corrupt: %v", err)
	}
	if _, _, err := execCmd(t, newReport(), "extra"); !errors.As(err, new(usageError)) {
		t.Errorf("extra argument: %v", err)
	}
}
