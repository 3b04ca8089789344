package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/netdeploy/netdeploy/config"
	"github.com/netdeploy/netdeploy/server"
	"github.com/netdeploy/netdeploy/server/control"
)

// newCtl builds "netdeploy ctl": commands for a running "netdeploy serve",
// through the control socket in its data_dir.
func newCtl() *cobra.Command {
	var dataDir string
	ctl := &cobra.Command{
		Use:   "ctl",
		Short: "Steer a running netdeploy serve: approve clients, authorization, UDP range",
	}
	ctl.PersistentFlags().StringVar(&dataDir, "data-dir", config.Default().DataDir, "data_dir of the running server")
	client := func() *control.Client { return control.Dial(server.ControlSocket(dataDir)) }
	show := func(method, path string, body any) error {
		var out any
		if err := client().Do(method, path, body, &out); err != nil {
			return err
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	get := func(use, short, path string) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error {
			return show("GET", path, nil)
		}}
	}
	ctl.AddCommand(
		get("status", "Show the server's state", "/v1/status"),
		get("clients", "List every client with its stage and history", "/v1/clients"),
		get("pending", "List clients waiting for approval", "/v1/pending"),
		&cobra.Command{Use: "approve MAC", Short: "Let a waiting client boot", Args: cobra.ExactArgs(1), RunE: func(_ *cobra.Command, a []string) error {
			return show("POST", "/v1/approve", map[string]string{"mac": a[0]})
		}},
		&cobra.Command{Use: "deny MAC", Short: "Refuse a client", Args: cobra.ExactArgs(1), RunE: func(_ *cobra.Command, a []string) error {
			return show("POST", "/v1/deny", map[string]string{"mac": a[0]})
		}},
		&cobra.Command{Use: "authorization on|off", Short: "Turn DHCP authorization on or off", Args: cobra.ExactArgs(1), RunE: func(_ *cobra.Command, a []string) error {
			switch strings.ToLower(a[0]) {
			case "on", "true":
				return show("PUT", "/v1/authorization", map[string]bool{"enabled": true})
			case "off", "false":
				return show("PUT", "/v1/authorization", map[string]bool{"enabled": false})
			}
			return usageError{fmt.Errorf("authorization: want on or off, not %q", a[0])}
		}},
		&cobra.Command{Use: "udp-range FIRST-LAST", Short: "Change the UDP range for the next sessions", Args: cobra.ExactArgs(1), RunE: func(_ *cobra.Command, a []string) error {
			return show("PUT", "/v1/udp_range", map[string]string{"range": a[0]})
		}},
		&cobra.Command{Use: "dhcp-mode authoritative|proxy|off", Short: "Switch the DHCP mode at once", Args: cobra.ExactArgs(1), RunE: func(_ *cobra.Command, a []string) error {
			return show("PUT", "/v1/dhcp_mode", map[string]string{"mode": a[0]})
		}},
		get("assignments", "List which image each assigned client gets", "/v1/assign"),
		get("multicast", "List the multicast sessions with their clients", "/v1/multicast"),
		&cobra.Command{Use: "multicast-start", Short: "Start the multicast sessions waiting for a manual start (multicast.start: manual)", Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error {
			return show("POST", "/v1/multicast/start", nil)
		}},
		&cobra.Command{Use: "assign MAC [IMAGE]", Short: "Give a client an image (without IMAGE: remove its assignment)", Args: cobra.RangeArgs(1, 2), RunE: func(_ *cobra.Command, a []string) error {
			img := ""
			if len(a) == 2 {
				img = a[1]
			}
			return show("PUT", "/v1/assign", map[string]string{"mac": a[0], "image": img})
		}},
		&cobra.Command{Use: "policy all|known|approve", Short: "Change the PXE policy", Args: cobra.ExactArgs(1), RunE: func(_ *cobra.Command, a []string) error {
			return show("PUT", "/v1/policy", map[string]string{"policy": a[0]})
		}},
	)
	return ctl
}
