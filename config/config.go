// Package config is netdeploy's typed configuration: defaults, loading
// (YAML file, then NETDEPLOY_* environment variables, then flags, through a
// local spf13/viper instance) and validation. Nothing outside this package
// touches viper.
package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/netdeploy/netdeploy/server/policy"
	"github.com/netdeploy/netdeploy/server/udprange"
)

// DHCP modes (dhcp.mode).
const (
	ModeAuthoritative = "authoritative"
	ModeProxy         = "proxy"
	ModeOff           = "off"
)

// Config is the whole configuration. The mapstructure tags are the
// documented key names (README "Configuration").
type Config struct {
	Interface string    `mapstructure:"interface"`
	ServerIP  string    `mapstructure:"server_ip"`
	UDPRange  string    `mapstructure:"udp_range"`
	DataDir   string    `mapstructure:"data_dir"`
	ImagesDir string    `mapstructure:"images_dir"`
	LogLevel  string    `mapstructure:"log_level"`
	DHCP      DHCP      `mapstructure:"dhcp"`
	PXE       PXE       `mapstructure:"pxe"`
	Boot      Boot      `mapstructure:"boot"`
	TFTP      TFTP      `mapstructure:"tftp"`
	HTTP      HTTP      `mapstructure:"http"`
	RPC       RPC       `mapstructure:"rpc"`
	SMB       SMB       `mapstructure:"smb"`
	Deploy    Deploy    `mapstructure:"deploy"`
	Multicast Multicast `mapstructure:"multicast"`
	// Accounts may log on to the RPC service (and, later, SMB).
	Accounts []AccountConfig `mapstructure:"accounts"`

	// File is the configuration file that was read, or where the console
	// saves settings when none was given (data_dir/netdeploy.yaml).
	File string `mapstructure:"-"`
}

// DHCP configures the DHCP server.
type DHCP struct {
	Mode              string        `mapstructure:"mode"`
	Authorization     bool          `mapstructure:"authorization"`
	AuthorizedServers []string      `mapstructure:"authorized_servers"`
	Pool              string        `mapstructure:"pool"`
	Router            string        `mapstructure:"router"`
	DNS               []string      `mapstructure:"dns"`
	Lease             time.Duration `mapstructure:"lease"`
}

// PXE configures which clients may boot.
type PXE struct {
	Policy string   `mapstructure:"policy"`
	Known  []string `mapstructure:"known"`
}

// Boot is the default boot entry and where the iPXE binaries are.
type Boot struct {
	IPXEDir string `mapstructure:"ipxe_dir"`
	Kernel  string `mapstructure:"kernel"`
	Initrd  string `mapstructure:"initrd"`
	Cmdline string `mapstructure:"cmdline"`
	// Agent is the static netdeploy binary put in the agent's initramfs
	// when no initrd is given (default: this binary, which must then be
	// built with CGO_ENABLED=0).
	Agent string `mapstructure:"agent"`
}

// Deploy says which image a client gets and how long an agent may stay
// silent.
type Deploy struct {
	// DefaultImage is the image of clients without an assignment; empty:
	// the client chooses at its own console.
	DefaultImage string `mapstructure:"default_image"`
	// Assign maps a client's MAC to an image name.
	Assign map[string]string `mapstructure:"assign"`
	// SilentTimeout marks a deploying client failed when nothing was heard
	// from it for this long.
	SilentTimeout time.Duration `mapstructure:"silent_timeout"`
	// After is what the agent does once the image is verified: reboot,
	// poweroff or halt.
	After string `mapstructure:"after"`
}

// TFTP configures the TFTP root.
type TFTP struct {
	Root string `mapstructure:"root"`
	Port int    `mapstructure:"port"`
}

// HTTP configures the HTTP boot server.
type HTTP struct {
	Port int `mapstructure:"port"`
}

// RPC configures the DCE/RPC services.
type RPC struct {
	// Port is the deployment control service (WDS RPC listener).
	Port int `mapstructure:"port"`
	// EPMPort is the endpoint mapper; clients expect 135.
	EPMPort int `mapstructure:"epm_port"`
}

