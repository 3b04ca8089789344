//go:build !linux

package pid1

import (
	"errors"
	"net"
)

var errNotLinux = errors.New("pid1: the agent's /init runs on Linux only")

// MountBasics fails off Linux.
func MountBasics() error { return errNotLinux }

// SetAddr fails off Linux.
func SetAddr(string, net.IP, net.IPMask) error { return errNotLinux }

// LoadModules fails off Linux.
func LoadModules(string, []string) error { return errNotLinux }

// LinkUp fails off Linux.
func LinkUp(string) error { return errNotLinux }

// EthernetInterfaces fails off Linux.
func EthernetInterfaces() ([]string, error) { return nil, errNotLinux }

// Finish fails off Linux.
func Finish(Action) error { return errNotLinux }
