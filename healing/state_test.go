package healing

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/healgate/healgate/config"
)

const ds = "ds-docservice.service"

// sim drives a Machine with a fake clock the way the healer will: record a
// round of observations, Decide, advance time. It keeps every transition and
// every non-empty decision for the assertions.
type sim struct {
	t         *testing.T
	m         *Machine
	now       time.Time
	interval  time.Duration
	trs       []Transition
	decisions []Decision
}

// newSim builds a Machine from the defaults (rise 2, fall 3, start_period
// 60s, recovery 120s, budget 3/30m, backoff 10s..5m) changed by edit.
func newSim(t *testing.T, edit func(*config.Config)) *sim {
	cfg := config.Default()
	cfg.Healing.Dependencies = []config.Dependency{
		{Name: "rabbitmq", Probe: "amqp://127.0.0.1:5672", Unit: "rabbitmq-server.service"},
		{Name: "postgresql", Probe: "postgres://127.0.0.1:5432", Unit: "postgresql.service"},
	}
	if edit != nil {
		edit(cfg)
	}
	return &sim{
		t:        t,
		m:        NewMachine(cfg.Health, cfg.Healing, rand.New(rand.NewPCG(1, 2))),
		now:      t0,
		interval: cfg.Health.Interval,
	}
}

// decide calls Decide and checks the machine's invariants on what it returns.
func (s *sim) decide() Decision {
	s.t.Helper()
	d, trs := s.m.Decide(s.now)
	for _, tr := range trs {
		if tr.From == tr.To {
			s.t.Fatalf("transition to the same state: %+v", tr)
		}
		if n := len(s.trs); n > 0 && s.trs[n-1].To != tr.From {
			s.t.Fatalf("transition %v→%v does not start where %v→%v ended", tr.From, tr.To, s.trs[n-1].From, s.trs[n-1].To)
		}
		if !tr.At.Equal(s.now) || tr.Reason == "" {
			s.t.Fatalf("transition %+v: want At %v and a reason", tr, s.now)
		}
		s.trs = append(s.trs, tr)
	}
	if d.Kind != DecisionNone {
		if d.Reason == "" || !d.At.Equal(s.now) {
			s.t.Fatalf("decision %+v: want a reason and At %v", d, s.now)
		}
		s.decisions = append(s.decisions, d)
	}
	if got := s.m.State(); len(s.trs) > 0 && s.trs[len(s.trs)-1].To != got {
		s.t.Fatalf("State() = %v, last transition went to %v", got, s.trs[len(s.trs)-1].To)
	}
	return d
}

// obs is one round of check results; nil dependency map means all pass.
type obs struct {
	live, ready bool
	deps        map[string]bool
	unit        string // "active/sub" of ds, "" for no observation
}

var allOK = obs{live: true, ready: true}

// round records o, decides, and advances one interval.
func (s *sim) round(o obs) Decision {
	s.t.Helper()
	s.m.RecordLiveness(s.now, o.live)
	s.m.RecordReadiness(s.now, o.ready)
	for _, name := range []string{"rabbitmq", "postgresql"} {
		ok, set := o.deps[name]
		s.m.RecordDependency(s.now, name, ok || !set)
	}
	if o.unit != "" {
		active, sub, _ := strings.Cut(o.unit, "/")
		s.m.RecordUnit(s.now, ds, active, sub)
	}
	d := s.decide()
	s.now = s.now.Add(s.interval)
	return d
}

// rounds runs n rounds of o and returns the decisions they made.
func (s *sim) rounds(n int, o obs) []Decision {
	s.t.Helper()
	var ds []Decision
	for range n {
		if d := s.round(o); d.Kind != DecisionNone {
			ds = append(ds, d)
		}
	}
	return ds
}

func (s *sim) wantState(want State) {
	s.t.Helper()
	if got := s.m.State(); got != want {
		s.t.Fatalf("state = %v, want %v; transitions:\n%s", got, want, s.history())
	}
}

