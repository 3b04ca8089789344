package pid1

import (
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
}
