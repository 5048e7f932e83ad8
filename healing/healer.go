package healing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/healgate/healgate/config"
)

// Notify is where the healer sends events; *Notifier implements it. Notify
// must not block.
type Notify interface {
	Notify(e Event) bool
}

// Options are a Healer's collaborators; every field may be nil.
type Options struct {
	// Logger receives every transition, decision and action. Nil discards.
	Logger *slog.Logger

	// Registerer receives the healer's metrics. Nil: not registered.
	Registerer prometheus.Registerer

	// Notify receives events (heal started, succeeded, failed, gave up,
	// dependency down, breaker opened, reset). Nil: events are only logged
	// and kept for Status.
	Notify Notify

	// Systemd restarts and reads units. Nil: New connects to the system bus
	// (DBUS_SYSTEM_BUS_ADDRESS or the default) when the action is systemd or
	// a dependency has a unit, and Run closes it.
	Systemd *Systemd

	// HTTPClient runs the HTTP probes and the drain request. Nil: a client
	// that ignores proxy environment variables and keeps no idle connections
	// (a probe must not reuse a connection a hung server accepted).
	HTTPClient *http.Client
}

// Healer runs the health checks of every upstream, feeds readiness to the
// proxy, and heals the upstream that config.Healing names: it decides with a
// Machine, restarts units over D-Bus (or runs a command, or only flags the
// restart for Kubernetes), verifies recovery, and reports every step.
//
// Create it with New and run it with Run; its methods are safe for
// concurrent use. Ready and Healing implement the proxy's Health interface;
// Passive and BreakerChanged take the proxy's passive signals.
type Healer struct {
	cfg     *config.Config
	log     *slog.Logger
	notify  Notify
	sd      *Systemd
	ownSD   bool
	exec    *ExecAction
	client  *http.Client
	metrics *healerMetrics

	monitors   []*monitor          // one per upstream, in config order
	byName     map[string]*monitor // by upstream name
	target     *target
	firstRound chan struct{} // closed by Run, see FirstRound
}