func (s *sim) history() string {
	var b strings.Builder
	for _, tr := range s.trs {
		fmt.Fprintf(&b, "  +%v %v→%v: %s\n", tr.At.Sub(t0), tr.From, tr.To, tr.Reason)
	}
	return b.String()
}

func (s *sim) count(k DecisionKind) int {
	n := 0
	for _, d := range s.decisions {
		if d.Kind == k {
			n++
		}
	}
	return n
}

func (s *sim) transitionsTo(st State) []Transition {
	var out []Transition
	for _, tr := range s.trs {
		if tr.To == st {
			out = append(out, tr)
		}
	}
	return out
}

func wantDecision(t *testing.T, d Decision, kind DecisionKind, units ...string) {
	t.Helper()
	if d.Kind != kind || !slices.Equal(d.Units, units) {
		t.Fatalf("decision = %v %v (%s), want %v %v", d.Kind, d.Units, d.Reason, kind, units)
	}
}

// restarted completes the restart in flight successfully.
func (s *sim) restarted() {
	s.t.Helper()
	if !s.m.RestartDone(s.now, nil) {
		s.t.Fatalf("RestartDone not taken in state %v", s.m.State())
	}
	s.decide()
	s.wantState(StateVerifying)
}

func TestKillRestartsAtOnce(t *testing.T) {
	s := newSim(t, nil)
	s.rounds(3, allOK)
	s.wantState(StateHealthy)
	// The process was killed: systemd waits out RestartSec=30 in auto-restart.
	d := s.round(obs{live: false, ready: false, unit: "activating/auto-restart"})
	wantDecision(t, d, DecisionRestart, ds)
	s.wantState(StateHealing)
	if !strings.Contains(d.Reason, "auto-restart") {
		t.Errorf("reason %q does not name the unit state", d.Reason)
	}
	// A restart in flight blocks every other decision.
	if got := s.rounds(40, obs{unit: "failed/failed"}); len(got) != 0 { // 80s < restart_timeout
		t.Fatalf("decisions while a restart is in flight: %+v", got)
	}
	s.restarted()
	s.rounds(1, obs{live: true, ready: true, unit: "active/running"})
	s.wantState(StateVerifying) // one pass: rise is 2
	s.rounds(1, allOK)
	s.wantState(StateHealthy)
	if s.count(DecisionRestart) != 1 {
		t.Fatalf("%d restarts, want 1", s.count(DecisionRestart))
	}
	want := []State{StateHealing, StateVerifying, StateHealthy}
	var got []State
	for _, tr := range s.trs {
		got = append(got, tr.To)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("transitions to %v, want %v:\n%s", got, want, s.history())
	}
}

func TestHangRestartsAfterFall(t *testing.T) {
	s := newSim(t, nil)
	hung := obs{live: false, ready: false} // probes time out
	for i := 1; i < 3; i++ {
		if d := s.round(hung); d.Kind != DecisionNone {
			t.Fatalf("round %d: decided %v before fall", i, d.Kind)
		}
		s.wantState(StateSuspect)
	}
	wantDecision(t, s.round(hung), DecisionRestart, ds)
	if st := s.m.Status(s.now); st.State != StateHealing || st.InFlight.Kind != DecisionRestart || st.BudgetLeft != 2 {
		t.Fatalf("status %+v", st)
	}
}

func TestBlipDoesNotRestart(t *testing.T) {
	s := newSim(t, nil)
	for range 100 {
		s.round(obs{live: false, ready: false})
		s.round(obs{live: false, ready: true})
		s.round(allOK)
	}
	if len(s.decisions) != 0 {
		t.Fatalf("decisions on blips: %+v", s.decisions)
	}
	s.wantState(StateHealthy)
}

