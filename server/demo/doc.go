// Package demo is what `netdeploy demo` runs to show the console working
// without hardware: a throw-away network of Linux namespaces (Lab) and
// simulated PXE machines (Client) that make real exchanges with the
// server.
//
// A Client in namespace mode (Iface set) runs inside a client namespace,
// as its own process started with Lab.Command: DHCP as PXE firmware
// (options 60, 93, 94, 97) on a raw socket, the leased address put on the
// interface, TFTP of the boot program the ACK names, DHCP again as iPXE
// (user class "iPXE"), then the iPXE script, kernel and initrd over HTTP.
// In loopback mode (Iface empty) it skips DHCP and talks to a server on a
// loopback address from its own 127.0.0.N address.
//
// Downloads can be paced (Client.Rate) so that the server's progress
// events, and so the console, show them advancing. Everything is
// discarded; only byte counts are checked.
package demo
