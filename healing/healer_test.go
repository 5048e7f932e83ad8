package healing_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/healgate/healgate/config"
	"github.com/healgate/healgate/healing"
	"github.com/healgate/healgate/internal/dsemu"
	"github.com/healgate/healgate/internal/dsemu/dsemutest"
	"github.com/healgate/healgate/internal/testproc"
)

// The healer tests run the real loop against the in-process Document
// Server emulator on loopback, with real probes and real exec commands, at
// quick timings. They wait by polling Status (or a channel) until a
// deadline, never by sleeping.

const (
	healerTarget   = "docservice"
	healerInterval = 100 * time.Millisecond
	healerTimeout  = 70 * time.Millisecond
	healerWait     = 15 * time.Second // deadline of every wait
)

// healerLeakCheck fails t if goroutines started during the test outlive it.
// Call it first: cleanups run last-in first-out, so the check runs after the
// healer and the emulators have stopped.
func healerLeakCheck(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// healerEmu starts an emulator named name in mode on a loopback listener and
// returns it and its base URL; it is stopped when the test ends.
func healerEmu(t *testing.T, name string, mode dsemu.Kind) (*dsemu.Server, string) {
	t.Helper()
	srv, addr := dsemutest.Start(t, dsemu.Options{Name: name, Mode: dsemu.Mode{Kind: mode}, History: -1})
	return srv, "http://" + addr
}

// healerConfig is a valid config for one upstream (the healed one) at url,
// with quick checks and the exec action running command.
func healerConfig(url string, command ...string) *config.Config {
	cfg := config.Default()
	cfg.Upstreams = []config.Upstream{{Name: healerTarget, URL: url}}
	cfg.Health.Interval = healerInterval
	cfg.Health.Timeout = healerTimeout
	cfg.Health.Rise = 2
	cfg.Health.Fall = 2
	cfg.Healing.Action = config.ActionExec
	cfg.Healing.Units = nil
	cfg.Healing.Exec = config.Exec{Command: command, Timeout: 10 * time.Second}
	cfg.Healing.StartPeriod = 100 * time.Millisecond
	cfg.Healing.RestartTimeout = 10 * time.Second
	cfg.Healing.RecoveryTimeout = 10 * time.Second
	cfg.Healing.Budget = config.Budget{Restarts: 3, Window: time.Hour}
	cfg.Healing.Backoff = config.Backoff{Initial: time.Second, Max: 2 * time.Second}
	cfg.Healing.Upstream = ""
	return cfg
}

// healerRig is a running Healer and what the test observes it through.
type healerRig struct {
	t    *testing.T
	cfg  *config.Config
	h    *healing.Healer
	reg  *prometheus.Registry
	rec  *healerRecorder
	logs *healerLogs

	cancel context.CancelFunc
	done   chan error
}

// startHealer validates cfg and runs a Healer for cfg until the test ends.
func startHealer(t *testing.T, cfg *config.Config) *healerRig {
	t.Helper()
	r := newHealer(t, cfg)
	r.run()
	return r
}

// newHealer is startHealer without Run.
func newHealer(t *testing.T, cfg *config.Config) *healerRig {
	t.Helper()
	cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("invalid test config: %v", err)
	}
	r := &healerRig{t: t, cfg: cfg, reg: prometheus.NewRegistry(), rec: &healerRecorder{}, logs: &healerLogs{}}
	var err error
	r.h, err = healing.New(cfg, healing.Options{
		Logger:     slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: r.reg,
		Notify:     r.rec,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("healer log:\n%s", r.logs)
		}
	})
	return r
}

// run starts Run; it is stopped (and waited for) when the test ends.
func (r *healerRig) run() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- r.h.Run(ctx) }()
	r.t.Cleanup(func() { r.stop() })
}

// stop cancels Run and waits for it to return, failing the test if it does
// not within healerWait.
func (r *healerRig) stop() {
	r.t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(healerWait):
		r.t.Fatalf("Run did not return within %v of cancel", healerWait)
	}
}

