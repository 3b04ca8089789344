package config

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func flags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "netdeploy.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadPrecedence(t *testing.T) {
	file := writeFile(t, `
interface: eth7
udp_range: "50000-50100"
dhcp:
  mode: proxy
  lease: 2h
  dns: [198.18.0.53, 198.18.0.54]
  authorized_servers: ["198.18.0.9"]
pxe:
  policy: known
  known: ["52:54:00:12:34:56"]
http:
  port: 8080
`)
	t.Setenv("NETDEPLOY_DHCP_MODE", "off")
	t.Setenv("NETDEPLOY_HTTP_PORT", "8081")
	c, err := Load(flags(t, "--config", file, "--http-port", "8082"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Interface != "eth7" || c.UDPRange != "50000-50100" {
		t.Errorf("file values lost: %+v", c)
	}
	if c.DHCP.Mode != "off" {
		t.Errorf("env should beat the file: mode %q", c.DHCP.Mode)
	}
	if c.HTTP.Port != 8082 {
		t.Errorf("flag should beat env and file: port %d", c.HTTP.Port)
	}
	if c.DHCP.Lease != 2*time.Hour || len(c.DHCP.DNS) != 2 || c.DHCP.DNS[1] != "198.18.0.54" {
		t.Errorf("dhcp: %+v", c.DHCP)
	}
	if c.PXE.Policy != "known" || len(c.PXE.Known) != 1 {
		t.Errorf("pxe: %+v", c.PXE)
	}
}

func TestLoadDefaultsAndEnvList(t *testing.T) {
	t.Setenv("NETDEPLOY_DHCP_DNS", "198.18.0.1,198.18.0.2")
	c, err := Load(flags(t))
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	if c.UDPRange != "64001-65000" || c.HTTP.Port != 80 || c.DHCP.Mode != ModeAuthoritative || c.DHCP.Lease != d.DHCP.Lease || c.Boot.IPXEDir != "/usr/lib/ipxe" {
		t.Errorf("defaults: %+v", c)
	}
	if len(c.DHCP.DNS) != 2 {
		t.Errorf("env list: %q", c.DHCP.DNS)
	}
}

func TestLoadErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ body, key string }{
		{"dhcp:\n  mdoe: proxy\n", "dhcp.mdoe"},
		{"dhcp:\n  lease: forever\n", "dhcp.lease"},
		{"http:\n  port: eighty\n", "http.port"},
		{"interface: [\n", "config"},
	} {
		_, err := Load(flags(t, "--config", writeFile(t, tc.body)))
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("%q: want *Error, got %v", tc.body, err)
			continue
		}
		if ce.Key != tc.key {
			t.Errorf("%q: key %q, want %q (%v)", tc.body, ce.Key, tc.key, err)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error spans lines: %q", tc.body, err)
		}
	}
	_, err := Load(flags(t, "--config", "/nonexistent/netdeploy.yaml"))
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "config" {
		t.Errorf("missing file: %v", err)
	}
}

func valid(t *testing.T) Config {
	c := Default()
	c.DataDir = t.TempDir()
	c.Boot.IPXEDir = t.TempDir()
	return c
}

func TestValidate(t *testing.T) {
	kernel := filepath.Join(t.TempDir(), "vmlinuz")
	os.WriteFile(kernel, []byte("k"), 0o644)
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		key  string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"range malformed", func(c *Config) { c.UDPRange = "64001" }, "udp_range"},
		{"range inverted", func(c *Config) { c.UDPRange = "65000-64001" }, "udp_range"},
		{"range low ports", func(c *Config) { c.UDPRange = "69-2000" }, "udp_range"},
		{"range too high", func(c *Config) { c.UDPRange = "64001-70000" }, "udp_range"},
		{"range one port", func(c *Config) { c.UDPRange = "64001-64001" }, ""},
		{"mode unknown", func(c *Config) { c.DHCP.Mode = "rogue" }, "dhcp.mode"},
		{"mode proxy", func(c *Config) { c.DHCP.Mode = "proxy" }, ""},
		{"pool malformed", func(c *Config) { c.DHCP.Pool = "10.0.0.5" }, "dhcp.pool"},
		{"pool inverted", func(c *Config) { c.DHCP.Pool = "10.0.0.9-10.0.0.5" }, "dhcp.pool"},
		{"router bad", func(c *Config) { c.DHCP.Router = "gateway" }, "dhcp.router"},
		{"dns bad", func(c *Config) { c.DHCP.DNS = []string{"1.1.1"} }, "dhcp.dns"},
		{"authorized bad", func(c *Config) { c.DHCP.AuthorizedServers = []string{"x"} }, "dhcp.authorized_servers"},
		{"lease short", func(c *Config) { c.DHCP.Lease = time.Second }, "dhcp.lease"},
		{"policy unknown", func(c *Config) { c.PXE.Policy = "some" }, "pxe.policy"},
		{"known bad mac", func(c *Config) { c.PXE.Known = []string{"52:54"} }, "pxe.known"},
		{"http port", func(c *Config) { c.HTTP.Port = 0 }, "http.port"},
		{"server ip", func(c *Config) { c.ServerIP = "::1" }, "server_ip"},
		{"kernel missing", func(c *Config) { c.Boot.Kernel = "/nonexistent/vmlinuz" }, "boot.kernel"},
		{"kernel ok", func(c *Config) { c.Boot.Kernel = kernel }, ""},
		{"initrd without kernel", func(c *Config) { c.Boot.Initrd = kernel }, "boot.initrd"},
		{"ipxe dir missing", func(c *Config) { c.Boot.IPXEDir = "/nonexistent" }, "boot.ipxe_dir"},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, "log_level"},
	} {
		c := valid(t)
		tc.mod(&c)
		c.Finish()
		err := c.Validate()
		if tc.key == "" {
			if err != nil {
				t.Errorf("%s: unexpected %v", tc.name, err)
			}
			continue
		}
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != tc.key {
			t.Errorf("%s: want error for %s, got %v", tc.name, tc.key, err)
		}
	}
}

