// Package control is the server's control API: a small JSON-over-HTTP
// service on a Unix socket in data_dir, which the headless mode's
// "netdeploy ctl" commands (and scripts) use to approve clients, flip DHCP
// authorization and change the UDP range while the services run.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/netdeploy/netdeploy/server/policy"
	"github.com/netdeploy/netdeploy/server/tracker"
	"github.com/netdeploy/netdeploy/server/udprange"
)

// API is what the control service can do; the orchestrator implements it.
type API interface {
	Status() Status
	Clients() []tracker.Client
	Pending() []policy.PendingClient
	Approve(mac string) error
	Deny(mac string) error
	SetPolicy(m policy.Mode)
	SetAuthorization(on bool)
	SetUDPRange(r udprange.Range) error
	SetDHCPMode(mode string) error
	// Assign gives a client an image; "" removes the assignment.
	Assign(mac, image string) error
	// Assignments maps each assigned MAC to its image.
	Assignments() map[string]string
	// Multicast lists the running multicast sessions.
	Multicast() []MulticastSession
	// StartMulticast starts the sessions waiting for a manual start.
	StartMulticast() (int, error)
}

// MulticastSession is a running multicast session.
type MulticastSession struct {
	Image     string            `json:"image"`
	Group     string            `json:"group"`
	Port      int               `json:"port"`
	Size      int64             `json:"size"`
	Started   time.Time         `json:"started"`
	State     string            `json:"state"`
	Rate      int64             `json:"rate"` // bytes per second
	BytesSent uint64            `json:"bytes_sent"`
	Clients   []MulticastClient `json:"clients"`
}

// MulticastClient is one client of a multicast session.
type MulticastClient struct {
	MAC   string  `json:"mac"`
	IP    string  `json:"ip"`
	State string  `json:"state"`
	Bytes int64   `json:"bytes"`
	Loss  float64 `json:"loss"`
}

// Status is the server's state at a glance.
type Status struct {
	Interface     string `json:"interface"`
	ServerIP      string `json:"server_ip"`
	DHCPMode      string `json:"dhcp_mode"`
	Authorization bool   `json:"authorization"`
	Authorized    bool   `json:"authorized"`
	Reason        string `json:"reason,omitempty"`
	UDPRange      string `json:"udp_range"`
	Policy        string `json:"policy"`
	Clients       int    `json:"clients"`
	Pending       int    `json:"pending"`
}

// Handler serves the API:
//
//	GET  /v1/status, /v1/clients, /v1/pending
//	POST /v1/approve {"mac":...}, /v1/deny {"mac":...}
//	PUT  /v1/authorization {"enabled":bool}, /v1/udp_range {"range":"A-B"}, /v1/policy {"policy":...},
//	     /v1/dhcp_mode {"mode":"authoritative"|"proxy"|"off"},
//	     /v1/assign {"mac":...,"image":...} ("" removes it)
//	GET  /v1/assign (MAC -> image), /v1/multicast (sessions)
//	POST /v1/multicast/start (sessions waiting for a manual start)
func Handler(api API) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { reply(w, api.Status()) })
	mux.HandleFunc("GET /v1/clients", func(w http.ResponseWriter, r *http.Request) { reply(w, api.Clients()) })
	mux.HandleFunc("GET /v1/pending", func(w http.ResponseWriter, r *http.Request) { reply(w, api.Pending()) })
	mac := func(do func(string) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var in struct {
				MAC string `json:"mac"`
			}
			if !decode(w, r, &in) {
				return
			}
			hw, err := net.ParseMAC(in.MAC)
			if err != nil {
				fail(w, http.StatusBadRequest, fmt.Errorf("%q is not a MAC address", in.MAC))
				return
			}
			if err := do(hw.String()); err != nil {
				fail(w, http.StatusBadRequest, err)
				return
			}
			reply(w, api.Status())
		}
	}
	mux.HandleFunc("POST /v1/approve", mac(api.Approve))
	mux.HandleFunc("POST /v1/deny", mac(api.Deny))
	mux.HandleFunc("PUT /v1/authorization", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Enabled *bool `json:"enabled"`
		}
		if !decode(w, r, &in) {
			return
		}
		if in.Enabled == nil {
			fail(w, http.StatusBadRequest, errors.New(`want {"enabled": true|false}`))
			return
		}
		api.SetAuthorization(*in.Enabled)
		reply(w, api.Status())
	})
	mux.HandleFunc("PUT /v1/udp_range", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Range string `json:"range"`
		}
		if !decode(w, r, &in) {
			return
		}
		rg, err := udprange.Parse(in.Range)
		if err == nil {
			err = api.SetUDPRange(rg)
		}
		if err != nil {
			fail(w, http.StatusBadRequest, fmt.Errorf("udp_range: %w", err))
			return
		}
		reply(w, api.Status())
	})
	mux.HandleFunc("PUT /v1/policy", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Policy string `json:"policy"`
		}
		if !decode(w, r, &in) {
			return
		}
		m, err := policy.ParseMode(in.Policy)
		if err != nil {
			fail(w, http.StatusBadRequest, fmt.Errorf("pxe.policy: %w", err))
			return
		}
		api.SetPolicy(m)
		reply(w, api.Status())
	})
	mux.HandleFunc("GET /v1/multicast", func(w http.ResponseWriter, r *http.Request) { reply(w, api.Multicast()) })
	mux.HandleFunc("POST /v1/multicast/start", func(w http.ResponseWriter, r *http.Request) {
		n, err := api.StartMulticast()
		if err != nil {
			fail(w, http.StatusBadRequest, err)
			return
		}
		reply(w, map[string]int{"sessions": n})
	})
	mux.HandleFunc("GET /v1/assign", func(w http.ResponseWriter, r *http.Request) { reply(w, api.Assignments()) })
	mux.HandleFunc("PUT /v1/assign", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			MAC   string `json:"mac"`
			Image string `json:"image"`
		}
		if !decode(w, r, &in) {
			return
		}
		hw, err := net.ParseMAC(in.MAC)
		if err != nil || len(hw) != 6 {
			fail(w, http.StatusBadRequest, fmt.Errorf("%q is not a MAC address", in.MAC))
			return
		}
		if err := api.Assign(hw.String(), strings.TrimSpace(in.Image)); err != nil {
			fail(w, http.StatusBadRequest, err)
			return
		}
		reply(w, api.Assignments())
	})
	mux.HandleFunc("PUT /v1/dhcp_mode", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Mode string `json:"mode"`
		}
		if !decode(w, r, &in) {
			return
		}
		if err := api.SetDHCPMode(in.Mode); err != nil {
			fail(w, http.StatusBadRequest, fmt.Errorf("dhcp.mode: %w", err))
			return
		}
		reply(w, api.Status())
	})
	return mux
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(w, http.StatusBadRequest, fmt.Errorf("bad request body: %w", err))
		return false
	}
	return true
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// Listen opens the control socket at path (mode 0600: only its owner may
// steer the server), replacing a stale socket left by a crash.
func Listen(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, errors.New("in use: another netdeploy serve runs with this data_dir")
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Client talks to a running server's control socket.
type Client struct {
	hc *http.Client
}

// Dial returns a client for the socket at path.
func Dial(path string) *Client {
	return &Client{hc: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

// Do sends a request (body may be nil) and decodes the JSON answer into out.
func (c *Client) Do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, "http://netdeploy"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("control: is netdeploy serve running with this data_dir? %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("control: %s", e.Error)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
