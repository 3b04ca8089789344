//go:build !linux

package netlab

import "errors"

// Do needs Linux network namespaces.
func (h *Host) Do(fn func() error) error {
	return errors.New("netlab: network namespaces need Linux")
}

// killNS needs Linux network namespaces.
func killNS(string) {}
