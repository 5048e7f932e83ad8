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

	"github.com/healgate/healgate/internal/testproc"
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
	os.Exit(testproc.RunMain(m, "e2e", setup, nil))
}

// setup finds nginx and node, installs the socket.io packages, and builds
// healgate and dsemu into dir. Every missing requirement is an error: the
// end-to-end tests never skip.
func setup(dir string) error {
	var errs []error
	var err error
	if bin.nginx, err = testproc.LookPath("nginx", "/usr/sbin/nginx"); err != nil {
		errs = append(errs, fmt.Errorf("nginx is required (Debian: %s): %w", nginxInstall, err))
	}
	if bin.node, err = testproc.LookPath("node", "/usr/bin/node"); err != nil {
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
		if err := testproc.GoBuild(ctx, out, pkg, testproc.RaceEnabled); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// npmCI installs the socket.io packages from package-lock.json when
// node_modules is missing.
func npmCI(ctx context.Context, dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "socket.io-client")); err == nil {
		return nil
	}
	npm, err := testproc.LookPath("npm", "/usr/bin/npm")
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
