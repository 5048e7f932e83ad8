package testproc

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// RunMain is the body of a TestMain whose tests need binaries built or found
// first: it creates a temporary directory, calls setup with it (to build
// into it), runs the tests, calls teardown if it is not nil, and, when all
// of that succeeded, checks that no goroutine outlived its test (every test
// stops and waits for what it started). It removes the directory and
// returns the exit code for os.Exit. Errors are printed to stderr prefixed
// with name; a setup error runs no test.
func RunMain(m *testing.M, name string, setup func(dir string) error, teardown func() error) int {
	dir, err := os.MkdirTemp("", "healgate-"+name+"-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := setup(dir); err != nil {
		fmt.Fprintf(os.Stderr, "%s: setup: %v\n", name, err)
		return 1
	}
	code := m.Run()
	if teardown != nil {
		if err := teardown(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			code = 1
		}
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: leaked goroutines: %v\n", name, err)
			return 1
		}
	}
	return code
}
