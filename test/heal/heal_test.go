package heal

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/healgate/healgate/admin"
	"github.com/healgate/healgate/config"
	"github.com/healgate/healgate/healing"
	"github.com/healgate/healgate/internal/testproc"
)

// TestKill9RestartedAtOnce: kill -9 of DocService's main process leaves the
// unit in activating/auto-restart (Result=signal) for RestartSec=30; healgate
// sees that over D-Bus and restarts the unit at once, verifies recovery, and
// says why in /status and its webhooks.
func TestKill9RestartedAtOnce(t *testing.T) {
	e := env(t)
	addr := startDS(t, e, "ok", "")
	rcv := newReceiver(t)
	g := startGate(t, e, gateConfig{upstream: addr, webhook: rcv.url})
	g.waitStatus(t, 10*time.Second, "the target is healthy", func(s *admin.Status) bool {
		return stateIs(s, healing.StateHealthy) && s.Healing.Upstreams[0].Ready
	})

	restartSec, err := e.sys.Show(dsUnitName, "RestartUSec")
	if err != nil || restartSec != "30s" {
		t.Fatalf("RestartUSec = %q, %v; the unit must wait 30s like the packages'", restartSec, err)
	}
	oldPID := unitInt(t, e.sys, dsUnitName, "MainPID")
	killed := time.Now()
	if out, err := e.sys.Exec("kill", "-9", strconv.Itoa(oldPID)); err != nil {
		t.Fatalf("kill -9 %d: %v: %s", oldPID, err, out)
	}
	// Only a new process can answer: the old one is gone.
	waitHealthcheck(t, addr, dsRestartSec, "true")
	back := time.Since(killed)
	newPID := unitInt(t, e.sys, dsUnitName, "MainPID")
	if newPID == oldPID || newPID <= 1 {
		t.Fatalf("MainPID %d after the kill, was %d", newPID, oldPID)
	}
	// systemd's own restart would have counted in NRestarts; a RestartUnit
	// call resets it. And it would have come after RestartSec.
	if n := unitInt(t, e.sys, dsUnitName, "NRestarts"); n != 0 {
		t.Errorf("NRestarts = %d: systemd restarted the unit itself, not healgate", n)
	}
	if back >= dsRestartSec/2 {
		t.Errorf("DocService answered %v after kill -9; healgate should beat RestartSec=%v by far", back, dsRestartSec)
	}
	t.Logf("kill -9 → new MainPID %d answering /healthcheck true in %v (RestartSec %v)", newPID, back.Round(time.Millisecond), dsRestartSec)

	s := g.waitStatus(t, 15*time.Second, "heal_succeeded and healthy", func(s *admin.Status) bool {
		return len(events(s, healing.EventHealSucceeded)) > 0 && stateIs(s, healing.StateHealthy)
	})
	evs := events(s, healing.EventHealStarted, healing.EventHealSucceeded, healing.EventHealFailed)
	if len(evs) != 2 || evs[0].Kind != healing.EventHealStarted || evs[1].Kind != healing.EventHealSucceeded {
		t.Fatalf("events: want exactly heal_started then heal_succeeded:%s", dumpEvents(events(s)))
	}
	started := evs[0]
	// systemd 252 passes through failed/failed on its way to
	// activating/auto-restart; healgate may act on either: both are dead.
	if !deadReason(started.Reason) || started.Unit != dsUnitName || started.Action != config.ActionSystemd {
		t.Errorf("heal_started does not say the unit was dead (failed or auto-restart):%s", dumpEvents(evs))
	}
	if d := started.Details[dsUnitName]; !strings.Contains(d, "result=signal") {
		t.Errorf("heal_started details %q do not say the unit died of a signal", d)
	}
	if lag := started.Time.Sub(killed); lag > 5*g.cfg.interval {
		t.Errorf("heal started %v after the kill: not at once (probes alone need %v)", lag, time.Duration(g.cfg.fall)*g.cfg.interval)
	}

	// The webhook receiver got the same two events, once each.
	testproc.PollUntil(t, 10*time.Second, "the webhooks arrive", func() bool {
		return len(rcv.list(healing.EventHealSucceeded)) > 0
	})
	if got := rcv.list(healing.EventHealStarted, healing.EventHealSucceeded, healing.EventHealFailed); len(got) != 2 {
		t.Errorf("webhooks: want heal_started and heal_succeeded once each:%s", dumpEvents(got))
	}
}

