package imaging

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// put writes a file under dir, making its directories.
func put(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func scan(t *testing.T, c *Catalog) ([]Image, []Problem) {
	t.Helper()
	list, problems, err := c.Scan()
	if err != nil {
		t.Fatal(err)
	}
	return list, problems
}

func files(list []Image) string {
	var s []string
	for _, im := range list {
		s = append(s, fmt.Sprintf("%s#%d", im.File, im.Index))
	}
	return strings.Join(s, " ")
}

func problemFiles(problems []Problem) string {
	var s []string
	for _, p := range problems {
		s = append(s, p.File)
	}
	return strings.Join(s, " ")
}

func problemFor(problems []Problem, file string) error {
	for _, p := range problems {
		if p.File == file {
			return p.Err
		}
	}
	return nil
}

func TestCatalog(t *testing.T) {
	dir := t.TempDir()
	wim := readTwoWIM(t)
	put(t, dir, "a.img", make([]byte, 1000))
	put(t, dir, "a.img.json", []byte(`{"name": "Alpha", "description": "lab disk", "arch": "amd64", "size": 1000,
		"sha256": "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", "target_disk": "0"}`))
	put(t, dir, "b.img.zst", make([]byte, 50))
	put(t, dir, "c.img.gz", make([]byte, 60))
	put(t, dir, "c.img.gz.json", []byte(`{"name": "Charlie", "colour": "red"}`))
	put(t, dir, "d.img", make([]byte, 70))
	put(t, dir, "d.img.json", []byte(`{"size": 71}`)) // an uncompressed image's size is its file's
	put(t, dir, "e.img.zst", make([]byte, 80))
	put(t, dir, "e.img.zst.json", []byte(`{"size": 8000, "arch": "arm64"}`))
	put(t, dir, "win/two.wim", wim)
	put(t, dir, "win/two.wim.json", []byte(`{}`))
	put(t, dir, "win/broken.wim", []byte("not a wim"))
	put(t, dir, "win/deep/y.IMG", make([]byte, 5))
	put(t, dir, "lonely.img.json", []byte(`{}`))
	put(t, dir, ".hidden.img", make([]byte, 5))
	put(t, dir, ".partial/z.img", make([]byte, 5))
	put(t, dir, "notes.txt", []byte("x"))
	put(t, dir, `back\slash.img`, []byte("x"))
	os.Mkdir(filepath.Join(dir, "dir.img"), 0o755)

	c := &Catalog{Dir: dir}
	list, problems := scan(t, c)
	if got, want := files(list), "a.img#1 b.img.zst#1 c.img.gz#1 d.img#1 e.img.zst#1 win/deep/y.IMG#1 win/two.wim#1 win/two.wim#2"; got != want {
		t.Errorf("files = %s\nwant    %s", got, want)
	}
	if got, want := problemFiles(problems), `back\slash.img c.img.gz.json d.img.json lonely.img.json win/broken.wim win/two.wim.json`; got != want {
		t.Errorf("problems = %s\nwant       %s\n%v", got, want, problems)
	}
	byFile := map[string]Image{}
	for _, im := range list {
		byFile[fmt.Sprintf("%s#%d", im.File, im.Index)] = im
	}
	for key, want := range map[string]Image{
		"a.img#1": {Name: "Alpha", Description: "lab disk", Arch: "amd64", Size: 1000, Index: 1, File: "a.img", Path: "a.img", Kind: "raw",
			SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", FileSize: 1000, TargetDisk: "0"},
		"b.img.zst#1":      {Name: "b.img.zst", Size: 50, Index: 1, File: "b.img.zst", Path: "b.img.zst", Kind: "raw", Compression: "zstd", FileSize: 50},
		"c.img.gz#1":       {Name: "c.img.gz", Size: 60, Index: 1, File: "c.img.gz", Path: "c.img.gz", Kind: "raw", Compression: "gzip", FileSize: 60},
		"d.img#1":          {Name: "d.img", Size: 70, Index: 1, File: "d.img", Path: "d.img", Kind: "raw", FileSize: 70},
		"e.img.zst#1":      {Name: "e.img.zst", Arch: "arm64", Size: 8000, Index: 1, File: "e.img.zst", Path: "e.img.zst", Kind: "raw", Compression: "zstd", FileSize: 80},
		"win/deep/y.IMG#1": {Name: "y.IMG", Size: 5, Index: 1, File: "win/deep/y.IMG", Path: `win\deep\y.IMG`, Kind: "raw", Group: "win", FileSize: 5},
		"win/two.wim#1": {Name: "Lab Windows", Description: "first image", Arch: "amd64", Size: 12, Index: 1, File: "win/two.wim", Path: `win\two.wim`,
			Kind: "wim", Group: "win", FileSize: int64(len(wim))},
		"win/two.wim#2": {Name: "Second", Description: "second image", Arch: "arm64", Size: 7, Index: 2, File: "win/two.wim", Path: `win\two.wim`,
			Kind: "wim", Group: "win", FileSize: int64(len(wim))},
	} {
		if got := byFile[key]; got != want {
			t.Errorf("%s =\n %+v\nwant\n %+v", key, got, want)
		}
	}

	var me *ManifestError
	if err := problemFor(problems, "c.img.gz.json"); !errors.As(err, &me) || me.Field != "colour" || !errors.Is(err, ErrUnknownField) ||
		!strings.Contains(err.Error(), `manifest c.img.gz.json: field "colour": unknown field`) {
		t.Errorf("c.img.gz.json: %v", err)
	}
	if err := problemFor(problems, "d.img.json"); !errors.As(err, &me) || me.Field != "size" || !strings.Contains(err.Error(), "71 bytes, but the uncompressed image file has 70") {
		t.Errorf("d.img.json: %v", err)
	}
	if err := problemFor(problems, "lonely.img.json"); !errors.Is(err, ErrLonelyManifest) || !strings.Contains(err.Error(), "no lonely.img beside it") {
		t.Errorf("lonely.img.json: %v", err)
	}
	if err := problemFor(problems, "win/two.wim.json"); !strings.Contains(fmt.Sprint(err), "raw images only") {
		t.Errorf("win/two.wim.json: %v", err)
	}
	var we *WIMError
	if err := problemFor(problems, "win/broken.wim"); !errors.As(err, &we) || !errors.Is(err, ErrNotWIM) {
		t.Errorf("win/broken.wim: %v", err)
	}
	if p := problems[0].Error(); !strings.HasPrefix(p, `back\slash.img: skipped`) {
		t.Errorf("problem text %q", p)
	}

	if got, want := c.Summary(), "8 images, 9.0KiB, 6 problems"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
	if l2, err := c.List(); err != nil || files(l2) != files(list) {
		t.Errorf("List = %s, %v", files(l2), err)
	}
}

// TestCatalogChanges: files added, changed and removed between calls show
// at the next call, and only changed files are parsed again.
func TestCatalogChanges(t *testing.T) {
	dir := t.TempDir()
	c := &Catalog{Dir: dir}
	reads := func() int { c.mu.Lock(); defer c.mu.Unlock(); return c.reads }

	put(t, dir, "a.img", []byte("a"))
	list, _ := scan(t, c)
	if files(list) != "a.img#1" {
		t.Fatalf("first list %s", files(list))
	}

	put(t, dir, "g/two.wim", readTwoWIM(t))
	put(t, dir, "a.img.json", []byte(`{"name": "First"}`))
	list, _ = scan(t, c)
	if files(list) != "a.img#1 g/two.wim#1 g/two.wim#2" || list[0].Name != "First" {
		t.Fatalf("after adding: %s %+v", files(list), list)
	}
	if reads() != 2 {
		t.Errorf("reads = %d after parsing one WIM and one manifest", reads())
	}
	for range 3 {
		scan(t, c)
	}
	if reads() != 2 {
		t.Errorf("reads = %d: unchanged files parsed again", reads())
	}

	put(t, dir, "a.img.json", []byte(`{"name": "Renamed"}`)) // rewritten: a new change time
	list, _ = scan(t, c)
	if list[0].Name != "Renamed" || reads() != 3 {
		t.Errorf("after rewriting the manifest: %q, %d reads", list[0].Name, reads())
	}

	if err := os.Remove(filepath.Join(dir, "g", "two.wim")); err != nil {
		t.Fatal(err)
	}
	put(t, dir, "g/two.wim", []byte("now broken")) // replaced, different size
	list, problems := scan(t, c)
	if files(list) != "a.img#1" || problemFiles(problems) != "g/two.wim" {
		t.Errorf("after breaking the WIM: %s, problems %v", files(list), problems)
	}

	os.Remove(filepath.Join(dir, "g", "two.wim"))
	os.Remove(filepath.Join(dir, "a.img.json"))
	list, problems = scan(t, c)
	if files(list) != "a.img#1" || list[0].Name != "a.img" || len(problems) != 0 {
		t.Errorf("after removing: %s %+v %v", files(list), list, problems)
	}
	c.mu.Lock()
	cached := len(c.cache)
	c.mu.Unlock()
	if cached != 0 {
		t.Errorf("%d cache entries for removed files", cached)
	}

	os.RemoveAll(dir)
	if list, problems, err := c.Scan(); err != nil || list != nil || problems != nil {
		t.Errorf("missing dir: %v %v %v", list, problems, err)
	}
	if got := c.Summary(); got != "none in "+filepath.Base(dir) {
		t.Errorf("summary of a missing dir: %q", got)
	}
	if _, err := (&Catalog{}).List(); err == nil || !strings.HasPrefix(err.Error(), "imaging: ") {
		t.Errorf("no Dir: %v", err)
	}
}

// TestCatalogSymlinks: links to files inside the store are followed, links
// leading outside or nowhere are skipped and reported, links to
// directories are not followed.
func TestCatalogSymlinks(t *testing.T) {
	outside := t.TempDir()
	put(t, outside, "secret.img", make([]byte, 10))
	put(t, outside, "secret.wim", readTwoWIM(t))
	put(t, outside, "sub/x.img", make([]byte, 10))
	dir := t.TempDir()
	put(t, dir, "a.img", make([]byte, 3))
	put(t, dir, "sub/b.wim", readTwoWIM(t))
	for link, target := range map[string]string{
		"out.img":       filepath.Join(outside, "secret.img"),
		"out.wim":       filepath.Join(outside, "secret.wim"),
		"rel.img":       "../" + filepath.Base(outside) + "/secret.img",
		"sub/up.img":    "../../" + filepath.Base(outside) + "/secret.img",
		"outdir":        filepath.Join(outside, "sub"),
		"dangling.img":  "nothing.img",
		"in.img":        "a.img",
		"sub/alias.wim": "b.wim",
		"sub/up2.img":   "../a.img",
		"loop":          ".",
	} {
		if err := os.Symlink(target, filepath.Join(dir, filepath.FromSlash(link))); err != nil {
			t.Fatal(err)
		}
	}
	c := &Catalog{Dir: dir}
	list, problems := scan(t, c)
	if got, want := files(list), "a.img#1 in.img#1 sub/alias.wim#1 sub/alias.wim#2 sub/b.wim#1 sub/b.wim#2 sub/up2.img#1"; got != want {
		t.Errorf("files = %s\nwant    %s", got, want)
	}
	if got, want := problemFiles(problems), "dangling.img out.img out.wim rel.img sub/up.img"; got != want {
		t.Errorf("problems = %s, want %s", got, want)
	}
	for _, p := range problems {
		if !strings.Contains(p.Error(), "skipped: symbolic link leading outside the store or nowhere") {
			t.Errorf("problem %v", p)
		}
	}
	for _, im := range list {
		if im.File == "in.img" && (im.Name != "in.img" || im.FileSize != 3) {
			t.Errorf("in.img = %+v", im)
		}
	}
}

// TestCatalogConcurrent runs Scans side by side while files come and go
// (go test -race checks the locking).
func TestCatalogConcurrent(t *testing.T) {
	dir := t.TempDir()
	wim := readTwoWIM(t)
	put(t, dir, "base.wim", wim)
	c := &Catalog{Dir: dir}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				list, err := c.List()
				if err != nil {
					t.Error(err)
					return
				}
				if len(list) < 2 {
					t.Errorf("goroutine %d call %d: %s", g, i, files(list))
					return
				}
				c.Summary()
			}
		}()
	}
	for i := range 20 {
		name := filepath.Join(dir, fmt.Sprintf("w%d.wim", i%4))
		if i%2 == 0 {
			os.WriteFile(name, wim, 0o644)
		} else {
			os.Remove(name)
		}
	}
	wg.Wait()
}
