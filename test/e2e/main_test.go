package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// tools are the programs every test runs: built or found once by TestMain,
// read-only afterwards.
type tools struct {
	healgate string // built from ./cmd/healgate
	dsemu    string // built from ./cmd/dsemu
	nginx    string // Debian's nginx
	node     string // Node.js, for the socket.io scripts
	socketio string // absolute path of test/e2e/socketio (node_modules installed)
}

// bin is set by TestMain before any test runs and never changed after.
var bin tools

// nginxInstall is the command that provides nginx, named in the failure.
const nginxInstall = "apt-get install -y nginx-light"

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "healgate-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := setup(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: setup:", err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		// Every test stops and waits for what it started: no goroutine of
		// the harness (process waiters, HTTP clients, servers) outlives it.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: leaked goroutines:", err)
			return 1
		}
	}
	return code
}

// setup finds nginx and node, installs the socket.io packages, and builds
// healgate and dsemu into dir. Every missing requirement is an error: the
// end-to-end tests never skip.
func setup(dir string) error {
	var errs []error
	var err error
	if bin.nginx, err = lookPath("nginx", "/usr/sbin/nginx"); err != nil {
		errs = append(errs, fmt.Errorf("nginx is required (Debian: %s): %w", nginxInstall, err))
	}
	if bin.node, err = lookPath("node", "/usr/bin/node"); err != nil {
		errs = append(errs, fmt.Errorf("node is required for the socket.io tests (Debian: apt-get install -y nodejs npm): %w", err))
	}
	if bin.socketio, err = filepath.Abs("socketio"); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := npmCI(ctx, bin.socketio); err != nil {
		errs = append(errs, err)
	}
	bin.healgate = filepath.Join(dir, "healgate")
	bin.dsemu = filepath.Join(dir, "dsemu")
	for out, pkg := range map[string]string{
		bin.healgate: "github.com/healgate/healgate/cmd/healgate",
		bin.dsemu:    "github.com/healgate/healgate/cmd/dsemu",
	} {
		if err := goBuild(ctx, out, pkg); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// lookPath finds name on PATH, or at fallback (sbin is often not on a
// non-root PATH).
func lookPath(name, fallback string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback, nil
	}
	return exec.LookPath(name)
}

// npmCI installs the socket.io packages from package-lock.json when
// node_modules is missing.
func npmCI(ctx context.Context, dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "socket.io-client")); err == nil {
		return nil
	}
	npm, err := lookPath("npm", "/usr/bin/npm")
	if err != nil {
		return fmt.Errorf("npm is required to install socket.io (Debian: apt-get install -y nodejs npm): %w", err)
	}
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci in %s: %w\n%s", dir, err, out)
	}
	return nil
}

// goBuild builds pkg into out, with the race detector when the tests have it.
func goBuild(ctx context.Context, out, pkg string) error {
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}
