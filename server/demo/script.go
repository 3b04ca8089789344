package demo

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ScriptKind says what an iPXE script served by netdeploy asks the client
// to do (see server/boot/script.go for the scripts the server writes).
type ScriptKind int

// Script kinds.
const (
	// ScriptBoot loads a kernel (and maybe an initrd) and boots it.
	ScriptBoot ScriptKind = iota
	// ScriptWait is the pending script: sleep, then chain to the script
	// again, until the operator approves the machine.
	ScriptWait
	// ScriptDenied is the script for a machine the operator refused.
	ScriptDenied
	// ScriptExit ends without booting for another reason (for example no
	// boot entry is configured); Message says why.
	ScriptExit
)

func (k ScriptKind) String() string {
	switch k {
	case ScriptBoot:
		return "boot"
	case ScriptWait:
		return "wait"
	case ScriptDenied:
		return "denied"
	case ScriptExit:
		return "exit"
	}
	return fmt.Sprintf("kind-%d", int(k))
}

// ErrDenied is returned by Client.Run when the server's script says the
// operator denied the machine.
var ErrDenied = errors.New("demo: denied by the operator")

// Script is what ParseScript understood of an iPXE script.
type Script struct {
	Kind    ScriptKind
	Kernel  string // absolute URL of the kernel (ScriptBoot)
	Cmdline string // kernel command line (ScriptBoot)
	Initrd  string // absolute URL of the initrd, "" when none
	Chain   string // absolute URL chained to (ScriptWait)
	Message string // the echo lines, joined with "; "
}

// ScriptVars are the iPXE settings the client substitutes in a script
// (iPXE "${name}" and "${name:type}" expansion).
type ScriptVars struct {
	MAC net.HardwareAddr
	IP  net.IP
}

// maxScript bounds the script a client reads.
const maxScript = 64 << 10

// ParseScript reads the subset of iPXE scripting netdeploy's scripts use:
// "#!ipxe", echo, sleep, kernel, initrd, chain, boot and exit. Settings
// are expanded with vars and relative URLs resolved against base (the
// script's own URL; nil when the URLs are absolute).
func ParseScript(b []byte, base *url.URL, vars ScriptVars) (Script, error) {
	var s Script
	if len(b) > maxScript {
		return s, fmt.Errorf("demo: script of %d bytes is too big", len(b))
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	first := true
	var echoes []string
	exited := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if first {
			first = false
			if !strings.HasPrefix(line, "#!ipxe") {
				return s, fmt.Errorf("demo: not an iPXE script (first line %q)", truncate(line, 40))
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ":") {
			continue
		}
		line = expand(line, vars)
		cmd, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		switch cmd {
		case "echo":
			echoes = append(echoes, strings.TrimPrefix(rest, "-n "))
		case "kernel", "imgexec", "imgload", "module", "initrd", "imgfetch", "chain":
			u, args, err := imageArgs(rest)
			if err != nil {
				return s, fmt.Errorf("demo: script: %s: %w", cmd, err)
			}
			abs, err := resolve(base, u)
			if err != nil {
				return s, fmt.Errorf("demo: script: %s: %w", cmd, err)
			}
			switch cmd {
			case "kernel", "imgexec", "imgload":
				if s.Kernel == "" {
					s.Kernel, s.Cmdline = abs, args
				}
			case "initrd", "module", "imgfetch":
				if s.Initrd == "" {
					s.Initrd = abs
				}
			case "chain":
				if s.Chain == "" {
					s.Chain = abs
				}
			}
		case "exit":
			exited = true
		}
		// sleep, boot, set and anything else change nothing here.
		if exited {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("demo: script: %w", err)
	}
	if first {
		return s, errors.New("demo: empty script")
	}
	s.Message = strings.Join(echoes, "; ")
	switch {
	case s.Kernel != "":
		s.Kind = ScriptBoot
	case s.Chain != "":
		s.Kind = ScriptWait
	case strings.Contains(strings.ToLower(s.Message), "denied"):
		s.Kind = ScriptDenied
	default:
		s.Kind = ScriptExit
	}
	return s, nil
}

// imageArgs splits the arguments of an iPXE image command into the image
// URI and what follows it, skipping the command's options (--name N,
// --autofree, --replace, --timeout T and their short forms).
func imageArgs(rest string) (string, string, error) {
	f := strings.Fields(rest)
	for i := 0; i < len(f); i++ {
		a := f[i]
		switch {
		case a == "--name" || a == "-n" || a == "--timeout" || a == "-t":
			i++ // the option's value
		case strings.HasPrefix(a, "-"):
			// --name=x, --autofree, -a, --replace, -r ...
		default:
			return a, strings.Join(f[i+1:], " "), nil
		}
	}
	return "", "", errors.New("no image URI")
}

func resolve(base *url.URL, ref string) (string, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return "", err
	}
	if base != nil {
		u = base.ResolveReference(u)
	}
	if u.Scheme != "http" || u.Host == "" {
		return "", fmt.Errorf("%q is not an http:// URL", ref)
	}
	return u.String(), nil
}

// expand substitutes iPXE settings: ${mac}, ${mac:hexhyp}, ${mac:hex},
// ${ip} (also with the "net0/" prefix). Unknown settings expand to
// nothing, as in iPXE.
func expand(line string, v ScriptVars) string {
	var b strings.Builder
	for {
		i := strings.Index(line, "${")
		if i < 0 {
			b.WriteString(line)
			return b.String()
		}
		j := strings.IndexByte(line[i:], '}')
		if j < 0 {
			b.WriteString(line)
			return b.String()
		}
		b.WriteString(line[:i])
		b.WriteString(setting(line[i+2:i+j], v))
		line = line[i+j+1:]
	}
}

func setting(spec string, v ScriptVars) string {
	name, typ, _ := strings.Cut(spec, ":")
	name = strings.TrimPrefix(name, "net0/")
	name = strings.TrimPrefix(name, "netX/")
	switch name {
	case "mac":
		if len(v.MAC) == 0 {
			return ""
		}
		s := v.MAC.String()
		if typ == "hexhyp" {
			s = strings.ReplaceAll(s, ":", "-")
		}
		return s
	case "ip":
		if v.IP == nil {
			return ""
		}
		return v.IP.String()
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
