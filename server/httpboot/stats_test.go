package httpboot

import (
	"net/http"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/stats"
)

// waitStats polls the counters until ok accepts them: a request is
// counted as done when its handler returns, just after the client has
// the response.
func waitStats(t *testing.T, s *Server, ok func(stats.Snapshot) bool) stats.Snapshot {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := s.Stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestStats counts requests, responses and body bytes over real
// downloads, a range, a HEAD, an error page, and a request in flight.
func TestStats(t *testing.T) {
	hold := make(chan struct{})
	entered := make(chan struct{}, 1)
	s, base, _, big := startServer(t, func(s *Server) {
		s.Script = func(mac string) []byte {
			if mac == "52:54:00:00:00:99" {
				entered <- struct{}{}
				<-hold
			}
			return []byte("#!ipxe\n")
		}
	})
	t.Cleanup(func() { // a failed test must not leave the handler blocked
		select {
		case <-hold:
		default:
			close(hold)
		}
	})
	if st := s.Stats(); st != (stats.Snapshot{}) {
		t.Fatalf("stats before any request %+v", st)
	}
	var body uint64
	done := func(n uint64) stats.Snapshot {
		t.Helper()
		return waitStats(t, s, func(st stats.Snapshot) bool { return st.PacketsOut == n && st.Active == 0 })
	}

	if resp, b := get(t, base+"/big.bin", nil); resp.StatusCode != 200 || len(b) != len(big) {
		t.Fatalf("big: %d, %d bytes", resp.StatusCode, len(b))
	}
	body += uint64(len(big))
	if st := done(1); st != (stats.Snapshot{PacketsIn: 1, PacketsOut: 1, BytesOut: body}) {
		t.Fatalf("after one download %+v, want %d body bytes", st, body)
	}

	resp, b := get(t, base+"/big.bin", map[string]string{"Range": "bytes=100-199"})
	if resp.StatusCode != http.StatusPartialContent || len(b) != 100 {
		t.Fatalf("range: %d %d", resp.StatusCode, len(b))
	}
	body += 100
	resp, b = get(t, base+"/missing", nil)
	if resp.StatusCode != 404 {
		t.Fatalf("missing: %d", resp.StatusCode)
	}
	body += uint64(len(b))
	hr, err := http.Head(base + "/big.bin")
	if err != nil || hr.StatusCode != 200 {
		t.Fatalf("head: %v %v", hr, err)
	}
	hr.Body.Close()
	if st := done(4); st.PacketsIn != 4 || st.BytesOut != body || st.BytesIn != 0 {
		t.Fatalf("after range, 404 and HEAD %+v, want %d body bytes", st, body)
	}

	// A request in flight is active until it is answered.
	got := make(chan error, 1)
	go func() {
		resp, err := http.Get(base + "/boot.ipxe?mac=52-54-00-00-00-99")
		if err == nil {
			resp.Body.Close()
		}
		got <- err
	}()
	<-entered
	if st := s.Stats(); st.Active != 1 || st.PacketsIn != 5 || st.PacketsOut != 4 {
		t.Fatalf("in flight %+v", st)
	}
	close(hold)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if st := done(5); st.BytesOut != body+uint64(len("#!ipxe\n")) {
		t.Fatalf("after the script %+v", st)
	}
}