// target returns the healed target's status.
func (r *healerRig) target() healing.TargetStatus {
	r.t.Helper()
	s := r.h.Status()
	if len(s.Targets) != 1 {
		r.t.Fatalf("Status has %d targets, want 1", len(s.Targets))
	}
	return s.Targets[0]
}

func (r *healerRig) state() healing.State { return r.target().Machine.State }

// waitFor polls cond every 10 ms until it holds, failing the test after
// healerWait.
func (r *healerRig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.NewTimer(healerWait)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			m := r.target().Machine
			r.t.Fatalf("timed out waiting for %s; state %s (%s), events %v", what, m.State, m.Reason, r.rec.kinds())
		case <-tick.C:
		}
	}
}

// waitFirstRound waits until every upstream was probed once.
func (r *healerRig) waitFirstRound() {
	r.t.Helper()
	select {
	case <-r.h.FirstRound():
	case <-time.After(healerWait):
		r.t.Fatalf("FirstRound not closed within %v", healerWait)
	}
}

func (r *healerRig) waitState(want healing.State) {
	r.t.Helper()
	r.waitFor("state "+want.String(), func() bool { return r.state() == want })
}

// waitEvents waits until the recorder has n events of kind.
func (r *healerRig) waitEvents(kind healing.EventKind, n int) {
	r.t.Helper()
	r.waitFor(fmt.Sprintf("%d %s events", n, kind), func() bool { return len(r.rec.of(kind)) >= n })
}

// waitRounds waits until the loop has gone round for at least n more
// intervals, so that anything the test expects not to happen had its
// chances.
func (r *healerRig) waitRounds(n int) {
	r.t.Helper()
	until := time.Now().Add(time.Duration(n) * r.cfg.Health.Interval)
	r.waitFor(fmt.Sprintf("%d more loop turns", n), func() bool { return r.h.Heartbeat().After(until) })
}

// heals returns healgate_heals_total for the target, action and result.
func (r *healerRig) heals(action, result string) float64 {
	r.t.Helper()
	return healerMetric(r.t, r.reg, "healgate_heals_total", map[string]string{"target": healerTarget, "action": action, "result": result})
}

