package healing_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"go.uber.org/goleak"

	"github.com/healgate/healgate/config"
	"github.com/healgate/healgate/healing"
	"github.com/healgate/healgate/internal/testproc"
	"github.com/healgate/healgate/test/systemdtest"
)

// TestSystemd drives healing.Systemd against a real systemd 252 with a real
// system bus and a real polkitd, booted once for all subtests by
// systemdtest. Each subtest uses units of its own.
func TestSystemd(t *testing.T) {
	sys := systemdtest.Boot(t, systemdtest.Options{})
	dsemu, err := sys.InstallBinary(systemdtest.GoBuild(t, "github.com/healgate/healgate/cmd/dsemu"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("UnitReadsRunningAndMissing", func(t *testing.T) {
		unit := "hg-read.service"
		installUnit(t, sys, unit, "[Service]\nExecStart=/bin/sleep infinity\n")
		if err := sys.Start(unit); err != nil {
			t.Fatal(err)
		}
		sd := newSystemd(t, sys, nil)
		ctx := testContext(t)

		st, err := sd.Unit(ctx, unit)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := sys.MainPID(unit)
		if err != nil {
			t.Fatal(err)
		}
		if st.Name != unit || st.LoadState != "loaded" || st.ActiveState != "active" || st.SubState != "running" {
			t.Errorf("Unit = %+v, want loaded/active/running", st)
		}
		if st.MainPID == 0 || int(st.MainPID) != pid {
			t.Errorf("MainPID = %d, systemctl says %d", st.MainPID, pid)
		}
		if age := time.Since(st.StateChangeTimestamp); st.StateChangeTimestamp.IsZero() || age < 0 || age > time.Minute {
			t.Errorf("StateChangeTimestamp = %v (age %v)", st.StateChangeTimestamp, age)
		}
		if st.NotFound() || st.Failed() || st.AutoRestarting() || st.Starting() {
			t.Errorf("predicates wrong for a running unit: %+v", st)
		}

		missing, err := sd.Unit(ctx, "hg-no-such-unit.service")
		if err != nil {
			t.Fatalf("reading a missing unit: %v", err)
		}
		if !missing.NotFound() || missing.LoadState != "not-found" || missing.MainPID != 0 {
			t.Errorf("missing unit = %+v, want LoadState not-found", missing)
		}
	})

	t.Run("KilledUnitIsWatchedAndRestartBringsItBack", func(t *testing.T) {
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		port := testproc.FreePort(t)
		unit := "hg-crash.service"
		installUnit(t, sys, unit, fmt.Sprintf("[Service]\nExecStart=%s -listen 127.0.0.1:%d\nRestart=always\nRestartSec=30\n", dsemu, port))
		if err := sys.Start(unit); err != nil {
			t.Fatal(err)
		}
		base := "http://127.0.0.1:" + strconv.Itoa(port)
		waitHTTP(t, base+"/index.html")

		sd := newSystemd(t, sys, []string{unit})
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()

		// The fallback poll is an hour: what arrives comes from signals.
		w := sd.Watch(time.Hour, unit)
		runErr := make(chan error, 1)
		go func() { runErr <- w.Run(ctx) }()
		stopWatch := func() {
			cancel()
			if err := <-runErr; err != nil {
				t.Errorf("Run = %v, want nil after cancel", err)
			}
			for range w.Events() { // closed by Run
			}
		}
		defer func() {
			if ctx.Err() == nil {
				stopWatch()
			}
		}()

		first := nextEvent(t, w, func(ev healing.UnitEvent) bool { return true })
		if first.ActiveState != "active" || first.SubState != "running" {
			t.Fatalf("first event = %+v, want active/running", first)
		}
		oldPID, err := sys.MainPID(unit)
		if err != nil || oldPID <= 1 {
			t.Fatalf("MainPID = %d, %v", oldPID, err)
		}

		killed := time.Now()
		if out, err := sys.Exec("kill", "-9", strconv.Itoa(oldPID)); err != nil {
			t.Fatalf("kill -9: %v: %s", err, out)
		}
		ev := nextEvent(t, w, func(ev healing.UnitEvent) bool { return ev.SubState == "auto-restart" })
		if ev.ActiveState != "activating" || ev.Result != "signal" {
			t.Errorf("event after kill -9 = %+v, want activating/auto-restart with Result signal", ev)
		}
		if d := time.Since(killed); d > 10*time.Second {
			t.Errorf("auto-restart reported %v after the kill; want at once", d)
		}
		st, err := sd.Unit(ctx, unit)
		if err != nil {
			t.Fatal(err)
		}
		if !st.AutoRestarting() || st.Starting() || st.Result != "signal" || st.ExecMainStatus != 9 || st.MainPID != 0 {
			t.Errorf("Unit after kill -9 = %+v, want auto-restart, Result signal, status 9, no MainPID", st)
		}

		// RestartSec is 30 s: coming back within seconds is our restart.
		restarted := time.Now()
		res, err := sd.Restart(ctx, unit)
		if err != nil || res != healing.JobDone {
			t.Fatalf("Restart = %q, %v; want done", res, err)
		}
		waitHTTP(t, base+"/index.html")
		if d := time.Since(restarted); d > 15*time.Second {
			t.Errorf("the unit took %v to answer after Restart", d)
		}
		newPID, err := sys.MainPID(unit)
		if err != nil || newPID <= 1 || newPID == oldPID {
			t.Errorf("MainPID after Restart = %d (%v), was %d", newPID, err, oldPID)
		}
		st, err = sd.Unit(ctx, unit)
		if err != nil {
			t.Fatal(err)
		}
		if st.ActiveState != "active" || st.SubState != "running" || int(st.MainPID) != newPID {
			t.Errorf("Unit after Restart = %+v, want active/running with MainPID %d", st, newPID)
		}
		back := nextEvent(t, w, func(ev healing.UnitEvent) bool { return ev.SubState == "running" })
		if back.ActiveState != "active" {
			t.Errorf("event after Restart = %+v", back)
		}
		stopWatch()
		sd.Close()
	})

	t.Run("RestartRefusesUnlistedUnitBeforeAnyBusCall", func(t *testing.T) {
		unit := "hg-unlisted.service"
		installUnit(t, sys, unit, "[Service]\nExecStart=/bin/sleep infinity\n")
		if err := sys.Start(unit); err != nil {
			t.Fatal(err)
		}
		pid, err := sys.MainPID(unit)
		if err != nil {
			t.Fatal(err)
		}

		// A Systemd whose bus does not exist: had Restart dialled, it
		// would fail with a connection error, not ErrUnitNotAllowed.
		nobus := healing.NewSystemd(healing.SystemdOptions{
			Units:      []string{"hg-other.service"},
			BusAddress: "unix:path=/nonexistent/bus",
		})
		defer nobus.Close()
		_, err = nobus.Restart(testContext(t), unit)
		if !errors.Is(err, healing.ErrUnitNotAllowed) {
			t.Fatalf("Restart of an unlisted unit = %v, want ErrUnitNotAllowed", err)
		}
		var ue *healing.UnitError
		if !errors.As(err, &ue) || ue.Op != "restart" || ue.Unit != unit {
			t.Errorf("error %v is not a *UnitError for %s", err, unit)
		}

		// The same on the real bus: refused, and the unit untouched.
		sd := newSystemd(t, sys, []string{"hg-other.service"})
		if _, err := sd.Restart(testContext(t), unit); !errors.Is(err, healing.ErrUnitNotAllowed) {
			t.Fatalf("Restart = %v, want ErrUnitNotAllowed", err)
		}
		if now, err := sys.MainPID(unit); err != nil || now != pid {
			t.Errorf("MainPID = %d (%v) after a refused restart, was %d", now, err, pid)
		}
	})

	t.Run("RestartOfListedMissingUnitIsNoSuchUnit", func(t *testing.T) {
		unit := "hg-listed-but-missing.service"
		sd := newSystemd(t, sys, []string{unit})
		res, err := sd.Restart(testContext(t), unit)
		if !errors.Is(err, healing.ErrNoSuchUnit) || res != "" {
			t.Fatalf("Restart = %q, %v; want ErrNoSuchUnit", res, err)
		}
		var de dbus.Error
		if !errors.As(err, &de) || de.Name != "org.freedesktop.systemd1.NoSuchUnit" {
			t.Errorf("the dbus.Error is not in the chain: %#v", err)
		}
		if errors.Is(err, healing.ErrUnitDenied) {
			t.Errorf("NoSuchUnit classified as denied: %v", err)
		}
	})

	t.Run("PolkitAllowsOnlyTheGrantedUnit", func(t *testing.T) {
		allowed, other := "hg-pk-allowed.service", "hg-pk-other.service"
		for _, u := range []string{allowed, other} {
			installUnit(t, sys, u, "[Service]\nExecStart=/bin/sleep infinity\n")
			if err := sys.Start(u); err != nil {
				t.Fatal(err)
			}
		}
		rule := `polkit.addRule(function(action, subject) {
	if (action.id == "org.freedesktop.systemd1.manage-units" &&
	    subject.user == "nobody" &&
	    action.lookup("unit") == "` + allowed + `" &&
	    action.lookup("verb") == "restart") {
		return polkit.Result.YES;
	}
});
`
		if err := sys.WriteFile(systemdtest.PolkitRulesDir+"/50-healgate-test.rules", []byte(rule), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := sys.StartPolkit(); err != nil {
			t.Fatal(err)
		}
		helper, err := sys.InstallBinary(systemdtest.GoBuild(t, "github.com/healgate/healgate/test/systemdtest/cmd/restartunit"))
		if err != nil {
			t.Fatal(err)
		}
		asNobody := func(unit string) (string, error) {
			return sys.Exec("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", helper, "-timeout=30s", unit)
		}

		before, _ := sys.MainPID(allowed)
		out, err := asNobody(allowed)
		if err != nil || strings.TrimSpace(out) != "done" {
			t.Fatalf("nobody restarting %s: %q, %v", allowed, out, err)
		}
		if after, _ := sys.MainPID(allowed); after == before || after <= 1 {
			t.Errorf("MainPID %d -> %d: the granted restart did not happen", before, after)
		}

		before, _ = sys.MainPID(other)
		out, err = asNobody(other)
		var ee interface{ ExitCode() int }
		if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.HasPrefix(out, "denied:") {
			t.Fatalf("nobody restarting %s: %q, %v; want exit 3 and denied", other, out, err)
		}
		if !strings.Contains(strings.ToLower(out), "interactive authentication required") {
			t.Errorf("denial %q does not come from polkit's InteractiveAuthorizationRequired", out)
		}
		if after, _ := sys.MainPID(other); after != before {
			t.Errorf("MainPID %d -> %d: a denied restart happened", before, after)
		}
	})

	// Last but one: it restarts the bus under everything.
	t.Run("ReconnectsAfterTheBusRestarts", func(t *testing.T) {
		unit := "hg-reconnect.service"
		installUnit(t, sys, unit, "[Service]\nExecStart=/bin/sleep infinity\nRestart=always\nRestartSec=30\n")
		if err := sys.Start(unit); err != nil {
			t.Fatal(err)
		}
		sd := newSystemd(t, sys, []string{unit})
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if _, err := sd.Unit(ctx, unit); err != nil {
			t.Fatal(err)
		}
		w := sd.Watch(200*time.Millisecond, unit)
		runErr := make(chan error, 1)
		go func() { runErr <- w.Run(ctx) }()
		defer func() {
			cancel()
			<-runErr
			for range w.Events() {
			}
		}()
		nextEvent(t, w, func(ev healing.UnitEvent) bool { return ev.SubState == "running" })

		if _, err := sys.Systemctl("restart", "dbus.service"); err != nil {
			t.Fatal(err)
		}
		// The old connections are gone; the next calls dial again.
		if !testproc.Poll(20*time.Second, func() bool {
			st, err := sd.Unit(ctx, unit)
			return err == nil && st.ActiveState == "active"
		}) {
			_, err := sd.Unit(ctx, unit)
			t.Fatalf("Unit does not work again after the bus restarted: %v", err)
		}
		pid, err := sys.MainPID(unit)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := sys.Exec("kill", "-9", strconv.Itoa(pid)); err != nil {
			t.Fatalf("kill: %v: %s", err, out)
		}
		ev := nextEvent(t, w, func(ev healing.UnitEvent) bool { return ev.SubState == "auto-restart" })
		if ev.Result != "signal" {
			t.Errorf("event after the bus restart and a kill = %+v", ev)
		}
		if res, err := sd.Restart(ctx, unit); err != nil || res != healing.JobDone {
			t.Errorf("Restart after the bus restarted = %q, %v", res, err)
		}
	})

	t.Run("CloseEndsWatcherAndCalls", func(t *testing.T) {
		sd := newSystemd(t, sys, []string{"hg-close.service"})
		w := sd.Watch(time.Hour, "hg-close.service")
		runErr := make(chan error, 1)
		go func() { runErr <- w.Run(context.Background()) }()
		first := nextEvent(t, w, func(healing.UnitEvent) bool { return true })
		if first.State.LoadState != "not-found" {
			t.Errorf("first event for a missing unit = %+v", first)
		}
		sd.Close()
		select {
		case err := <-runErr:
			if !errors.Is(err, healing.ErrBusClosed) {
				t.Errorf("Run after Close = %v, want ErrBusClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after Close")
		}
		if _, err := sd.Unit(testContext(t), "hg-close.service"); !errors.Is(err, healing.ErrBusClosed) {
			t.Errorf("Unit after Close = %v, want ErrBusClosed", err)
		}
	})
}

func TestAllowedUnits(t *testing.T) {
	h := config.Healing{
		Units: []string{"ds-docservice.service", "ds-converter.service"},
		Dependencies: []config.Dependency{
			{Name: "rabbitmq", Unit: "rabbitmq-server.service"},
			{Name: "alert-only"},
			{Name: "dup", Unit: "ds-docservice.service"},
		},
	}
	got := strings.Join(healing.AllowedUnits(&h), ",")
	want := "ds-docservice.service,ds-converter.service,rabbitmq-server.service"
	if got != want {
		t.Errorf("AllowedUnits = %s, want %s", got, want)
	}
}

// newSystemd returns a Systemd on sys's bus allowed to restart units,
// closed when the test ends.
func newSystemd(t *testing.T, sys *systemdtest.System, units []string) *healing.Systemd {
	t.Helper()
	sd := healing.NewSystemd(healing.SystemdOptions{Units: units, RestartTimeout: 30 * time.Second, BusAddress: sys.BusAddress()})
	t.Cleanup(sd.Close)
	return sd
}

func installUnit(t *testing.T, sys *systemdtest.System, name, content string) {
	t.Helper()
	if err := sys.InstallUnit(name, content); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sys.RemoveUnit(name); err != nil {
			t.Errorf("remove %s: %v", name, err)
		}
	})
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// nextEvent returns the first event from w that matches, failing t after 20 s.
func nextEvent(t *testing.T, w *healing.UnitWatcher, match func(healing.UnitEvent) bool) healing.UnitEvent {
	t.Helper()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	var seen []string
	for {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				t.Fatalf("events closed; saw %v", seen)
			}
			if match(ev) {
				return ev
			}
			seen = append(seen, ev.ActiveState+"/"+ev.SubState)
		case <-timeout.C:
			t.Fatalf("no matching event in 20s; saw %v", seen)
		}
	}
}

// waitHTTP polls url until it answers 200, failing t after 20 s.
func waitHTTP(t *testing.T, url string) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-deadline.C:
			t.Fatalf("%s did not answer 200 within 20s (last: %v)", url, err)
		case <-tick.C:
		}
	}
}
