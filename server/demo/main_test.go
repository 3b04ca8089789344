package demo

import (
	"os"
	"testing"
)

// helperEnv makes the test binary act as a process of the namespace test
// (see e2e_test.go) instead of running the tests.
const helperEnv = "NETDEPLOY_DEMO_TEST_HELPER"

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(helperMain(role))
	}
	os.Exit(m.Run())
}
