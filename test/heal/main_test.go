package heal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/healgate/healgate/test/systemdtest"
)

// tools are the programs the tests run, built or found once by TestMain and
// read-only afterwards. The paths are the host's.
type tools struct {
	healgate string // ./cmd/healgate, with -race when the tests have it
	dsemu    string // ./cmd/dsemu
	amqpstub string // ./test/heal/cmd/amqpstub
	nginx    string // Debian's nginx
}

// bin is set by TestMain before any test runs and never changed after.
var bin tools

// shared is the test system of the package: booted by the first test that
// needs it, closed by TestMain. Tests run one at a time (none is parallel)
// and remove the units they install.
var shared systemdtest.Shared

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "healgate-heal-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "heal:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := setup(dir); err != nil {
		fmt.Fprintln(os.Stderr, "heal: setup:", err)
		return 1
	}
	code := m.Run()
	if err := shared.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "heal: stop the test system:", err)
		code = 1
	}
	if code == 0 {
		// Every test stops and waits for what it started: no goroutine
		// of the harness (process waiters, client loops, receivers)
		// outlives it.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "heal: leaked goroutines:", err)
			return 1
		}
	}
	return code
}

// setup finds nginx and builds the binaries into dir. A missing requirement
// is an error: these tests never skip.
func setup(dir string) error {
	var errs []error
	var err error
	if bin.nginx, err = lookPath("nginx", "/usr/sbin/nginx"); err != nil {
		errs = append(errs, fmt.Errorf("nginx is required (Debian: apt-get install -y nginx-light): %w", err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin.healgate = filepath.Join(dir, "healgate")
	bin.dsemu = filepath.Join(dir, "dsemu")
	bin.amqpstub = filepath.Join(dir, "amqpstub")
	for out, pkg := range map[string]string{
		bin.healgate: "github.com/healgate/healgate/cmd/healgate",
		bin.dsemu:    "github.com/healgate/healgate/cmd/dsemu",
		bin.amqpstub: "github.com/healgate/healgate/test/heal/cmd/amqpstub",
	} {
		// Only healgate is under test: the race detector is for it. The
		// others are built static, as they run inside the test system.
		if err := goBuild(ctx, out, pkg, raceEnabled && out == bin.healgate); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// lookPath finds name on PATH, or at fallback (sbin is often not on PATH).
func lookPath(name, fallback string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback, nil
	}
	return exec.LookPath(name)
}

// goBuild builds pkg into out: with the race detector when race is set,
// else without cgo.
func goBuild(ctx context.Context, out, pkg string, race bool) error {
	args := []string{"build", "-o", out}
	cmd := exec.CommandContext(ctx, "go")
	cmd.Env = os.Environ()
	if race {
		args = append(args, "-race")
	} else {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	}
	cmd.Args = append(cmd.Args, append(args, pkg)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// testEnv is the shared test system with the binaries installed in it.
type testEnv struct {
	sys *systemdtest.System
	// Paths inside the test system.
	healgate, dsemu, amqpstub string
}

var (
	envOnce sync.Once
	envVal  testEnv
	envErr  error
)

// env returns the shared test system, booting it and installing the
// binaries on first use. A boot failure fails t (never skips).
func env(t *testing.T) testEnv {
	t.Helper()
	sys := shared.Get(t)
	envOnce.Do(func() {
		envVal.sys = sys
		for _, b := range []struct {
			dst  *string
			host string
		}{{&envVal.healgate, bin.healgate}, {&envVal.dsemu, bin.dsemu}, {&envVal.amqpstub, bin.amqpstub}} {
			p, err := sys.InstallBinary(b.host)
			if err != nil {
				envErr = errors.Join(envErr, err)
			}
			*b.dst = p
		}
	})
	if envErr != nil {
		t.Fatalf("install binaries into the test system: %v", envErr)
	}
	return envVal
}