// TestSIGSTOPHangRestartedAfterFall (fault corpus F11): a SIGSTOPped
// DocService still accepts connections (the kernel does) but never answers;
// the unit stays active/running, so only the probes see it: they time out,
// and after fall failures in a row healgate restarts the unit (systemd
// SIGTERMs, SIGCONTs and, after TimeoutStopSec, SIGKILLs the stopped
// process).
func TestSIGSTOPHangRestartedAfterFall(t *testing.T) {
	e := env(t)
	addr := startDS(t, e, "ok", "")
	rcv := newReceiver(t)
	g := startGate(t, e, gateConfig{upstream: addr, webhook: rcv.url})
	g.waitStatus(t, 10*time.Second, "the target is healthy", func(s *admin.Status) bool {
		return stateIs(s, healing.StateHealthy)
	})

	oldPID := unitInt(t, e.sys, dsUnitName, "MainPID")
	stopped := time.Now()
	if out, err := e.sys.Exec("kill", "-STOP", strconv.Itoa(oldPID)); err != nil {
		t.Fatalf("kill -STOP %d: %v: %s", oldPID, err, out)
	}
	if _, _, err := healthcheck(addr, 500*time.Millisecond); err == nil {
		t.Fatal("a stopped DocService answered")
	}
	// systemd's SIGCONT lets the stopped process answer what it had queued
	// while it stops, so wait for a new MainPID, then for it to answer.
	var newPID int
	testproc.PollUntil(t, 20*time.Second, "a new MainPID", func() bool {
		newPID = unitInt(t, e.sys, dsUnitName, "MainPID")
		return newPID != oldPID && newPID > 1
	})
	waitHealthcheck(t, addr, 20*time.Second, "true")
	if _, err := e.sys.Exec("kill", "-0", strconv.Itoa(oldPID)); err == nil {
		t.Errorf("the stopped process %d outlived the restart", oldPID)
	}
	t.Logf("SIGSTOP → new MainPID %d answering in %v", newPID, time.Since(stopped).Round(time.Millisecond))

	s := g.waitStatus(t, 15*time.Second, "heal_succeeded and healthy", func(s *admin.Status) bool {
		return len(events(s, healing.EventHealSucceeded)) > 0 && stateIs(s, healing.StateHealthy)
	})
	evs := events(s, healing.EventHealStarted, healing.EventHealSucceeded, healing.EventHealFailed)
	if len(evs) != 2 || evs[0].Kind != healing.EventHealStarted || evs[1].Kind != healing.EventHealSucceeded {
		t.Fatalf("events: want exactly heal_started then heal_succeeded:%s", dumpEvents(events(s)))
	}
	started := evs[0]
	wantReason := "liveness failed " + strconv.Itoa(g.cfg.fall) + " times in a row"
	if !strings.Contains(started.Reason, wantReason) || started.Unit != dsUnitName {
		t.Errorf("heal_started reason %q, want it to say %q", started.Reason, wantReason)
	}
	// fall failures take fall-1 intervals at least, each a probe timeout.
	if min := time.Duration(g.cfg.fall-1) * g.cfg.interval; started.Time.Sub(stopped) < min {
		t.Errorf("heal started %v after SIGSTOP, before %d failed probes could have happened (%v)",
			started.Time.Sub(stopped), g.cfg.fall, min)
	}
	testproc.PollUntil(t, 10*time.Second, "the heal_succeeded webhook arrives", func() bool {
		return len(rcv.list(healing.EventHealSucceeded)) == 1
	})
}

