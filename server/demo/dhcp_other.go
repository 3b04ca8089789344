//go:build !linux

package demo

import (
	"context"
	"errors"
	"log/slog"
	"net"
)

// dhcpExchange needs Linux raw sockets (namespace mode).
func dhcpExchange(context.Context, *slog.Logger, string, net.HardwareAddr, uint16, bool, string) (lease, error) {
	return lease{}, errors.New("demo: the DHCP client needs Linux")
}