func TestReadinessFailingRestartsAfterFall(t *testing.T) {
	s := newSim(t, nil)
	notReady := obs{live: true, ready: false}
	if got := s.rounds(2, notReady); len(got) != 0 {
		t.Fatalf("decided before fall: %+v", got)
	}
	d := s.round(notReady)
	wantDecision(t, d, DecisionRestart, ds)
	if !strings.Contains(d.Reason, "readiness") {
		t.Errorf("reason %q", d.Reason)
	}
}

// TestDependencyDownHealsTheDependency is fault corpus F5: Document Server
// refuses while RabbitMQ is down. RabbitMQ's unit is restarted, never
// Document Server's.
func TestDependencyDownHealsTheDependency(t *testing.T) {
	s := newSim(t, nil)
	f5 := obs{deps: map[string]bool{"rabbitmq": false}, unit: "activating/auto-restart"} // DS cannot start
	var got []Decision
	for range 3 {
		if d := s.round(f5); d.Kind != DecisionNone {
			got = append(got, d)
		}
	}
	if len(got) != 1 {
		t.Fatalf("decisions %+v, want one", got)
	}
	wantDecision(t, got[0], DecisionRestartDependency, "rabbitmq-server.service")
	if got[0].Dependency != "rabbitmq" {
		t.Fatalf("dependency %q", got[0].Dependency)
	}
	s.restarted()
	// RabbitMQ comes back; DocService then starts listening.
	s.rounds(1, obs{live: false, ready: false, unit: "activating/auto-restart"})
	s.wantState(StateVerifying) // a dead DS unit is not the dependency restart failing
	s.rounds(2, obs{live: true, ready: true, unit: "active/running"})
	s.wantState(StateHealthy)
	if n := s.count(DecisionRestart); n != 0 {
		t.Fatalf("Document Server restarted %d times for a dependency", n)
	}
}

// TestDependencyStaysDown: RabbitMQ does not come back. The healer keeps
// trying RabbitMQ's unit within its budget and never restarts Document Server.
func TestDependencyStaysDown(t *testing.T) {
	s := newSim(t, nil)
	f5 := obs{deps: map[string]bool{"rabbitmq": false}}
	for range 2000 { // over an hour
		if d := s.round(f5); d.Kind == DecisionRestartDependency {
			s.m.RestartDone(s.now, nil)
			s.decide()
		}
	}
	if n := s.count(DecisionRestart); n != 0 {
		t.Fatalf("Document Server restarted %d times", n)
	}
	if n := s.count(DecisionRestartDependency); n != 3 {
		t.Fatalf("%d dependency restarts, want the budget's 3", n)
	}
	if n := s.count(DecisionGiveUp); n != 1 {
		t.Fatalf("%d give-ups, want 1", n)
	}
	s.wantState(StateGaveUp)
}

func TestDependencyWithoutUnitAlertsOnce(t *testing.T) {
	s := newSim(t, func(c *config.Config) { c.Healing.Dependencies[0].Unit = "" })
	f5 := obs{live: false, ready: false, deps: map[string]bool{"rabbitmq": false}}
	s.rounds(100, f5)
	if len(s.decisions) != 1 || s.decisions[0].Kind != DecisionAlertDependency || s.decisions[0].Dependency != "rabbitmq" {
		t.Fatalf("decisions %+v, want one alert for rabbitmq", s.decisions)
	}
	s.wantState(StateSuspect)
	// It recovers, fails again: a new outage, a new alert.
	s.rounds(3, allOK)
	s.wantState(StateHealthy)
	s.rounds(5, f5)
	if s.count(DecisionAlertDependency) != 2 || s.count(DecisionRestart) != 0 {
		t.Fatalf("decisions %+v", s.decisions)
	}
}

// TestDependencyBlipBlocksTargetRestart: one failed dependency check is
// enough to hold back a restart of the target; Fall of them heal the
// dependency.
func TestDependencyBlipBlocksTargetRestart(t *testing.T) {
	s := newSim(t, nil)
	s.rounds(2, obs{live: false, ready: false})
	d := s.round(obs{live: false, ready: false, deps: map[string]bool{"postgresql": false}})
	if d.Kind != DecisionNone {
		t.Fatalf("decided %v while postgresql's latest check failed", d.Kind)
	}
	// PostgreSQL passes again: now the target is to blame.
	wantDecision(t, s.round(obs{live: false, ready: false}), DecisionRestart, ds)
}

