package demo

import (
	"context"
	"net"
	"os/exec"
	"sync"
)

// Lab addressing.
const (
	// LabServerCIDR is the server's address on the lab network.
	LabServerCIDR = "198.18.0.1/24"
	// LabPrefix starts the name of every lab namespace; the creating
	// process's pid follows ("ndemo1234-lan").
	LabPrefix = "ndemo"
	// MaxLabClients bounds NewLab's client count (MACs 02:de:00:00:00:01
	// to :fa).
	MaxLabClients = 250
)

// Lab is a private network of namespaces: "<Prefix>-lan" holds bridge br0;
// "<Prefix>-srv" has eth0 with 198.18.0.1/24 (the server);
// "<Prefix>-c1".."<Prefix>-cN" each have eth0 (no address, MAC
// 02:de:00:00:00:NN) joined to the bridge by veth.
type Lab struct {
	Prefix   string
	ServerNS string
	ServerIP net.IP
	Clients  []LabHost

	// LAN is the namespace holding the bridge.
	LAN string
	// ServerIface is the server's interface in ServerNS ("eth0").
	ServerIface string

	mu     sync.Mutex
	made   []string // namespaces created, in order
	closed bool
}

// LabHost is one simulated machine's namespace.
type LabHost struct {
	Name, NS, Iface string
	MAC             net.HardwareAddr
}

// Command returns `ip netns exec ns name args...`: name runs inside the
// namespace ns.
func (l *Lab) Command(ctx context.Context, ns string, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Namespaces lists the lab's namespaces that exist, LAN first.
func (l *Lab) Namespaces() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	return append([]string(nil), l.made...)
}

// clientMAC is the MAC of lab client n (1-based).
func clientMAC(n int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0xde, 0, 0, 0, byte(n)}
}
