package agent

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	wdsv1 "github.com/oiweiwei/go-msrpc/msrpc/wdsc/wdsrpcinterface/v1"

	"github.com/netdeploy/netdeploy/imaging"
	"github.com/netdeploy/netdeploy/server/dcerpc"
	"github.com/netdeploy/netdeploy/server/epm"
	"github.com/netdeploy/netdeploy/server/smb"
	"github.com/netdeploy/netdeploy/server/tracker"
	"github.com/netdeploy/netdeploy/server/wds"
)

const (
	testUser = "deploy"
	testPass = "s3cret-Pass"
	testMAC  = "52:54:00:aa:bb:01"
)

// images is the test store: what each image uncompresses to.
type images struct {
	dir  string
	data map[string][]byte // by path relative to dir
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func manifest(name string, data []byte, sha string) []byte {
	return fmt.Appendf(nil, `{"name": %q, "size": %d, "sha256": %q}`, name, len(data), sha)
}

func newImages(t *testing.T) *images {
	dir := t.TempDir()
	im := &images{dir: dir, data: map[string][]byte{}}

	alpha := randomBytes(t, 4<<20)
	writeFile(t, filepath.Join(dir, "raw", "alpha.img"), alpha)
	writeFile(t, filepath.Join(dir, "raw", "alpha.img.json"), manifest("Alpha", alpha, sum(alpha)))
	im.data[`raw\alpha.img`] = alpha

	// Compressible, so that the stream is much shorter than the image.
	beta := bytes.Repeat(randomBytes(t, 64<<10), 48)
	var zb bytes.Buffer
	zw, _ := zstd.NewWriter(&zb)
	zw.Write(beta)
	zw.Close()
	writeFile(t, filepath.Join(dir, "beta.img.zst"), zb.Bytes())
	writeFile(t, filepath.Join(dir, "beta.img.zst.json"), manifest("Beta", beta, sum(beta)))
	im.data[`beta.img.zst`] = beta

	gamma := randomBytes(t, 3<<20+123)
	var gb bytes.Buffer
	gw := gzip.NewWriter(&gb)
	gw.Write(gamma)
	gw.Close()
	writeFile(t, filepath.Join(dir, "gamma.img.gz"), gb.Bytes()) // no manifest
	im.data[`gamma.img.gz`] = gamma

	bad := randomBytes(t, 1<<20)
	writeFile(t, filepath.Join(dir, "zz-bad.img"), bad)
	writeFile(t, filepath.Join(dir, "zz-bad.img.json"), manifest("Bad", bad, strings.Repeat("ab", 32)))
	return im
}

// smbRequireSigning makes the SMB servers of the tests started after it
// was set require signing.
var smbRequireSigning bool

// servers are the RPC, endpoint mapper and SMB servers of one test.
type servers struct {
	epmPort, smbPort int
	tr               *tracker.Tracker
	smbAddr          string
	stopSMB          func()
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func startServers(t *testing.T, dir string) *servers {
	t.Helper()
	return startServersOn(t, dir, net.IPv4(127, 0, 0, 1), func(addr string) net.Listener { return listen(t, addr) })
}

// startServersOn serves on ip, with listeners from listen.
func startServersOn(t *testing.T, dir string, ip net.IP, listen func(addr string) net.Listener) *servers {
	t.Helper()
	anyAddr := net.JoinHostPort(ip.String(), "0")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tr := tracker.New()
	accounts := []dcerpc.Account{{Name: testUser, NTHash: smb.NTHash(testPass)}}

	rpcLn := listen(anyAddr)
	rpcPort := rpcLn.Addr().(*net.TCPAddr).Port
	h := &wds.Handler{Images: &imaging.Catalog{Dir: dir}, Events: tr, Log: log, Port: rpcPort}
	rpc := &dcerpc.Server{
		Interfaces: []dcerpc.Interface{{Name: "WdsRpcInterface", Syntax: *wdsv1.InterfaceSyntaxV1_0, Handle: wdsv1.NewInterfaceServerHandle(h)}},
		Accounts:   accounts, Events: tr, Log: log,
	}
	epmLn := listen(anyAddr)
	mapper := &epm.Mapper{
		ServerIP:  ip,
		Endpoints: []epm.Endpoint{{Annotation: "WdsRpcInterface", Syntax: *wdsv1.InterfaceSyntaxV1_0, Port: rpcPort}},
		Log:       log,
	}
	ep := &dcerpc.Server{Interfaces: []dcerpc.Interface{{Name: "epm", Syntax: epm.Syntax(), Handle: mapper.Handle()}}, Log: log}
	smbLn := listen(anyAddr)
	newSMB := func() *smb.Server {
		return &smb.Server{Shares: []smb.Share{{Name: "images", Path: dir}}, Accounts: accounts, Events: tr, Log: log, RequireSigning: smbRequireSigning}
	}
	go rpc.Serve(rpcLn)
	go ep.Serve(epmLn)
	var mu sync.Mutex
	cur := newSMB()
	go cur.Serve(smbLn)
	shutdown := func(s interface{ Shutdown(context.Context) error }) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}
	t.Cleanup(func() {
		shutdown(rpc)
		shutdown(ep)
		mu.Lock()
		shutdown(cur)
		mu.Unlock()
	})
	s := &servers{
		epmPort: epmLn.Addr().(*net.TCPAddr).Port,
		smbPort: smbLn.Addr().(*net.TCPAddr).Port,
		smbAddr: smbLn.Addr().String(),
		tr:      tr,
	}
	// stopSMB shuts the SMB server down, then serves again on the same
	// port a little later.
	s.stopSMB = func() {
		mu.Lock()
		old := cur
		mu.Unlock()
		shutdown(old)
		time.AfterFunc(300*time.Millisecond, func() {
			ln, err := net.Listen("tcp", s.smbAddr)
			if err != nil {
				t.Errorf("smb relisten: %v", err)
				return
			}
			mu.Lock()
			cur = newSMB()
			go cur.Serve(ln)
			mu.Unlock()
		})
	}
	return s
}

func (s *servers) config(t *testing.T, image string) Config {
	mac, _ := net.ParseMAC(testMAC)
	return Config{
		Server:        net.IPv4(127, 0, 0, 1),
		MAC:           mac,
		Account:       testUser,
		Password:      testPass,
		Image:         image,
		TargetFile:    filepath.Join(t.TempDir(), "disk"),
		EPMPort:       s.epmPort,
		SMBPort:       s.smbPort,
		ProgressEvery: time.Millisecond,
		Log:           slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// applyEvents keeps the client's apply, done and failed events.
func applyEvents(evs []tracker.Event) []tracker.Event {
	var out []tracker.Event
	for _, e := range evs {
		if e.MAC == testMAC && (e.Stage == tracker.StageApply || e.Stage == tracker.StageDone || e.Stage == tracker.StageFailed) {
			out = append(out, e)
		}
	}
	return out
}

func checkDeployed(t *testing.T, cfg Config, res Result, want []byte, path string, evs []tracker.Event) {
	t.Helper()
	got, err := os.ReadFile(cfg.TargetFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("target: %d bytes, differs from the %d-byte image", len(got), len(want))
	}
	if res.SHA256 != sum(want) || res.Bytes != int64(len(want)) || res.Path != path {
		t.Errorf("result %+v, want sha256 %s, %d bytes", res, sum(want), len(want))
	}
	ev := applyEvents(evs)
	if len(ev) < 3 {
		t.Fatalf("apply events %+v", ev)
	}
	first, last := ev[0], ev[len(ev)-1]
	if first.Stage != tracker.StageApply || first.Event != tracker.KindStart || first.File != path {
		t.Errorf("first event %+v", first)
	}
	if last.Stage != tracker.StageDone || last.Event != tracker.KindDone || last.Detail != "deployed "+path+" sha256 ok" {
		t.Errorf("last event %+v", last)
	}
	applyDone := ev[len(ev)-2]
	if applyDone.Stage != tracker.StageApply || applyDone.Event != tracker.KindDone || applyDone.Bytes != int64(len(want)) || applyDone.Total != int64(len(want)) {
		t.Errorf("apply done %+v", applyDone)
	}
	var prev int64
	progress := 0
	for _, e := range ev[1 : len(ev)-2] {
		if e.Stage != tracker.StageApply || (e.Event != tracker.KindProgress && e.Event != tracker.KindStart) {
			t.Errorf("middle event %+v", e)
		}
		if e.Event == tracker.KindProgress {
			progress++
			if e.Bytes < prev && !strings.HasSuffix(path, ".zst") && !strings.HasSuffix(path, ".gz") {
				t.Errorf("progress went back: %d after %d", e.Bytes, prev)
			}
			prev = e.Bytes
		}
	}
	if progress == 0 {
		t.Errorf("no progress events in %+v", ev)
	}
}

func TestRunImages(t *testing.T) {
	im := newImages(t)
	s := startServers(t, im.dir)
	for _, tc := range []struct{ image, path string }{
		{"", `beta.img.zst`}, // the first raw image enumerated
		{"BETA", `beta.img.zst`},
		{"gamma.IMG.gz", `gamma.img.gz`},
		{"raw/alpha.img", `raw\alpha.img`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			sub := s.tr.Subscribe()
			defer sub.Close()
			cfg := s.config(t, tc.image)
			res, err := Run(testContext(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkDeployed(t, cfg, res, im.data[tc.path], tc.path, sub.Next())
			if c, ok := s.tr.Client(testMAC); !ok || c.Stage != tracker.StageDone {
				t.Errorf("tracker record %+v", c)
			}
		})
	}
}

func TestRunBadChecksum(t *testing.T) {
	im := newImages(t)
	s := startServers(t, im.dir)
	sub := s.tr.Subscribe()
	defer sub.Close()
	_, err := Run(testContext(t), s.config(t, "bad"))
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("err %v, want a checksum mismatch", err)
	}
	ev := applyEvents(sub.Next())
	if len(ev) == 0 {
		t.Fatal("no events")
	}
	last := ev[len(ev)-1]
	if last.Stage != tracker.StageFailed || last.Event != tracker.KindError || !strings.Contains(last.Detail, "checksum mismatch") || last.File != `zz-bad.img` {
		t.Errorf("last event %+v", last)
	}
	if c, _ := s.tr.Client(testMAC); c.Stage != tracker.StageFailed {
		t.Errorf("tracker stage %s", c.Stage)
	}
}

func TestRunImageNotFound(t *testing.T) {
	im := newImages(t)
	s := startServers(t, im.dir)
	sub := s.tr.Subscribe()
	defer sub.Close()
	_, err := Run(testContext(t), s.config(t, "nonesuch"))
	if !errors.Is(err, ErrImageNotFound) {
		t.Fatalf("err %v", err)
	}
	ev := applyEvents(sub.Next())
	if len(ev) != 1 || ev[0].Stage != tracker.StageFailed || !strings.Contains(ev[0].Detail, "nonesuch") {
		t.Errorf("events %+v", ev)
	}
}

func TestRunWrongPassword(t *testing.T) {
	im := newImages(t)
	s := startServers(t, im.dir)
	cfg := s.config(t, "")
	cfg.Password = "wrong"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := Run(ctx, cfg)
	if !errors.Is(err, ErrLogon) {
		t.Fatalf("Run with a wrong password: %v", err)
	}
	if _, err := os.Stat(cfg.TargetFile); err == nil {
		t.Error("target written")
	}
}

func TestRunSMBRestart(t *testing.T) {
	defer func(d time.Duration) { smbBackoff = d }(smbBackoff)
	smbBackoff = 200 * time.Millisecond
	defer func() { afterWrite = nil }()
	// Small reads, one at a time, so that most of each image is still
	// to be read when the server stops.
	defer func(c, d int) { readChunk, readDepth = c, d }(readChunk, readDepth)
	readChunk, readDepth = 64<<10, 1
	im := newImages(t)
	// A compressed image whose stream is longer than the first MiB
	// written (beta's is much shorter: its reads end before the cut).
	delta := randomBytes(t, 3<<20)
	var zb bytes.Buffer
	zw, _ := zstd.NewWriter(&zb)
	zw.Write(delta)
	zw.Close()
	writeFile(t, filepath.Join(im.dir, "delta.img.zst"), zb.Bytes())
	writeFile(t, filepath.Join(im.dir, "delta.img.zst.json"), manifest("Delta", delta, sum(delta)))
	im.data[`delta.img.zst`] = delta
	s := startServers(t, im.dir)
	for _, tc := range []struct {
		image, path string
		resume      bool
	}{{"alpha", `raw\alpha.img`, true}, {"delta", `delta.img.zst`, false}} {
		t.Run(tc.path, func(t *testing.T) {
			cfg := s.config(t, tc.image)
			// Past 1 MiB the SMB server stops, and serves again on the
			// same port 300 ms later.
			var marks []int64
			cut := false
			afterWrite = func(written int64) {
				marks = append(marks, written)
				if written >= 1<<20 && !cut {
					cut = true
					s.stopSMB()
				}
			}
			res, err := Run(testContext(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !cut {
				t.Fatal("the SMB server was never stopped")
			}
			got, _ := os.ReadFile(cfg.TargetFile)
			if !bytes.Equal(got, im.data[tc.path]) || res.SHA256 != sum(im.data[tc.path]) {
				t.Fatalf("target differs after the restart (%d bytes)", len(got))
			}
			restarted := false
			for i := 1; i < len(marks); i++ {
				restarted = restarted || marks[i] <= marks[i-1]
			}
			if restarted == tc.resume {
				t.Errorf("writes at %v: resume %v", marks, tc.resume)
			}
		})
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestParseImageXML(t *testing.T) {
	for _, tc := range []struct {
		im   imaging.Image
		want imageInfo
	}{
		{imaging.Image{Name: "A & B", Kind: "raw", Size: 100, FileSize: 100, SHA256: strings.Repeat("0f", 32)},
			imageInfo{Name: "A & B", Kind: "raw", Size: 100, FileSize: 100, SHA256: strings.Repeat("0f", 32)}},
		{imaging.Image{Name: "z", Kind: "raw", Compression: "zstd", Size: 40, FileSize: 40}, // no manifest size
			imageInfo{Name: "z", Kind: "raw", Compression: "zstd", Size: 0, FileSize: 40}},
		{imaging.Image{Name: "z", Kind: "raw", Compression: "gzip", Size: 4000, FileSize: 40},
			imageInfo{Name: "z", Kind: "raw", Compression: "gzip", Size: 4000, FileSize: 40}},
	} {
		got, err := parseImageXML(wds.ImageXML(tc.im))
		if err != nil || got != tc.want {
			t.Errorf("%+v: got %+v, %v; want %+v", tc.im, got, err, tc.want)
		}
	}
	if _, err := parseImageXML("<WIM><IMAGE><NETDEPLOY><SHA256>xyz</SHA256></NETDEPLOY></IMAGE></WIM>"); err == nil {
		t.Error("bad SHA256 accepted")
	}
}

func TestChoose(t *testing.T) {
	list := []imageInfo{{Name: "Win", Path: `w\install.wim`, Kind: "wim"}, {Name: "Disk", Path: `raw\disk.img`, Kind: "raw"}}
	if im, err := choose(list, ""); err != nil || im.Name != "Disk" {
		t.Errorf("default: %+v, %v", im, err)
	}
	if im, err := choose(list, "RAW/DISK.IMG"); err != nil || im.Name != "Disk" {
		t.Errorf("by path: %+v, %v", im, err)
	}
	if _, err := choose(list, "win"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("wim: %v", err)
	}
	if _, err := choose(list, "nope"); !errors.Is(err, ErrImageNotFound) {
		t.Errorf("missing: %v", err)
	}
	if _, err := choose(list[:1], ""); !errors.Is(err, ErrImageNotFound) {
		t.Errorf("no raw: %v", err)
	}
}

// TestRunChoose: with no image named, the technician's choice among the
// raw images is deployed; an out-of-range or failed choice fails the run
// and says so.
func TestRunChoose(t *testing.T) {
	im := newImages(t)
	s := startServers(t, im.dir)
	cfg := s.config(t, "")
	var offered []Offer
	cfg.Choose = func(_ context.Context, list []Offer) (int, error) {
		offered = list
		for i, o := range list {
			if o.Path == `gamma.img.gz` {
				return i, nil
			}
		}
		return 0, errors.New("gamma not offered")
	}
	sub := s.tr.Subscribe()
	defer sub.Close()
	res, err := Run(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(offered) < 3 {
		t.Fatalf("offered %+v", offered)
	}
	checkDeployed(t, cfg, res, im.data[`gamma.img.gz`], `gamma.img.gz`, sub.Next())

	for _, choose := range []func(context.Context, []Offer) (int, error){
		func(context.Context, []Offer) (int, error) { return 99, nil },
		func(context.Context, []Offer) (int, error) { return 0, errors.New("console closed") },
	} {
		cfg := s.config(t, "")
		cfg.Choose = choose
		if _, err := Run(testContext(t), cfg); err == nil || !strings.Contains(err.Error(), "choice") {
			t.Errorf("bad choice: %v", err)
		}
	}
}

// TestFail: a deployment that cannot start is reported failed with its
// reason.
func TestFail(t *testing.T) {
	im := newImages(t)
	s := startServers(t, im.dir)
	sub := s.tr.Subscribe()
	defer sub.Close()
	cfg := s.config(t, "")
	if err := Fail(testContext(t), cfg, errors.New("no disk to write to")); err != nil {
		t.Fatal(err)
	}
	ev := applyEvents(sub.Next())
	if len(ev) != 1 || ev[0].Stage != tracker.StageFailed || !strings.Contains(ev[0].Detail, "no disk to write to") {
		t.Fatalf("events %+v", ev)
	}
	cfg.Password = "wrong"
	if err := Fail(testContext(t), cfg, errors.New("x")); !errors.Is(err, ErrLogon) {
		t.Errorf("Fail with a wrong password: %v", err)
	}
}
