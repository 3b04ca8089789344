//go:build !linux

package server

// neighborMAC needs Linux's ARP table; elsewhere clients are known by the
// MAC their DHCP exchange or their iPXE requests carry.
func neighborMAC(string) string { return "" }
