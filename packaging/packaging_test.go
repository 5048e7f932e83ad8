// Package packaging_test checks the files in packaging/ for real: the
// systemd units and the polkit rule on a real systemd 252 with polkitd
// (test/systemdtest), the sysusers.d and tmpfiles.d entries with the real
// systemd-sysusers and systemd-tmpfiles in a scratch root, the nginx example
// with nginx -t, the Kubernetes manifests decoded strictly into k8s.io/api
// types, the Prometheus rules with promtool, and every metric the rules and
// the Grafana dashboard name against the metrics healgate registers.
//
// Tests that need a tool the README's test command installs (nginx, promtool,
// systemd) fail, not skip, when it is missing.
package packaging_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/healgate/healgate/test/systemdtest"
)

// sys is the test system the systemd tests share; TestMain closes it.
var sys systemdtest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	if err := sys.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// readFile returns the contents of a file of packaging/ (path relative to it).
func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lookTool returns the path of a command the README's test command
// installs, failing the test (not skipping it) when it is missing.
func lookTool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is needed: apt-get install %s (test/run installs it): %v", name, debianPackage, err)
	}
	return p
}

// command runs name with args and returns its combined output; an error
// fails t with that output.
func command(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