// SMB configures the image share (SMB2/3 on 445 and 139) and the NetBIOS
// name service.
type SMB struct {
	// Name is the server's NetBIOS name (1-15 characters).
	Name string `mapstructure:"name"`
	// Workgroup is announced in node status answers.
	Workgroup string `mapstructure:"workgroup"`
	// Guest lets clients in without an account (read-only, like everyone).
	Guest bool `mapstructure:"guest"`
	// Signing is "auto" (sign when the client asks) or "required".
	Signing string `mapstructure:"signing"`
	// Encrypt makes the images share refuse unencrypted access (SMB 3).
	Encrypt bool `mapstructure:"encrypt"`
	// Port is SMB over TCP ("direct hosting"); clients expect 445.
	Port int `mapstructure:"port"`
	// SessionPort is SMB through the NetBIOS session service; 139.
	SessionPort int `mapstructure:"session_port"`
	// NetBIOS answers name queries for Name on UDP 137 (and holds 138).
	NetBIOS bool `mapstructure:"netbios"`
}

// AccountConfig is one logon: a name and either the password or the NT
// hash of it (32 hex digits).
type AccountConfig struct {
	Name     string `mapstructure:"name"`
	Password string `mapstructure:"password"`
	NTHash   string `mapstructure:"nt_hash"`
}

// Multicast configures image transmission to many clients at once.
type Multicast struct {
	// Enabled offers images by multicast; agents fall back to SMB.
	Enabled bool `mapstructure:"enabled"`
	// Group is the block of IPv4 multicast addresses sessions take their
	// group from (CIDR, inside 239.0.0.0/8, the organization-local scope).
	Group string `mapstructure:"group"`
	// Start says when a session starts sending: "now" (its first client),
	// "clients:N", "delay:DURATION" (after its first client joined),
	// "clients:N,delay:DURATION" (whichever comes first) or "manual".
	Start string `mapstructure:"start"`
	// SlowClient is what happens to a client that holds the others back:
	// "wait" (the group slows down), "drop" (it fetches by SMB) or "split"
	// (it moves to a second, slower stream of the image).
	SlowClient string `mapstructure:"slow_client"`
	// MaxRate caps the send rate in Mbit/s; 0: the sender's default.
	MaxRate int `mapstructure:"max_rate"`
	// TTL of the data packets; 1 keeps them on the local segment.
	TTL int `mapstructure:"ttl"`
}

// StartPolicy is multicast.start read: start after Clients clients or
// Delay after the first, or only by hand.
type StartPolicy struct {
	Clients int
	Delay   time.Duration
	Manual  bool
}

// ParseStart reads multicast.start.
func ParseStart(s string) (StartPolicy, error) {
	var p StartPolicy
	s = strings.ToLower(strings.TrimSpace(s))
	switch s {
	case "now", "":
		return p, nil
	case "manual":
		p.Manual = true
		return p, nil
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), ":")
		switch {
		case ok && k == "clients":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 10000 || p.Clients != 0 {
				return p, fmt.Errorf("%q: clients:N wants N from 1 to 10000, once", s)
			}
			p.Clients = n
		case ok && k == "delay":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 || d > 24*time.Hour || p.Delay != 0 {
				return p, fmt.Errorf("%q: delay:DURATION wants a duration up to 24h, once", s)
			}
			p.Delay = d
		default:
			return p, fmt.Errorf("%q: want now, manual, clients:N, delay:DURATION or clients:N,delay:DURATION", s)
		}
	}
	return p, nil
}

// Error is a configuration problem: the key and what is wrong with it.
type Error struct {
	Key     string
	Problem string
}

func (e *Error) Error() string { return "config: " + e.Key + ": " + e.Problem }

func keyErr(key, format string, args ...any) error {
	return &Error{Key: key, Problem: fmt.Sprintf(format, args...)}
}