// TestCrashLoop is fault corpus F12: the unit comes up for 2 s and dies,
// again and again. Restarts stop at the budget, waits grow, the healer gives
// up exactly once and then leaves systemd's own Restart= alone.
func TestCrashLoop(t *testing.T) {
	s := newSim(t, nil)
	s.interval = time.Second
	end := s.now.Add(3 * time.Hour)
	phase := 0 // seconds since the unit last started
	for s.now.Before(end) {
		var o obs
		switch {
		case phase < 2:
			o = obs{unit: "active/running", live: true, ready: false}
		case phase < 32:
			o = obs{unit: "activating/auto-restart"}
		default:
			phase = -1 // systemd restarts it itself
			o = obs{unit: "activating/start"}
		}
		phase++
		if d := s.round(o); d.Kind == DecisionRestart {
			s.m.RestartDone(s.now, nil)
			s.decide()
			phase = 0
		}
	}
	if n := s.count(DecisionRestart); n != 3 {
		t.Fatalf("%d restarts, want the budget's 3:\n%s", n, s.history())
	}
	if n := s.count(DecisionGiveUp); n != 1 {
		t.Fatalf("%d give-up decisions, want 1:\n%s", n, s.history())
	}
	if n := len(s.transitionsTo(StateGaveUp)); n != 1 {
		t.Fatalf("%d transitions to gave-up, want 1", n)
	}
	s.wantState(StateGaveUp)
	// Backoff waits grow: each is read from the reason's "next attempt in".
	var waits []time.Duration
	for _, tr := range s.transitionsTo(StateBackoff) {
		_, after, _ := strings.Cut(tr.Reason, "next attempt in ")
		d, err := time.ParseDuration(after)
		if err != nil {
			t.Fatalf("reason %q: %v", tr.Reason, err)
		}
		waits = append(waits, d)
	}
	if len(waits) < 3 {
		t.Fatalf("%d backoffs, want at least 3:\n%s", len(waits), s.history())
	}
	for i := 1; i < len(waits); i++ {
		if waits[i] < waits[i-1] {
			t.Fatalf("backoff shrank: %v", waits)
		}
	}
	if waits[len(waits)-1] < 2*waits[0] {
		t.Fatalf("backoff did not grow: %v", waits)
	}
}

func TestStartPeriodIgnoresBootFailures(t *testing.T) {
	s := newSim(t, nil)
	s.rounds(3, obs{})
	s.restarted()
	// DocService boots for 50 s: every check fails, all ignored.
	if got := s.rounds(25, obs{unit: "activating/start"}); len(got) != 0 {
		t.Fatalf("decisions during the start period: %+v", got)
	}
	s.wantState(StateVerifying)
	s.rounds(2, obs{live: true, ready: true, unit: "active/running"})
	s.wantState(StateHealthy)
	if s.count(DecisionRestart) != 1 {
		t.Fatalf("restarts %d", s.count(DecisionRestart))
	}
}

// TestBootingUnitLeftAlone: a unit systemd is starting by itself (after its
// own Restart=) is not restarted on failed checks, for the start period.
func TestBootingUnitLeftAlone(t *testing.T) {
	s := newSim(t, nil)
	if got := s.rounds(20, obs{unit: "activating/start-pre"}); len(got) != 0 {
		t.Fatalf("restarted a booting unit: %+v", got)
	}
	s.wantState(StateSuspect)
	// Its start finished but it does not answer: once the start period
	// (60 s from first seeing it boot) is over, Fall failures restart it.
	var d Decision
	for range 40 {
		if d = s.round(obs{unit: "active/running"}); d.Kind != DecisionNone {
			break
		}
	}
	wantDecision(t, d, DecisionRestart, ds)
	if d.At.Sub(t0) < 60*time.Second {
		t.Fatalf("restarted %v after boot began, inside the 60s start period", d.At.Sub(t0))
	}
}

