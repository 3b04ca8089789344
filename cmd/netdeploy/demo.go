package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/charmbracelet/x/term"
	"github.com/spf13/cobra"

	"github.com/netdeploy/netdeploy/config"
	"github.com/netdeploy/netdeploy/server/demo"
)

// demoOptions are the demo's flags.
type demoOptions struct {
	clients   int
	rate      int64
	kernelMiB int
	loopback  bool
	policy    string
	once      bool

	// Set by the parent for the child it starts inside the lab.
	inLab     string
	dataDir   string
	clientNS  []string
	clientMAC []string
}

func newDemo() *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Show the console working against simulated PXE clients in a private network",
		Long: `demo runs netdeploy's console against simulated machines that boot for real:
DHCP as PXE firmware, TFTP of the boot program, DHCP as iPXE, then the iPXE
script, a kernel and an initrd over HTTP. As root it builds a private network
of namespaces (nothing touches this machine's interfaces) and removes it on
exit; otherwise, or with --loopback, the clients talk to a server on
127.0.0.1 (TFTP and HTTP only; DHCP needs a network).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cio := consoleIO{in: cmd.InOrStdin(), out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr(), tempData: true}
			if !isTerminal(cio.in) || !isTerminal(cio.out) {
				return usageError{errors.New("the demo needs a terminal (it shows the console)")}
			}
			if o.clients < 1 || o.clients > demo.MaxLabClients {
				return usageError{fmt.Errorf("--clients %d: want 1 to %d", o.clients, demo.MaxLabClients)}
			}
			if o.inLab != "" {
				return demoInLab(cmd.Context(), o, cio)
			}
			if err := demo.Available(); o.loopback || err != nil {
				if err != nil && !o.loopback {
					fmt.Fprintf(cio.errOut, "netdeploy demo: %v; using loopback (TFTP and HTTP only)\n", err)
					time.Sleep(2 * time.Second)
				}
				return demoLoopback(cmd.Context(), o, cio)
			}
			return demoLab(cmd.Context(), o, cio)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.clients, "clients", 6, "simulated machines")
	f.Int64Var(&o.rate, "rate", 6<<20, "download speed of each machine, bytes per second")
	f.IntVar(&o.kernelMiB, "kernel-mib", 48, "size of the demo kernel in MiB (the initrd is half)")
	f.BoolVar(&o.loopback, "loopback", false, "use loopback even where namespaces are available")
	f.StringVar(&o.policy, "pxe-policy", "all", "PXE policy for the demo (approve shows the approval flow)")
	f.BoolVar(&o.once, "once", false, "boot each machine once instead of rebooting it after a pause")
	f.StringVar(&o.inLab, "in-lab", "", "")
	f.StringVar(&o.dataDir, "demo-data", "", "")
	f.StringSliceVar(&o.clientNS, "client-ns", nil, "")
	f.StringSliceVar(&o.clientMAC, "client-mac", nil, "")
	for _, h := range []string{"in-lab", "demo-data", "client-ns", "client-mac"} {
		f.MarkHidden(h)
	}
	return cmd
}

// demoLab builds the namespace network and runs the console inside the
// server's namespace as a child process, then removes the network.
func demoLab(ctx context.Context, o demoOptions, cio consoleIO) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := demo.CleanStale(); err != nil {
		fmt.Fprintf(cio.errOut, "netdeploy demo: %v\n", err)
	}
	lab, err := demo.NewLab(ctx, o.clients)
	if err != nil {
		return err
	}
	defer lab.Close()
	dir, err := os.MkdirTemp("", "netdeploy-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(dir)
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	args := []string{"netns", "exec", lab.ServerNS, exe, "demo", "--in-lab", lab.ServerIface, "--demo-data", dir,
		"--clients", strconv.Itoa(o.clients), "--rate", strconv.FormatInt(o.rate, 10), "--kernel-mib", strconv.Itoa(o.kernelMiB),
		"--pxe-policy", o.policy, "--once=" + strconv.FormatBool(o.once)}
	for _, h := range lab.Clients {
		args = append(args, "--client-ns", h.NS, "--client-mac", h.MAC.String())
	}
	// If the child dies without restoring the terminal (killed), this
	// process puts it back.
	var saved *term.State
	if f, ok := cio.in.(interface{ Fd() uintptr }); ok {
		saved, _ = term.GetState(f.Fd())
	}
	child := exec.Command("ip", args...)
	child.Stdin, child.Stdout, child.Stderr = cio.in, cio.out, cio.errOut
	// The child owns the terminal; this process only waits, passes
	// termination on, and cleans up afterwards.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := child.Start(); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- child.Wait() }()
	for {
		select {
		case s := <-sigs:
			if s != os.Interrupt { // ctrl+c reaches the child as a key
				child.Process.Signal(syscall.SIGTERM)
			}
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					if f, ok := cio.in.(interface{ Fd() uintptr }); ok && saved != nil {
						term.Restore(f.Fd(), saved)
					}
					fmt.Fprint(cio.out, "\x1b[?1049l\x1b[?25h") // leave the alternate screen, show the cursor
					return fmt.Errorf("demo: the console was killed by %s", ws.Signal())
				}
				return exitCodeError{code: ee.ExitCode()}
			}
			return err
		}
	}
}

// exitCodeError passes on a child's exit status without printing more.
type exitCodeError struct{ code int }

func (e exitCodeError) Error() string { return "demo exited with status " + strconv.Itoa(e.code) }

// demoInLab runs inside the lab's server namespace: the console with the
// services on the lab interface, and the clients in their namespaces.
func demoInLab(ctx context.Context, o demoOptions, cio consoleIO) error {
	if len(o.clientNS) != len(o.clientMAC) {
		return usageError{errors.New("demo: --client-ns and --client-mac differ in number")}
	}
	c := config.Default()
	c.Interface = o.inLab
	c.DataDir = o.dataDir
	c.PXE.Policy = o.policy
	c.Boot.Cmdline = "console=ttyS0 netdeploy.demo=1"
	rt, err := demoRuntime(c, o)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return console(ctx, rt, cio, func(ctx context.Context, log *slog.Logger) {
		var wg sync.WaitGroup
		for i, ns := range o.clientNS {
			wg.Add(1)
			go func() {
				defer wg.Done()
				arch := []string{"0", "7"}[i%2]
				args := []string{"netns", "exec", ns, exe, "demo-client", "--iface", "eth0", "--arch", arch, "--rate", strconv.FormatInt(o.rate, 10),
					"--account", demoAccount, "--password", demoPassword}
				demoLoop(ctx, o, log.With("mac", o.clientMAC[i]), time.Duration(i)*1500*time.Millisecond, func(ctx context.Context, log *slog.Logger) error {
					return runLogged(ctx, log, exec.CommandContext(ctx, "ip", args...))
				})
			}()
		}
		wg.Wait()
	})
}

// demoLoopback runs the services on 127.0.0.1 with the clients in this
// process, each from its own 127.0.0.N address.
func demoLoopback(ctx context.Context, o demoOptions, cio consoleIO) error {
	dir, err := os.MkdirTemp("", "netdeploy-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(dir)
	c := config.Default()
	c.Interface = "lo"
	c.ServerIP = "127.0.0.1"
	c.DataDir = dir
	c.DHCP.Mode = config.ModeOff
	c.PXE.Policy = o.policy
	if os.Geteuid() != 0 {
		c.TFTP.Port, c.HTTP.Port, c.RPC.EPMPort = 6969, 8080, 1135 // unprivileged ports
		c.SMB.Port, c.SMB.SessionPort, c.SMB.NetBIOS = 1445, 1139, false
	}
	o.dataDir = dir
	rt, err := demoRuntime(c, o)
	if err != nil {
		return err
	}
	return console(ctx, rt, cio, func(ctx context.Context, log *slog.Logger) {
		var wg sync.WaitGroup
		for i := range o.clients {
			mac := net.HardwareAddr{0x02, 0xde, 0x7f, 0, 0, byte(i + 1)}
			cl := &demo.Client{
				Arch: []uint16{0, 7}[i%2], LocalIP: net.IPv4(127, 0, 0, byte(10+i)), Server: net.IPv4(127, 0, 0, 1),
				TFTPPort: c.TFTP.Port, HTTPPort: c.HTTP.Port, BootFile: []string{"undionly.kpxe", "ipxe.efi"}[i%2],
				Rate: o.rate, MAC: mac, Account: demoAccount, Password: demoPassword, EPMPort: c.RPC.EPMPort, SMBPort: c.SMB.Port,
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				demoLoop(ctx, o, log.With("mac", mac.String()), time.Duration(i)*1500*time.Millisecond, func(ctx context.Context, log *slog.Logger) error {
					cl.Log = log
					return cl.Run(ctx)
				})
			}()
		}
		wg.Wait()
	})
}

// The demo's machines log on to the RPC service with this account.
const demoAccount, demoPassword = "demo", "demo"

// demoRuntime writes the demo's boot files and image store and resolves
// its configuration.
func demoRuntime(c config.Config, o demoOptions) (*config.Runtime, error) {
	kernel, initrd, err := demo.WriteBootFiles(filepath.Join(o.dataDir, "boot"), o.kernelMiB, max(1, o.kernelMiB/2))
	if err != nil {
		return nil, err
	}
	c.ImagesDir = filepath.Join(o.dataDir, "images")
	if err := writeDemoImages(c.ImagesDir); err != nil {
		return nil, err
	}
	c.Accounts = []config.AccountConfig{{Name: demoAccount, Password: demoPassword}}
	c.Boot.Kernel, c.Boot.Initrd = kernel, initrd
	c.File = config.SavedFile(o.dataDir)
	return c.Resolve(config.SystemInterfaces)
}

// demoLoop boots one simulated machine after delay, and again after a
// pause each time it finishes (unless --once), until ctx ends.
func demoLoop(ctx context.Context, o demoOptions, log *slog.Logger, delay time.Duration, boot func(context.Context, *slog.Logger) error) {
	wait := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	if !wait(delay) {
		return
	}
	for {
		log.Info("demo: machine powers on")
		if err := boot(ctx, log); err != nil && ctx.Err() == nil {
			log.Warn("demo: machine stopped", "err", err)
		} else if ctx.Err() == nil {
			log.Info("demo: machine booted its kernel")
		}
		if o.once || !wait(time.Duration(10+rand.IntN(10))*time.Second) {
			return
		}
	}
}

// runLogged runs cmd, sending each line it prints to log.
func runLogged(ctx context.Context, log *slog.Logger, cmd *exec.Cmd) error {
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	cmd.WaitDelay = 2 * time.Second
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line != "" {
				log.Debug("demo client: " + line)
			}
		}
	}()
	err := cmd.Run()
	w.Close()
	<-done
	return err
}

// newDemoClient is the hidden command a lab machine runs in its namespace.
func newDemoClient() *cobra.Command {
	var c demo.Client
	cmd := &cobra.Command{
		Use:    "demo-client",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return c.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&c.Iface, "iface", "eth0", "interface")
	cmd.Flags().Uint16Var(&c.Arch, "arch", 0, "PXE architecture (0 BIOS, 7 EFI x86-64)")
	cmd.Flags().Int64Var(&c.Rate, "rate", 0, "bytes per second")
	cmd.Flags().StringVar(&c.Account, "account", "", "log on to the RPC service as this account after booting")
	cmd.Flags().StringVar(&c.Password, "password", "", "the account's password")
	return cmd
}

// writeDemoImages puts two small raw images with manifests in dir, so the
// machines have something to enumerate.
func writeDemoImages(dir string) error {
	for _, im := range []struct{ file, manifest string }{
		{"ubuntu-demo.img", `{"name": "Ubuntu 24.04 (demo)", "description": "demo raw image", "arch": "amd64"}`},
		{"Lab/win11-demo.img", `{"name": "Windows 11 (demo)", "description": "demo raw image", "arch": "amd64"}`},
	} {
		path := filepath.Join(dir, filepath.FromSlash(im.file))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if err := writeSparse(path, 16<<20); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if err := os.WriteFile(path+".json", []byte(im.manifest), 0o644); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	return nil
}

// writeSparse makes a file of size zero bytes without writing them.
func writeSparse(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("demo: %w", err)
	}
	return f.Close()
}
