package demo

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// DHCP client timing: the first retransmission after dhcpTimeout, doubling
// (RFC 2131 section 4.1), dhcpRetries sends in all per message.
const (
	dhcpTimeout = time.Second
	dhcpRetries = 3
)

// dhcpExchange runs DISCOVER/OFFER/REQUEST/ACK (RFC 2131 section 3.1) on
// iface with a raw socket, so the interface needs no address. stage names
// the exchange in the log ("pxe" or "ipxe").
func dhcpExchange(ctx context.Context, log *slog.Logger, iface string, mac net.HardwareAddr, arch uint16, ipxe bool, stage string) (lease, error) {
	nc, err := nclient4.New(iface, nclient4.WithHWAddr(mac), nclient4.WithTimeout(dhcpTimeout), nclient4.WithRetry(dhcpRetries))
	if err != nil {
		return lease{}, fmt.Errorf("demo: dhcp on %s: %w", iface, err)
	}
	defer nc.Close()
	mods := pxeModifiers(arch, mac, ipxe)
	start := time.Now()
	log.Info("dhcp discover", "stage", stage, "arch", arch)
	offer, err := nc.DiscoverOffer(ctx, mods...)
	if err != nil {
		return lease{}, fmt.Errorf("demo: dhcp (%s) on %s: no offer: %w", stage, iface, ctxOr(ctx, err))
	}
	log.Info("dhcp offer", "stage", stage, "ip", offer.YourIPAddr.String(), "server", offer.ServerIdentifier().String(),
		"file", bootFileOf(offer), "ms", time.Since(start).Milliseconds())
	l, err := nc.RequestFromOffer(ctx, offer, mods...)
	if err != nil {
		return lease{}, fmt.Errorf("demo: dhcp (%s) on %s: request: %w", stage, iface, ctxOr(ctx, err))
	}
	ls, err := readLease(l.ACK)
	if err != nil {
		return lease{}, fmt.Errorf("demo: dhcp (%s) on %s: %w", stage, iface, err)
	}
	log.Info("dhcp ack", "stage", stage, "ip", ls.IP.String(), "prefix", ls.prefixLen(), "server", ipString(ls.ServerID),
		"next_server", ipString(ls.Next), "file", ls.BootFile, "lease", l.ACK.IPAddressLeaseTime(0).String(),
		"ms", time.Since(start).Milliseconds())
	return ls, nil
}

// ctxOr reports the context's error instead of the one it caused.
func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