// Default returns the defaults. Paths that follow data_dir (images_dir,
// tftp.root) stay empty here and are filled in by Finish.
func Default() Config {
	return Config{
		UDPRange: udprange.Default().String(),
		DataDir:  defaultDataDir(),
		LogLevel: "info",
		DHCP: DHCP{
			Mode:  ModeAuthoritative,
			Lease: time.Hour,
		},
		PXE:       PXE{Policy: string(policy.All)},
		Boot:      Boot{IPXEDir: "/usr/lib/ipxe", Cmdline: "console=tty0 console=ttyS0,115200"},
		HTTP:      HTTP{Port: 80},
		TFTP:      TFTP{Port: 69},
		RPC:       RPC{Port: 5040, EPMPort: 135},
		SMB:       SMB{Name: "NETDEPLOY", Workgroup: "WORKGROUP", Signing: "auto", Port: 445, SessionPort: 139, NetBIOS: true},
		Deploy:    Deploy{SilentTimeout: 5 * time.Minute, After: "reboot"},
		Multicast: Multicast{Enabled: true, Group: "239.255.77.0/24", Start: "now", SlowClient: "wait", TTL: 1},
	}
}

func defaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/netdeploy"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "netdeploy")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "netdeploy")
	}
	return "netdeploy-data"
}

// validNetBIOSName checks a NetBIOS name (RFC 1001 14: at most 15
// characters; we allow letters, digits, '-' and '_').
func validNetBIOSName(n string) error {
	if n == "" || len(n) > 15 {
		return fmt.Errorf("%q: want 1 to 15 characters", n)
	}
	for _, r := range n {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("%q: only letters, digits, '-' and '_'", n)
		}
	}
	return nil
}

// Finish fills in the values derived from others.
func (c *Config) Finish() {
	c.SMB.Name = strings.ToUpper(strings.TrimSpace(c.SMB.Name))
	c.SMB.Workgroup = strings.ToUpper(strings.TrimSpace(c.SMB.Workgroup))
	c.SMB.Signing = strings.ToLower(strings.TrimSpace(c.SMB.Signing))
	if c.ImagesDir == "" {
		c.ImagesDir = filepath.Join(c.DataDir, "images")
	}
	if c.TFTP.Root == "" {
		c.TFTP.Root = filepath.Join(c.DataDir, "tftp")
	}
	c.DHCP.Mode = strings.ToLower(strings.TrimSpace(c.DHCP.Mode))
	c.PXE.Policy = strings.ToLower(strings.TrimSpace(c.PXE.Policy))
	c.Deploy.After = strings.ToLower(strings.TrimSpace(c.Deploy.After))
	c.Multicast.SlowClient = strings.ToLower(strings.TrimSpace(c.Multicast.SlowClient))
	if len(c.Deploy.Assign) > 0 {
		norm := make(map[string]string, len(c.Deploy.Assign))
		for mac, img := range c.Deploy.Assign {
			if hw, err := net.ParseMAC(strings.ReplaceAll(strings.TrimSpace(mac), "-", ":")); err == nil {
				mac = hw.String()
			}
			norm[mac] = strings.TrimSpace(img)
		}
		c.Deploy.Assign = norm
	}
}

