package server

import (
	"bufio"
	"os"
	"strings"
)

// neighborMAC looks ip up in the kernel's ARP table (/proc/net/arp of this
// network namespace); "" when absent. In proxy mode netdeploy never leases
// the address, so this is how TFTP and HTTP clients get their MAC.
func neighborMAC(ip string) string {
	f, err := os.Open("/proc/net/arp")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// IP address, HW type, Flags, HW address, Mask, Device
		fields := strings.Fields(sc.Text())
		if len(fields) >= 4 && fields[0] == ip && fields[3] != "00:00:00:00:00:00" {
			return fields[3]
		}
	}
	return ""
}
