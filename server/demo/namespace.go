package demo

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"strings"
)

// runNamespace is the whole boot of a machine on Iface: DHCP as PXE
// firmware, TFTP of the boot program, DHCP as iPXE, then the script.
func (c *Client) runNamespace(ctx context.Context, log *slog.Logger) error {
	ifc, err := net.InterfaceByName(c.Iface)
	if err != nil {
		return fmt.Errorf("demo: interface %s: %w", c.Iface, err)
	}
	mac := ifc.HardwareAddr
	log = log.With("iface", c.Iface, "mac", mac.String())
	if err := ipCmd(ctx, "link", "set", "dev", c.Iface, "up"); err != nil {
		return err
	}
	retry := c.scriptRetry
	if retry <= 0 {
		retry = ScriptRetry
	}

	// 1. DHCP as the PXE ROM. Without a boot file (the policy holds the
	// machine until the operator approves it) firmware asks again.
	var first lease
	for attempt := 1; ; attempt++ {
		first, err = dhcpExchange(ctx, log, c.Iface, mac, c.Arch, false, "pxe")
		if err != nil {
			return err
		}
		if first.BootFile != "" {
			break
		}
		if attempt == 1 {
			log.Info("dhcp gave no boot file: waiting for the operator", "retry_every", retry.String())
		}
		if err := sleepCtx(ctx, retry); err != nil {
			return fmt.Errorf("demo: waiting for a boot file: %w", err)
		}
	}

	// 2. Configure the leased address.
	var current string
	if current, err = configure(ctx, log, c.Iface, "", first); err != nil {
		return err
	}
	if first.Next == nil {
		return fmt.Errorf("demo: dhcp named no TFTP server for %s", first.BootFile)
	}

	// 3. TFTP the boot program.
	if err := c.tftp(ctx, log, &net.UDPAddr{IP: first.IP}, first.Next, first.BootFile, ifc.MTU); err != nil {
		return err
	}

	// 4. DHCP again as iPXE: the boot file is now the script's URL.
	var second lease
	for attempt := 1; ; attempt++ {
		second, err = dhcpExchange(ctx, log, c.Iface, mac, c.Arch, true, "ipxe")
		if err != nil {
			return err
		}
		if second.BootFile != "" {
			break
		}
		if attempt == 1 {
			log.Info("dhcp (ipxe) gave no script: waiting for the operator", "retry_every", retry.String())
		}
		if err := sleepCtx(ctx, retry); err != nil {
			return fmt.Errorf("demo: waiting for a script URL: %w", err)
		}
	}
	if !strings.HasPrefix(second.BootFile, "http://") {
		return fmt.Errorf("demo: dhcp as iPXE gave %q, not an http:// script URL", second.BootFile)
	}
	if _, err := configure(ctx, log, c.Iface, current, second); err != nil {
		return err
	}

	// 5, 6. The script, kernel and initrd.
	return c.boot(ctx, log, second.IP, second.BootFile, ScriptVars{MAC: mac, IP: second.IP})
}

// configure puts the lease's address on iface, replacing current (an
// "ip/len" string) when it differs, and returns the new one.
func configure(ctx context.Context, log *slog.Logger, iface, current string, l lease) (string, error) {
	cidr := l.IP.String() + "/" + strconv.Itoa(l.prefixLen())
	if cidr == current {
		return current, nil
	}
	if current != "" {
		if err := ipCmd(ctx, "addr", "del", current, "dev", iface); err != nil {
			return "", err
		}
	}
	if err := ipCmd(ctx, "addr", "replace", cidr, "dev", iface); err != nil {
		return "", err
	}
	if err := ipCmd(ctx, "link", "set", "dev", iface, "up"); err != nil {
		return "", err
	}
	log.Info("address configured", "cidr", cidr)
	return cidr, nil
}

// ipCmd runs iproute2's ip with args.
func ipCmd(ctx context.Context, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("demo: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}