// healerMetric returns the value of the counter or gauge name whose labels
// include want; 0 if there is no such series.
func healerMetric(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if healerLabelsMatch(m, want) {
				if c := m.GetCounter(); c != nil {
					return c.GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

func healerLabelsMatch(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// healerRecorder is a Notify that keeps every event.
type healerRecorder struct {
	mu     sync.Mutex
	events []healing.Event
}

var _ healing.Notify = (*healerRecorder)(nil)

func (r *healerRecorder) Notify(e healing.Event) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return true
}

func (r *healerRecorder) list() []healing.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *healerRecorder) kinds() []healing.EventKind {
	var ks []healing.EventKind
	for _, e := range r.list() {
		ks = append(ks, e.Kind)
	}
	return ks
}

func (r *healerRecorder) of(kind healing.EventKind) []healing.Event {
	var es []healing.Event
	for _, e := range r.list() {
		if e.Kind == kind {
			es = append(es, e)
		}
	}
	return es
}

// healerLogs is a log sink safe for concurrent use.
type healerLogs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *healerLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *healerLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// lines returns the log lines that contain every one of parts.
func (l *healerLogs) lines(parts ...string) []string {
	var out []string
	for line := range strings.Lines(l.String()) {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			out = append(out, line)
		}
	}
	return out
}

// healerMarker returns a path in a fresh directory that a command may
// create; nothing exists there yet.
func healerMarker(t *testing.T) string {
	return filepath.Join(t.TempDir(), "ran")
}

func healerExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// curlMode is a command that switches the emulator at url to mode, the way
// an operator's script would: over HTTP, from another process.
func curlMode(url string, mode dsemu.Kind) []string {
	return []string{"curl", "-sS", "--fail", "--max-time", "5", "-X", "POST", "--data", string(mode), url + "/_dsemu/mode"}
}

func TestHealerExecHealsHang(t *testing.T) {
	healerLeakCheck(t)
	emu, url := healerEmu(t, "ds", dsemu.KindHang)
	r := startHealer(t, healerConfig(url, curlMode(url, dsemu.KindOK)...))

	r.waitEvents(healing.EventHealSucceeded, 1)
	r.waitState(healing.StateHealthy)

	if got := emu.Mode().Kind; got != dsemu.KindOK {
		t.Errorf("emulator mode = %s, want ok (the command did not run?)", got)
	}
	events := r.rec.list()
	if got, want := r.rec.kinds(), []healing.EventKind{healing.EventHealStarted, healing.EventHealSucceeded}; !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	started, succeeded := events[0], events[1]
	if started.Action != config.ActionExec || started.Target != healerTarget || !strings.Contains(started.Reason, "liveness failed") {
		t.Errorf("heal_started = %+v, want action exec, target %s, a liveness reason", started, healerTarget)
	}
	if succeeded.From != "verifying" || succeeded.To != "healthy" || succeeded.Time.Before(started.Time) {
		t.Errorf("heal_succeeded = %+v, want verifying → healthy after heal_started", succeeded)
	}
	if got := r.heals("exec", "done"); got != 1 {
		t.Errorf(`healgate_heals_total{action="exec",result="done"} = %v, want 1`, got)
	}
	if got := r.heals("exec", "failed"); got != 0 {
		t.Errorf(`healgate_heals_total{action="exec",result="failed"} = %v, want 0`, got)
	}
	// Status keeps the same events that Notify received.
	var kept []healing.EventKind
	for _, e := range r.target().Events {
		kept = append(kept, e.Kind)
	}
	if !slices.Equal(kept, r.rec.kinds()) {
		t.Errorf("Status events = %v, Notify received %v", kept, r.rec.kinds())
	}
	if !r.h.Ready(healerTarget) {
		t.Errorf("Ready(%s) = false after the heal", healerTarget)
	}
	if _, ok := r.h.Healing(healerTarget); ok {
		t.Errorf("Healing(%s) = true after the heal", healerTarget)
	}
}

func TestHealerExecFailureBacksOffThenGivesUp(t *testing.T) {
	healerLeakCheck(t)
	_, url := healerEmu(t, "ds", dsemu.KindHang)
	cfg := healerConfig(url, "sh", "-c", "exit 1")
	cfg.Healing.Budget = config.Budget{Restarts: 2, Window: time.Hour}
	cfg.Healing.Backoff = config.Backoff{Initial: 300 * time.Millisecond, Max: 600 * time.Millisecond}
	r := startHealer(t, cfg)

	r.waitEvents(healing.EventHealFailed, 1)
	if st := r.state(); st != healing.StateBackoff && st != healing.StateHealing && st != healing.StateGaveUp {
		t.Errorf("state after the first failure = %s, want backoff (or later)", st)
	}
	r.waitState(healing.StateGaveUp)
	r.waitRounds(5) // time to give up twice, if it would

	want := []healing.EventKind{
		healing.EventHealStarted, healing.EventHealFailed,
		healing.EventHealStarted, healing.EventHealFailed,
		healing.EventGaveUp,
	}
	events := r.rec.list()
	if got := r.rec.kinds(); !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	for _, i := range []int{1, 3} {
		if e := events[i]; e.Result != "failed" || e.Action != config.ActionExec || !strings.Contains(e.Reason, "exit") {
			t.Errorf("event %d = %+v, want heal_failed with action exec, result failed, an exit status", i, e)
		}
	}
	// The retry waited out the backoff: at least half of Initial (jitter).
	if gap, min := events[2].Time.Sub(events[1].Time), cfg.Healing.Backoff.Initial/2; gap < min {
		t.Errorf("retry %v after the failure, want at least %v (backoff)", gap, min)
	}
	if got := r.heals("exec", "failed"); got != 2 {
		t.Errorf(`healgate_heals_total{action="exec",result="failed"} = %v, want 2`, got)
	}
	m := r.target().Machine
	if m.BudgetLeft != 0 || !strings.Contains(m.Reason, "budget") {
		t.Errorf("machine = %+v, want budget spent", m)
	}
	if got := healerMetric(t, r.reg, "healgate_target_state", map[string]string{"target": healerTarget, "state": "gave-up"}); got != 1 {
		t.Errorf(`healgate_target_state{state="gave-up"} = %v, want 1`, got)
	}
}

func TestHealerActionNoneFlagsRestartDue(t *testing.T) {
	healerLeakCheck(t)
	emu, url := healerEmu(t, "ds", dsemu.KindHang)
	cfg := healerConfig(url)
	cfg.Healing.Action = config.ActionNone
	cfg.Healing.Exec = config.Exec{}
	cfg.Healing.RecoveryTimeout = time.Minute // the kubelet takes its time
	r := startHealer(t, cfg)

	r.waitFor("RestartDue", func() bool { return r.h.RestartDue(healerTarget) })
	if r.h.RestartDue("nope") {
		t.Error(`RestartDue("nope") = true for an unknown target`)
	}
	if !r.target().RestartDue {
		t.Error("Status RestartDue = false while RestartDue() is true")
	}
	started := r.rec.of(healing.EventHealStarted)
	if len(started) != 1 || started[0].Action != config.ActionNone {
		t.Fatalf("heal_started events = %+v, want one with action none", started)
	}

	emu.SetMode(dsemu.Mode{Kind: dsemu.KindOK}) // the kubelet restarted the container
	r.waitFor("RestartDue false", func() bool { return !r.h.RestartDue(healerTarget) })
	r.waitState(healing.StateHealthy)
	if got, want := r.rec.kinds(), []healing.EventKind{healing.EventHealStarted, healing.EventHealSucceeded}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	if got := r.heals("none", "done"); got != 1 {
		t.Errorf(`healgate_heals_total{action="none",result="done"} = %v, want 1`, got)
	}
}

func TestHealerReadyFollowsChecks(t *testing.T) {
	healerLeakCheck(t)
	ds, dsURL := healerEmu(t, "ds", dsemu.KindOK)
	spare, spareURL := healerEmu(t, "spare", dsemu.KindOK)
	cfg := healerConfig(dsURL)
	cfg.Upstreams = append(cfg.Upstreams, config.Upstream{Name: "spare", URL: spareURL, Backup: true})
	cfg.Healing.Action = config.ActionNone
	cfg.Healing.Exec = config.Exec{}
	cfg.Healing.RecoveryTimeout = time.Minute
	r := startHealer(t, cfg)

	r.waitFirstRound()
	for _, name := range []string{healerTarget, "spare", "unknown"} {
		if !r.h.Ready(name) {
			t.Errorf("Ready(%s) = false at start", name)
		}
	}

	// Readiness needs Fall failures to go down and Rise passes to come
	// back; count the probes the emulator saw to prove it.
	readiness := func(s *dsemu.Server) int64 { return s.Stats().Requests["GET /healthcheck"] }
	for _, c := range []struct {
		name string
		emu  *dsemu.Server
	}{{"spare", spare}, {healerTarget, ds}} { // spare: its own monitor; ds: the target's loop
		before := readiness(c.emu)
		c.emu.SetMode(dsemu.Mode{Kind: dsemu.KindFalse})
		r.waitFor("Ready("+c.name+") false", func() bool { return !r.h.Ready(c.name) })
		if n := readiness(c.emu) - before; n < int64(cfg.Health.Fall) {
			t.Errorf("%s went unready after %d readiness probes, want at least fall=%d", c.name, n, cfg.Health.Fall)
		}
		for _, u := range r.h.Status().Upstreams {
			if u.Name == c.name && (u.Ready || u.Readiness.Up || !u.Liveness.Up || u.Readiness.Detail == "" && u.Readiness.Error == "") {
				t.Errorf("status of %s = %+v, want readiness down with a reason, liveness up", c.name, u)
			}
		}
		if got := healerMetric(t, r.reg, "healgate_upstream_up", map[string]string{"upstream": c.name}); got != 0 {
			t.Errorf("healgate_upstream_up{upstream=%q} = %v, want 0", c.name, got)
		}

		before = readiness(c.emu)
		c.emu.SetMode(dsemu.Mode{Kind: dsemu.KindOK})
		r.waitFor("Ready("+c.name+") true", func() bool { return r.h.Ready(c.name) })
		if n := readiness(c.emu) - before; n < int64(cfg.Health.Rise) {
			t.Errorf("%s went ready after %d readiness probes, want at least rise=%d", c.name, n, cfg.Health.Rise)
		}
	}
	if !r.h.Ready("unknown") {
		t.Error("Ready(unknown) = false")
	}
}

func TestHealerHealingChannel(t *testing.T) {
	healerLeakCheck(t)
	_, url := healerEmu(t, "ds", dsemu.KindHang)
	gate := healerMarker(t)
	// The command waits for the test's go-ahead, then heals the emulator.
	script := `while [ ! -e "$1" ]; do sleep 0.01; done; shift; exec "$@"`
	cmd := append([]string{"sh", "-c", script, "sh", gate}, curlMode(url, dsemu.KindOK)...)
	r := startHealer(t, healerConfig(url, cmd...))

	var done <-chan struct{}
	r.waitFor("Healing", func() bool {
		var ok bool
		done, ok = r.h.Healing(healerTarget)
		return ok
	})
	if done == nil {
		t.Fatal("Healing returned true with a nil channel")
	}
	if _, ok := r.h.Healing("spare"); ok {
		t.Error(`Healing("spare") = true for an upstream that is not healed`)
	}
	select {
	case <-done:
		t.Fatal("done closed while the heal is in flight")
	default:
	}
	// One restart at a time: an operator's request is refused meanwhile.
	ctx, cancel := context.WithTimeout(context.Background(), healerWait)
	defer cancel()
	if err := r.h.Heal(ctx, healerTarget, "again"); !errors.Is(err, healing.ErrNotAccepted) {
		t.Errorf("Heal during a heal = %v, want ErrNotAccepted", err)
	}

	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(healerWait):
		t.Fatalf("done not closed within %v; state %s", healerWait, r.state())
	}
	r.waitState(healing.StateHealthy)
	if len(r.rec.of(healing.EventHealSucceeded)) != 1 {
		t.Errorf("events = %v, want the heal to have succeeded", r.rec.kinds())
	}
	if _, ok := r.h.Healing(healerTarget); ok {
		t.Error("Healing = true after the heal ended")
	}
}

