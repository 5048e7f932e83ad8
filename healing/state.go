package healing

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/healgate/healgate/config"
)

// State is where a target stands in the healing cycle (see the package
// documentation for the diagram).
type State int

// States of a target.
const (
	// StateHealthy: every check passes (or has not yet failed Fall times).
	StateHealthy State = iota
	// StateSuspect: something failed, but not enough to act on yet, or the
	// fault lies with a dependency that cannot be healed or is not yet down.
	StateSuspect
	// StateHealing: a restart was decided and is in flight; nothing else is
	// decided until its result arrives or the restart timeout passes.
	StateHealing
	// StateVerifying: the restart finished; failures are ignored for the
	// start period, and the target must pass Rise checks in a row before the
	// recovery timeout.
	StateVerifying
	// StateBackoff: a heal attempt failed; the next one waits out an
	// exponentially growing, jittered delay.
	StateBackoff
	// StateGaveUp: the restart budget is spent; the target is left alone
	// until its health returns or an operator resets it.
	StateGaveUp
)

var stateNames = [...]string{"healthy", "suspect", "healing", "verifying", "backoff", "gave-up"}

// String returns the state's name: "healthy", "suspect", "healing",
// "verifying", "backoff" or "gave-up".
func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("State(%d)", int(s))
	}
	return stateNames[s]
}

