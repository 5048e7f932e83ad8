package heal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/healgate/healgate/admin"
	"github.com/healgate/healgate/healing"
	"github.com/healgate/healgate/internal/testproc"
	"github.com/healgate/healgate/test/systemdtest"
)

// TestPolkitNonRootHealgate runs healgate inside the test system as user
// nobody, with real polkitd and the rule "healgate polkit-rule" prints for
// its config (the packaged 50-healgate.rules, for user nobody): it may
// restart ds-docservice.service and nothing else. A config naming another
// unit still validates (validation cannot see polkit) but its restart is
// denied, and healgate reports heal_failed with result denied. A config
// naming an invalid unit name is refused by "healgate check".
func TestPolkitNonRootHealgate(t *testing.T) {
	e := env(t)
	addr := startDS(t, e, "ok", "")
	allowed := gateConfig{upstream: addr}

	// The rule, as packaging ships it, for the units of allowed.
	host := filepath.Join(t.TempDir(), "allowed.yaml")
	if err := os.WriteFile(host, []byte(allowed.withDefaults().yaml("127.0.0.1:1", "127.0.0.1:2")), 0o644); err != nil {
		t.Fatal(err)
	}
	rule, stderr, err := runHealgate(t, "polkit-rule", "-config", host, "-user", "nobody")
	if err != nil || !strings.Contains(rule, `"`+dsUnitName+`"`) || !strings.Contains(rule, `"nobody"`) {
		t.Fatalf("healgate polkit-rule: %v\n%s\n%s", err, rule, stderr)
	}
	rulePath := systemdtest.PolkitRulesDir + "/50-healgate.rules"
	if err := e.sys.WriteFile(rulePath, []byte(rule), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(e.sys.HostPath(rulePath)); err != nil {
			t.Errorf("remove the polkit rule: %v", err)
		}
	})
	if err := e.sys.StartPolkit(); err != nil {
		t.Fatal(err)
	}

	t.Run("AllowedUnitRestarted", func(t *testing.T) {
		g := startGateInside(t, e, "polkit-allowed", allowed)
		g.waitStatus(t, 10*time.Second, "the target is healthy", func(s *admin.Status) bool {
			return stateIs(s, healing.StateHealthy)
		})
		oldPID := unitInt(t, e.sys, dsUnitName, "MainPID")
		if out, err := e.sys.Exec("kill", "-9", strconv.Itoa(oldPID)); err != nil {
			t.Fatalf("kill -9: %v: %s", err, out)
		}
		waitHealthcheck(t, addr, dsRestartSec/2, "true")
		if pid := unitInt(t, e.sys, dsUnitName, "MainPID"); pid == oldPID || pid <= 1 {
			t.Fatalf("MainPID %d, was %d", pid, oldPID)
		}
		if n := unitInt(t, e.sys, dsUnitName, "NRestarts"); n != 0 {
			t.Errorf("NRestarts = %d: systemd restarted the unit itself, not healgate", n)
		}
		s := g.waitStatus(t, 15*time.Second, "heal_succeeded and healthy", func(s *admin.Status) bool {
			return len(events(s, healing.EventHealSucceeded)) > 0 && stateIs(s, healing.StateHealthy)
		})
		if f := events(s, healing.EventHealFailed); len(f) > 0 {
			t.Errorf("heal_failed as nobody:%s", dumpEvents(events(s)))
		}
		g.Stop(10 * time.Second)
	})

	t.Run("UnlistedUnitDenied", func(t *testing.T) {
		const unit = "hg-unlisted.service"
		port := testproc.FreePort(t)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		installUnit(t, e.sys, unit, dsUnit(e.dsemu, port, "ok", ""))
		if err := e.sys.Start(unit); err != nil {
			t.Fatal(err)
		}
		waitHealthcheck(t, addr, 20*time.Second, "true")
		other := gateConfig{upstream: addr, units: []string{unit}}

		// Validation cannot see polkit: the config is fine.
		file := filepath.Join(t.TempDir(), "other.yaml")
		if err := os.WriteFile(file, []byte(other.withDefaults().yaml("127.0.0.1:1", "127.0.0.1:2")), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, stderr, err := runHealgate(t, "check", "-q", "-config", file); err != nil {
			t.Fatalf("healgate check of a config naming %s: %v\n%s%s", unit, err, out, stderr)
		}

		g := startGateInside(t, e, "polkit-other", other)
		g.waitStatus(t, 10*time.Second, "the target is healthy", func(s *admin.Status) bool {
			return stateIs(s, healing.StateHealthy)
		})
		pid := unitInt(t, e.sys, unit, "MainPID")
		if out, err := e.sys.Exec("kill", "-9", strconv.Itoa(pid)); err != nil {
			t.Fatalf("kill -9: %v: %s", err, out)
		}
		s := g.waitStatus(t, 15*time.Second, "heal_failed", func(s *admin.Status) bool {
			return len(events(s, healing.EventHealFailed)) > 0
		})
		f := events(s, healing.EventHealFailed)[0]
		if f.Result != "denied" || f.Unit != unit {
			t.Errorf("heal_failed result %q unit %q, want denied for %s:%s", f.Result, f.Unit, unit, dumpEvents(events(s)))
		}
		if !strings.Contains(strings.ToLower(f.Reason), "interactive authentication required") &&
			!strings.Contains(f.Reason, "InteractiveAuthorizationRequired") {
			t.Errorf("heal_failed reason %q does not carry polkit's refusal", f.Reason)
		}
		// Not restarted: still dead, waiting out systemd's RestartSec.
		if sub, err := e.sys.Show(unit, "SubState"); err != nil || sub != "auto-restart" {
			t.Errorf("%s SubState %q (%v) after a denied restart, want auto-restart", unit, sub, err)
		}
		g.Stop(10 * time.Second)
	})

	t.Run("CheckRefusesInvalidUnitName", func(t *testing.T) {
		bad := gateConfig{upstream: addr, units: []string{"ds docservice"}}
		file := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(file, []byte(bad.withDefaults().yaml("127.0.0.1:1", "127.0.0.1:2")), 0o644); err != nil {
			t.Fatal(err)
		}
		out, stderr, err := runHealgate(t, "check", "-config", file)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("healgate check: %v, want exit 1\n%s%s", err, out, stderr)
		}
		if !strings.Contains(stderr, file+":") || !strings.Contains(stderr, "healing.units[0]") {
			t.Errorf("healgate check stderr %q does not name FILE:LINE: healing.units[0]", stderr)
		}
	})
}

// runHealgate runs the host's healgate binary with args and returns its
// stdout, stderr and exit error.
func runHealgate(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.healgate, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}
