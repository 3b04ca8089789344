// Command netdeploy turns a laptop into a network deployment server: DHCP,
// PXE, TFTP and HTTP boot on one interface, with a live console or a
// headless JSON event stream.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/netdeploy/netdeploy/config"
	"github.com/netdeploy/netdeploy/server"
)

// usageError marks errors that exit with status 2.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func main() {
	root := newRoot()
	if os.Getpid() == 1 {
		// /init of the agent's initramfs: the kernel's leftover arguments
		// are not ours; the settings come from /proc/cmdline.
		root.SetArgs([]string{"agent"})
	}
	err := root.Execute()
	if err == nil {
		return
	}
	var xe exitCodeError
	if errors.As(err, &xe) {
		os.Exit(xe.code) // the child process has said why
	}
	fmt.Fprintln(os.Stderr, "netdeploy:", err)
	var ce *config.Error
	var le *server.ListenError
	var ue usageError
	if errors.As(err, &ce) || errors.As(err, &le) || errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "netdeploy",
		Short: "Network deployment server: DHCP, PXE, TFTP and HTTP boot on one interface",
		Long: `netdeploy turns this machine into a deployment server for the machines on an
isolated switch: DHCP (or proxyDHCP), PXE, TFTP and HTTP boot, with every
client's progress tracked live.

Run it without a command for the interactive console; "netdeploy serve" is
headless mode (JSON events on standard output); "netdeploy demo" shows the
console working against simulated clients.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE:          runConsole,
	}
	config.AddFlags(root.Flags())
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServe(), newCtl(), newDemo(), newDemoClient(), newImage(), newReport(), newAgent())
	return root
}
