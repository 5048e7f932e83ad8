package healing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/healgate/healgate/config"
)

// target is the healed upstream: its monitor, its dependencies' probes, the
// Machine that decides, and the one goroutine (run) that owns the Machine.
type target struct {
	h       *Healer
	name    string
	mon     *monitor
	cfg     config.Healing
	machine *Machine
	deps    []depProbe

	passive chan PassiveSignal
	ops     chan op

	// Read by other goroutines.
	healing    atomic.Pointer[chan struct{}] // non-nil while healing or verifying
	restartDue atomic.Bool
	status     atomic.Pointer[TargetStatus]
	events     eventRing
	beat       atomic.Int64 // unix nanoseconds of the loop's latest turn

	// Owned by run.
	units      map[string]UnitState
	healDone   chan struct{}
	depLast    map[string]ProbeStatus
	lastAction string    // what the action in flight is, for events
	restartAt  time.Time // when the latest restart of the target's own units began

	// The action in flight: its decision, and how to cancel it (nil when
	// none runs).
	acting     Decision
	stopAction context.CancelFunc
}

type depProbe struct {
	name, unit string
	probe      Prober
	target     string
}

type opKind int

const (
	opHeal opKind = iota
	opReset
)

type op struct {
	kind   opKind
	reason string
	reply  chan error
}

// actionResult is what an action goroutine reports back to run.
type actionResult struct {
	decision Decision
	err      error
	detail   string // job result, exec output, unit state after
}

func newTarget(h *Healer, mon *monitor) (*target, error) {
	cfg := h.cfg.Healing
	t := &target{
		h:       h,
		name:    mon.name,
		mon:     mon,
		cfg:     cfg,
		machine: NewMachine(h.cfg.Health, cfg, nil),
		passive: make(chan PassiveSignal, 64),
		ops:     make(chan op),
		units:   make(map[string]UnitState),
		depLast: make(map[string]ProbeStatus),
	}
	for _, d := range cfg.Dependencies {
		p, err := ParseDependencyProbe(d.Probe, h.cfg.Health.Timeout)
		if err != nil {
			return nil, fmt.Errorf("healing: dependency %s: %w", d.Name, err)
		}
		t.deps = append(t.deps, depProbe{name: d.Name, unit: d.Unit, probe: p, target: d.Probe})
	}
	t.publish(time.Now())
	return t, nil
}

// run is the target's loop: it probes every interval, takes unit events,
// passive signals and operator requests, decides, and acts. It owns the
// Machine. It returns when ctx ends, after the action in flight (canceled)
// and the unit watcher have returned.
func (t *target) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var unitEvents <-chan UnitEvent
	if t.h.sd != nil && t.cfg.Action == config.ActionSystemd && len(t.cfg.Units) > 0 {
		w := t.h.sd.Watch(t.h.cfg.Health.Interval*5, t.cfg.Units...)
		unitEvents = w.Events()
		wg.Go(func() {
			if err := w.Run(ctx); err != nil && ctx.Err() == nil {
				t.h.log.Error("unit watcher stopped", "target", t.name, "err", err)
			}
		})
		t.readUnits(ctx)
	}

	results := make(chan actionResult, 1)
	var (
		inflight  bool      // an action goroutine runs; its result arrives on results
		abandoned bool      // the Machine stopped waiting for it (restart_timeout) and it was canceled
		next      *Decision // a restart decided while an abandoned action winds down
	)
	// One action at a time: when the Machine leaves healing without the
	// action's result (restart_timeout), the action is canceled and reported
	// as timed out, and a restart decided before it has returned waits for
	// it.
	abandon := func() {
		if inflight && !abandoned && t.machine.State() != StateHealing {
			abandoned = true
			t.abandon(time.Now())
		}
	}
	start := func(d Decision) {
		isRestart := d.Kind == DecisionRestart || d.Kind == DecisionRestartDependency
		if inflight && isRestart && !d.DryRun {
			next = &d
			return
		}
		if t.act(ctx, &wg, d, results) {
			inflight = true
		}
	}
	tick := time.NewTicker(t.h.cfg.Health.Interval)
	defer tick.Stop()
	deadline := time.NewTimer(time.Hour)
	deadline.Stop()
	defer deadline.Stop()

	t.probe(ctx)
	for {
		now := time.Now()
		t.beat.Store(now.UnixNano())
		d, trs := t.machine.Decide(now)
		t.transitions(trs)
		abandon()
		if d.Kind != DecisionNone {
			start(d)
			// Acting may change the state (dry run, alerts): decide again
			// at once for the transitions it caused.
			_, trs = t.machine.Decide(time.Now())
			t.transitions(trs)
			abandon()
		}
		t.publish(now)
		if next := t.machine.NextDeadline(now); !next.IsZero() {
			deadline.Reset(max(time.Until(next), time.Millisecond))
		}

		select {
		case <-ctx.Done():
			t.endHeal()
			return
		case <-tick.C:
			t.probe(ctx)
		case ev, ok := <-unitEvents:
			if !ok {
				unitEvents = nil
				continue
			}
			// Decide on the unit as read, not on the signal that caused
			// the read: the watcher's connection may deliver a signal sent
			// before a restart after the restart job's result arrived on
			// another connection. And while a restart is verified, a unit
			// whose state last changed before that restart began was read
			// before it: history, not "dead again".
			st := ev.State
			if st.ActiveState == "" { // the read failed: the signal is all there is
				st.ActiveState, st.SubState = ev.ActiveState, ev.SubState
			}
			if t.machine.State() == StateVerifying && st.StateChangeTimestamp.Before(t.restartAt) {
				continue
			}
			t.units[ev.Unit] = ev.State
			if t.machine.RecordUnit(time.Now(), ev.Unit, st.ActiveState, st.SubState) {
				t.h.log.Info("unit state changed", "target", t.name, "unit", ev.Unit,
					"active", st.ActiveState, "sub", st.SubState, "result", st.Result)
			}
		case sig := <-t.passive:
			t.machine.RecordPassive(time.Now(), sig)
		case r := <-results:
			inflight = false
			t.stopAction()
			t.stopAction = nil
			if !abandoned {
				t.finished(r)
				if r.err == nil {
					// Look at once rather than at the next tick: the
					// sooner the restarted upstream passes, the sooner
					// held requests go to it.
					t.probe(ctx)
				}
				break
			}
			abandoned = false
			t.h.log.Warn("heal action returned after restart_timeout", "target", t.name,
				"action", t.lastAction, "units", r.decision.Units, "detail", r.detail, "err", r.err)
			if next != nil {
				d := *next
				next = nil
				start(d)
			}
		case o := <-t.ops:
			o.reply <- t.operator(o, inflight)
		case <-deadline.C:
		}
	}
}

