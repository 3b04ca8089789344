package config

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestSaveKeepsCommentsAndKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "netdeploy.yaml")
	orig := "# site config\ninterface: eth1 # the switch\ndhcp:\n  mode: proxy # beside the site router\n  lease: 2h\n"
	if err := os.WriteFile(path, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Save(path, map[string]any{"dhcp.mode": "authoritative", "dhcp.authorization": true, "udp_range": "64100-64199", "pxe.policy": "approve"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	got := string(b)
	for _, want := range []string{"# site config", "interface: eth1 # the switch", "mode: authoritative # beside the site router", "lease: 2h", "authorization: true", "udp_range: 64100-64199", "policy: approve"} {
		if !strings.Contains(got, want) {
			t.Errorf("saved file lacks %q:\n%s", want, got)
		}
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode changed to %v", st.Mode().Perm())
	}
	// What was saved loads back.
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	fs.Parse([]string{"--config", path})
	c, err := Load(fs)
	if err != nil {
		t.Fatal(err)
	}
	if c.DHCP.Mode != "authoritative" || !c.DHCP.Authorization || c.UDPRange != "64100-64199" || c.PXE.Policy != "approve" || c.Interface != "eth1" || c.File != path {
		t.Fatalf("loaded %+v", c)
	}
}

// TestSavedFileIsRead: without --config, data_dir/netdeploy.yaml is read,
// and saving there creates it.
func TestSavedFileIsRead(t *testing.T) {
	dir := t.TempDir()
	if err := Save(SavedFile(dir), map[string]any{"udp_range": "50000-50099"}); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	fs.Parse([]string{"--data-dir", dir})
	c, err := Load(fs)
	if err != nil {
		t.Fatal(err)
	}
	if c.UDPRange != "50000-50099" || c.File != SavedFile(dir) {
		t.Fatalf("range %s file %s", c.UDPRange, c.File)
	}
	// A flag still wins over the saved file.
	fs = pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	fs.Parse([]string{"--data-dir", dir, "--udp-range", "60000-60010"})
	if c, _ = Load(fs); c.UDPRange != "60000-60010" {
		t.Fatalf("flag lost: %s", c.UDPRange)
	}
}

func TestSaveRefusesNonMapping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.yaml")
	os.WriteFile(path, []byte("- a\n- b\n"), 0o644)
	if err := Save(path, map[string]any{"udp_range": "50000-50099"}); err == nil || !strings.Contains(err.Error(), "mapping") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "- a\n- b\n" {
		t.Fatalf("file changed: %q", b)
	}
}

func TestAccounts(t *testing.T) {
	// [MS-NLMP] 4.2.2.1.2: NTOWFv1("Password").
	if h := NTHash("Password"); hex.EncodeToString(h[:]) != "a4f49c406510bdcab6824ee7c30fd852" {
		t.Fatalf("NTHash = %x", h)
	}
	got, err := ParseAccounts([]AccountConfig{{Name: "tech", Password: "Password"}, {Name: "agent", NTHash: "A4F49C406510BDCAB6824EE7C30FD852"}})
	if err != nil || len(got) != 2 || got[0].NTHash != got[1].NTHash || got[1].Name != "agent" {
		t.Fatalf("accounts %v %+v", err, got)
	}
	for _, tc := range []struct {
		in   []AccountConfig
		want string
	}{
		{[]AccountConfig{{Password: "x"}}, "accounts[0].name: must not be empty"},
		{[]AccountConfig{{Name: "a"}}, "accounts[0]: needs password or nt_hash"},
		{[]AccountConfig{{Name: "a", Password: "x", NTHash: "00"}}, "not both"},
		{[]AccountConfig{{Name: "a", NTHash: "xyz"}}, "accounts[0].nt_hash: want 32 hex digits"},
		{[]AccountConfig{{Name: "a", Password: "x"}, {Name: "A", Password: "y"}}, "accounts[1].name"},
	} {
		if _, err := ParseAccounts(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.in, err, tc.want)
		}
	}
	// From YAML.
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("accounts:\n  - name: tech\n    password: Password\nrpc:\n  port: 5041\n"), 0o600)
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	fs.Parse([]string{"--config", path})
	c, err := Load(fs)
	if err != nil || len(c.Accounts) != 1 || c.Accounts[0].Name != "tech" || c.RPC.Port != 5041 || c.RPC.EPMPort != 135 {
		t.Fatalf("loaded %v %+v", err, c)
	}
	c.RPC.Port = 135
	c.Finish()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "rpc.port") {
		t.Fatalf("rpc.port equal to the endpoint mapper: %v", err)
	}
}

func TestSaveCommentsOnlyAndCase(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	os.WriteFile(path, []byte("# only a comment\n"), 0o644)
	if err := Save(path, map[string]any{"udp_range": "50000-50010"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), "# only a comment") || !strings.Contains(string(b), "udp_range: 50000-50010") {
		t.Fatalf("comments-only file saved as %q", b)
	}
	os.WriteFile(path, []byte("DHCP:\n  Mode: proxy\n"), 0o644)
	if err := Save(path, map[string]any{"dhcp.mode": "off"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if strings.Count(strings.ToLower(string(b)), "dhcp:") != 1 || !strings.Contains(string(b), "Mode: \"off\"") && !strings.Contains(string(b), "Mode: off") {
		t.Fatalf("upper-case section saved as %q", b)
	}
}

func TestSMBKeys(t *testing.T) {
	c := Default()
	c.Finish()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.SMB.Name = "WAY-TOO-LONG-A-NAME" }, "smb.name"},
		{func(c *Config) { c.SMB.Name = "BAD NAME" }, "smb.name"},
		{func(c *Config) { c.SMB.Signing = "sometimes" }, "smb.signing"},
		{func(c *Config) { c.SMB.Port = 0 }, "smb.port"},
	} {
		c := Default()
		tc.set(&c)
		c.Finish()
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.want, err)
		}
	}
	c = Default()
	c.SMB.Name = "lab-1"
	c.Finish()
	if c.SMB.Name != "LAB-1" {
		t.Errorf("name not upper-cased: %q", c.SMB.Name)
	}
}