// TestDependencyDownHealsDependency (fault corpus F5): RabbitMQ's port
// closes (its unit stopped) and DocService's /healthcheck turns false;
// healgate blames the dependency, restarts its unit, and leaves
// ds-docservice.service alone.
func TestDependencyDownHealsDependency(t *testing.T) {
	e := env(t)
	rabbit := "127.0.0.1:" + strconv.Itoa(testproc.FreePort(t))
	installUnit(t, e.sys, rabbitUnitName, `[Unit]
Description=RabbitMQ stand-in (amqpstub)

[Service]
ExecStart=`+e.amqpstub+` -listen `+rabbit+`
Restart=on-failure
RestartSec=10
`)
	if err := e.sys.Start(rabbitUnitName); err != nil {
		t.Fatal(err)
	}
	testproc.PollUntil(t, 10*time.Second, "the RabbitMQ stand-in listens", func() bool { return accepts(rabbit) })
	addr := startDS(t, e, "ok", "")
	rcv := newReceiver(t)
	g := startGate(t, e, gateConfig{
		upstream: addr,
		webhook:  rcv.url,
		deps:     []config.Dependency{{Name: "rabbitmq", Probe: "amqp://" + rabbit, Unit: rabbitUnitName}},
	})
	g.waitStatus(t, 10*time.Second, "the target and its dependency are healthy", func(s *admin.Status) bool {
		ts := target(s)
		return stateIs(s, healing.StateHealthy) && ts.Dependencies["rabbitmq"].OK
	})
	dsPID := unitInt(t, e.sys, dsUnitName, "MainPID")
	dsRestarts := unitInt(t, e.sys, dsUnitName, "NRestarts")
	rabbitPID := unitInt(t, e.sys, rabbitUnitName, "MainPID")

	// RabbitMQ goes away; DocService's readiness says so.
	if err := e.sys.Stop(rabbitUnitName); err != nil {
		t.Fatal(err)
	}
	setMode(t, addr, "false")
	// DocService recovers by itself once RabbitMQ is back (as the real one
	// reconnects): the test plays that part.
	testproc.PollUntil(t, 20*time.Second, "healgate brings the RabbitMQ stand-in back", func() bool { return accepts(rabbit) })
	setMode(t, addr, "ok")

	s := g.waitStatus(t, 15*time.Second, "heal_succeeded and healthy", func(s *admin.Status) bool {
		return len(events(s, healing.EventHealSucceeded)) > 0 && stateIs(s, healing.StateHealthy)
	})
	if pid := unitInt(t, e.sys, rabbitUnitName, "MainPID"); pid == rabbitPID || pid <= 1 {
		t.Errorf("RabbitMQ stand-in MainPID %d, was %d: not restarted", pid, rabbitPID)
	}
	if pid := unitInt(t, e.sys, dsUnitName, "MainPID"); pid != dsPID {
		t.Errorf("ds-docservice MainPID %d, was %d: DocService was restarted for a dependency fault", pid, dsPID)
	}
	if n := unitInt(t, e.sys, dsUnitName, "NRestarts"); n != dsRestarts {
		t.Errorf("ds-docservice NRestarts %d, was %d", n, dsRestarts)
	}
	all := events(s)
	heals := events(s, healing.EventHealStarted)
	if len(heals) != 1 || heals[0].Unit != rabbitUnitName || !strings.Contains(heals[0].Reason, "dependency rabbitmq down") {
		t.Errorf("want one heal_started of %s because dependency rabbitmq is down:%s", rabbitUnitName, dumpEvents(all))
	}
	for _, ev := range all {
		if strings.Contains(ev.Unit, dsUnitName) {
			t.Errorf("an event acted on %s:%s", dsUnitName, dumpEvents(all))
			break
		}
	}
	testproc.PollUntil(t, 10*time.Second, "the heal_succeeded webhook arrives", func() bool {
		return len(rcv.list(healing.EventHealSucceeded)) == 1
	})
	for _, ev := range rcv.list(healing.EventHealStarted) {
		if ev.Unit != rabbitUnitName {
			t.Errorf("webhook heal_started for %q, want only %s", ev.Unit, rabbitUnitName)
		}
	}
}