// probe runs liveness, readiness and every dependency probe at once and
// records the results.
func (t *target) probe(ctx context.Context) {
	var wg sync.WaitGroup
	var live, ready Result
	deps := make([]Result, len(t.deps))
	wg.Go(func() { live, ready = t.mon.round(ctx) })
	for i, d := range t.deps {
		wg.Go(func() { deps[i] = d.probe.Probe(ctx) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	if t.mon.live != nil {
		t.machine.RecordLiveness(now, live.OK)
	}
	if t.mon.readyProbe != nil {
		t.machine.RecordReadiness(now, ready.OK)
	}
	if live.OK && ready.OK && t.machine.State() == StateVerifying {
		// The restarted upstream answers: release the requests held for
		// the heal now, rather than after rise passes; verification goes
		// on, and a relapse is healed again.
		t.endHeal()
	}
	for i, d := range t.deps {
		changed := t.machine.RecordDependency(now, d.name, deps[i].OK)
		t.depLast[d.name] = probeStatus(d.target, deps[i].OK, deps[i], now)
		t.h.metrics.observeProbe(t.name, "dependency:"+d.name, deps[i])
		if changed {
			t.h.log.Warn("dependency status changed", "target", t.name, "dependency", d.name,
				"ok", deps[i].OK, "detail", deps[i].Detail)
		}
	}
}

// readUnits reads the target's units once, so a unit that is already dead
// when healgate starts is acted on at once.
func (t *target) readUnits(ctx context.Context) {
	for _, u := range t.cfg.Units {
		rctx, cancel := context.WithTimeout(ctx, t.h.cfg.Health.Timeout*5)
		st, err := t.h.sd.Unit(rctx, u)
		cancel()
		if err != nil {
			t.h.log.Warn("read unit", "target", t.name, "unit", u, "err", err)
			continue
		}
		t.units[u] = st
		if st.NotFound() {
			t.h.log.Error("unit not found: healgate cannot restart it", "target", t.name, "unit", u)
			continue
		}
		t.machine.RecordUnit(time.Now(), u, st.ActiveState, st.SubState)
	}
}

// act starts what d asks for. It reports whether an action goroutine was
// started (its result arrives on results).
func (t *target) act(ctx context.Context, wg *sync.WaitGroup, d Decision, results chan<- actionResult) bool {
	log := t.h.log.With("target", t.name, "decision", d.Kind.String(), "reason", d.Reason)
	switch d.Kind {
	case DecisionAlertDependency:
		log.Error("dependency down and it has no unit to restart: alerting", "dependency", d.Dependency)
		t.h.event(Event{Time: d.At, Target: t.name, Kind: EventDependencyDown, Reason: d.Reason,
			Details: map[string]string{"dependency": d.Dependency}})
		return false
	case DecisionGiveUp:
		log.Error("restart budget spent: giving up until health returns or an operator resets")
		return false // the gave-up transition sends the event
	}

	action := t.cfg.Action
	if d.Kind == DecisionRestartDependency {
		action = config.ActionSystemd
	}
	t.lastAction = action
	if d.DryRun {
		log.Warn("dry run: would restart", "units", d.Units, "action", action)
		t.h.event(Event{Time: d.At, Target: t.name, Kind: EventHealStarted, Reason: d.Reason,
			Action: action, Unit: strings.Join(d.Units, " "), Result: "dry-run"})
		t.h.metrics.heals.WithLabelValues(t.name, action, "dry_run").Inc()
		return false
	}
	if action != config.ActionNone {
		// Hold requests for a heal healgate performs itself; with action
		// none it cannot know when (or whether) the kubelet restarts.
		t.beginHeal()
	}
	if d.Kind == DecisionRestart {
		t.restartAt = time.Now()
	}
	log.Warn("healing", "action", action, "units", d.Units)
	t.h.event(Event{Time: d.At, Target: t.name, Kind: EventHealStarted, Reason: d.Reason,
		Action: action, Unit: strings.Join(d.Units, " "), Details: t.unitDetails(d.Units)})

	if action == config.ActionNone {
		// Kubernetes mode: /healthz/upstream fails until liveness passes
		// again, so the kubelet restarts the container.
		t.restartDue.Store(true)
		t.finished(actionResult{decision: d, detail: "restart due: /healthz/upstream fails until the upstream is live again"})
		return false
	}
	actx, cancel := context.WithCancel(ctx)
	t.acting, t.stopAction = d, cancel
	wg.Go(func() {
		r := actionResult{decision: d}
		r.detail, r.err = t.runAction(actx, action, d)
		results <- r
	})
	return true
}

// abandon cancels the action in flight after the Machine stopped waiting
// for it (restart_timeout) and reports the heal as timed out. Its late
// result is only logged.
func (t *target) abandon(now time.Time) {
	t.stopAction()
	reason := t.machine.Status(now).Reason
	t.h.log.Error("heal action timed out: canceled", "target", t.name, "action", t.lastAction,
		"units", t.acting.Units, "reason", reason)
	t.h.metrics.heals.WithLabelValues(t.name, t.lastAction, "timeout").Inc()
	t.h.event(Event{Time: now, Target: t.name, Kind: EventHealFailed, Reason: reason,
		Action: t.lastAction, Unit: strings.Join(t.acting.Units, " "), Result: "timeout"})
}

// runAction performs a restart: optionally drain, then the systemd units in
// order, or the exec command.
func (t *target) runAction(ctx context.Context, action string, d Decision) (string, error) {
	if t.cfg.Drain.Enabled && d.Kind == DecisionRestart {
		if err := t.drain(ctx); err != nil {
			t.h.log.Warn("drain before restart", "target", t.name, "err", err)
		}
	}
	switch action {
	case config.ActionExec:
		res, err := t.h.exec.Run(ctx)
		return strings.TrimSpace(string(res.Output)), err
	case config.ActionSystemd:
		if t.h.sd == nil {
			return "", errors.New("no D-Bus connection for the systemd action")
		}
		var details []string
		for _, u := range d.Units {
			job, err := t.h.sd.Restart(ctx, u)
			details = append(details, fmt.Sprintf("%s: job %s", u, job))
			if err != nil {
				return strings.Join(details, "; "), err
			}
		}
		return strings.Join(details, "; "), nil
	}
	return "", fmt.Errorf("unknown action %q", action)
}

// drain asks Document Server to stop taking new editing sessions
// (PUT /internal/cluster/inactive), bounded by drain.timeout.
func (t *target) drain(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Drain.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, t.mon.baseURL+"/internal/cluster/inactive", nil)
	if err != nil {
		return err
	}
	resp, err := t.h.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("drain: HTTP %d", resp.StatusCode)
	}
	return nil
}

// finished takes an action's result to the Machine and reports it.
func (t *target) finished(r actionResult) {
	now := time.Now()
	result := "done"
	if r.err != nil {
		result = "failed"
		switch {
		case errors.Is(r.err, ErrUnitDenied):
			result = "denied"
		case errors.Is(r.err, ErrJobTimeout), errors.Is(r.err, ErrExecTimeout):
			result = "timeout"
		}
	}
	t.h.metrics.heals.WithLabelValues(t.name, t.lastAction, result).Inc()
	log := t.h.log.With("target", t.name, "action", t.lastAction, "units", r.decision.Units, "detail", r.detail)
	if r.err != nil {
		log.Error("heal action failed", "err", r.err)
		ev := Event{Time: now, Target: t.name, Kind: EventHealFailed, Reason: r.err.Error(),
			Action: t.lastAction, Unit: strings.Join(r.decision.Units, " "), Result: result}
		t.h.event(ev)
	} else {
		log.Info("heal action done")
	}
	t.machine.RestartDone(now, r.err)
}

// operator applies an operator's request.
func (t *target) operator(o op, inflight bool) error {
	now := time.Now()
	switch o.kind {
	case opHeal:
		reason := "operator request"
		if o.reason != "" {
			reason += ": " + o.reason
		}
		if inflight || !t.machine.Trigger(now, reason) {
			return fmt.Errorf("%w: %s", ErrNotAccepted, t.machine.State())
		}
	case opReset:
		if !t.machine.Reset(now) {
			return fmt.Errorf("%w: %s", ErrNotAccepted, t.machine.State())
		}
		t.h.event(Event{Time: now, Target: t.name, Kind: EventReset, Reason: "operator reset"})
	}
	return nil
}

// transitions logs, counts and reports state changes.
func (t *target) transitions(trs []Transition) {
	for _, tr := range trs {
		t.h.metrics.setState(t.name, tr.To)
		level := t.h.log.Info
		if tr.To == StateBackoff || tr.To == StateGaveUp {
			level = t.h.log.Warn
		}
		level("target state changed", "target", t.name, "from", tr.From.String(), "to", tr.To.String(), "reason", tr.Reason)

		// Leaving healing/verifying ends the heal for held requests.
		if tr.To != StateHealing && tr.To != StateVerifying {
			t.endHeal()
		}
		if tr.To == StateHealthy {
			t.restartDue.Store(false)
		}
		var kind EventKind
		switch {
		case tr.From == StateVerifying && tr.To == StateHealthy:
			kind = EventHealSucceeded
		case tr.To == StateGaveUp:
			kind = EventGaveUp
		case tr.To == StateBackoff:
			// A failed action was reported by finished, one that ran
			// past restart_timeout by abandon; a recovery that did not
			// come is reported here.
			if tr.From == StateVerifying {
				kind = EventHealFailed
			}
		case tr.To == StateHealthy && (tr.From == StateBackoff || tr.From == StateGaveUp):
			kind = EventRecovered
		}
		if kind != "" {
			t.h.event(Event{Time: tr.At, Target: t.name, Kind: kind, From: tr.From.String(), To: tr.To.String(), Reason: tr.Reason})
		}
	}
}

// beginHeal opens a heal for held requests.
func (t *target) beginHeal() {
	if t.healing.Load() != nil {
		return
	}
	ch := make(chan struct{})
	t.healing.Store(&ch)
}

// endHeal closes the heal in progress, releasing held requests.
func (t *target) endHeal() {
	if ch := t.healing.Swap(nil); ch != nil {
		close(*ch)
	}
}

// unitDetails describes the units before a restart: why they died.
func (t *target) unitDetails(units []string) map[string]string {
	m := map[string]string{}
	for _, u := range units {
		st, ok := t.units[u]
		if !ok {
			continue
		}
		m[u] = fmt.Sprintf("%s/%s result=%s main_pid=%d n_restarts=%d", st.ActiveState, st.SubState, st.Result, st.MainPID, st.NRestarts)
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// publish stores a status snapshot for other goroutines.
func (t *target) publish(now time.Time) {
	ts := &TargetStatus{
		Name:       t.name,
		Action:     t.cfg.Action,
		Units:      t.cfg.Units,
		Machine:    t.machine.Status(now),
		RestartDue: t.restartDue.Load(),
	}
	for _, u := range t.cfg.Units {
		if st, ok := t.units[u]; ok {
			ts.UnitStates = append(ts.UnitStates, st)
		}
	}
	if len(t.depLast) > 0 {
		ts.Dependencies = make(map[string]ProbeStatus, len(t.depLast))
		for k, v := range t.depLast {
			ts.Dependencies[k] = v
		}
	}
	t.h.metrics.budget.WithLabelValues(t.name).Set(float64(ts.Machine.BudgetLeft))
	t.status.Store(ts)
}