func TestHealerDependencyDownDoesNotRestart(t *testing.T) {
	healerLeakCheck(t)
	_, url := healerEmu(t, "ds", dsemu.KindFalse) // /healthcheck says false, /index.html is fine
	marker := healerMarker(t)
	cfg := healerConfig(url, "touch", marker)
	cfg.Healing.Dependencies = []config.Dependency{{Name: "rabbitmq", Probe: "tcp://" + testproc.FreeAddr(t)}}
	r := startHealer(t, cfg)

	r.waitEvents(healing.EventDependencyDown, 1)
	r.waitRounds(6)

	if healerExists(marker) {
		t.Error("the target was restarted (the exec command ran) for a dependency's fault")
	}
	if got := r.rec.kinds(); !slices.Equal(got, []healing.EventKind{healing.EventDependencyDown}) {
		t.Errorf("events = %v, want exactly one dependency_down", got)
	}
	e := r.rec.of(healing.EventDependencyDown)[0]
	if e.Details["dependency"] != "rabbitmq" || e.Target != healerTarget || !strings.Contains(e.Reason, "rabbitmq") {
		t.Errorf("dependency_down = %+v, want dependency rabbitmq", e)
	}
	ts := r.target()
	if ts.Machine.State != healing.StateSuspect {
		t.Errorf("state = %s (%s), want suspect", ts.Machine.State, ts.Machine.Reason)
	}
	if dep, ok := ts.Dependencies["rabbitmq"]; !ok || dep.OK || dep.Up || dep.Error == "" {
		t.Errorf("dependency status = %+v, want down with an error", dep)
	}
	if got := r.heals("exec", "done") + r.heals("exec", "failed"); got != 0 {
		t.Errorf("healgate_heals_total = %v, want 0", got)
	}
}