func fakeIfaces(list ...Iface) Interfaces {
	return func() ([]Iface, error) { return list, nil }
}

func ipnet(s string) *net.IPNet {
	ip, n, _ := net.ParseCIDR(s)
	return &net.IPNet{IP: ip.To4(), Mask: n.Mask}
}

func TestResolve(t *testing.T) {
	lo := Iface{Name: "lo", Up: true, Loopback: true, Addrs: []*net.IPNet{ipnet("127.0.0.1/8")}}
	eth := Iface{Name: "eth0", Up: true, MTU: 1500, Addrs: []*net.IPNet{ipnet("198.18.0.1/24")}}
	wlan := Iface{Name: "wlan0", Up: true, MTU: 1500, Addrs: []*net.IPNet{ipnet("198.19.5.7/16")}}
	down := Iface{Name: "eth1", Up: false, Addrs: []*net.IPNet{ipnet("198.18.1.1/24")}}

	c := valid(t)
	rt, err := c.Resolve(fakeIfaces(lo, eth, down))
	if err != nil {
		t.Fatal(err)
	}
	if rt.Iface.Name != "eth0" || !rt.ServerIP.Equal(net.IPv4(198, 18, 0, 1)) || rt.Subnet.String() != "198.18.0.0/24" {
		t.Errorf("picked %s %s %s", rt.Iface.Name, rt.ServerIP, rt.Subnet)
	}
	if rt.PoolStart.String() != "198.18.0.128" || rt.PoolEnd.String() != "198.18.0.254" {
		t.Errorf("default pool %s-%s", rt.PoolStart, rt.PoolEnd)
	}
	if rt.Range.First != 64001 || rt.Range.Last != 65000 {
		t.Errorf("range %v", rt.Range)
	}

	for _, tc := range []struct {
		name   string
		mod    func(*Config)
		ifaces []Iface
		key    string
		says   string
	}{
		{"two candidates", func(*Config) {}, []Iface{eth, wlan}, "interface", "several candidates (eth0, wlan0)"},
		{"no candidates", func(*Config) {}, []Iface{lo}, "interface", "no interface is up"},
		{"unknown", func(c *Config) { c.Interface = "eth9" }, []Iface{eth, wlan}, "interface", `no interface named "eth9"`},
		{"down", func(c *Config) { c.Interface = "eth1" }, []Iface{eth, down}, "interface", "is down"},
		{"pool outside", func(c *Config) { c.DHCP.Pool = "198.18.1.10-198.18.1.20" }, []Iface{eth}, "dhcp.pool", "outside eth0's subnet 198.18.0.0/24"},
		{"server ip elsewhere", func(c *Config) { c.ServerIP = "198.18.9.9" }, []Iface{eth}, "server_ip", "not an address of interface eth0"},
		{"router outside", func(c *Config) { c.DHCP.Router = "10.9.9.9" }, []Iface{eth}, "dhcp.router", "outside"},
	} {
		c := valid(t)
		tc.mod(&c)
		_, err := c.Resolve(fakeIfaces(tc.ifaces...))
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != tc.key || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: want %s error saying %q, got %v", tc.name, tc.key, tc.says, err)
		}
	}

	// A pool inside the subnet and a named interface among several.
	c = valid(t)
	c.Interface, c.DHCP.Pool = "wlan0", "198.19.9.1-198.19.9.50"
	rt, err = c.Resolve(fakeIfaces(eth, wlan))
	if err != nil || rt.PoolEnd.String() != "198.19.9.50" {
		t.Fatalf("explicit pool: %v %v", rt, err)
	}
	// Proxy mode needs no pool even on a subnet too small for one.
	c = valid(t)
	c.DHCP.Mode = ModeProxy
	tiny := Iface{Name: "p2p", Up: true, Addrs: []*net.IPNet{ipnet("198.18.0.1/31")}}
	if _, err := c.Resolve(fakeIfaces(tiny)); err != nil {
		t.Fatalf("proxy on /31: %v", err)
	}
}

