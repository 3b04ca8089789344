package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// flagKeys maps command-line flags to configuration keys.
func flagKeys() [][2]string {
	return [][2]string{
		{"interface", "interface"},
		{"server-ip", "server_ip"},
		{"udp-range", "udp_range"},
		{"data-dir", "data_dir"},
		{"images-dir", "images_dir"},
		{"log-level", "log_level"},
		{"dhcp-mode", "dhcp.mode"},
		{"dhcp-authorization", "dhcp.authorization"},
		{"dhcp-pool", "dhcp.pool"},
		{"pxe-policy", "pxe.policy"},
		{"ipxe-dir", "boot.ipxe_dir"},
		{"kernel", "boot.kernel"},
		{"initrd", "boot.initrd"},
		{"cmdline", "boot.cmdline"},
		{"agent", "boot.agent"},
		{"default-image", "deploy.default_image"},
		{"silent-timeout", "deploy.silent_timeout"},
		{"after", "deploy.after"},
		{"multicast", "multicast.enabled"},
		{"multicast-start", "multicast.start"},
		{"multicast-slow-client", "multicast.slow_client"},
		{"tftp-root", "tftp.root"},
		{"tftp-port", "tftp.port"},
		{"http-port", "http.port"},
		{"rpc-port", "rpc.port"},
		{"epm-port", "rpc.epm_port"},
		{"smb-name", "smb.name"},
		{"smb-guest", "smb.guest"},
		{"smb-signing", "smb.signing"},
		{"smb-encrypt", "smb.encrypt"},
		{"smb-port", "smb.port"},
	}
}

// AddFlags registers the configuration flags on fs (defaults are shown
// from Default()).
func AddFlags(fs *pflag.FlagSet) {
	d := Default()
	fs.String("config", "", "YAML configuration file")
	fs.String("interface", "", "interface to serve (required unless only one candidate exists)")
	fs.String("server-ip", "", "server address on the interface (default: its first IPv4)")
	fs.String("udp-range", d.UDPRange, "UDP ports for TFTP sessions and multicast, FIRST-LAST")
	fs.String("data-dir", d.DataDir, "state directory (leases, caches)")
	fs.String("images-dir", "", "image store (default: data-dir/images)")
	fs.String("log-level", d.LogLevel, "debug, info, warn or error")
	fs.String("dhcp-mode", d.DHCP.Mode, "authoritative, proxy or off")
	fs.Bool("dhcp-authorization", d.DHCP.Authorization, "answer only while no unlisted DHCP server is seen")
	fs.String("dhcp-pool", "", "address pool FIRST-LAST (default: upper half of the subnet)")
	fs.String("pxe-policy", d.PXE.Policy, "all, known or approve")
	fs.String("ipxe-dir", d.Boot.IPXEDir, "directory with the iPXE binaries")
	fs.String("kernel", "", "default boot entry: Linux kernel")
	fs.String("initrd", "", "default boot entry: initrd")
	fs.String("cmdline", d.Boot.Cmdline, "default boot entry: kernel command line")
	fs.String("agent", "", "static netdeploy binary for the agent's initramfs (default: this one)")
	fs.String("default-image", "", "image for clients without an assignment (default: the client chooses)")
	fs.Duration("silent-timeout", d.Deploy.SilentTimeout, "mark a deploying client failed after this long without a word")
	fs.String("after", d.Deploy.After, "what a deployed machine does: reboot, poweroff or halt")
	fs.Bool("multicast", d.Multicast.Enabled, "offer images by multicast (agents fall back to SMB)")
	fs.String("multicast-start", d.Multicast.Start, "when a multicast session starts: now, manual, clients:N, delay:DURATION")
	fs.String("multicast-slow-client", d.Multicast.SlowClient, "a client that holds the others back: wait, drop (to SMB) or split (a slower second stream)")
	fs.String("tftp-root", "", "extra files served over TFTP and HTTP (default: data-dir/tftp)")
	fs.Int("tftp-port", d.TFTP.Port, "TFTP port")
	fs.Int("http-port", d.HTTP.Port, "HTTP boot port")
	fs.Int("rpc-port", d.RPC.Port, "deployment control service (RPC) port")
	fs.Int("epm-port", d.RPC.EPMPort, "RPC endpoint mapper port")
	fs.String("smb-name", d.SMB.Name, "NetBIOS name of the image server")
	fs.Bool("smb-guest", d.SMB.Guest, "let SMB clients in without an account")
	fs.String("smb-signing", d.SMB.Signing, "SMB signing: auto or required")
	fs.Bool("smb-encrypt", d.SMB.Encrypt, "require SMB 3 encryption on the images share")
	fs.Int("smb-port", d.SMB.Port, "SMB port (direct TCP)")
}

