//go:build !linux

package main

import "os"

// setEcho does nothing off Linux (the agent's /init runs on Linux only).
func setEcho(*os.File, bool) {}
