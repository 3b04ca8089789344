package agent

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// discoverServer asks DHCP on iface for the deployment server: the
// server identifier (option 54) of the ACK, else its siaddr. It needs a
// raw socket (root or CAP_NET_RAW); the lease is not configured.
func discoverServer(ctx context.Context, iface string) (net.IP, error) {
	c, err := nclient4.New(iface, nclient4.WithTimeout(4*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return nil, fmt.Errorf("agent: dhcp on %s: %w", iface, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	lease, err := c.Request(ctx)
	if err != nil {
		return nil, fmt.Errorf("agent: dhcp on %s: %w", iface, err)
	}
	for _, m := range [...]interface {
		ServerIdentifier() net.IP
	}{lease.ACK, lease.Offer} {
		if ip := m.ServerIdentifier(); ip != nil && !ip.IsUnspecified() {
			return ip, nil
		}
	}
	for _, ip := range []net.IP{lease.ACK.ServerIPAddr, lease.Offer.ServerIPAddr} {
		if ip != nil && !ip.IsUnspecified() {
			return ip, nil
		}
	}
	return nil, fmt.Errorf("agent: dhcp on %s: the lease names no server", iface)
}