// Validate checks everything that can be checked without looking at the
// machine's interfaces. The error is an *Error naming the key.
func (c *Config) Validate() error {
	if _, err := udprange.Parse(c.UDPRange); err != nil {
		return keyErr("udp_range", "%v", err)
	}
	if c.ServerIP != "" {
		if ip := net.ParseIP(c.ServerIP); ip == nil || ip.To4() == nil {
			return keyErr("server_ip", "%q is not an IPv4 address", c.ServerIP)
		}
	}
	switch c.DHCP.Mode {
	case ModeAuthoritative, ModeProxy, ModeOff:
	default:
		return keyErr("dhcp.mode", "unknown mode %q (want authoritative, proxy or off)", c.DHCP.Mode)
	}
	if _, err := parseIPs(c.DHCP.AuthorizedServers); err != nil {
		return keyErr("dhcp.authorized_servers", "%v", err)
	}
	if c.DHCP.Pool != "" {
		if _, _, err := parsePool(c.DHCP.Pool); err != nil {
			return keyErr("dhcp.pool", "%v", err)
		}
	}
	if c.DHCP.Router != "" {
		if ip := net.ParseIP(c.DHCP.Router); ip == nil || ip.To4() == nil {
			return keyErr("dhcp.router", "%q is not an IPv4 address", c.DHCP.Router)
		}
	}
	if _, err := parseIPs(c.DHCP.DNS); err != nil {
		return keyErr("dhcp.dns", "%v", err)
	}
	if c.DHCP.Lease < time.Minute || c.DHCP.Lease > 365*24*time.Hour {
		return keyErr("dhcp.lease", "%s is outside 1m-8760h", c.DHCP.Lease)
	}
	if _, err := policy.ParseMode(c.PXE.Policy); err != nil {
		return keyErr("pxe.policy", "%v", err)
	}
	for _, m := range c.PXE.Known {
		if _, err := net.ParseMAC(m); err != nil {
			return keyErr("pxe.known", "%q is not a MAC address", m)
		}
	}
	if c.TFTP.Port < 1 || c.TFTP.Port > 65535 {
		return keyErr("tftp.port", "%d is not a UDP port", c.TFTP.Port)
	}
	if c.HTTP.Port < 1 || c.HTTP.Port > 65535 {
		return keyErr("http.port", "%d is not a TCP port", c.HTTP.Port)
	}
	if c.RPC.Port < 1 || c.RPC.Port > 65535 {
		return keyErr("rpc.port", "%d is not a TCP port", c.RPC.Port)
	}
	if c.RPC.EPMPort < 1 || c.RPC.EPMPort > 65535 {
		return keyErr("rpc.epm_port", "%d is not a TCP port", c.RPC.EPMPort)
	}
	if _, err := ParseAccounts(c.Accounts); err != nil {
		return err
	}
	if err := validNetBIOSName(c.SMB.Name); err != nil {
		return keyErr("smb.name", "%v", err)
	}
	if err := validNetBIOSName(c.SMB.Workgroup); err != nil {
		return keyErr("smb.workgroup", "%v", err)
	}
	switch c.SMB.Signing {
	case "auto", "required":
	default:
		return keyErr("smb.signing", "unknown value %q (want auto or required)", c.SMB.Signing)
	}
	if c.SMB.Port < 1 || c.SMB.Port > 65535 {
		return keyErr("smb.port", "%d is not a TCP port", c.SMB.Port)
	}
	if c.SMB.SessionPort < 1 || c.SMB.SessionPort > 65535 || c.SMB.SessionPort == c.SMB.Port {
		return keyErr("smb.session_port", "%d is not a TCP port other than smb.port", c.SMB.SessionPort)
	}
	tcp := map[int]string{}
	for _, p := range []struct {
		key  string
		port int
	}{{"http.port", c.HTTP.Port}, {"rpc.epm_port", c.RPC.EPMPort}, {"rpc.port", c.RPC.Port}, {"smb.port", c.SMB.Port}, {"smb.session_port", c.SMB.SessionPort}} {
		if other, dup := tcp[p.port]; dup {
			return keyErr(p.key, "%d is also %s", p.port, other)
		}
		tcp[p.port] = p.key
	}
	for mac, img := range c.Deploy.Assign {
		if hw, err := net.ParseMAC(mac); err != nil || len(hw) != 6 {
			return keyErr("deploy.assign", "%q is not a MAC address", mac)
		}
		if img == "" {
			return keyErr("deploy.assign", "%s: empty image name", mac)
		}
	}
	if c.Deploy.SilentTimeout < 10*time.Second {
		return keyErr("deploy.silent_timeout", "%s is too short (at least 10s: the agent reports every second, but disks stall)", c.Deploy.SilentTimeout)
	}
	switch c.Deploy.After {
	case "reboot", "poweroff", "halt":
	default:
		return keyErr("deploy.after", "%q: want reboot, poweroff or halt", c.Deploy.After)
	}
	if _, g, err := net.ParseCIDR(c.Multicast.Group); err != nil || !g.IP.To4().IsMulticast() || g.IP.To4()[0] != 239 {
		return keyErr("multicast.group", "%q: want an IPv4 block inside 239.0.0.0/8 (organization-local), such as 239.255.77.0/24", c.Multicast.Group)
	} else if ones, _ := g.Mask.Size(); ones > 30 {
		return keyErr("multicast.group", "%q: too small, want at least a /30", c.Multicast.Group)
	}
	if _, err := ParseStart(c.Multicast.Start); err != nil {
		return keyErr("multicast.start", "%v", err)
	}
	switch c.Multicast.SlowClient {
	case "wait", "drop", "split":
	default:
		return keyErr("multicast.slow_client", "%q: want wait, drop or split", c.Multicast.SlowClient)
	}
	if c.Multicast.MaxRate < 0 || c.Multicast.MaxRate > 100000 {
		return keyErr("multicast.max_rate", "%d Mbit/s: want 0 (the default) to 100000", c.Multicast.MaxRate)
	}
	if c.Multicast.TTL < 1 || c.Multicast.TTL > 255 {
		return keyErr("multicast.ttl", "%d: want 1 to 255", c.Multicast.TTL)
	}
	if c.Boot.Agent != "" && c.Boot.Initrd != "" {
		return keyErr("boot.agent", "set with boot.initrd: the agent goes into the initramfs netdeploy builds, which boot.initrd replaces")
	}
	if c.Boot.Initrd != "" && c.Boot.Kernel == "" {
		return keyErr("boot.initrd", "set without boot.kernel")
	}
	for key, p := range map[string]string{"boot.kernel": c.Boot.Kernel, "boot.initrd": c.Boot.Initrd, "boot.agent": c.Boot.Agent} {
		if p == "" {
			continue
		}
		if st, err := os.Stat(p); err != nil {
			return keyErr(key, "%v", err)
		} else if !st.Mode().IsRegular() {
			return keyErr(key, "%s is not a regular file", p)
		}
	}
	if st, err := os.Stat(c.Boot.IPXEDir); err != nil || !st.IsDir() {
		return keyErr("boot.ipxe_dir", "%s is not a directory (install the Debian package ipxe, or set boot.ipxe_dir)", c.Boot.IPXEDir)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return keyErr("log_level", "unknown level %q (want debug, info, warn or error)", c.LogLevel)
	}
	if c.DataDir == "" {
		return keyErr("data_dir", "must not be empty")
	}
	return nil
}

func parseIPs(list []string) ([]net.IP, error) {
	var out []net.IP
	for _, s := range list {
		ip := net.ParseIP(strings.TrimSpace(s))
		if ip == nil || ip.To4() == nil {
			return nil, fmt.Errorf("%q is not an IPv4 address", s)
		}
		out = append(out, ip.To4())
	}
	return out, nil
}

// parsePool reads "A-B" (two IPv4 addresses, A <= B).
func parsePool(s string) (net.IP, net.IP, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return nil, nil, fmt.Errorf("%q is not FIRST-LAST", s)
	}
	first := net.ParseIP(strings.TrimSpace(a)).To4()
	last := net.ParseIP(strings.TrimSpace(b)).To4()
	if first == nil || last == nil {
		return nil, nil, fmt.Errorf("%q is not two IPv4 addresses", s)
	}
	if ipToUint(first) > ipToUint(last) {
		return nil, nil, fmt.Errorf("%q is inverted (first address above last)", s)
	}
	return first, last, nil
}

func ipToUint(ip net.IP) uint32 {
	ip = ip.To4()
	return uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
}

func uintToIP(v uint32) net.IP {
	return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).To4()
}