// TestCrashLoopGivesUp (fault corpus F12): DocService comes up for 2 s and
// dies, again and again. healgate restarts it at once each time it dies
// (systemd would wait RestartSec=30), but the restarts never verify (rise
// passes take longer than the process lives), so it backs off with growing
// waits, stops at the budget, gives up, and sends exactly one gave_up webhook.
func TestCrashLoopGivesUp(t *testing.T) {
	e := env(t)
	port := testproc.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	installUnit(t, e.sys, dsUnitName, dsUnit(e.dsemu, port, "crash-after=2s", ""))
	if err := e.sys.Start(dsUnitName); err != nil {
		t.Fatal(err)
	}
	rcv := newReceiver(t)
	cfg := gateConfig{
		upstream:       addr,
		webhook:        rcv.url,
		rise:           10, // 10 passes at 250ms: longer than the 2s the process lives
		budget:         3,
		backoffInitial: time.Second,
		backoffMax:     4 * time.Second,
	}
	g := startGate(t, e, cfg)
	cfg = g.cfg

	s := g.waitStatus(t, 60*time.Second, "the target gives up", func(s *admin.Status) bool {
		return stateIs(s, healing.StateGaveUp)
	})
	gaveUp := time.Now()
	all := events(s)
	starts := events(s, healing.EventHealStarted)
	failed := events(s, healing.EventHealFailed)
	if len(starts) != cfg.budget {
		t.Fatalf("%d heal_started, want the budget, %d:%s", len(starts), cfg.budget, dumpEvents(all))
	}
	if len(failed) != cfg.budget {
		t.Fatalf("%d heal_failed, want one per attempt, %d:%s", len(failed), cfg.budget, dumpEvents(all))
	}
	for _, ev := range starts {
		if !strings.Contains(ev.Reason, dsUnitName) || !deadReason(ev.Reason) {
			t.Errorf("heal_started reason %q: want the unit dead (failed or auto-restart)", ev.Reason)
		}
	}
	// Each attempt failed because the unit died again, and the wait before
	// the next one (heal_failed → next heal_started) grows: equal jitter
	// keeps attempt n's wait within [d/2, d], d = initial·2ⁿ.
	var waits []time.Duration
	for i := range cfg.budget - 1 {
		waits = append(waits, starts[i+1].Time.Sub(failed[i].Time))
	}
	slack := 250 * time.Millisecond // the healer loop's lateness on a loaded machine
	for i, w := range waits {
		d := cfg.backoffInitial << i
		if w < d/2 || w > d+slack {
			t.Errorf("wait before attempt %d = %v, want within [%v, %v]:%s", i+2, w, d/2, d, dumpEvents(all))
		}
	}
	if waits[1] < waits[0] {
		t.Errorf("backoff did not grow: waits %v", waits)
	}
	// The gaps between attempts are the process's life (2 s, plus a few
	// ms of start-up and detection that vary) plus those waits, so they
	// grow too, within that noise.
	g1, g2 := starts[1].Time.Sub(starts[0].Time), starts[2].Time.Sub(starts[1].Time)
	if g2 <= g1-100*time.Millisecond {
		t.Errorf("gaps between heal_started %v then %v: want growing", g1, g2)
	}
	t.Logf("heal_started gaps %v, %v; backoff waits %v", g1.Round(time.Millisecond), g2.Round(time.Millisecond), waits)
	gave := events(s, healing.EventGaveUp)
	if len(gave) != 1 || !strings.Contains(gave[0].Reason, "restart budget spent") {
		t.Fatalf("want one gave_up saying the budget is spent:%s", dumpEvents(all))
	}
	if ts := target(s); ts.Machine.BudgetLeft != 0 {
		t.Errorf("budget left %d after giving up", ts.Machine.BudgetLeft)
	}

	// Exactly one gave_up webhook: wait past the point where a further
	// attempt, and so a second gave_up, would have come (the longest
	// backoff plus a few probe rounds), then count.
	testproc.PollUntil(t, 10*time.Second, "the gave_up webhook arrives", func() bool {
		return len(rcv.list(healing.EventGaveUp)) > 0
	})
	quiet := gaveUp.Add(cfg.backoffMax + 4*cfg.interval)
	testproc.Poll(time.Until(quiet), func() bool { return len(rcv.list(healing.EventGaveUp)) > 1 })
	if got := rcv.list(healing.EventGaveUp); len(got) != 1 {
		t.Errorf("%d gave_up webhooks, want exactly one:%s", len(got), dumpEvents(got))
	}
	if got := rcv.list(healing.EventHealStarted); len(got) != cfg.budget {
		t.Errorf("%d heal_started webhooks, want %d", len(got), cfg.budget)
	}
	s = g.waitStatus(t, 5*time.Second, "still gave up", func(s *admin.Status) bool { return true })
	if !stateIs(s, healing.StateGaveUp) || len(events(s, healing.EventHealStarted)) != cfg.budget {
		t.Errorf("after giving up, the state moved on:%s", dumpEvents(events(s)))
	}
	// Left alone: the unit waits out systemd's own RestartSec.
	if st, err := e.sys.Show(dsUnitName, "SubState"); err != nil || st != "auto-restart" {
		t.Errorf("unit SubState %q (%v), want auto-restart: left to systemd", st, err)
	}
}

// deadReason reports whether a heal's reason says the unit was seen dead
// over D-Bus: "unit ds-docservice.service is activating/auto-restart" or
// ".../failed/failed".
func deadReason(reason string) bool {
	return strings.Contains(reason, "unit "+dsUnitName+" is ") &&
		(strings.Contains(reason, "/auto-restart") || strings.Contains(reason, "failed/failed"))
}
