package agent

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// Lease is what a DHCP server gave an interface (RFC 2131).
type Lease struct {
	IP     net.IP
	Mask   net.IPMask
	Router net.IP // nil: none offered
	// Server is the deployment server: the ACK's server identifier
	// (option 54), else its siaddr.
	Server net.IP
}

// RequestLease runs DHCP (DISCOVER, OFFER, REQUEST, ACK) on iface. It
// needs a raw socket (root or CAP_NET_RAW); the caller configures the
// address.
func RequestLease(ctx context.Context, iface string) (Lease, error) {
	c, err := nclient4.New(iface, nclient4.WithTimeout(4*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return Lease{}, fmt.Errorf("agent: dhcp on %s: %w", iface, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	lease, err := c.Request(ctx)
	if err != nil {
		return Lease{}, fmt.Errorf("agent: dhcp on %s: %w", iface, err)
	}
	ack := lease.ACK
	l := Lease{IP: ack.YourIPAddr.To4(), Mask: ack.SubnetMask()}
	if l.IP == nil || l.IP.IsUnspecified() {
		return Lease{}, fmt.Errorf("agent: dhcp on %s: the ACK has no address", iface)
	}
	if len(l.Mask) != net.IPv4len {
		l.Mask = l.IP.DefaultMask()
	}
	if r := ack.Router(); len(r) > 0 {
		l.Router = r[0]
	}
	for _, ip := range []net.IP{ack.ServerIdentifier(), lease.Offer.ServerIdentifier(), ack.ServerIPAddr, lease.Offer.ServerIPAddr} {
		if ip != nil && !ip.IsUnspecified() {
			l.Server = ip.To4()
			break
		}
	}
	if l.Server == nil {
		return Lease{}, fmt.Errorf("agent: dhcp on %s: the lease names no server", iface)
	}
	return l, nil
}

// discoverServer asks DHCP on iface for the deployment server; the lease
// is not configured.
func discoverServer(ctx context.Context, iface string) (net.IP, error) {
	l, err := RequestLease(ctx, iface)
	if err != nil {
		return nil, err
	}
	return l.Server, nil
}
