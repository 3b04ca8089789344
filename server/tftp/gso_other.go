//go:build !linux

package tftp

import (
	"errors"
	"net"
	"net/netip"
)

const gsoMaxSegments = 64

func writeSegments(*net.UDPConn, []byte, int, []byte, netip.AddrPort) error {
	return errors.New("tftp: no UDP segmentation offload")
}

func gsoOOB() []byte { return nil }

const gsoSupported = false
