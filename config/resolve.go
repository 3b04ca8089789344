package config

import (
	"fmt"
	"net"
	"sort"
	"strings"

	"github.com/netdeploy/netdeploy/server/policy"
	"github.com/netdeploy/netdeploy/server/udprange"
)

// Iface is what config needs to know about a network interface.
type Iface struct {
	Name     string
	Up       bool
	Loopback bool
	MTU      int
	MAC      net.HardwareAddr
	Addrs    []*net.IPNet // IPv4 only
}

// Interfaces lists the machine's interfaces.
type Interfaces func() ([]Iface, error)

// SystemInterfaces reads this machine's interfaces.
func SystemInterfaces() ([]Iface, error) {
	list, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("config: list interfaces: %w", err)
	}
	var out []Iface
	for _, ni := range list {
		it := Iface{Name: ni.Name, Up: ni.Flags&net.FlagUp != 0, Loopback: ni.Flags&net.FlagLoopback != 0, MTU: ni.MTU, MAC: ni.HardwareAddr}
		addrs, _ := ni.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				it.Addrs = append(it.Addrs, &net.IPNet{IP: n.IP.To4(), Mask: n.Mask})
			}
		}
		out = append(out, it)
	}
	return out, nil
}

// Runtime is a validated configuration resolved against the machine:
// parsed values the servers use directly.
type Runtime struct {
	Config
	Iface             Iface
	ServerIP          net.IP
	Subnet            *net.IPNet
	Range             udprange.Range
	PoolStart         net.IP // authoritative mode only
	PoolEnd           net.IP
	Router            net.IP
	DNS               []net.IP
	AuthorizedServers []net.IP
	Policy            policy.Mode
	Accounts          []Account
}

// Resolve validates c, picks the interface and server address and checks
// the pool against the interface's subnet.
func (c Config) Resolve(ifaces Interfaces) (*Runtime, error) {
	c.Finish()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	list, err := ifaces()
	if err != nil {
		return nil, err
	}
	it, err := pickInterface(c.Interface, list)
	if err != nil {
		return nil, err
	}
	rt := &Runtime{Config: c, Iface: it}
	rt.Range, _ = udprange.Parse(c.UDPRange)
	rt.Policy, _ = policy.ParseMode(c.PXE.Policy)
	rt.Accounts, _ = ParseAccounts(c.Accounts)
	rt.AuthorizedServers, _ = parseIPs(c.DHCP.AuthorizedServers)
	rt.DNS, _ = parseIPs(c.DHCP.DNS)
	if c.DHCP.Router != "" {
		rt.Router = net.ParseIP(c.DHCP.Router).To4()
	}
	if c.ServerIP != "" {
		ip := net.ParseIP(c.ServerIP).To4()
		for _, a := range it.Addrs {
			if a.IP.Equal(ip) {
				rt.ServerIP, rt.Subnet = ip, &net.IPNet{IP: ip.Mask(a.Mask), Mask: a.Mask}
			}
		}
		if rt.ServerIP == nil {
			return nil, keyErr("server_ip", "%s is not an address of interface %s", ip, it.Name)
		}
	} else {
		a := it.Addrs[0]
		rt.ServerIP, rt.Subnet = a.IP, &net.IPNet{IP: a.IP.Mask(a.Mask), Mask: a.Mask}
	}
	// The pool is worked out in every mode, so that the console can switch
	// to authoritative later; only authoritative mode requires it now.
	if err := rt.resolvePool(); err != nil && c.DHCP.Mode == ModeAuthoritative {
		return nil, err
	}
	return rt, nil
}

func (rt *Runtime) resolvePool() error {
	var err error
	if rt.DHCP.Pool != "" {
		rt.PoolStart, rt.PoolEnd, _ = parsePool(rt.DHCP.Pool)
		if !rt.Subnet.Contains(rt.PoolStart) || !rt.Subnet.Contains(rt.PoolEnd) {
			rt.PoolStart, rt.PoolEnd = nil, nil
			return keyErr("dhcp.pool", "%s is outside %s's subnet %s", rt.DHCP.Pool, rt.Iface.Name, rt.Subnet)
		}
	} else if rt.PoolStart, rt.PoolEnd, err = defaultPool(rt.Subnet); err != nil {
		return keyErr("dhcp.pool", "%v", err)
	}
	if rt.Router != nil && !rt.Subnet.Contains(rt.Router) {
		return keyErr("dhcp.router", "%s is outside %s's subnet %s", rt.Router, rt.Iface.Name, rt.Subnet)
	}
	return nil
}

// pickInterface returns the named interface, or the only candidate (up,
// not loopback, with an IPv4 address) when none is named.
func pickInterface(name string, list []Iface) (Iface, error) {
	var cands []string
	for _, it := range list {
		if name != "" && it.Name == name {
			switch {
			case !it.Up:
				return Iface{}, keyErr("interface", "%s is down (ip link set %s up)", name, name)
			case len(it.Addrs) == 0:
				return Iface{}, keyErr("interface", "%s has no IPv4 address (e.g. ip addr add 10.0.0.1/24 dev %s)", name, name)
			}
			return it, nil
		}
		if it.Up && !it.Loopback && len(it.Addrs) > 0 {
			cands = append(cands, it.Name)
		}
	}
	sort.Strings(cands)
	if name != "" {
		return Iface{}, keyErr("interface", "no interface named %q (candidates: %s)", name, orNone(cands))
	}
	switch len(cands) {
	case 1:
		for _, it := range list {
			if it.Name == cands[0] {
				return it, nil
			}
		}
	case 0:
		return Iface{}, keyErr("interface", "no interface is up with an IPv4 address")
	}
	return Iface{}, keyErr("interface", "several candidates (%s): choose one with --interface", strings.Join(cands, ", "))
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// defaultPool takes the upper half of the subnet's host addresses, at most
// 250 of them.
func defaultPool(n *net.IPNet) (net.IP, net.IP, error) {
	ones, bits := n.Mask.Size()
	if bits-ones < 2 {
		return nil, nil, fmt.Errorf("subnet %s is too small for a pool", n)
	}
	base := ipToUint(n.IP)
	size := uint32(1) << uint(bits-ones)
	last := base + size - 2 // below broadcast
	first := base + size/2
	if size/2 < 2 {
		first = base + 1
	}
	if last-first > 249 {
		first = last - 249
	}
	return uintToIP(first), uintToIP(last), nil
}
