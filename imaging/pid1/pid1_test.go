package pid1

import (
	"strings"
	"testing"
)

func TestReadLoadList(t *testing.T) {
	got, err := ReadLoadList(strings.NewReader("# order\nkernel/a.ko\n\n  kernel/b.ko \n"))
	if err != nil || len(got) != 2 || got[1] != "kernel/b.ko" {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"../etc/x.ko\n", "/kernel/a.ko\n"} {
		if _, err := ReadLoadList(strings.NewReader(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCmdlineAndAction(t *testing.T) {
	args := CmdlineArgs("console=ttyS0 netdeploy.server=198.18.0.1 netdeploy.after=poweroff quiet netdeploy.=x")
	if len(args) != 2 || args["server"] != "198.18.0.1" || args["after"] != "poweroff" {
		t.Fatalf("args %v", args)
	}
	for in, want := range map[string]Action{"": Reboot, "reboot": Reboot, "PowerOff": PowerOff, "halt": Halt} {
		if a, err := ParseAction(in); err != nil || a != want {
			t.Errorf("ParseAction(%q) = %v %v", in, a, err)
		}
	}
	if _, err := ParseAction("explode"); err == nil {
		t.Error("unknown action accepted")
	}
}
