// Package boot decides what a network-booting client loads and serves those
// files: the iPXE binaries, the generated iPXE script, the default boot
// entry's kernel and initrd and the operator's TFTP root, through one
// read-only file system shared by TFTP and HTTP.
package boot

import (
	"errors"
	"fmt"
)

// Arch is a client system architecture, RFC 4578 section 2.1 (option 93),
// with the IANA "Processor Architecture Types" registry values.
type Arch uint16

// Architectures netdeploy knows.
const (
	ArchBIOS     Arch = 0
	ArchEFIIA32  Arch = 6
	ArchEFIBC    Arch = 7 // x64 UEFI in practice (RFC 4578 erratum 4624)
	ArchEFIX64   Arch = 9
	ArchEFIARM64 Arch = 11
	ArchHTTPX64  Arch = 16 // x64 UEFI HTTP boot
)

// String names the architecture as events and logs carry it.
func (a Arch) String() string {
	switch a {
	case ArchBIOS:
		return "bios"
	case ArchEFIIA32:
		return "efi-ia32"
	case ArchEFIBC, ArchEFIX64:
		return "efi-x64"
	case ArchEFIARM64:
		return "efi-arm64"
	case ArchHTTPX64:
		return "efi-x64-http"
	}
	return fmt.Sprintf("arch-%d", uint16(a))
}

// ErrUnknownArch is returned for an architecture netdeploy has no boot
// program for; the DHCP server logs it and does not answer.
var ErrUnknownArch = errors.New("no boot program for this architecture")

// ErrNoBinary is returned when the architecture is known but its iPXE
// binary is not installed.
var ErrNoBinary = errors.New("boot program not installed")
