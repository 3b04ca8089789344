//go:build !linux

package demo

import (
	"context"
	"errors"
)

func errNoNamespaces() error { return errors.New("demo: network namespaces need Linux") }

// NewLab needs Linux network namespaces.
func NewLab(context.Context, int) (*Lab, error) { return nil, errNoNamespaces() }

// Close has nothing to remove without Linux.
func (l *Lab) Close() error { return nil }

// CleanStale has nothing to clean without Linux.
func CleanStale() error { return nil }

// Available says that namespaces need Linux.
func Available() error { return errNoNamespaces() }

// ListNamespaces needs Linux.
func ListNamespaces() ([]string, error) { return nil, errNoNamespaces() }
