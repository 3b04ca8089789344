// Package pid1 holds what the imaging agent does when it runs as /init of
// its initramfs: mount the kernel's file systems, load the driver modules
// the archive carries, bring the network interfaces up, and reboot or
// power off at the end. Linux only; elsewhere every call fails clearly.
package pid1

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// maxModules caps the load list.
const maxModules = 4096

// ReadLoadList reads the module load list (one path per line, relative to
// the modules directory; see imaging/initramfs.LoadList), skipping blank
// lines and comments.
func ReadLoadList(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.Contains(l, "..") || strings.HasPrefix(l, "/") {
			return nil, fmt.Errorf("pid1: load list: %q leaves the modules directory", l)
		}
		if len(out) == maxModules {
			return nil, fmt.Errorf("pid1: load list: more than %d modules", maxModules)
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("pid1: load list: %w", err)
	}
	return out, nil
}

// Action is what the agent does when it is finished.
type Action int

// Actions.
const (
	Reboot Action = iota
	PowerOff
	Halt // stay up (for debugging); the kernel must not see /init exit
)

// ParseAction reads "reboot", "poweroff" or "halt" (the kernel command
// line's netdeploy.after=).
func ParseAction(s string) (Action, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "reboot":
		return Reboot, nil
	case "poweroff", "off":
		return PowerOff, nil
	case "halt", "stay":
		return Halt, nil
	}
	return Reboot, fmt.Errorf("pid1: unknown action %q (want reboot, poweroff or halt)", s)
}

// CmdlineArgs returns the netdeploy.KEY=VALUE arguments of a kernel
// command line (/proc/cmdline) as a map without the prefix.
func CmdlineArgs(cmdline string) map[string]string {
	out := map[string]string{}
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		if name, ok := strings.CutPrefix(k, "netdeploy."); ok && name != "" {
			out[name] = v
		}
	}
	return out
}
