package boot

import (
	"fmt"
	"strings"
)

// ScriptParams are the inputs of the generated iPXE script.
type ScriptParams struct {
	BaseURL string // HTTP root with trailing slash
	Entry   Entry
	// Pending is true for a client waiting for approval: its script waits
	// and asks again.
	Pending bool
	// Denied is true for a client the operator refused.
	Denied bool
	// Problem says why there is no boot entry, for the client's screen.
	Problem string
	// Args are appended to the entry's command line for this client (the
	// agent's netdeploy.* settings).
	Args string
}

// Script renders the iPXE script (iPXE scripting: "#!ipxe", kernel,
// initrd, boot). Each request carries the client's MAC so the HTTP server
// can attribute the download to it.
func Script(p ScriptParams) []byte {
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	q := "?mac=${mac:hexhyp}"
	switch {
	case p.Denied:
		b.WriteString("echo netdeploy: this machine was denied by the operator\n")
		b.WriteString("sleep 10\nexit 1\n")
	case p.Pending:
		b.WriteString("echo netdeploy: waiting for the operator to approve ${mac}\n")
		fmt.Fprintf(&b, "sleep 5\nchain --autofree %s%s%s\n", p.BaseURL, ScriptName, q)
	case p.Entry.Kernel == "" && p.Problem != "":
		fmt.Fprintf(&b, "echo netdeploy: no boot entry: %s\n", ipxeSafe(p.Problem))
		b.WriteString("sleep 10\nexit 1\n")
	case p.Entry.Kernel == "":
		b.WriteString("echo netdeploy: no boot entry configured (set boot.kernel)\n")
		b.WriteString("sleep 10\nexit 1\n")
	default:
		b.WriteString("echo netdeploy: booting ${mac} (${ip})\n")
		cmdline := strings.TrimSpace(p.Entry.Cmdline + " " + p.Args)
		if p.Entry.HasInitrd() {
			// The EFI stub finds the initrd by its name on the command line.
			cmdline = strings.TrimSpace("initrd=initrd " + cmdline)
		}
		fmt.Fprintf(&b, "kernel %s%s%s %s\n", p.BaseURL, KernelName, q, cmdline)
		if p.Entry.HasInitrd() {
			fmt.Fprintf(&b, "initrd --name initrd %s%s%s\n", p.BaseURL, InitrdName, q)
		}
		b.WriteString("boot\n")
	}
	return []byte(b.String())
}

// ipxeSafe keeps text echoed by a script from being read as iPXE syntax
// (settings expansion ${...}, line breaks).
func ipxeSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '$' || r == '\n' || r == '\r' || r < ' ' {
			return ' '
		}
		return r
	}, s)
}
