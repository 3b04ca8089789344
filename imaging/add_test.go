package imaging

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// testImage returns n bytes of half-compressible data and their sha256.
func testImage(n int) ([]byte, string) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, n)
	for i := range data {
		if i%2 == 0 {
			data[i] = byte(rng.IntN(256))
		}
	}
	sum := sha256.Sum256(data)
	return data, hex.EncodeToString(sum[:])
}

func zstdBytes(t *testing.T, data []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(data, nil)
}

func gzipBytes(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	z := gzip.NewWriter(&buf)
	if _, err := z.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// onlyFiles lists dir's entries by name.
func onlyFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestAddRawImages(t *testing.T) {
	data, want := testImage(3<<20 + 12345)
	for _, tc := range []struct {
		file, compression string
		content           func(*testing.T, []byte) []byte
	}{
		{"disk.img", "", func(_ *testing.T, b []byte) []byte { return b }},
		{"disk.IMG.zst", "zstd", zstdBytes},
		{"disk.img.gz", "gzip", gzipBytes},
	} {
		t.Run(tc.file, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, tc.file)
			content := tc.content(t, data)
			if err := os.WriteFile(p, content, 0o644); err != nil {
				t.Fatal(err)
			}
			var calls int
			var last [2]int64
			res, err := Add(p, AddOptions{
				Name: "Lab image", Description: "line one\nline two", Arch: "amd64", TargetDisk: "nvme0n1",
				Progress: func(done, total int64) {
					if done < last[0] || done > total {
						t.Errorf("progress %d/%d after %d", done, total, last[0])
					}
					calls++
					last = [2]int64{done, total}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			if calls < 2 || last != [2]int64{int64(len(content)), int64(len(content))} {
				t.Errorf("progress: %d calls, last %v, want >= 2 calls ending at %d", calls, last, len(content))
			}
			if res.ManifestPath != p+".json" || res.Compression != tc.compression || res.FileSize != int64(len(content)) || res.Replaced {
				t.Errorf("result %+v", res)
			}
			wantMan := Manifest{Name: "Lab image", Description: "line one\nline two", Arch: "amd64", Size: int64(len(data)), SHA256: want, TargetDisk: "nvme0n1"}
			if res.Manifest != wantMan {
				t.Errorf("manifest %+v, want %+v", res.Manifest, wantMan)
			}
			raw, err := os.ReadFile(p + ".json")
			if err != nil {
				t.Fatal(err)
			}
			m, err := ParseManifest(tc.file+".json", raw)
			if err != nil {
				t.Fatalf("written manifest does not parse: %v\n%s", err, raw)
			}
			if m != wantMan {
				t.Errorf("parsed back %+v, want %+v", m, wantMan)
			}
			if got := onlyFiles(t, dir); len(got) != 2 {
				t.Errorf("directory holds %v, want the image and its manifest only", got)
			}
			// The catalogue lists it with the manifest's values.
			list, problems, err := (&Catalog{Dir: dir}).Scan()
			if err != nil || len(problems) != 0 || len(list) != 1 {
				t.Fatalf("scan: %v %v %v", list, problems, err)
			}
			if im := list[0]; im.Name != "Lab image" || im.SHA256 != want || im.Size != int64(len(data)) || im.TargetDisk != "nvme0n1" {
				t.Errorf("catalogue %+v", im)
			}

			// Again, with fewer fields: replaced, and empty keys left out.
			res, err = Add(p, AddOptions{})
			if err != nil {
				t.Fatal(err)
			}
			raw, _ = os.ReadFile(p + ".json")
			if !res.Replaced || strings.Contains(string(raw), "name") || !strings.Contains(string(raw), want) {
				t.Errorf("second add: replaced %v, manifest %s", res.Replaced, raw)
			}
		})
	}
}

func TestAddRefuses(t *testing.T) {
	dir := t.TempDir()
	data, _ := testImage(1 << 20)
	z := zstdBytes(t, data)
	corrupt := append([]byte(nil), z...)
	for i := len(corrupt) / 2; i < len(corrupt)/2+64; i++ {
		corrupt[i] ^= 0x5a
	}
	g := gzipBytes(t, data)
	files := map[string][]byte{
		"bad.img.zst":       corrupt,
		"short.img.zst":     z[:len(z)/2],
		"trailing.img.zst":  append(append([]byte(nil), z...), "garbage"...),
		"bad.img.gz":        g[:len(g)-10],
		"notgzip.img.gz":    []byte("plain text, not gzip"),
		"install.wim":       []byte("MSWIM\x00\x00\x00"),
		"notes.txt":         []byte("hello"),
		"empty.img":         nil,
		"empty.img.gz":      gzipBytes(t, nil),
		"good.img":          data,
		"good-again.img.gz": g,
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		file string
		opts AddOptions
		want string
		is   error
	}{
		{file: "bad.img.zst", want: "zstd stream corrupt"},
		{file: "short.img.zst", want: "zstd stream corrupt"},
		{file: "trailing.img.zst", want: "zstd"},
		{file: "bad.img.gz", want: "gzip stream corrupt"},
		{file: "notgzip.img.gz", want: "gzip"},
		{file: "install.wim", is: ErrWIM},
		{file: "notes.txt", is: ErrNotRawImage},
		{file: "empty.img", want: "empty"},
		{file: "empty.img.gz", want: "empty"},
		{file: "missing.img", is: os.ErrNotExist},
		{file: "good.img", opts: AddOptions{Arch: "sparc"}, want: `"arch"`},
		{file: "good.img", opts: AddOptions{Name: "two\nlines"}, want: "control character"},
		{file: "good-again.img.gz", opts: AddOptions{TargetDisk: "\x1b"}, want: "target_disk"},
	} {
		p := filepath.Join(dir, tc.file)
		_, err := Add(p, tc.opts)
		if err == nil {
			t.Errorf("%s: accepted", tc.file)
			continue
		}
		if !strings.HasPrefix(err.Error(), "imaging: add "+p+": ") {
			t.Errorf("%s: error %q does not name the file", tc.file, err)
		}
		if tc.want != "" && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want %q in it", tc.file, err, tc.want)
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: error %q is not %v", tc.file, err, tc.is)
		}
	}
	for _, name := range onlyFiles(t, dir) {
		if strings.HasSuffix(name, ".json") || strings.Contains(name, ".tmp-") {
			t.Errorf("%s left behind by a refused add", name)
		}
	}
}

func TestAddDirectory(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "dir.img")
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Add(p, AddOptions{}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
}
