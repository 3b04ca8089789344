package control

import (
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netdeploy/netdeploy/server/policy"
	"github.com/netdeploy/netdeploy/server/tracker"
	"github.com/netdeploy/netdeploy/server/udprange"
)

type fakeAPI struct {
	approved, denied []string
	authz            bool
	rng              udprange.Range
	mode             policy.Mode
	dhcpMode         string
	assigned         map[string]string
	started          int
}

func (f *fakeAPI) Assign(mac, image string) error {
	if image == "missing" {
		return errors.New("assign: no image \"missing\"")
	}
	if f.assigned == nil {
		f.assigned = map[string]string{}
	}
	if image == "" {
		delete(f.assigned, mac)
	} else {
		f.assigned[mac] = image
	}
	return nil
}
func (f *fakeAPI) Assignments() map[string]string { return f.assigned }
func (f *fakeAPI) Multicast() []MulticastSession {
	return []MulticastSession{{Image: "a.img", Group: "239.255.77.1:64100", Clients: []MulticastClient{{MAC: "52:54:00:00:00:05"}}}}
}
func (f *fakeAPI) StartMulticast() (int, error) { f.started++; return 1, nil }

func (f *fakeAPI) Status() Status {
	return Status{Authorization: f.authz, UDPRange: f.rng.String(), Policy: string(f.mode), DHCPMode: f.dhcpMode}
}
func (f *fakeAPI) Clients() []tracker.Client { return []tracker.Client{{MAC: "52:54:00:00:00:01"}} }
func (f *fakeAPI) Pending() []policy.PendingClient {
	return []policy.PendingClient{{MAC: "52:54:00:00:00:02"}}
}
func (f *fakeAPI) Approve(mac string) error { f.approved = append(f.approved, mac); return nil }
func (f *fakeAPI) Deny(mac string) error {
	if mac == "52:54:00:00:00:99" {
		return errors.New("no such client")
	}
	f.denied = append(f.denied, mac)
	return nil
}
func (f *fakeAPI) SetPolicy(m policy.Mode)            { f.mode = m }
func (f *fakeAPI) SetAuthorization(on bool)           { f.authz = on }
func (f *fakeAPI) SetUDPRange(r udprange.Range) error { f.rng = r; return nil }
func (f *fakeAPI) SetDHCPMode(m string) error {
	switch m {
	case "authoritative", "proxy", "off":
		f.dhcpMode = m
		return nil
	}
	return errors.New("unknown mode " + m)
}

func TestControlOverSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	api := &fakeAPI{rng: udprange.Default(), mode: policy.All}
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: Handler(api)}
	go srv.Serve(l)
	defer srv.Close()
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second server on the same socket: %v", err)
	}

	c := Dial(path)
	var st Status
	if err := c.Do("PUT", "/v1/authorization", map[string]bool{"enabled": true}, &st); err != nil || !st.Authorization || !api.authz {
		t.Errorf("authorization: %v %+v", err, st)
	}
	if err := c.Do("PUT", "/v1/udp_range", map[string]string{"range": "40000-40100"}, &st); err != nil || st.UDPRange != "40000-40100" {
		t.Errorf("range: %v %+v", err, st)
	}
	if err := c.Do("PUT", "/v1/policy", map[string]string{"policy": "approve"}, &st); err != nil || st.Policy != "approve" {
		t.Errorf("policy: %v %+v", err, st)
	}
	if err := c.Do("PUT", "/v1/dhcp_mode", map[string]string{"mode": "proxy"}, &st); err != nil || st.DHCPMode != "proxy" {
		t.Errorf("dhcp mode: %v %+v", err, st)
	}
	if err := c.Do("POST", "/v1/approve", map[string]string{"mac": "52-54-00-00-00-02"}, nil); err != nil || len(api.approved) != 1 || api.approved[0] != "52:54:00:00:00:02" {
		t.Errorf("approve: %v %v", err, api.approved)
	}
	var as map[string]string
	if err := c.Do("PUT", "/v1/assign", map[string]string{"mac": "52-54-00-00-00-03", "image": " win11 "}, &as); err != nil || as["52:54:00:00:00:03"] != "win11" {
		t.Errorf("assign: %v %v", err, as)
	}
	if err := c.Do("GET", "/v1/assign", nil, &as); err != nil || len(as) != 1 {
		t.Errorf("assignments: %v %v", err, as)
	}
	as = nil
	if err := c.Do("PUT", "/v1/assign", map[string]string{"mac": "52:54:00:00:00:03", "image": ""}, &as); err != nil || len(as) != 0 {
		t.Errorf("unassign: %v %v", err, as)
	}
	var ms []MulticastSession
	if err := c.Do("GET", "/v1/multicast", nil, &ms); err != nil || len(ms) != 1 || ms[0].Clients[0].MAC != "52:54:00:00:00:05" {
		t.Errorf("multicast: %v %+v", err, ms)
	}
	var started map[string]int
	if err := c.Do("POST", "/v1/multicast/start", nil, &started); err != nil || started["sessions"] != 1 || api.started != 1 {
		t.Errorf("multicast start: %v %v", err, started)
	}
	var pend []policy.PendingClient
	if err := c.Do("GET", "/v1/pending", nil, &pend); err != nil || len(pend) != 1 {
		t.Errorf("pending: %v %v", err, pend)
	}
	for _, tc := range []struct {
		method, path string
		body         any
		says         string
	}{
		{"PUT", "/v1/udp_range", map[string]string{"range": "65000-64001"}, "udp_range: 65000-64001 is inverted"},
		{"PUT", "/v1/udp_range", map[string]string{"range": "80-90"}, "below 1024"},
		{"PUT", "/v1/policy", map[string]string{"policy": "everyone"}, "pxe.policy"},
		{"PUT", "/v1/dhcp_mode", map[string]string{"mode": "loud"}, "dhcp.mode: unknown mode loud"},
		{"POST", "/v1/approve", map[string]string{"mac": "nope"}, "not a MAC address"},
		{"POST", "/v1/deny", map[string]string{"mac": "52:54:00:00:00:99"}, "no such client"},
		{"PUT", "/v1/assign", map[string]string{"mac": "52:54:00:00:00:03", "image": "missing"}, `no image "missing"`},
		{"PUT", "/v1/assign", map[string]string{"mac": "52:54", "image": "x"}, "not a MAC address"},
		{"PUT", "/v1/authorization", map[string]string{"on": "yes"}, "bad request body"},
		{"PUT", "/v1/authorization", map[string]any{}, "enabled"},
	} {
		err := c.Do(tc.method, tc.path, tc.body, nil)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s %s %v: %v, want an error saying %q", tc.method, tc.path, tc.body, err, tc.says)
		}
	}
	if api.rng.String() != "40000-40100" {
		t.Errorf("a refused range changed the range: %v", api.rng)
	}

	// A socket left by a crash is replaced.
	srv.Close()
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket file: %v", err)
	}
	l2, err := Listen(path)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	l2.Close()
	if err := Dial(filepath.Join(t.TempDir(), "none.sock")).Do("GET", "/v1/status", nil, nil); err == nil || !strings.Contains(err.Error(), "is netdeploy serve running") {
		t.Errorf("no server: %v", err)
	}
}