func TestHealerOperatorHeal(t *testing.T) {
	healerLeakCheck(t)
	_, url := healerEmu(t, "ds", dsemu.KindOK)
	log := healerMarker(t)
	r := startHealer(t, healerConfig(url, "sh", "-c", `echo ran >> "$1"`, "sh", log))
	r.waitFirstRound()
	r.waitState(healing.StateHealthy)

	ctx, cancel := context.WithTimeout(context.Background(), healerWait)
	defer cancel()
	if err := r.h.Reset(ctx, healerTarget); !errors.Is(err, healing.ErrNotAccepted) {
		t.Errorf("Reset of a healthy target = %v, want ErrNotAccepted", err)
	}
	if err := r.h.Heal(ctx, "nope", ""); !errors.Is(err, healing.ErrUnknownTarget) {
		t.Errorf("Heal(nope) = %v, want ErrUnknownTarget", err)
	}
	if err := r.h.Reset(ctx, "nope"); !errors.Is(err, healing.ErrUnknownTarget) {
		t.Errorf("Reset(nope) = %v, want ErrUnknownTarget", err)
	}
	if got := r.h.Targets(); !slices.Equal(got, []string{healerTarget}) {
		t.Errorf("Targets = %v, want [%s]", got, healerTarget)
	}

	if err := r.h.Heal(ctx, healerTarget, "test asked"); err != nil {
		t.Fatalf("Heal: %v", err)
	}
	r.waitEvents(healing.EventHealSucceeded, 1)
	r.waitState(healing.StateHealthy)
	r.waitRounds(3)

	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatalf("the command did not run: %v", err)
	}
	if got := strings.Count(string(b), "ran\n"); got != 1 {
		t.Errorf("the command ran %d times, want 1", got)
	}
	if got, want := r.rec.kinds(), []healing.EventKind{healing.EventHealStarted, healing.EventHealSucceeded}; !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
	if e := r.rec.of(healing.EventHealStarted)[0]; !strings.Contains(e.Reason, "operator request: test asked") {
		t.Errorf("heal_started reason = %q, want the operator's reason", e.Reason)
	}
	if got := r.heals("exec", "done"); got != 1 {
		t.Errorf(`healgate_heals_total{action="exec",result="done"} = %v, want 1`, got)
	}
}