// Load reads the configuration: defaults, then the YAML file (the
// "config" flag, if given), then NETDEPLOY_* environment variables
// (NETDEPLOY_DHCP_MODE for dhcp.mode), then flags that were set. It does
// not validate; call Resolve.
func Load(fs *pflag.FlagSet) (Config, error) {
	v := viper.New()
	setDefaults(v, Default())
	v.SetEnvPrefix("NETDEPLOY")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	file := ""
	if fs != nil {
		if f := fs.Lookup("config"); f != nil && f.Value.String() != "" {
			file = f.Value.String()
		}
	}
	explicit := file != ""
	if !explicit {
		// Settings saved from the console live in data_dir.
		dataDir := v.GetString("data_dir")
		if fs != nil {
			if f := fs.Lookup("data-dir"); f != nil && f.Changed {
				dataDir = f.Value.String()
			}
		}
		file = SavedFile(dataDir)
	}
	if _, err := os.Stat(file); explicit || err == nil {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				return Config{}, keyErr("config", "%v", pe)
			}
			return Config{}, keyErr("config", "%s: %v", file, err)
		}
	}
	if fs != nil {
		for _, fk := range flagKeys() {
			if f := fs.Lookup(fk[0]); f != nil && f.Changed {
				if err := v.BindPFlag(fk[1], f); err != nil {
					return Config{}, fmt.Errorf("config: bind --%s: %w", fk[0], err)
				}
			}
		}
	}
	var c Config
	err := v.UnmarshalExact(&c, func(dc *mapstructure.DecoderConfig) {
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)
	})
	if err != nil {
		return Config{}, decodeError(err)
	}
	c.File = file
	return c, nil
}

// SavedFile is where settings are kept when no configuration file is
// named: the console saves there and Load reads it.
func SavedFile(dataDir string) string { return filepath.Join(dataDir, "netdeploy.yaml") }

// decodeError turns mapstructure's report into one line naming the key.
func decodeError(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "has invalid keys: "); i >= 0 {
		keys := strings.TrimSpace(msg[i+len("has invalid keys: "):])
		if j := strings.IndexAny(keys, "\n"); j >= 0 {
			keys = keys[:j]
		}
		// "'dhcp' has invalid keys: mdoe" names the section before it.
		if j := strings.LastIndex(msg[:i], "'"); j > 0 {
			if k := strings.LastIndex(msg[:j], "'"); k >= 0 && msg[k+1:j] != "" {
				keys = msg[k+1:j] + "." + keys
			}
		}
		return keyErr(keys, "unknown key")
	}
	if i := strings.Index(msg, "'"); i >= 0 {
		rest := msg[i+1:]
		if j := strings.Index(rest, "'"); j >= 0 {
			// e.g. "decoding failed due to ... 'dhcp.lease' time: invalid duration"
			return keyErr(rest[:j], "%s", strings.TrimSpace(lastLine(rest[j+1:])))
		}
	}
	return keyErr("config", "%s", lastLine(msg))
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimLeft(s, "* ")
}

// setDefaults registers every key with its default so that environment
// variables and UnmarshalExact know all of them.
func setDefaults(v *viper.Viper, d Config) {
	v.SetDefault("interface", d.Interface)
	v.SetDefault("server_ip", d.ServerIP)
	v.SetDefault("udp_range", d.UDPRange)
	v.SetDefault("data_dir", d.DataDir)
	v.SetDefault("images_dir", d.ImagesDir)
	v.SetDefault("log_level", d.LogLevel)
	v.SetDefault("dhcp.mode", d.DHCP.Mode)
	v.SetDefault("dhcp.authorization", d.DHCP.Authorization)
	v.SetDefault("dhcp.authorized_servers", d.DHCP.AuthorizedServers)
	v.SetDefault("dhcp.pool", d.DHCP.Pool)
	v.SetDefault("dhcp.router", d.DHCP.Router)
	v.SetDefault("dhcp.dns", d.DHCP.DNS)
	v.SetDefault("dhcp.lease", d.DHCP.Lease)
	v.SetDefault("pxe.policy", d.PXE.Policy)
	v.SetDefault("pxe.known", d.PXE.Known)
	v.SetDefault("boot.ipxe_dir", d.Boot.IPXEDir)
	v.SetDefault("boot.kernel", d.Boot.Kernel)
	v.SetDefault("boot.initrd", d.Boot.Initrd)
	v.SetDefault("boot.cmdline", d.Boot.Cmdline)
	v.SetDefault("tftp.root", d.TFTP.Root)
	v.SetDefault("tftp.port", d.TFTP.Port)
	v.SetDefault("http.port", d.HTTP.Port)
	v.SetDefault("rpc.port", d.RPC.Port)
	v.SetDefault("rpc.epm_port", d.RPC.EPMPort)
	v.SetDefault("accounts", d.Accounts)
	v.SetDefault("smb.name", d.SMB.Name)
	v.SetDefault("smb.workgroup", d.SMB.Workgroup)
	v.SetDefault("smb.guest", d.SMB.Guest)
	v.SetDefault("smb.signing", d.SMB.Signing)
	v.SetDefault("smb.encrypt", d.SMB.Encrypt)
	v.SetDefault("smb.port", d.SMB.Port)
	v.SetDefault("smb.session_port", d.SMB.SessionPort)
	v.SetDefault("smb.netbios", d.SMB.NetBIOS)
	v.SetDefault("boot.agent", d.Boot.Agent)
	v.SetDefault("deploy.default_image", d.Deploy.DefaultImage)
	v.SetDefault("deploy.assign", d.Deploy.Assign)
	v.SetDefault("deploy.silent_timeout", d.Deploy.SilentTimeout)
	v.SetDefault("deploy.after", d.Deploy.After)
	v.SetDefault("multicast.enabled", d.Multicast.Enabled)
	v.SetDefault("multicast.group", d.Multicast.Group)
	v.SetDefault("multicast.start", d.Multicast.Start)
	v.SetDefault("multicast.slow_client", d.Multicast.SlowClient)
	v.SetDefault("multicast.max_rate", d.Multicast.MaxRate)
	v.SetDefault("multicast.ttl", d.Multicast.TTL)
}
