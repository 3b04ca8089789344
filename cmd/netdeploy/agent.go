package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/netdeploy/netdeploy/imaging/agent"
	"github.com/netdeploy/netdeploy/imaging/initramfs"
	"github.com/netdeploy/netdeploy/imaging/pid1"
)

// newAgent is "netdeploy agent": the imaging agent a bare machine boots
// into. As /init of its initramfs (PID 1) it prepares the machine first:
// file systems, driver modules, links; its settings then come from the
// kernel command line (netdeploy.server=, netdeploy.account=,
// netdeploy.password=, netdeploy.image=, netdeploy.target=,
// netdeploy.after=reboot|poweroff|halt).
func newAgent() *cobra.Command {
	var (
		cfg    agent.Config
		server string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Deploy an image onto this machine's disk (or a file) from a netdeploy server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			cfg.Log = log
			if os.Getpid() == 1 {
				return agentAsInit(cfg, log)
			}
			if server != "" {
				ip := net.ParseIP(server)
				if ip == nil || ip.To4() == nil {
					return usageError{fmt.Errorf("--server %q is not an IPv4 address", server)}
				}
				cfg.Server = ip.To4()
			}
			if cfg.TargetFile == "" {
				return usageError{errors.New("--target-file is required (a file, or a block device such as /dev/sda)")}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := agent.Run(ctx, cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deployed %s (%s): %d bytes, sha256 %s, in %s\n", res.Name, res.Path, res.Bytes, res.SHA256, res.Duration.Round(time.Millisecond))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "server address (default: learned by DHCP on --iface)")
	f.StringVar(&cfg.Iface, "iface", "", "interface for DHCP")
	f.StringVar(&cfg.Account, "account", "", "account for the RPC and SMB logons")
	f.StringVar(&cfg.Password, "password", "", "its password")
	f.StringVar(&cfg.Image, "image", "", "image name or path (default: the first raw image)")
	f.StringVar(&cfg.TargetFile, "target-file", "", "where to write the image: a file or a block device")
	f.IntVar(&cfg.EPMPort, "epm-port", 0, "endpoint mapper port (default 135)")
	f.IntVar(&cfg.SMBPort, "smb-port", 0, "SMB port (default 445)")
	f.BoolVar(&cfg.Unicast, "unicast", false, "never join a multicast session: read the image by SMB")
	return cmd
}

// agentAsInit runs the agent as PID 1 of its initramfs.
func agentAsInit(cfg agent.Config, log *slog.Logger) error {
	if err := pid1.MountBasics(); err != nil {
		log.Error("agent: mounts", "err", err)
	}
	// Every active console shows the agent's lines and may answer it.
	con := activeConsoles()
	out := con.w
	log = slog.New(slog.NewTextHandler(out, nil))
	cfg.Log = log
	cmdline, _ := os.ReadFile("/proc/cmdline")
	args := pid1.CmdlineArgs(string(cmdline))
	after, err := pid1.ParseAction(args["after"])
	if err != nil {
		log.Warn("agent: netdeploy.after", "err", err)
	}
	if mods, err := filepath.Glob("/lib/modules/*"); err == nil && len(mods) > 0 {
		if f, err := os.Open("/" + initramfs.LoadList); err == nil {
			list, err := pid1.ReadLoadList(f)
			f.Close()
			if err == nil {
				if err := pid1.LoadModules(mods[0], list); err != nil {
					log.Warn("agent: some modules did not load", "err", err)
				}
			}
		}
	}
	ifaces, err := pid1.EthernetInterfaces()
	if err != nil || len(ifaces) == 0 {
		log.Error("agent: no network interface", "err", err)
		return pid1.Finish(pid1.Halt)
	}
	for _, n := range ifaces {
		if err := pid1.LinkUp(n); err != nil {
			log.Warn("agent: link up", "iface", n, "err", err)
		}
	}
	// DHCP on each interface in turn until one gets a lease.
	var lease agent.Lease
	for attempt := 0; cfg.Iface == ""; attempt++ {
		for _, n := range ifaces {
			l, err := agent.RequestLease(context.Background(), n)
			if err != nil {
				log.Warn("agent: no lease", "iface", n, "err", err)
				continue
			}
			if err := pid1.SetAddr(n, l.IP, l.Mask); err != nil {
				log.Error("agent: address not set", "iface", n, "err", err)
				continue
			}
			cfg.Iface, lease = n, l
			log.Info("agent: address", "iface", n, "ip", l.IP, "mask", net.IP(l.Mask), "server", l.Server)
			break
		}
		if cfg.Iface == "" {
			if attempt == 4 {
				fmt.Fprintln(out, "NETDEPLOY-AGENT-FAILED: no DHCP lease on", ifaces)
				return pid1.Finish(pid1.Halt)
			}
			time.Sleep(5 * time.Second)
		}
	}
	cfg.Server = lease.Server
	if s := net.ParseIP(args["server"]).To4(); s != nil {
		cfg.Server = s
	}
	cfg.Account, cfg.Password, cfg.Image, cfg.TargetFile = args["account"], args["password"], args["image"], args["target"]
	if p, err := strconv.Atoi(args["smb_port"]); err == nil {
		cfg.SMBPort = p
	}
	if p, err := strconv.Atoi(args["epm_port"]); err == nil {
		cfg.EPMPort = p
	}
	cfg.Unicast = args["unicast"] == "1" || args["unicast"] == "true"
	if cfg.TargetFile == "" || !filepath.IsAbs(cfg.TargetFile) {
		// netdeploy.target=sdb names a disk; none: the largest fixed one.
		disks, err := pid1.Disks("/sys/block")
		if err == nil {
			var d pid1.Disk
			if d, err = pid1.PickDisk(disks, cfg.TargetFile, 0); err == nil {
				cfg.TargetFile = "/dev/" + d.Name
				log.Info("agent: target disk", "disk", cfg.TargetFile, "bytes", d.Size)
			}
		}
		if err != nil {
			err = fmt.Errorf("agent: no target disk: %w", err)
			log.Error("agent: no target disk", "err", err)
			if cfg.Account != "" {
				// Tell the server, so that its console and report show why.
				if ferr := agent.Fail(context.Background(), cfg, err); ferr != nil {
					log.Warn("agent: failure not reported", "err", ferr)
				}
			}
			fmt.Fprintln(out, "NETDEPLOY-AGENT-FAILED:", err)
			return pid1.Finish(pid1.Halt)
		}
	}
	if args["image"] == "" {
		cfg.Choose = func(ctx context.Context, offered []agent.Offer) (int, error) {
			list := make([]choice, len(offered))
			for i, o := range offered {
				list[i] = choice{Name: o.Name, Description: o.Path, Size: o.Size}
			}
			return con.choose(ctx, list)
		}
	}
	typed := cfg.Account == ""
	for attempt := 1; ; attempt++ {
		if typed {
			// No one-time logon on the command line: ask at the console.
			ctx := context.Background()
			nonEmpty := func(s string) error {
				if s == "" {
					return errors.New("it cannot be empty")
				}
				return nil
			}
			fmt.Fprint(out, "\r\nnetdeploy: log on to the deployment server\r\n")
			if cfg.Account, err = con.ask(ctx, "account: ", nonEmpty); err == nil {
				cfg.Password, err = con.askSecret(ctx, "password: ")
			}
			if err != nil {
				fmt.Fprintln(out, "NETDEPLOY-AGENT-FAILED:", err)
				return pid1.Finish(pid1.Halt)
			}
		}
		res, err := agent.Run(context.Background(), cfg)
		if typed && errors.Is(err, agent.ErrLogon) && attempt < 3 {
			fmt.Fprintf(out, "  %v\r\n", err)
			continue
		}
		if err != nil {
			log.Error("agent: deployment failed", "err", err)
			fmt.Fprintln(out, "NETDEPLOY-AGENT-FAILED:", err)
			return pid1.Finish(pid1.Halt) // stay up so the console can be read
		}
		fmt.Fprintf(out, "NETDEPLOY-AGENT-DONE: %s sha256 %s\n", res.Path, res.SHA256)
		return pid1.Finish(after)
	}
}