func TestVerifyingNeedsRisePasses(t *testing.T) {
	s := newSim(t, func(c *config.Config) {
		c.Health.Rise = 4
		c.Healing.StartPeriod = 0 // failures count at once
	})
	s.rounds(3, obs{})
	s.restarted()
	for range 3 {
		s.round(allOK)
		s.wantState(StateVerifying)
	}
	s.round(obs{live: true, ready: false}) // a failure resets the run
	s.rounds(3, allOK)
	s.wantState(StateVerifying)
	s.rounds(1, allOK)
	s.wantState(StateHealthy)
}

func TestRecoveryTimeoutBacksOffAndRetries(t *testing.T) {
	s := newSim(t, nil)
	s.rounds(3, obs{})
	s.restarted()
	// Never recovers: after 120 s, backoff; after the wait, another restart.
	var got []Decision
	for range 200 {
		if d := s.round(obs{}); d.Kind != DecisionNone {
			got = append(got, d)
			break
		}
	}
	if len(got) != 1 || got[0].Kind != DecisionRestart {
		t.Fatalf("decisions %+v", got)
	}
	bo := s.transitionsTo(StateBackoff)
	if len(bo) != 1 || !strings.Contains(bo[0].Reason, "recovery_timeout") {
		t.Fatalf("backoff transitions %+v", bo)
	}
	if el := bo[0].At.Sub(s.transitionsTo(StateVerifying)[0].At); el < 120*time.Second || el > 125*time.Second {
		t.Fatalf("backoff %v after verifying began, want ~120s", el)
	}
	if wait := got[0].At.Sub(bo[0].At); wait < 5*time.Second || wait > 12*time.Second {
		t.Fatalf("second restart %v after backoff began, want 5–10s (+1 interval)", wait)
	}
}

func TestRestartTimeoutAndLateResult(t *testing.T) {
	s := newSim(t, nil)
	s.rounds(3, obs{})
	s.wantState(StateHealing)
	s.now = s.now.Add(90 * time.Second)
	s.decide()
	s.wantState(StateBackoff)
	if s.m.RestartDone(s.now, nil) {
		t.Fatal("a result after the restart timeout was taken")
	}
	s.wantState(StateBackoff)
}

func TestRestartFailedBacksOff(t *testing.T) {
	s := newSim(t, nil)
	s.rounds(3, obs{})
	jobErr := errors.New(`job result "failed"`)
	if !s.m.RestartDone(s.now, jobErr) {
		t.Fatal("RestartDone not taken")
	}
	s.decide()
	s.wantState(StateBackoff)
	if r := s.trs[len(s.trs)-1].Reason; !strings.Contains(r, `job result "failed"`) {
		t.Fatalf("reason %q does not carry the error", r)
	}
	// Health returning during the backoff ends it.
	s.rounds(2, allOK)
	s.wantState(StateHealthy)
	if s.m.Status(s.now).Attempts != 0 {
		t.Fatal("backoff not reset after recovery")
	}
}

func TestOperatorResetFromGaveUp(t *testing.T) {
	s := newSim(t, func(c *config.Config) { c.Healing.Budget.Restarts = 1 })
	s.rounds(3, obs{})
	s.restarted()
	var d Decision
	for range 500 {
		if d = s.round(obs{}); d.Kind == DecisionGiveUp {
			break
		}
	}
	wantDecision(t, d, DecisionGiveUp)
	s.wantState(StateGaveUp)
	if st := s.m.Status(s.now); st.BudgetLeft != 0 {
		t.Fatalf("budget left %d", st.BudgetLeft)
	}
	if got := s.rounds(100, obs{}); len(got) != 0 {
		t.Fatalf("decisions after giving up: %+v", got)
	}
	if s.m.Reset(s.now) != true {
		t.Fatal("Reset from gave-up reported no change")
	}
	if st := s.m.Status(s.now); st.State != StateSuspect || st.BudgetLeft != 1 || st.Attempts != 0 {
		t.Fatalf("status after reset: %+v", st)
	}
	wantDecision(t, s.decide(), DecisionRestart, ds) // still down: act again
	if tr := s.transitionsTo(StateSuspect); tr[len(tr)-1].Reason != "operator reset" {
		t.Fatalf("transitions:\n%s", s.history())
	}
	if s.m.Reset(s.now) {
		t.Fatal("Reset while healing reported a change")
	}
}