func TestDefaultPool(t *testing.T) {
	for _, tc := range []struct{ cidr, first, last string }{
		{"198.18.0.0/24", "198.18.0.128", "198.18.0.254"},
		{"198.18.0.0/16", "198.18.255.5", "198.18.255.254"},
		{"198.18.0.0/30", "198.18.0.2", "198.18.0.2"},
	} {
		_, n, _ := net.ParseCIDR(tc.cidr)
		a, b, err := defaultPool(n)
		if err != nil || a.String() != tc.first || b.String() != tc.last {
			t.Errorf("%s: %s-%s %v, want %s-%s", tc.cidr, a, b, err, tc.first, tc.last)
		}
	}
}

func TestDeployKeys(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "netdeploy.yaml")
	if err := os.WriteFile(file, []byte("deploy:\n  default_image: base\n  silent_timeout: 90s\n  after: PowerOff\n  assign:\n    52-54-00-AA-BB-01: win11\n    \"52:54:00:aa:bb:02\": debian\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--config", file}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(fs)
	if err != nil {
		t.Fatal(err)
	}
	c.Finish()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	d := c.Deploy
	if d.DefaultImage != "base" || d.SilentTimeout != 90*time.Second || d.After != "poweroff" ||
		d.Assign["52:54:00:aa:bb:01"] != "win11" || d.Assign["52:54:00:aa:bb:02"] != "debian" || len(d.Assign) != 2 {
		t.Fatalf("deploy %+v", d)
	}
	for _, bad := range []struct {
		key string
		set func(*Config)
	}{
		{"deploy.assign", func(c *Config) { c.Deploy.Assign = map[string]string{"nope": "x"} }},
		{"deploy.assign", func(c *Config) { c.Deploy.Assign = map[string]string{"52:54:00:aa:bb:01": ""} }},
		{"deploy.silent_timeout", func(c *Config) { c.Deploy.SilentTimeout = time.Second }},
		{"deploy.after", func(c *Config) { c.Deploy.After = "explode" }},
		{"boot.agent", func(c *Config) { c.Boot.Agent = "/nonexistent/netdeploy" }},
	} {
		c := Default()
		bad.set(&c)
		c.Finish()
		var e *Error
		if err := c.Validate(); !errors.As(err, &e) || e.Key != bad.key {
			t.Errorf("want an error on %s, got %v", bad.key, err)
		}
	}
}

func TestMulticastKeys(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want StartPolicy
		bad  bool
	}{
		{"now", StartPolicy{}, false},
		{"", StartPolicy{}, false},
		{"Manual", StartPolicy{Manual: true}, false},
		{"clients:4", StartPolicy{Clients: 4}, false},
		{"delay:90s", StartPolicy{Delay: 90 * time.Second}, false},
		{"clients:4, delay:2m", StartPolicy{Clients: 4, Delay: 2 * time.Minute}, false},
		{"clients:0", StartPolicy{}, true},
		{"clients:4,clients:5", StartPolicy{}, true},
		{"delay:-1s", StartPolicy{}, true},
		{"soon", StartPolicy{}, true},
	} {
		got, err := ParseStart(tc.in)
		if tc.bad != (err != nil) || (!tc.bad && got != tc.want) {
			t.Errorf("ParseStart(%q) = %+v, %v", tc.in, got, err)
		}
	}
	for _, bad := range []struct {
		key string
		set func(*Config)
	}{
		{"multicast.group", func(c *Config) { c.Multicast.Group = "224.0.0.0/24" }},
		{"multicast.group", func(c *Config) { c.Multicast.Group = "198.18.0.0/24" }},
		{"multicast.group", func(c *Config) { c.Multicast.Group = "239.1.1.1/32" }},
		{"multicast.start", func(c *Config) { c.Multicast.Start = "later" }},
		{"multicast.slow_client", func(c *Config) { c.Multicast.SlowClient = "ignore" }},
		{"multicast.max_rate", func(c *Config) { c.Multicast.MaxRate = -1 }},
		{"multicast.ttl", func(c *Config) { c.Multicast.TTL = 0 }},
	} {
		c := Default()
		bad.set(&c)
		c.Finish()
		var e *Error
		if err := c.Validate(); !errors.As(err, &e) || e.Key != bad.key {
			t.Errorf("want an error on %s, got %v", bad.key, err)
		}
	}
	c := Default()
	c.Finish()
	if err := c.Validate(); err != nil || !c.Multicast.Enabled {
		t.Fatalf("defaults: %v %+v", err, c.Multicast)
	}
}
