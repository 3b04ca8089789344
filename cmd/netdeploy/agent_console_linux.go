package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// setEcho turns a terminal's echo on or off (termios ECHO), for
// passwords typed at the console.
func setEcho(f *os.File, on bool) {
	t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		return
	}
	if on {
		t.Lflag |= unix.ECHO
	} else {
		t.Lflag &^= unix.ECHO
	}
	unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
}