func TestHealerResetAfterGiveUp(t *testing.T) {
	healerLeakCheck(t)
	_, url := healerEmu(t, "ds", dsemu.KindHang)
	cfg := healerConfig(url, "sh", "-c", "exit 1")
	cfg.Healing.Budget = config.Budget{Restarts: 1, Window: time.Hour}
	cfg.Healing.Backoff = config.Backoff{Initial: 100 * time.Millisecond, Max: 200 * time.Millisecond}
	r := startHealer(t, cfg)

	r.waitState(healing.StateGaveUp)
	ctx, cancel := context.WithTimeout(context.Background(), healerWait)
	defer cancel()
	if err := r.h.Reset(ctx, healerTarget); err != nil {
		t.Fatalf("Reset after gave-up: %v", err)
	}
	// The budget is refilled: the still-hung target is healed again.
	r.waitEvents(healing.EventHealStarted, 2)

	resets := r.rec.of(healing.EventReset)
	if len(resets) != 1 || resets[0].Target != healerTarget {
		t.Fatalf("reset events = %+v, want one", resets)
	}
	if lines := r.logs.lines("target state changed", "from=gave-up", "to=suspect", "operator reset"); len(lines) != 1 {
		t.Errorf("want one gave-up → suspect transition for the reset, log:\n%s", r.logs)
	}
	events := r.rec.list()
	i := slices.IndexFunc(events, func(e healing.Event) bool { return e.Kind == healing.EventReset })
	if !slices.ContainsFunc(events[i+1:], func(e healing.Event) bool { return e.Kind == healing.EventHealStarted }) {
		t.Errorf("events = %v, want a heal after the reset", r.rec.kinds())
	}
}

