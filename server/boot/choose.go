package boot

import (
	"fmt"
	"net"
	"strconv"
)

// Reserved names in the boot file system. Generated entries shadow files
// of the same name in the TFTP root.
const (
	ScriptName = "boot.ipxe"
	KernelName = "netdeploy/kernel"
	InitrdName = "netdeploy/initrd"
)

// binaries lists the iPXE programs for an architecture, most preferred
// first. snponly.efi reuses the firmware's own network driver for the NIC
// it booted from, so it is tried before the full ipxe.efi.
func binaries(a Arch) ([]string, bool) {
	switch a {
	case ArchBIOS:
		return []string{"undionly.kpxe"}, true
	case ArchEFIBC, ArchEFIX64:
		return []string{"snponly.efi", "ipxe.efi"}, true
	case ArchEFIARM64:
		return []string{"snponly-arm64.efi", "ipxe-arm64.efi"}, true
	}
	return nil, false
}

// IPXEBinaries is every iPXE program name served from boot.ipxe_dir.
func IPXEBinaries() []string {
	return []string{"undionly.kpxe", "undionly.kkpxe", "ipxe.pxe", "ipxe.lkrn", "snponly.efi", "ipxe.efi", "snponly-arm64.efi", "ipxe-arm64.efi"}
}

// Choice is what a client is told to boot.
type Choice struct {
	// File is the TFTP file name (DHCP "file" / option 67), or an HTTP URL
	// for clients that are already iPXE or boot over HTTP.
	File string
	// HTTP is true when File is a URL.
	HTTP bool
}

// Choose picks the boot program for a client with architecture arch;
// ipxe is true when the client identified itself as iPXE (option 77 user
// class "iPXE"), which then gets the script URL so it never chainloads
// itself in a loop. has reports whether a file exists in the boot file
// system.
func Choose(arch Arch, ipxe bool, scriptURL string, has func(name string) bool) (Choice, error) {
	if ipxe {
		return Choice{File: scriptURL, HTTP: true}, nil
	}
	if arch == ArchHTTPX64 {
		// UEFI HTTP boot fetches an EFI program by URL.
		base := scriptURL[:len(scriptURL)-len(ScriptName)]
		names, _ := binaries(ArchEFIX64)
		for _, name := range names {
			if has(name) {
				return Choice{File: base + name, HTTP: true}, nil
			}
		}
		return Choice{}, fmt.Errorf("boot: %s: %w", arch, ErrNoBinary)
	}
	names, ok := binaries(arch)
	if !ok {
		return Choice{}, fmt.Errorf("boot: %s: %w", arch, ErrUnknownArch)
	}
	for _, name := range names {
		if has(name) {
			return Choice{File: name}, nil
		}
	}
	return Choice{}, fmt.Errorf("boot: %s needs one of %v: %w", arch, names, ErrNoBinary)
}

// ScriptURL is the address of the generated iPXE script on the HTTP server.
func ScriptURL(ip net.IP, port int) string {
	return BaseURL(ip, port) + ScriptName
}

// BaseURL is the HTTP server's root URL, with a trailing slash.
func BaseURL(ip net.IP, port int) string {
	host := ip.String()
	if port != 80 {
		host = net.JoinHostPort(host, strconv.Itoa(port))
	}
	return "http://" + host + "/"
}
