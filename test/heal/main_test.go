package heal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/healgate/healgate/internal/testproc"
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
	os.Exit(testproc.RunMain(m, "heal", setup, func() error {
		if err := shared.Close(); err != nil {
			return fmt.Errorf("stop the test system: %w", err)
		}
		return nil
	}))
}

// setup finds nginx and builds the binaries into dir. A missing requirement
// is an error: these tests never skip.
func setup(dir string) error {
	var errs []error
	var err error
	if bin.nginx, err = testproc.LookPath("nginx", "/usr/sbin/nginx"); err != nil {
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
		if err := testproc.GoBuild(ctx, out, pkg, testproc.RaceEnabled && out == bin.healgate); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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