func TestHealerDryRun(t *testing.T) {
	healerLeakCheck(t)
	_, url := healerEmu(t, "ds", dsemu.KindHang)
	marker := healerMarker(t)
	cfg := healerConfig(url, "touch", marker)
	cfg.Healing.DryRun = true
	r := startHealer(t, cfg)

	r.waitEvents(healing.EventHealStarted, 1)
	r.waitRounds(4)

	if healerExists(marker) {
		t.Error("dry run ran the exec command")
	}
	e := r.rec.of(healing.EventHealStarted)[0]
	if e.Result != "dry-run" || e.Action != config.ActionExec || !strings.Contains(e.Reason, "liveness failed") {
		t.Errorf("heal_started = %+v, want result dry-run, action exec, the reason", e)
	}
	if len(r.logs.lines("dry run: would restart", "liveness failed")) == 0 {
		t.Errorf("the decision was not logged; log:\n%s", r.logs)
	}
	if got := r.heals("exec", "dry_run"); got < 1 {
		t.Errorf(`healgate_heals_total{result="dry_run"} = %v, want ≥ 1`, got)
	}
	if got := r.heals("exec", "done"); got != 0 {
		t.Errorf(`healgate_heals_total{result="done"} = %v, want 0`, got)
	}
	if !r.target().Machine.DryRun {
		t.Error("Status does not report dry_run")
	}
}

func TestHealerPassiveDialErrors(t *testing.T) {
	healerLeakCheck(t)
	emu, url := healerEmu(t, "ds", dsemu.KindOK)
	marker := healerMarker(t)
	// The command fails after leaving its mark: a successful restart would
	// be followed by a probe at once, which this test must not see.
	cfg := healerConfig(url, "sh", "-c", "touch "+marker+"; exit 1")
	cfg.Health.Interval = time.Hour // no probe round after the first: traffic alone must act
	r := startHealer(t, cfg)
	r.waitFirstRound()
	probes := emu.Stats().Total

	r.h.Passive("spare", healing.PassiveDialError) // not the healed upstream: ignored
	r.h.Passive(healerTarget, healing.PassiveDialError)
	r.waitFor("one liveness failure", func() bool {
		m := r.target().Machine
		return m.State == healing.StateSuspect && strings.Contains(m.Reason, "liveness failed 1 of 2")
	})
	if len(r.rec.list()) != 0 || healerExists(marker) {
		t.Fatalf("acted on one failure (fall=2): events %v", r.rec.kinds())
	}

	r.h.Passive(healerTarget, healing.PassiveDialError)
	r.waitEvents(healing.EventHealStarted, 1)
	r.waitFor("the exec command", func() bool { return healerExists(marker) })
	if e := r.rec.of(healing.EventHealStarted)[0]; !strings.Contains(e.Reason, "liveness failed 2 times") {
		t.Errorf("heal_started reason = %q, want two liveness failures", e.Reason)
	}
	if got := emu.Stats().Total; got != probes {
		t.Errorf("the emulator got %d requests after the first round, want none (traffic alone acted)", got-probes)
	}
}

func TestHealerRunStopsOnCancel(t *testing.T) {
	healerLeakCheck(t)
	_, url := healerEmu(t, "ds", dsemu.KindHang)
	cfg := healerConfig(url, "sleep", "60")
	cfg.Healing.Exec.Timeout = 2 * time.Minute
	r := newHealer(t, cfg)
	if !r.h.Heartbeat().IsZero() {
		t.Error("Heartbeat before Run is not zero")
	}
	first := r.h.FirstRound()
	r.run()

	// Stop while the action runs: it is canceled (the process killed) and
	// Run returns; goleak then checks that nothing is left.
	r.waitFor("the action in flight", func() bool { _, ok := r.h.Healing(healerTarget); return ok })
	if r.h.Heartbeat().IsZero() {
		t.Error("Heartbeat is zero while running")
	}
	select {
	case <-first:
	default:
		t.Error("FirstRound not closed after a heal started")
	}
	start := time.Now()
	r.stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %v to return after cancel", d)
	}
}

