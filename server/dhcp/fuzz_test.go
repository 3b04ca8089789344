package dhcp

import (
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/netdeploy/netdeploy/server/policy"
)

// FuzzHandle feeds arbitrary bytes through dhcpv4.FromBytes into the
// decision code of an authoritative and a proxy server with fixed state.
// It must never panic, and every reply must encode and decode again.
func FuzzHandle(f *testing.F) {
	seeds := []*dhcpv4.DHCPv4{
		msg(f, dhcpv4.MessageTypeDiscover, mac(1)),
		msg(f, dhcpv4.MessageTypeDiscover, mac(2), pxeClass, arch(0)),
		msg(f, dhcpv4.MessageTypeDiscover, mac(3), pxeClass, arch(7), dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, make([]byte, 17))),
		msg(f, dhcpv4.MessageTypeDiscover, mac(4), pxeClass, arch(11), dhcpv4.WithUserClass("iPXE", false)),
		msg(f, dhcpv4.MessageTypeDiscover, mac(5), dhcpv4.WithOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016")), arch(16)),
		msg(f, dhcpv4.MessageTypeRequest, mac(2), pxeClass,
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(testServerIP)),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(198, 18, 0, 100)))),
		msg(f, dhcpv4.MessageTypeRequest, mac(6), pxeClass, arch(9), dhcpv4.WithClientIP(net.IPv4(198, 18, 0, 101))),
		msg(f, dhcpv4.MessageTypeRequest, mac(7), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 0, 1)))),
		msg(f, dhcpv4.MessageTypeInform, mac(8), pxeClass, dhcpv4.WithClientIP(net.IPv4(198, 18, 0, 30))),
		msg(f, dhcpv4.MessageTypeRelease, mac(2), dhcpv4.WithClientIP(net.IPv4(198, 18, 0, 100))),
		msg(f, dhcpv4.MessageTypeDecline, mac(2), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(198, 18, 0, 100)))),
		msg(f, dhcpv4.MessageTypeDiscover, mac(9), dhcpv4.WithGatewayIP(net.IPv4(198, 18, 0, 250))),
	}
	for _, m := range seeds {
		b := m.ToBytes()
		f.Add(b)
		f.Add(b[:240])
		f.Add(b[:len(b)/2])
	}
	odd := seeds[1].ToBytes()
	odd[2] = 17 // hlen beyond chaddr
	f.Add(odd)
	f.Add([]byte{})
	f.Add(make([]byte, 300))

	auth := newTestHandler(f, Authoritative, allBinaries, nil)
	proxy := newTestHandler(f, Proxy, hasAll("undionly.kpxe"), policyFunc(func(m string) policy.Decision {
		if m == mac(2).String() {
			return policy.Allow
		}
		return policy.Pending
	}))
	src := &net.UDPAddr{IP: net.IPv4(198, 18, 0, 77), Port: 4011}
	f.Fuzz(func(t *testing.T, b []byte) {
		precheck(b)
		m, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		for _, h := range []*handler{auth, proxy} {
			for _, pxe := range []bool{false, true} {
				o := h.handle(m, pxe, src, testNow)
				if o.reply == nil {
					continue
				}
				if o.dest == nil {
					t.Fatal("reply without destination")
				}
				if _, err := dhcpv4.FromBytes(o.reply.ToBytes()); err != nil {
					t.Fatalf("reply does not decode: %v", err)
				}
			}
		}
	})
}
