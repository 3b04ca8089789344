package demo

import (
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/netdeploy/netdeploy/server/boot"
)

var testMAC = net.HardwareAddr{0x02, 0xde, 0, 0, 0, 0x0a}

func TestParseScriptFromServer(t *testing.T) {
	base := "http://198.18.0.1/"
	entry := boot.Entry{Kernel: "/k", Initrd: "/i", Cmdline: "console=ttyS0 quiet"}
	vars := ScriptVars{MAC: testMAC, IP: net.IPv4(198, 18, 0, 100)}
	self, _ := url.Parse(base + "boot.ipxe")

	s, err := ParseScript(boot.Script(boot.ScriptParams{BaseURL: base, Entry: entry}), self, vars)
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind != ScriptBoot {
		t.Errorf("kind %v, want boot", s.Kind)
	}
	if want := "http://198.18.0.1/netdeploy/kernel?mac=02-de-00-00-00-0a"; s.Kernel != want {
		t.Errorf("kernel %q, want %q", s.Kernel, want)
	}
	if want := "http://198.18.0.1/netdeploy/initrd?mac=02-de-00-00-00-0a"; s.Initrd != want {
		t.Errorf("initrd %q, want %q", s.Initrd, want)
	}
	if s.Cmdline != "initrd=initrd console=ttyS0 quiet" {
		t.Errorf("cmdline %q", s.Cmdline)
	}
	if want := "netdeploy: booting 02:de:00:00:00:0a (198.18.0.100)"; s.Message != want {
		t.Errorf("message %q, want %q", s.Message, want)
	}

	noInitrd := boot.Entry{Kernel: "/k", Cmdline: "x=1"}
	s, err = ParseScript(boot.Script(boot.ScriptParams{BaseURL: "http://127.0.0.1:8080/", Entry: noInitrd}), nil, ScriptVars{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind != ScriptBoot || s.Kernel != "http://127.0.0.1:8080/netdeploy/kernel?mac=" || s.Initrd != "" || s.Cmdline != "x=1" {
		t.Errorf("without initrd and MAC: %+v", s)
	}

	s, err = ParseScript(boot.Script(boot.ScriptParams{BaseURL: base, Entry: entry, Pending: true}), self, vars)
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind != ScriptWait || s.Chain != "http://198.18.0.1/boot.ipxe?mac=02-de-00-00-00-0a" || s.Kernel != "" {
		t.Errorf("pending script: %+v", s)
	}
	if !strings.Contains(s.Message, "waiting for the operator to approve 02:de:00:00:00:0a") {
		t.Errorf("pending message %q", s.Message)
	}

	s, err = ParseScript(boot.Script(boot.ScriptParams{BaseURL: base, Entry: entry, Denied: true}), self, vars)
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind != ScriptDenied || s.Kernel != "" || !strings.Contains(s.Message, "denied") {
		t.Errorf("denied script: %+v", s)
	}

	s, err = ParseScript(boot.Script(boot.ScriptParams{BaseURL: base}), self, vars)
	if err != nil {
		t.Fatal(err)
	}
	if s.Kind != ScriptExit || !strings.Contains(s.Message, "no boot entry") {
		t.Errorf("no-entry script: %+v", s)
	}
}

func TestParseScriptForms(t *testing.T) {
	self, _ := url.Parse("http://10.0.0.1:8080/dir/boot.ipxe")
	cases := []struct {
		name, script   string
		kind           ScriptKind
		kernel, initrd string
		cmdline, chain string
		wantErr        string
	}{
		{name: "relative URLs and options",
			script: "#!ipxe\n# comment\n:label\nkernel --name vmlinuz --autofree k/vmlinuz ro root=/dev/sda\ninitrd -n initrd /abs/initrd.img\nboot\n",
			kind:   ScriptBoot, kernel: "http://10.0.0.1:8080/dir/k/vmlinuz", initrd: "http://10.0.0.1:8080/abs/initrd.img", cmdline: "ro root=/dev/sda"},
		{name: "settings", script: "#!ipxe\nkernel http://h/k?m=${net0/mac:hexhyp}&ip=${ip}&u=${unknown} a\n",
			kind: ScriptBoot, kernel: "http://h/k?m=02-de-00-00-00-0a&ip=10.0.0.9&u=", cmdline: "a"},
		{name: "chain", script: "#!ipxe\nsleep 5\nchain --autofree http://h/boot.ipxe?mac=${mac}\n",
			kind: ScriptWait, chain: "http://h/boot.ipxe?mac=02:de:00:00:00:0a"},
		{name: "nothing after exit counts", script: "#!ipxe\necho bye\nexit 1\nkernel http://h/k\n", kind: ScriptExit},
		{name: "not ipxe", script: "<html>\n", wantErr: "not an iPXE script"},
		{name: "empty", script: "", wantErr: "empty script"},
		{name: "kernel without URI", script: "#!ipxe\nkernel --name x\n", wantErr: "no image URI"},
		{name: "not http", script: "#!ipxe\nkernel tftp://h/k\n", wantErr: "not an http:// URL"},
	}
	vars := ScriptVars{MAC: testMAC, IP: net.IPv4(10, 0, 0, 9)}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseScript([]byte(c.script), self, vars)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.HasPrefix(err.Error(), "demo: ") {
					t.Fatalf("error %v, want one with %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Kind != c.kind || s.Kernel != c.kernel || s.Initrd != c.initrd || s.Cmdline != c.cmdline || s.Chain != c.chain {
				t.Errorf("got %+v", s)
			}
		})
	}
	if _, err := ParseScript([]byte("#!ipxe\n"+strings.Repeat("echo x\n", maxScript)), nil, vars); err == nil {
		t.Error("a huge script was accepted")
	}
}