// New returns a Healer for cfg (which must have passed validation). It
// does not touch the network: Run does.
func New(cfg *config.Config, opts Options) (*Healer, error) {
	h := &Healer{
		cfg:        cfg,
		log:        opts.Logger,
		notify:     opts.Notify,
		sd:         opts.Systemd,
		client:     opts.HTTPClient,
		byName:     make(map[string]*monitor),
		firstRound: make(chan struct{}),
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.client == nil {
		h.client = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	}
	var err error
	if h.metrics, err = newHealerMetrics(opts.Registerer); err != nil {
		return nil, fmt.Errorf("healing: register metrics: %w", err)
	}
	for _, u := range cfg.Upstreams {
		m, err := newMonitor(u, cfg.Health, h.client, h.metrics)
		if err != nil {
			return nil, fmt.Errorf("healing: upstream %s: %w", u.Name, err)
		}
		h.monitors = append(h.monitors, m)
		h.byName[u.Name] = m
	}
	mon := h.byName[cfg.Healing.Upstream]
	if mon == nil {
		return nil, fmt.Errorf("healing: healing.upstream %q names no upstream", cfg.Healing.Upstream)
	}
	if h.target, err = newTarget(h, mon); err != nil {
		return nil, err
	}
	needBus := cfg.Healing.Action == config.ActionSystemd ||
		slices.ContainsFunc(cfg.Healing.Dependencies, func(d config.Dependency) bool { return d.Unit != "" })
	if needBus && h.sd == nil {
		h.sd = NewSystemd(SystemdOptions{Units: AllowedUnits(&cfg.Healing), RestartTimeout: cfg.Healing.RestartTimeout})
		h.ownSD = true
	}
	if cfg.Healing.Action == config.ActionExec {
		h.exec = NewExecAction(cfg.Healing.Exec, 4<<10)
	}
	return h, nil
}

// Run runs every health check and the healing loop until ctx ends, then
// waits for them (an action in flight is canceled) and returns nil. It
// returns an error only if it cannot start.
func (h *Healer) Run(ctx context.Context) error {
	if h.ownSD {
		defer h.sd.Close()
	}
	var wg sync.WaitGroup
	for _, m := range h.monitors {
		if m == h.target.mon {
			continue // the target's loop probes its own upstream
		}
		wg.Go(func() { m.run(ctx, h.cfg.Health.Interval) })
	}
	wg.Go(func() { h.target.run(ctx) })
	wg.Go(func() {
		for _, m := range h.monitors {
			select {
			case <-m.firstRound:
			case <-ctx.Done():
				return
			}
		}
		close(h.firstRound)
	})
	wg.Wait()
	return nil
}

// FirstRound returns a channel that Run closes once every upstream has
// been probed once, so a service manager can be told "ready" only after
// readiness is known.
func (h *Healer) FirstRound() <-chan struct{} { return h.firstRound }

// Heartbeat returns when the healing loop last went round; zero before Run.
// The loop goes round at least every health.interval, so an older heartbeat
// means the healer is wedged (the systemd watchdog uses it).
func (h *Healer) Heartbeat() time.Time {
	n := h.target.beat.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Ready reports whether upstream passes its health checks (liveness and
// readiness, after rise/fall) and is not being restarted by healgate: while
// its systemd or exec restart is in flight or being verified the upstream
// is not ready, so the proxy holds requests for the heal (Healing) instead of
// sending them to a process that is dead or not yet listening, where they
// would end in a 502 long before fall failed probes make the checks say so.
// With action none healgate restarts nothing itself (Kubernetes may, some
// time later), so no heal is in progress and the checks alone decide.
// Unknown upstreams are ready. It implements the proxy's Health interface and does not block.
func (h *Healer) Ready(upstream string) bool {
	m := h.byName[upstream]
	if m == nil {
		return true
	}
	if m == h.target.mon && h.target.healing.Load() != nil {
		return false
	}
	return m.ready.Load()
}

// Healing reports whether a heal of upstream is in progress (a restart that
// healgate performs, systemd or exec, in flight or being verified); done is
// closed when it ends. With action none it is always false. It implements the
// proxy's Health interface and does not block.
func (h *Healer) Healing(upstream string) (done <-chan struct{}, healing bool) {
	t := h.target
	if t.mon.name != upstream {
		return nil, false
	}
	if ch := t.healing.Load(); ch != nil {
		return *ch, true
	}
	return nil, false
}

// Passive records evidence from live traffic about upstream (a connection
// refused or timed out on a route where that means an outage). It never
// blocks: when the healer is behind, the signal is dropped and counted.
func (h *Healer) Passive(upstream string, sig PassiveSignal) {
	if h.target.mon.name != upstream {
		return
	}
	select {
	case h.target.passive <- sig:
	default:
		h.metrics.passiveDropped.Inc()
	}
}

// BreakerChanged takes a circuit breaker's state change from the proxy: an
// opened breaker is reported as an event (Target is the upstream's name),
// and on the healed upstream it counts as failed liveness evidence. It never
// blocks.
func (h *Healer) BreakerChanged(upstream, from, to string) {
	if to != "open" {
		return
	}
	h.event(Event{Time: time.Now(), Target: upstream, Kind: EventBreakerOpened,
		Reason: fmt.Sprintf("circuit breaker of upstream %s opened (was %s)", upstream, from)})
	h.Passive(upstream, PassiveBreakerOpen)
}

// ErrUnknownTarget is returned by Heal and Reset for a target name the
// healer does not have.
var ErrUnknownTarget = errors.New("no such healing target")

// ErrNotAccepted is returned by Heal when the target cannot take a manual
// heal now (a restart is in flight or being verified), and by Reset when
// there is nothing to reset (the target is neither backing off nor gave up).
var ErrNotAccepted = errors.New("not accepted in the target's current state")

// Heal asks for a restart of target's units now (POST /heal/{target}),
// whatever the checks say; the restart budget still applies. It returns
// ErrUnknownTarget, ErrNotAccepted, or ctx's error.
func (h *Healer) Heal(ctx context.Context, target, reason string) error {
	return h.op(ctx, target, opHeal, reason)
}

// Reset is an operator's reset of a target that gave up or is backing off
// (POST /heal/{target}/reset): the budget and backoff are refilled. It
// returns ErrUnknownTarget, ErrNotAccepted, or ctx's error.
func (h *Healer) Reset(ctx context.Context, target string) error {
	return h.op(ctx, target, opReset, "")
}

func (h *Healer) op(ctx context.Context, target string, kind opKind, reason string) error {
	if target != h.target.name {
		return fmt.Errorf("%w: %q", ErrUnknownTarget, target)
	}
	o := op{kind: kind, reason: reason, reply: make(chan error, 1)}
	select {
	case h.target.ops <- o:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-o.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RestartDue reports whether target needs a restart that healgate does not
// perform itself (action none): Kubernetes' livenessProbe on
// /healthz/upstream fails while it is true, so the kubelet restarts the
// Document Server container. It is false for unknown targets.
func (h *Healer) RestartDue(target string) bool {
	return target == h.target.name && h.target.restartDue.Load()
}

// Targets returns the names of the healing targets.
func (h *Healer) Targets() []string { return []string{h.target.name} }

// Status is a snapshot of the healer for /status.
type Status struct {
	// Targets are the healed upstreams.
	Targets []TargetStatus `json:"targets"`
	// Upstreams are every upstream's health checks.
	Upstreams []UpstreamHealth `json:"upstreams"`
}

// UpstreamHealth is one upstream's health checks.
type UpstreamHealth struct {
	Name string `json:"name"`
	// Ready is what the proxy uses: liveness and readiness are up.
	Ready     bool        `json:"ready"`
	Liveness  ProbeStatus `json:"liveness"`
	Readiness ProbeStatus `json:"readiness"`
}

// ProbeStatus is the latest result of one probe.
type ProbeStatus struct {
	// Target is the probed URL or address.
	Target string `json:"target"`
	// Up is the status after rise/fall.
	Up bool `json:"up"`
	// OK is the latest result; Detail and Error say more.
	OK      bool          `json:"ok"`
	Detail  string        `json:"detail,omitempty"`
	Error   string        `json:"error,omitempty"`
	Latency time.Duration `json:"latency_ns"`
	At      time.Time     `json:"at,omitzero"`
}

// TargetStatus is one healing target's state.
type TargetStatus struct {
	// Name is the target's name (its upstream's name).
	Name string `json:"name"`
	// Action is the healing action: systemd, exec or none.
	Action string `json:"action"`
	// Units are the units restarted by the systemd action.
	Units []string `json:"units,omitempty"`
	// Machine is the state machine's snapshot: state, reason, budget left.
	Machine MachineStatus `json:"machine"`
	// UnitStates are the units as last read from systemd.
	UnitStates []UnitState `json:"unit_states,omitempty"`
	// Dependencies are the dependency probes' latest results.
	Dependencies map[string]ProbeStatus `json:"dependency_probes,omitempty"`
	// RestartDue is true while a restart is due that healgate does not
	// perform (action none; Kubernetes restarts the container).
	RestartDue bool `json:"restart_due"`
	// Events are the most recent events, oldest first.
	Events []Event `json:"events"`
}

// Status returns a snapshot of every target and upstream.
func (h *Healer) Status() Status {
	var s Status
	if ts := h.target.status.Load(); ts != nil {
		cp := *ts
		cp.Events = h.target.events.list()
		s.Targets = append(s.Targets, cp)
	}
	for _, m := range h.monitors {
		s.Upstreams = append(s.Upstreams, m.snapshot())
	}
	return s
}

// event logs e, keeps it for Status, counts it, and sends it to Notify.
func (h *Healer) event(e Event) {
	h.target.events.add(e)
	h.metrics.events.WithLabelValues(string(e.Kind)).Inc()
	if h.notify != nil {
		h.notify.Notify(e)
	}
}

// eventRing keeps the latest events.
type eventRing struct {
	mu   sync.Mutex
	buf  []Event
	next int
	full bool
}

const eventsKept = 50

func (r *eventRing) add(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.buf == nil {
		r.buf = make([]Event, eventsKept)
	}
	r.buf[r.next] = e
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

func (r *eventRing) list() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]Event{}, r.buf[:r.next]...) // [] rather than null in JSON
	}
	return append(slices.Clone(r.buf[r.next:]), r.buf[:r.next]...)
}

// Inherit carries into h, built from a reloaded config, what old learned:
// each upstream's health-check statuses (for an upstream of the same name
// and URL), and for a healing target of the same name its state machine's
// budget, backoff, statuses and outage state (Machine.Inherit), its recent
// events and a restart due. So a reload neither sends traffic back to an
// upstream known to be down nor refills the restart budget of one that gave
// up. Call it after old's Run has returned and before h's Run starts.
func (h *Healer) Inherit(old *Healer) {
	now := time.Now()
	for _, m := range h.monitors {
		if om := old.byName[m.name]; om != nil && om.baseURL == m.baseURL {
			m.inherit(om)
		}
	}
	t, ot := h.target, old.target
	if t.name != ot.name {
		return
	}
	t.machine.Inherit(ot.machine, now)
	for _, e := range ot.events.list() {
		t.events.add(e)
	}
	t.restartDue.Store(ot.restartDue.Load())
	for u, st := range ot.units {
		t.units[u] = st
	}
	for k, v := range ot.depLast {
		t.depLast[k] = v
	}
	h.metrics.setState(t.name, t.machine.State())
	t.publish(now)
}