// MarshalText returns the state's name, for JSON and logs.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a state's name, so /status decodes. It returns an
// error for a name that is not a state's.
func (s *State) UnmarshalText(b []byte) error {
	for i, name := range stateNames {
		if name == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("unknown healing state %q", b)
}

// DecisionKind is what the healer must do.
type DecisionKind int

// Decision kinds.
const (
	// DecisionNone: nothing to do.
	DecisionNone DecisionKind = iota
	// DecisionRestart: restart the target's units (Decision.Units), then
	// report the result with Machine.RestartDone.
	DecisionRestart
	// DecisionRestartDependency: restart the unit of the dependency
	// Decision.Dependency (Decision.Units holds it), then report the result
	// with Machine.RestartDone. The target itself is not restarted.
	DecisionRestartDependency
	// DecisionAlertDependency: the dependency Decision.Dependency is down and
	// has no unit to restart: alert operators. Given once per outage of that
	// dependency.
	DecisionAlertDependency
	// DecisionGiveUp: the restart budget is spent: alert operators. Given
	// once, with the one transition into StateGaveUp.
	DecisionGiveUp
)

var decisionNames = [...]string{"none", "restart", "restart-dependency", "alert-dependency", "give-up"}

// String returns the kind's name: "none", "restart", "restart-dependency",
// "alert-dependency" or "give-up".
func (k DecisionKind) String() string {
	if k < 0 || int(k) >= len(decisionNames) {
		return fmt.Sprintf("DecisionKind(%d)", int(k))
	}
	return decisionNames[k]
}

// MarshalText returns the kind's name, for JSON and logs.
func (k DecisionKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses a kind's name, so /status decodes. It returns an
// error for a name that is not a kind's.
func (k *DecisionKind) UnmarshalText(b []byte) error {
	for i, name := range decisionNames {
		if name == string(b) {
			*k = DecisionKind(i)
			return nil
		}
	}
	return fmt.Errorf("unknown decision kind %q", b)
}

// Decision is what Machine.Decide asks the healer to do.
type Decision struct {
	// Kind says what to do; DecisionNone means nothing.
	Kind DecisionKind
	// Units are the systemd units to restart (restart kinds only): the
	// target's configured units, or the one unit of a dependency.
	Units []string
	// Dependency names the dependency for the dependency kinds.
	Dependency string
	// Reason says why, in a short sentence for logs and alerts.
	Reason string
	// DryRun is set under healing.dry_run: report the decision, do not act,
	// and do not call RestartDone (the machine assumed the restart done).
	DryRun bool
	// At is when the decision was taken.
	At time.Time
}

// Transition is one change of a target's State. Transitions are produced
// only when the state actually changes.
type Transition struct {
	From, To State
	// Reason says why, in a short sentence for logs and webhooks.
	Reason string
	// At is the time passed to the call that caused the change.
	At time.Time
}

// PassiveSignal is evidence about the target from live traffic, reported by
// the proxy.
type PassiveSignal int

// Passive signals. Each counts as one failed liveness check.
const (
	// PassiveBreakerOpen: the target's circuit breaker opened.
	PassiveBreakerOpen PassiveSignal = iota + 1
	// PassiveDialError: a connection to the target could not be made
	// (refused or connect timeout) on a route where that means an outage.
	PassiveDialError
)

// unitCond is what a unit's ActiveState/SubState mean for healing.
type unitCond int

const (
	unitUnknown  unitCond = iota
	unitRunning           // active, reloading
	unitBooting           // activating in a start substate: leave it alone
	unitDead              // failed, inactive, or waiting out RestartSec (auto-restart)
	unitStopping          // deactivating
)

// classifyUnit maps systemd's ActiveState and SubState to a unitCond.
func classifyUnit(active, sub string) unitCond {
	switch {
	case sub == "auto-restart" || sub == "auto-restart-queued":
		// Dead, waiting out RestartSec: restarting now only shortens the outage.
		return unitDead
	case active == "failed" || active == "inactive":
		return unitDead
	case active == "activating":
		return unitBooting // start-pre, start, start-post, condition
	case active == "active" || active == "reloading" || active == "refreshing":
		return unitRunning
	case active == "deactivating":
		return unitStopping
	default:
		return unitUnknown
	}
}

type unitObs struct {
	cond        unitCond
	active, sub string
}

type depState struct {
	name, unit string
	h          Hysteresis
	lastOK     bool // the latest result passed (true before any)
	alerted    bool // DecisionAlertDependency given for the current outage
}

// Machine is the health state machine of one healing target: a set of
// systemd units, its liveness and readiness checks, and its dependencies.
// It is pure: no goroutines, no I/O, no clock. Every method takes the time
// it happens at, so tests drive time and the healer passes time.Now().
//
//	          any failure                 Fall failures, or a unit dead
//	healthy ─────────────► suspect ─────────────────────────────► healing
//	   ▲ ◄───────────────── │  ▲                                    │ RestartDone
//	   │     checks pass    │  │ dependency failing / unit booting  ▼
//	   │                    └──┘                                verifying
//	   │ Rise passes ◄──────────────────────────────────────────────┤
//	   │                     job failed / restart_timeout /         │
//	   │                     recovery_timeout / unit dead again     ▼
//	   ├──────────────── health returns ◄──────────────────────── backoff
//	   │                                  wait over: decide again ──┘ (→ healing)
//	   └──────────────── health returns or Reset ◄─────────────── gave-up
//	                                     budget spent when deciding a restart
//
// Rules, in the order Decide applies them (healthy, suspect, end of backoff):
//   - An operator's Trigger restarts the target (budget permitting).
//   - A dependency down (Fall failed checks in a row) is healed first: its
//     unit is restarted (DecisionRestartDependency), or, without a unit,
//     alerted once per outage (DecisionAlertDependency). The target is never
//     restarted for it (fault corpus F5).
//   - While any dependency's latest check failed, the target is not
//     restarted: the fault may be the dependency's.
//   - A target unit that is failed, inactive or in auto-restart is restarted
//     at once; otherwise liveness, then readiness, down (Fall failures in a
//     row; passive signals count as liveness failures) restarts it — but
//     never while a unit is booting (activating in a start substate) nor
//     during the start period.
//   - Every restart (target or dependency) draws from one Budget: ≤ N
//     restarts in any window W. When a restart is due and the budget is
//     spent, the machine gives up: one transition to gave-up, one
//     DecisionGiveUp.
//   - One restart at a time: while healing, nothing else is decided.
//   - After a restart, failures are ignored for StartPeriod; the target (or
//     the restarted dependency) must pass Rise checks in a row within
//     RecoveryTimeout, else backoff (Initial·2ⁿ, jittered, capped at Max).
//   - Under dry_run the decisions are flagged DryRun and the restart is
//     assumed done at once; budget, backoff and give-up behave as for real,
//     so the log shows what healgate would do.
//
// The healer records what it observes (Record* methods, RestartDone, Reset,
// Trigger), then calls Decide, which advances the state, returns the
// transitions that happened since the previous Decide, and at most one
// Decision. A Machine is not safe for concurrent use: one goroutine (the
// healer's loop) owns it.
type Machine struct {
	units           []string
	startPeriod     time.Duration
	restartTimeout  time.Duration
	recoveryTimeout time.Duration
	dryRun          bool
	rise            int
	liveRun         bool // a liveness check is configured
	readyRun        bool // a readiness check is configured

	live, ready Hysteresis
	deps        []depState
	unitState   map[string]unitObs

	state    State
	since    time.Time
	reason   string
	deadline time.Time // healing: restart bound; verifying: recovery bound; backoff: next attempt

	graceUntil time.Time // failures before this are ignored (start period)
	graceDep   string    // the dependency whose failures the grace also hides ("" for none)

	inflight Decision // the restart in flight (StateHealing) or being verified
	forced   string   // an operator's heal request, taken by the next Decide
	budget   *Budget
	backoff  *Backoff
	pending  []Transition
}

// NewMachine returns a Machine in StateHealthy for the target described by
// health (Rise, Fall; a probe with an empty Path is taken as never run, so it
// never blocks recovery) and heal (Units, Dependencies, StartPeriod,
// RestartTimeout, RecoveryTimeout, Budget, Backoff, DryRun). A zero
// RestartTimeout or RecoveryTimeout disables that bound. rnd is the
// backoff's jitter source; nil uses math/rand/v2's global source. Every
// status starts up: Fall failures are needed before anything is done.
func NewMachine(health config.Health, heal config.Healing, rnd *rand.Rand) *Machine {
	m := &Machine{
		units:           slices.Clone(heal.Units),
		startPeriod:     heal.StartPeriod,
		restartTimeout:  heal.RestartTimeout,
		recoveryTimeout: heal.RecoveryTimeout,
		dryRun:          heal.DryRun,
		rise:            max(health.Rise, 1),
		liveRun:         health.Liveness.Path != "",
		readyRun:        health.Readiness.Path != "",
		live:            NewHysteresis(health.Rise, health.Fall, true),
		ready:           NewHysteresis(health.Rise, health.Fall, true),
		unitState:       make(map[string]unitObs),
		budget:          NewBudget(heal.Budget),
		backoff:         NewBackoff(heal.Backoff, rnd),
	}
	for _, d := range heal.Dependencies {
		m.deps = append(m.deps, depState{name: d.Name, unit: d.Unit, h: NewHysteresis(health.Rise, health.Fall, true), lastOK: true})
	}
	return m
}

// State returns the current state.
func (m *Machine) State() State { return m.state }

// RecordLiveness records one liveness check (the target answers at all) and
// reports whether the liveness status flipped. Results are ignored while a
// restart is in flight, and failures during the start period.
func (m *Machine) RecordLiveness(now time.Time, ok bool) (changed bool) {
	return m.recordTarget(&m.live, now, ok)
}

// RecordReadiness records one readiness check (the target can serve, its
// dependencies included) and reports whether the readiness status flipped.
// Results are ignored while a restart is in flight, and failures during the
// start period.
func (m *Machine) RecordReadiness(now time.Time, ok bool) (changed bool) {
	return m.recordTarget(&m.ready, now, ok)
}

// RecordPassive records evidence from traffic as one failed liveness check
// and reports whether the liveness status flipped. Like a failed check, it is
// ignored during a restart and the start period.
func (m *Machine) RecordPassive(now time.Time, sig PassiveSignal) (changed bool) {
	if sig != PassiveBreakerOpen && sig != PassiveDialError {
		return false
	}
	return m.recordTarget(&m.live, now, false)
}

func (m *Machine) recordTarget(h *Hysteresis, now time.Time, ok bool) bool {
	if m.state == StateHealing || !ok && m.inGrace(now) {
		return false
	}
	return h.Record(ok)
}

// RecordDependency records one check of the dependency called name and
// reports whether its status flipped. Feed every dependency's result each
// round: a single failure already stops the target from being restarted
// (the fault may be the dependency's), and Fall failures in a row mark the
// dependency down, which heals or alerts it. Unknown names are ignored.
// While that dependency's own restart is in flight, and its failures during
// the start period after it, are ignored.
func (m *Machine) RecordDependency(now time.Time, name string, ok bool) (changed bool) {
	i := m.dep(name)
	if i < 0 {
		return false
	}
	d := &m.deps[i]
	if m.state == StateHealing && m.inflight.Dependency == name {
		return false
	}
	if !ok && m.graceDep == name && m.inGrace(now) {
		return false
	}
	d.lastOK = ok
	return d.h.Record(ok)
}

// RecordUnit records the state of one of the target's units as systemd
// reports it (ActiveState, SubState) and reports whether its meaning
// changed. failed, inactive and SubState auto-restart (dead, waiting out
// RestartSec) make the next Decide act at once, without waiting for Fall
// failed checks. activating in a start substate (booting) is left alone,
// and starts a start period. Units that are not the target's are ignored.
func (m *Machine) RecordUnit(now time.Time, unit, activeState, subState string) (changed bool) {
	if !slices.Contains(m.units, unit) {
		return false
	}
	obs := unitObs{cond: classifyUnit(activeState, subState), active: activeState, sub: subState}
	prev := m.unitState[unit]
	m.unitState[unit] = obs
	if obs.cond == unitBooting && prev.cond != unitBooting {
		m.startGrace(now, "")
	}
	return obs.cond != prev.cond
}

// RestartDone reports the result of the restart of the latest Decision
// (nil: the job finished "done"). A failure, as a timeout, sends the target to
// backoff; success starts verification. It reports whether the result was
// taken: a result that arrives when no restart is in flight (too late, after
// the restart timeout) is ignored.
func (m *Machine) RestartDone(now time.Time, err error) (taken bool) {
	if m.state != StateHealing || m.inflight.DryRun {
		return false
	}
	m.finish(now, err)
	return true
}

// Reset is an operator's reset: from StateGaveUp or StateBackoff it refills
// the restart budget, forgets the backoff and past alerts, and returns the
// target to healthy or suspect, so the next Decide may act again. It reports
// whether the state changed; in other states it does nothing.
func (m *Machine) Reset(now time.Time) (changed bool) {
	if m.state != StateGaveUp && m.state != StateBackoff {
		return false
	}
	m.budget.Reset()
	m.backoff.Reset()
	for i := range m.deps {
		m.deps[i].alerted = false
	}
	to := StateSuspect
	if m.healthy() {
		to = StateHealthy
	}
	m.setState(now, to, "operator reset")
	return true
}

// Trigger asks for a restart of the target's units at the next Decide
// (an operator's POST /heal/{target}), whatever the checks say and without
// waiting out a backoff; the budget still applies. It reports whether the
// request was accepted: not while a restart is in flight or being verified.
func (m *Machine) Trigger(now time.Time, reason string) (accepted bool) {
	if m.state == StateHealing || m.state == StateVerifying {
		return false
	}
	if reason == "" {
		reason = "operator request"
	}
	m.forced = reason
	return true
}

// Decide advances the machine to now: it applies timers (restart timeout,
// recovery timeout, backoff) and the rules to what was recorded, and returns
// at most one Decision and the transitions since the previous call (nil if
// none). Call it after each round of checks, after every Record*,
// RestartDone, Reset or Trigger, and at NextDeadline.
func (m *Machine) Decide(now time.Time) (Decision, []Transition) {
	var d Decision
	switch m.state {
	case StateHealing:
		if m.restartTimeout > 0 && !now.Before(m.deadline) {
			m.enterBackoff(now, fmt.Sprintf("%s: no result within restart_timeout %v", m.inflight.what(), m.restartTimeout))
		}
	case StateVerifying:
		if m.healthy() {
			m.setState(now, StateHealthy, m.inflight.what()+": recovered")
		} else if unit, obs, ok := m.deadUnit(); ok && m.inflight.Dependency == "" {
			m.enterBackoff(now, fmt.Sprintf("%s: unit %s is %s/%s again", m.inflight.what(), unit, obs.active, obs.sub))
		} else if m.recoveryTimeout > 0 && !now.Before(m.deadline) {
			m.enterBackoff(now, fmt.Sprintf("%s: not recovered within recovery_timeout %v", m.inflight.what(), m.recoveryTimeout))
		}
	case StateBackoff:
		if m.healthy() && m.forced == "" {
			m.setState(now, StateHealthy, "health returned during backoff")
		} else if m.forced != "" || !now.Before(m.deadline) {
			d = m.evaluate(now)
		}
	case StateGaveUp:
		if m.healthy() && m.forced == "" {
			m.setState(now, StateHealthy, "health returned")
		} else if m.forced != "" {
			d = m.evaluate(now)
		}
	default: // healthy, suspect
		d = m.evaluate(now)
	}
	trs := m.pending
	m.pending = nil
	return d, trs
}

// NextDeadline returns when Decide next has a timer to apply even without
// new observations (end of a restart wait, recovery wait, backoff or start
// period), or the zero time if none.
func (m *Machine) NextDeadline(now time.Time) time.Time {
	switch m.state {
	case StateHealing:
		if m.restartTimeout > 0 {
			return m.deadline
		}
	case StateVerifying:
		if m.recoveryTimeout > 0 {
			return m.deadline
		}
	case StateBackoff:
		return m.deadline
	case StateHealthy, StateSuspect:
		if m.inGrace(now) {
			return m.graceUntil
		}
	}
	return time.Time{}
}

// DependencyStatus is one dependency's part of a MachineStatus.
type DependencyStatus struct {
	Name string `json:"name"`
	Unit string `json:"unit,omitempty"`
	// Up is the dependency's status after hysteresis.
	Up bool `json:"up"`
	// LastOK is the latest check's result.
	LastOK bool `json:"last_ok"`
}

// MachineStatus is a snapshot of a Machine for /status and metrics.
type MachineStatus struct {
	State  State     `json:"state"`
	Since  time.Time `json:"since"`
	Reason string    `json:"reason"`
	// Until is when the current state's wait ends: the restart timeout
	// (healing), the recovery timeout (verifying), the next attempt
	// (backoff); zero otherwise. The proxy's Retry-After can use it.
	Until        time.Time          `json:"until,omitzero"`
	LivenessUp   bool               `json:"liveness_up"`
	ReadinessUp  bool               `json:"readiness_up"`
	Dependencies []DependencyStatus `json:"dependencies,omitempty"`
	// BudgetLeft is how many restarts the budget would grant now; -1 when
	// the budget is unlimited (zero window).
	BudgetLeft int `json:"budget_left"`
	// BudgetRestarts and BudgetWindow are the configured budget.
	BudgetRestarts int           `json:"budget_restarts"`
	BudgetWindow   time.Duration `json:"budget_window"`
	// Attempts counts heal attempts that failed since the target was last
	// healthy (each one lengthened the backoff).
	Attempts int `json:"attempts"`
	// InFlight is the restart in flight or being verified (healing,
	// verifying); zero otherwise.
	InFlight Decision `json:"in_flight,omitzero"`
	// DryRun reports healing.dry_run.
	DryRun bool `json:"dry_run"`
}

// Status returns a snapshot of the machine at now.
func (m *Machine) Status(now time.Time) MachineStatus {
	st := MachineStatus{
		State:          m.state,
		Since:          m.since,
		Reason:         m.reason,
		LivenessUp:     m.live.Up(),
		ReadinessUp:    m.ready.Up(),
		BudgetLeft:     m.budget.Left(now),
		BudgetRestarts: m.budget.Restarts(),
		BudgetWindow:   m.budget.Window(),
		Attempts:       m.backoff.Attempts(),
		DryRun:         m.dryRun,
	}
	switch m.state {
	case StateHealing, StateVerifying, StateBackoff:
		st.Until = m.NextDeadline(now)
	}
	if m.state == StateHealing || m.state == StateVerifying {
		st.InFlight = m.inflight
	}
	for _, d := range m.deps {
		st.Dependencies = append(st.Dependencies, DependencyStatus{Name: d.name, Unit: d.unit, Up: d.h.Up(), LastOK: d.lastOK})
	}
	return st
}

// evaluate applies the rules in healthy, suspect, and at the end of a
// backoff: dependencies first, then the target.
func (m *Machine) evaluate(now time.Time) Decision {
	if reason := m.forced; reason != "" {
		m.forced = ""
		return m.restart(now, -1, reason)
	}
	// A dependency that is down is healed (or alerted) first: restarting
	// the target cannot fix it (fault corpus F5).
	for i := range m.deps {
		d := &m.deps[i]
		if d.h.Up() {
			if d.lastOK {
				d.alerted = false
			}
			continue
		}
		why := fmt.Sprintf("dependency %s down (%d failed checks in a row)", d.name, d.h.Failures())
		if d.unit != "" {
			return m.restart(now, i, why)
		}
		if !d.alerted {
			d.alerted = true
			m.setState(now, StateSuspect, why+"; it has no unit to restart")
			return Decision{Kind: DecisionAlertDependency, Dependency: d.name, Reason: why + "; it has no unit to restart", DryRun: m.dryRun, At: now}
		}
	}
	blamed := ""
	for _, d := range m.deps {
		if !d.lastOK || !d.h.Up() {
			blamed = d.name
			break
		}
	}
	booting := m.bootingUnit()
	if why, down := m.targetProblem(now); down && blamed == "" && booting == "" {
		return m.restart(now, -1, why)
	}
	switch {
	case blamed != "" && !m.targetOK():
		m.setState(now, StateSuspect, "dependency "+blamed+" failing; the target is not restarted for it")
	case booting != "":
		m.setState(now, StateSuspect, "unit "+booting+" is starting; left alone")
	case m.symptoms(now):
		m.setState(now, StateSuspect, m.symptomText(now))
	default:
		m.setState(now, StateHealthy, "checks pass")
	}
	return Decision{}
}

// targetProblem reports whether the target itself must be restarted, and why.
func (m *Machine) targetProblem(now time.Time) (string, bool) {
	if unit, obs, ok := m.deadUnit(); ok {
		return fmt.Sprintf("unit %s is %s/%s", unit, obs.active, obs.sub), true
	}
	if m.inGrace(now) {
		return "", false
	}
	if !m.live.Up() {
		return fmt.Sprintf("liveness failed %d times in a row", max(m.live.Failures(), m.live.fall)), true
	}
	if !m.ready.Up() {
		return fmt.Sprintf("readiness failed %d times in a row while liveness and dependencies pass", max(m.ready.Failures(), m.ready.fall)), true
	}
	return "", false
}

// restart decides a restart of the target (dep < 0) or of dependency dep,
// drawing from the budget; with the budget spent, it gives up (once).
func (m *Machine) restart(now time.Time, dep int, reason string) Decision {
	if !m.budget.Allow(now) {
		if m.state == StateGaveUp {
			return Decision{}
		}
		why := fmt.Sprintf("restart budget spent (%d in %v); %s", m.budget.Restarts(), m.budget.Window(), reason)
		m.setState(now, StateGaveUp, why)
		return Decision{Kind: DecisionGiveUp, Reason: why, DryRun: m.dryRun, At: now}
	}
	d := Decision{Kind: DecisionRestart, Units: slices.Clone(m.units), Reason: reason, DryRun: m.dryRun, At: now}
	if dep >= 0 {
		d.Kind, d.Units, d.Dependency = DecisionRestartDependency, []string{m.deps[dep].unit}, m.deps[dep].name
	}
	m.inflight = d
	m.deadline = now.Add(m.restartTimeout)
	m.setState(now, StateHealing, d.what()+": "+reason)
	if m.dryRun {
		m.finish(now, nil)
	}
	return d
}

// finish ends the restart in flight with its result.
func (m *Machine) finish(now time.Time, err error) {
	if err != nil {
		m.enterBackoff(now, fmt.Sprintf("%s failed: %v", m.inflight.what(), err))
		return
	}
	// Fresh process: it must earn Rise passes, and stale unit states go.
	if d := m.dep(m.inflight.Dependency); d >= 0 {
		m.deps[d].h.Set(false)
		m.deps[d].lastOK = true
		m.startGrace(now, m.deps[d].name)
	} else {
		m.live.Set(!m.liveRun) // a check never run cannot hold recovery back
		m.ready.Set(!m.readyRun)
		clear(m.unitState)
		m.startGrace(now, "")
	}
	m.deadline = now.Add(m.recoveryTimeout)
	what := "restart done"
	if m.inflight.DryRun {
		what = "dry run: restart assumed done"
	}
	m.setState(now, StateVerifying, fmt.Sprintf("%s: %s; waiting for %d passing checks", m.inflight.what(), what, m.rise))
}

func (m *Machine) enterBackoff(now time.Time, reason string) {
	wait := m.backoff.Next()
	m.deadline = now.Add(wait)
	m.setState(now, StateBackoff, fmt.Sprintf("%s; next attempt in %v", reason, wait.Round(time.Millisecond)))
}

// setState moves to state to, recording a transition if it differs.
func (m *Machine) setState(now time.Time, to State, reason string) {
	if to == m.state {
		return
	}
	m.pending = append(m.pending, Transition{From: m.state, To: to, Reason: reason, At: now})
	m.state, m.since, m.reason = to, now, reason
	if to == StateHealthy {
		m.backoff.Reset()
		m.inflight = Decision{}
	}
}

func (m *Machine) startGrace(now time.Time, dep string) {
	if until := now.Add(m.startPeriod); until.After(m.graceUntil) {
		m.graceUntil = until
	}
	m.graceDep = dep
}

func (m *Machine) inGrace(now time.Time) bool { return now.Before(m.graceUntil) }

// targetOK reports whether the target's own checks are up.
func (m *Machine) targetOK() bool {
	_, _, dead := m.deadUnit()
	return m.live.Up() && m.ready.Up() && !dead
}

// healthy reports whether the target and every dependency are up.
func (m *Machine) healthy() bool {
	if !m.targetOK() {
		return false
	}
	for _, d := range m.deps {
		if !d.h.Up() {
			return false
		}
	}
	return true
}

// symptoms reports whether anything failed recently, short of a decision.
func (m *Machine) symptoms(now time.Time) bool { return m.symptomText(now) != "" }

func (m *Machine) symptomText(now time.Time) string {
	var s []string
	if !m.targetOK() && m.inGrace(now) {
		s = append(s, "in start period")
	}
	if n := m.live.Failures(); n > 0 {
		s = append(s, fmt.Sprintf("liveness failed %d of %d", n, m.live.fall))
	}
	if n := m.ready.Failures(); n > 0 {
		s = append(s, fmt.Sprintf("readiness failed %d of %d", n, m.ready.fall))
	}
	for _, d := range m.deps {
		if !d.lastOK {
			s = append(s, fmt.Sprintf("dependency %s failed %d of %d", d.name, d.h.Failures(), d.h.fall))
		}
	}
	return strings.Join(s, ", ")
}

func (m *Machine) deadUnit() (string, unitObs, bool) {
	for _, u := range m.units {
		if obs := m.unitState[u]; obs.cond == unitDead {
			return u, obs, true
		}
	}
	return "", unitObs{}, false
}

func (m *Machine) bootingUnit() string {
	for _, u := range m.units {
		if m.unitState[u].cond == unitBooting {
			return u
		}
	}
	return ""
}

func (m *Machine) dep(name string) int {
	if name == "" {
		return -1
	}
	for i := range m.deps {
		if m.deps[i].name == name {
			return i
		}
	}
	return -1
}

// what names the restart for reasons: "restart of a.service, b.service" or
// "restart of dependency rabbitmq (rabbitmq-server.service)".
func (d Decision) what() string {
	if d.Dependency != "" {
		return fmt.Sprintf("restart of dependency %s (%s)", d.Dependency, strings.Join(d.Units, ", "))
	}
	if len(d.Units) == 0 {
		return "restart"
	}
	return "restart of " + strings.Join(d.Units, ", ")
}

// Inherit carries what old knew into m, a Machine built for the same
// target from a reloaded config, so that a reload neither refills the
// restart budget nor forgets an outage: the restarts spent (replayed into
// m's budget), the backoff's attempts, the liveness, readiness and
// dependency statuses, the units as last seen, the start period in force,
// and a backoff or gave-up state with its reason and deadline. A restart
// that was in flight or being verified in old was cut short by the reload:
// m starts suspect and decides again. old must no longer be in use.
func (m *Machine) Inherit(old *Machine, now time.Time) {
	m.budget.Replay(old.budget.Spent())
	m.backoff.attempt = old.backoff.attempt
	m.live.Set(old.live.Up())
	m.ready.Set(old.ready.Up())
	for i := range m.deps {
		if j := old.dep(m.deps[i].name); j >= 0 {
			od := old.deps[j]
			m.deps[i].h.Set(od.h.Up())
			m.deps[i].lastOK, m.deps[i].alerted = od.lastOK, od.alerted
		}
	}
	for u, obs := range old.unitState {
		if slices.Contains(m.units, u) {
			m.unitState[u] = obs
		}
	}
	m.graceUntil, m.graceDep = old.graceUntil, old.graceDep
	switch old.state {
	case StateHealing, StateVerifying:
		m.state, m.since = StateSuspect, now
		m.reason = "a reload cut short the " + old.inflight.what() + "; deciding again"
	case StateBackoff:
		m.state, m.since, m.reason, m.deadline = old.state, old.since, old.reason, old.deadline
		m.forced = old.forced
	default:
		m.state, m.since, m.reason = old.state, old.since, old.reason
	}
}