func TestHealthReturnsFromGaveUp(t *testing.T) {
	s := newSim(t, func(c *config.Config) { c.Healing.Budget.Restarts = 0 })
	d := s.rounds(3, obs{})
	if len(d) != 1 || d[0].Kind != DecisionGiveUp {
		t.Fatalf("zero budget: decisions %+v, want one give-up", d)
	}
	s.rounds(2, allOK)
	s.wantState(StateHealthy)
}

func TestDryRun(t *testing.T) {
	s := newSim(t, func(c *config.Config) { c.Healing.DryRun = true })
	d := s.rounds(3, obs{})
	if len(d) != 1 || d[0].Kind != DecisionRestart || !d[0].DryRun {
		t.Fatalf("decisions %+v, want one dry-run restart", d)
	}
	s.wantState(StateVerifying)
	if s.m.RestartDone(s.now, nil) {
		t.Fatal("RestartDone taken for a dry-run decision")
	}
	s.rounds(2000, obs{})
	if s.count(DecisionGiveUp) != 1 || !s.decisions[len(s.decisions)-1].DryRun {
		t.Fatalf("decisions %+v", s.decisions)
	}
}

func TestPassiveSignalsCountAsLivenessFailures(t *testing.T) {
	s := newSim(t, nil)
	s.m.RecordPassive(s.now, PassiveBreakerOpen)
	s.m.RecordPassive(s.now, PassiveDialError)
	if d := s.decide(); d.Kind != DecisionNone {
		t.Fatalf("decided after 2 of 3: %v", d.Kind)
	}
	s.m.RecordPassive(s.now, PassiveDialError)
	wantDecision(t, s.decide(), DecisionRestart, ds)
}

func TestTrigger(t *testing.T) {
	s := newSim(t, nil)
	s.rounds(2, allOK)
	if !s.m.Trigger(s.now, "") {
		t.Fatal("Trigger refused while healthy")
	}
	d := s.decide()
	wantDecision(t, d, DecisionRestart, ds)
	if d.Reason != "operator request" {
		t.Fatalf("reason %q", d.Reason)
	}
	if s.m.Trigger(s.now, "again") {
		t.Fatal("Trigger accepted while a restart is in flight")
	}
}

func TestNextDeadline(t *testing.T) {
	s := newSim(t, nil)
	if !s.m.NextDeadline(s.now).IsZero() {
		t.Fatal("healthy machine has a deadline")
	}
	s.rounds(3, obs{})
	if got, want := s.m.NextDeadline(s.now), s.now.Add(-s.interval).Add(90*time.Second); !got.Equal(want) {
		t.Fatalf("healing deadline %v, want %v", got, want)
	}
	s.restarted()
	if got, want := s.m.NextDeadline(s.now), s.now.Add(120*time.Second); !got.Equal(want) {
		t.Fatalf("verifying deadline %v, want %v", got, want)
	}
}

func TestStateNames(t *testing.T) {
	for st, want := range map[State]string{StateHealthy: "healthy", StateGaveUp: "gave-up", State(42): "State(42)"} {
		if st.String() != want {
			t.Errorf("%d: %q, want %q", int(st), st.String(), want)
		}
	}
	if DecisionRestartDependency.String() != "restart-dependency" {
		t.Error(DecisionRestartDependency.String())
	}
}
