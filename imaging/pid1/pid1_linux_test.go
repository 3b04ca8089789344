package pid1

import (
	"net"
	"strings"
	"testing"

	"github.com/netdeploy/netdeploy/server/netlab"
)

// TestLinkUp brings a down interface up inside a namespace the test makes.
func TestLinkUp(t *testing.T) {
	lab := netlab.New(t)
	h := lab.AddHost("c", "", "")
	if out, err := h.Run(t.Context(), "ip", "link", "set", "eth0", "down"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	var names []string
	if err := h.Do(func() error {
		var err error
		if names, err = EthernetInterfaces(); err != nil {
			return err
		}
		return LinkUp("eth0")
	}); err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "eth0" {
		t.Errorf("interfaces %v", names)
	}
	out, _ := h.Run(t.Context(), "ip", "-o", "link", "show", "eth0")
	if !strings.Contains(out, "<BROADCAST,MULTICAST,UP") && !strings.Contains(out, ",UP") {
		t.Errorf("eth0 not up: %s", out)
	}
	if err := h.Do(func() error {
		return SetAddr("eth0", net.IPv4(198, 18, 0, 77), net.CIDRMask(24, 32))
	}); err != nil {
		t.Fatal(err)
	}
	out, _ = h.Run(t.Context(), "ip", "-o", "-4", "addr", "show", "eth0")
	if !strings.Contains(out, "inet 198.18.0.77/24") {
		t.Errorf("eth0 address: %s", out)
	}
	out, _ = h.Run(t.Context(), "ip", "-4", "route", "show", "dev", "eth0")
	if !strings.Contains(out, "198.18.0.0/24") {
		t.Errorf("no subnet route: %s", out)
	}
	if err := h.Do(func() error { return SetAddr("eth0", net.ParseIP("::1"), net.CIDRMask(24, 32)) }); err == nil {
		t.Error("an IPv6 address was accepted")
	}
}
