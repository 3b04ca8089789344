package pid1

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// MountBasics mounts /proc, /sys and /dev (devtmpfs) as an initramfs
// /init must; an already mounted one is fine.
func MountBasics() error {
	for _, m := range []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return fmt.Errorf("pid1: %w", err)
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("pid1: mount %s: %w", m.dst, err)
		}
	}
	return nil
}

// LoadModules loads the modules of list (paths relative to dir) in order
// with finit_module(2). A module already loaded or built in is fine; the
// failures are returned together, the rest still load.
func LoadModules(dir string, list []string) error {
	var errs []error
	for _, rel := range list {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		f, err := os.Open(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("%s: %w", rel, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("pid1: modules: %w", errors.Join(errs...))
	}
	return nil
}

// LinkUp sets an interface up (SIOCSIFFLAGS with IFF_UP), as `ip link set
// up` does.
func LinkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("pid1: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("pid1: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("pid1: %s flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("pid1: %s up: %w", name, err)
	}
	return nil
}

// SetAddr gives an interface an IPv4 address and netmask (SIOCSIFADDR,
// SIOCSIFNETMASK), as `ip addr add` does; the kernel adds the route to
// the subnet.
func SetAddr(name string, ip net.IP, mask net.IPMask) error {
	ip4 := ip.To4()
	if ip4 == nil || len(mask) != net.IPv4len {
		return fmt.Errorf("pid1: %s: %v/%v is not an IPv4 address and mask", name, ip, mask)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("pid1: %w", err)
	}
	defer unix.Close(fd)
	for _, x := range []struct {
		req  uint
		addr net.IP
		what string
	}{{unix.SIOCSIFADDR, ip4, "address"}, {unix.SIOCSIFNETMASK, net.IP(mask), "netmask"}} {
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return fmt.Errorf("pid1: %w", err)
		}
		if err := ifr.SetInet4Addr(x.addr.To4()); err != nil {
			return fmt.Errorf("pid1: %w", err)
		}
		if err := unix.IoctlIfreq(fd, x.req, ifr); err != nil {
			return fmt.Errorf("pid1: %s %s: %w", name, x.what, err)
		}
	}
	return nil
}

// EthernetInterfaces lists the interfaces with a hardware address (not
// loopback), in kernel order.
func EthernetInterfaces() ([]string, error) {
	list, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("pid1: %w", err)
	}
	var out []string
	for _, it := range list {
		if it.Flags&net.FlagLoopback == 0 && len(it.HardwareAddr) == 6 {
			out = append(out, it.Name)
		}
	}
	return out, nil
}

// Finish syncs the disks and reboots, powers off or stays up.
func Finish(a Action) error {
	unix.Sync()
	switch a {
	case Reboot:
		return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	case PowerOff:
		return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}
	// PID 1 must not exit; a sleeping loop (unlike an empty select) is
	// not taken for a deadlock by the Go runtime.
	for {
		time.Sleep(time.Hour)
	}
}
