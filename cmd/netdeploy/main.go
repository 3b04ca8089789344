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
	err := root.Execute()
	if err == nil {
		return
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

Run "netdeploy serve" for headless mode (JSON events on standard output).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			// The interactive console arrives with its own issue; until
			// then the root command explains where to go.
			fmt.Fprintln(cmd.ErrOrStderr(), "netdeploy: the interactive console is not built yet; run \"netdeploy serve\" (headless, JSON events on stdout)")
			return usageError{errors.New("no console yet: use netdeploy serve")}
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServe(), newCtl())
	return root
}
