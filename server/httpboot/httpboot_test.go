package httpboot

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/boot"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// events keeps the events a test server emits.
type events = tracker.Recorder

func start(t *testing.T) (string, *events, []byte) {
	t.Helper()
	_, base, ev, big := startServer(t, nil)
	return base, ev, big
}

// startServer serves a temporary root with big.bin; configure may change
// the Server before it serves.
func startServer(t *testing.T, configure func(*Server)) (*Server, string, *events, []byte) {
	t.Helper()
	dir := t.TempDir()
	big := make([]byte, 3<<20+17)
	rand.Read(big)
	os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644)
	os.WriteFile(filepath.Join(filepath.Dir(dir), "secret"), []byte("secret"), 0o644)
	ev := &events{}
	s := &Server{
		FS:     &boot.FS{Root: dir},
		Script: func(mac string) []byte { return []byte("#!ipxe\necho " + mac + "\n") },
		Port:   8080, Events: ev, ProgressEvery: time.Millisecond,
	}
	if configure != nil {
		configure(s)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Shutdown(t.Context())
		if err := <-done; err != nil {
			t.Errorf("Serve after Shutdown: %v", err)
		}
	})
	return s, "http://" + l.Addr().String(), ev, big
}

func get(t *testing.T, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestDownloadAndEvents(t *testing.T) {
	base, ev, big := start(t)
	resp, b := get(t, base+"/big.bin?mac=52-54-00-12-34-56", nil)
	if resp.StatusCode != 200 || !bytes.Equal(b, big) {
		t.Fatalf("status %d, %d bytes", resp.StatusCode, len(b))
	}
	var kinds []tracker.Kind
	for _, e := range ev.All() {
		if e.MAC != "52:54:00:12:34:56" || e.Stage != tracker.StageHTTP || e.File != "big.bin" || e.Port != 8080 {
			t.Errorf("event %+v", e)
		}
		if e.Total != int64(len(big)) {
			t.Errorf("total %d", e.Total)
		}
		kinds = append(kinds, e.Event)
	}
	if len(kinds) < 2 || kinds[0] != tracker.KindStart || kinds[len(kinds)-1] != tracker.KindDone {
		t.Fatalf("kinds %v", kinds)
	}
	if last := ev.All()[len(kinds)-1]; last.Bytes != int64(len(big)) {
		t.Errorf("done bytes %d", last.Bytes)
	}

	resp, b = get(t, base+"/big.bin", map[string]string{"Range": "bytes=100-199"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, big[100:200]) {
		t.Fatalf("range: %d %d", resp.StatusCode, len(b))
	}
	evs := ev.All()
	if last := evs[len(evs)-1]; last.Event != tracker.KindDone || last.Bytes != 100 {
		t.Errorf("range done event %+v, want 100 bytes", last)
	}
	// The script is counted once, whatever ServeContent does first.
	get(t, base+"/boot.ipxe?mac=52-54-00-12-34-56", nil)
	evs = ev.All()
	if last := evs[len(evs)-1]; last.File != "boot.ipxe" || last.Bytes != last.Total || last.Total == 0 {
		t.Errorf("script done event %+v", last)
	}
}

func TestScriptAndErrors(t *testing.T) {
	base, ev, _ := start(t)
	resp, b := get(t, base+"/boot.ipxe?mac=52-54-00-aa-bb-cc", nil)
	if resp.StatusCode != 200 || string(b) != "#!ipxe\necho 52:54:00:aa:bb:cc\n" {
		t.Fatalf("script %d %q", resp.StatusCode, b)
	}
	if resp, _ := get(t, base+"/missing", nil); resp.StatusCode != 404 {
		t.Errorf("missing: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("PUT", base+"/x", strings.NewReader("x"))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 405 {
		t.Errorf("put: %v %v", resp, err)
	}
	// Raw request lines: the client would clean these paths itself.
	for _, p := range []string{"/../secret", "/a/../../secret", "/%2e%2e/secret", "/x%00y"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", p)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		if resp.StatusCode != 403 && resp.StatusCode != 400 || strings.Contains(string(body), "secret") {
			t.Errorf("%s: %d %q", p, resp.StatusCode, body)
		}
	}
	var errs int
	for _, e := range ev.All() {
		if e.Event == tracker.KindError {
			errs++
		}
	}
	if errs < 4 {
		t.Errorf("want error events for refused requests, got %d", errs)
	}
}

// TestScriptMACFromAddress: iPXE fetches the DHCP-given script URL without
// ?mac=; the server names it from its address so the policy applies.
func TestScriptMACFromAddress(t *testing.T) {
	_, base, ev, _ := startServer(t, func(s *Server) {
		s.MACForIP = func(ip string) string {
			if ip == "127.0.0.1" {
				return "52:54:00:aa:bb:01"
			}
			return ""
		}
	})
	resp, b := get(t, base+"/boot.ipxe", nil)
	if resp.StatusCode != 200 || string(b) != "#!ipxe\necho 52:54:00:aa:bb:01\n" {
		t.Fatalf("script %d %q", resp.StatusCode, b)
	}
	// The query still wins.
	if _, b = get(t, base+"/boot.ipxe?mac=52-54-00-aa-bb-02", nil); string(b) != "#!ipxe\necho 52:54:00:aa:bb:02\n" {
		t.Fatalf("script with query %q", b)
	}
	found := false
	for _, e := range ev.All() {
		if e.File == "boot.ipxe" && e.MAC == "52:54:00:aa:bb:01" {
			found = true
		}
	}
	if !found {
		t.Errorf("events do not name the client: %+v", ev.All())
	}
}
