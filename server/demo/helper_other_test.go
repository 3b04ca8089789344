//go:build !linux

package demo

import (
	"fmt"
	"os"
)

// helperMain: the namespace test's helper processes need Linux.
func helperMain(role string) int {
	fmt.Fprintf(os.Stderr, "helper %s: needs Linux\n", role)
	return 2
}