func TestHealerFirstRoundStopsWithRun(t *testing.T) {
	healerLeakCheck(t)
	emu, url := healerEmu(t, "ds", dsemu.KindHang)
	cfg := healerConfig(url, "true")
	cfg.Health.Interval = time.Hour
	cfg.Health.Timeout = 10 * time.Second // the first round will not finish
	r := newHealer(t, cfg)
	first := r.h.FirstRound()
	r.run()
	r.waitFor("the first probes", func() bool { return emu.Stats().Total >= 2 })
	r.stop() // then goleak: FirstRound must not leave a waiter behind
	select {
	case <-first:
		t.Error("FirstRound closed although no round completed")
	default:
	}
}

func TestHealerRestartTimeoutCancelsTheAction(t *testing.T) {
	healerLeakCheck(t)
	_, url := healerEmu(t, "ds", dsemu.KindHang)
	pids := healerMarker(t)
	// Each run notes its pid, then outlives restart_timeout by far.
	cfg := healerConfig(url, "sh", "-c", `echo $$ >> "$1"; exec sleep 30`, "sh", pids)
	cfg.Healing.Exec.Timeout = time.Minute
	cfg.Healing.RestartTimeout = 300 * time.Millisecond
	cfg.Healing.Budget = config.Budget{Restarts: 2, Window: time.Hour}
	cfg.Healing.Backoff = config.Backoff{Initial: 100 * time.Millisecond, Max: 200 * time.Millisecond}
	r := startHealer(t, cfg)

	r.waitState(healing.StateGaveUp)
	want := []healing.EventKind{
		healing.EventHealStarted, healing.EventHealFailed,
		healing.EventHealStarted, healing.EventHealFailed,
		healing.EventGaveUp,
	}
	if got := r.rec.kinds(); !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	for _, e := range r.rec.of(healing.EventHealFailed) {
		if e.Result != "timeout" || !strings.Contains(e.Reason, "restart_timeout") {
			t.Errorf("heal_failed = %+v, want result timeout naming restart_timeout", e)
		}
	}
	if got := r.heals("exec", "timeout"); got != 2 {
		t.Errorf(`healgate_heals_total{result="timeout"} = %v, want 2`, got)
	}
	// One action at a time: the timed-out command was killed before the
	// next one started, and none is left running.
	b, err := os.ReadFile(pids)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(b))
	if len(lines) != 2 {
		t.Fatalf("the command ran %d times, want 2", len(lines))
	}
	r.waitFor("the commands killed", func() bool {
		return !healerExists("/proc/"+lines[0]) && !healerExists("/proc/"+lines[1])
	})
}

// TestHealerDrainsBeforeRestart: with healing.drain on, Document Server is
// asked to stop taking sessions (PUT /internal/cluster/inactive) before the
// restart. The restart command itself checks that the drain already reached
// the emulator, and heals only then.
func TestHealerDrainsBeforeRestart(t *testing.T) {
	healerLeakCheck(t)
	emu, url := healerEmu(t, "ds", dsemu.KindFalse) // readiness fails, liveness passes
	script := "curl -sS --fail --max-time 5 " + url + "/_dsemu/stats | grep -q 'PUT /internal/cluster/inactive' && " +
		strings.Join(curlMode(url, dsemu.KindOK), " ")
	cfg := healerConfig(url, "sh", "-c", script)
	cfg.Healing.Drain = config.Drain{Enabled: true, Timeout: 5 * time.Second}
	r := startHealer(t, cfg)

	r.waitEvents(healing.EventHealSucceeded, 1)
	if n := emu.Stats().Requests["PUT /internal/cluster/inactive"]; n != 1 {
		t.Errorf("drain requests = %d, want 1", n)
	}
	if got := r.heals("exec", "done"); got != 1 {
		t.Errorf(`healgate_heals_total{action="exec",result="done"} = %v, want 1 (the command found no drain?)`, got)
	}
}
