package heal

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/healgate/healgate/admin"
	"github.com/healgate/healgate/config"
	"github.com/healgate/healgate/healing"
	"github.com/healgate/healgate/internal/testproc"
	"github.com/healgate/healgate/test/systemdtest"
)

// dsUnitName is Document Server's unit in the deb/rpm packages.
const dsUnitName = "ds-docservice.service"

// rabbitUnitName is the RabbitMQ stand-in's unit, named like Debian's.
const rabbitUnitName = "rabbitmq-server.service"

// dsRestartSec is ds-docservice.service's RestartSec= in the packages: how
// long systemd itself would leave a dead DocService down.
const dsRestartSec = 30 * time.Second

// dsUnit returns a unit shaped like the packages' ds-docservice.service
// (Restart=always, RestartSec=30) running dsemu on 127.0.0.1:port in mode.
// TimeoutStopSec is short so that a SIGSTOPped process is SIGKILLed soon
// after the SIGTERM of a restart. extra is added to [Service].
func dsUnit(dsemu string, port int, mode, extra string) string {
	return fmt.Sprintf(`[Unit]
Description=emulated ONLYOFFICE Document Server DocService (dsemu)

[Service]
Type=simple
ExecStart=%s -listen 127.0.0.1:%d -name docservice -mode %s
Restart=always
RestartSec=%d
TimeoutStopSec=2s
%s`, dsemu, port, mode, int(dsRestartSec/time.Second), extra)
}

// installUnit installs a unit in sys and removes it when the test ends.
func installUnit(t *testing.T, sys *systemdtest.System, name, content string) {
	t.Helper()
	if err := sys.InstallUnit(name, content); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sys.RemoveUnit(name); err != nil {
			t.Errorf("remove unit %s: %v", name, err)
		}
	})
}

// startDS installs ds-docservice.service (dsemu in mode on a free port),
// starts it and waits until its /healthcheck answers 200. It returns the
// address.
func startDS(t *testing.T, e testEnv, mode, extra string) string {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(testproc.FreePort(t))
	port, _ := strconv.Atoi(addr[strings.LastIndexByte(addr, ':')+1:])
	installUnit(t, e.sys, dsUnitName, dsUnit(e.dsemu, port, mode, extra))
	if err := e.sys.Start(dsUnitName); err != nil {
		t.Fatal(err)
	}
	waitHealthcheck(t, addr, 20*time.Second, "")
	return addr
}

// unitInt reads an integer property (MainPID, NRestarts) of unit.
func unitInt(t *testing.T, sys *systemdtest.System, unit, prop string) int {
	t.Helper()
	v, err := sys.Show(unit, prop)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s of %s: %v", prop, unit, err)
	}
	return n
}

// gateConfig is the part of healgate's configuration the tests vary; zero
// fields take the scaled-down test defaults of withDefaults.
type gateConfig struct {
	upstream string   // DocService's host:port
	units    []string // healing.units (default [ds-docservice.service])
	deps     []config.Dependency
	webhook  string // notify webhook URL; "" for none

	interval, timeout time.Duration // health.interval (250ms), health.timeout (200ms)
	rise, fall        int           // health.rise (2), health.fall (3)

	startPeriod     time.Duration // healing.start_period (1s)
	restartTimeout  time.Duration // healing.restart_timeout (10s)
	recoveryTimeout time.Duration // healing.recovery_timeout (10s)
	budget          int           // healing.budget.restarts (3)
	budgetWindow    time.Duration // healing.budget.window (1m)
	backoffInitial  time.Duration // healing.backoff.initial (500ms)
	backoffMax      time.Duration // healing.backoff.max (4s)
	hold            time.Duration // healing.hold_timeout (5s)
}

func (c gateConfig) withDefaults() gateConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.interval, 250*time.Millisecond)
	def(&c.timeout, 200*time.Millisecond)
	def(&c.startPeriod, time.Second)
	def(&c.restartTimeout, 10*time.Second)
	def(&c.recoveryTimeout, 10*time.Second)
	def(&c.budgetWindow, time.Minute)
	def(&c.backoffInitial, 500*time.Millisecond)
	def(&c.backoffMax, 4*time.Second)
	def(&c.hold, 5*time.Second)
	if c.rise == 0 {
		c.rise = 2
	}
	if c.fall == 0 {
		c.fall = 3
	}
	if c.budget == 0 {
		c.budget = 3
	}
	if c.units == nil {
		c.units = []string{dsUnitName}
	}
	return c
}

// yaml renders c as healgate's config file for the given listeners.
func (c gateConfig) yaml(listen, adminListen string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("listen: %s", listen)
	w("admin: {listen: %q}", adminListen)
	w("server: {shutdown_timeout: 2s}")
	w("upstreams:")
	w("  - {name: docservice, url: \"http://%s\"}", c.upstream)
	w("timeouts: {connect: 1s, send: 10s, response_header: 5s, read: 5s, idle: 30s}")
	w("next_upstream: {tries: 2, timeout: 10s}")
	w("health:")
	w("  interval: %s", c.interval)
	w("  timeout: %s", c.timeout)
	w("  rise: %d", c.rise)
	w("  fall: %d", c.fall)
	w("healing:")
	w("  action: systemd")
	w("  units: [%s]", strings.Join(c.units, ", "))
	if len(c.deps) > 0 {
		w("  dependencies:")
		for _, d := range c.deps {
			w("    - {name: %s, probe: %q, unit: %q}", d.Name, d.Probe, d.Unit)
		}
	}
	w("  start_period: %s", c.startPeriod)
	w("  restart_timeout: %s", c.restartTimeout)
	w("  recovery_timeout: %s", c.recoveryTimeout)
	w("  budget: {restarts: %d, window: %s}", c.budget, c.budgetWindow)
	w("  backoff: {initial: %s, max: %s}", c.backoffInitial, c.backoffMax)
	w("  hold_timeout: %s", c.hold)
	if c.webhook != "" {
		w("notify: {webhooks: [{url: %q, format: generic}]}", c.webhook)
	}
	w("log: {format: json, level: debug}")
	return b.String()
}

// gate is a healgate process owned by one test.
type gate struct {
	*testproc.Proc
	cfg    gateConfig
	addr   string // proxy listener
	admin  string // admin listener
	client *http.Client
}

// startGate runs "healgate run" on the host with cfg, talking to sys's
// system bus, and waits until its admin listener answers and it has read
// the target's units.
func startGate(t *testing.T, e testEnv, cfg gateConfig) *gate {
	t.Helper()
	cfg = cfg.withDefaults()
	g := &gate{cfg: cfg, addr: "127.0.0.1:" + strconv.Itoa(testproc.FreePort(t)), admin: "127.0.0.1:" + strconv.Itoa(testproc.FreePort(t)), client: newClient(t)}
	file := filepath.Join(t.TempDir(), "healgate.yaml")
	if err := os.WriteFile(file, []byte(cfg.yaml(g.addr, g.admin)), 0o644); err != nil {
		t.Fatal(err)
	}
	g.Proc = testproc.Start(t, "healgate", testproc.Options{Env: []string{"DBUS_SYSTEM_BUS_ADDRESS=" + e.sys.BusAddress()}},
		bin.healgate, "run", "-config", file)
	g.waitUp(t)
	return g
}

// startGateInside runs "healgate run" inside the test system as user
// nobody (nsenter + setpriv), with its config written into the system's
// private /run. It finds the bus at its usual place there.
func startGateInside(t *testing.T, e testEnv, name string, cfg gateConfig) *gate {
	t.Helper()
	cfg = cfg.withDefaults()
	g := &gate{cfg: cfg, addr: "127.0.0.1:" + strconv.Itoa(testproc.FreePort(t)), admin: "127.0.0.1:" + strconv.Itoa(testproc.FreePort(t)), client: newClient(t)}
	file := "/run/healgate-test/" + name + ".yaml"
	if err := e.sys.WriteFile(file, []byte(cfg.yaml(g.addr, g.admin)), 0o644); err != nil {
		t.Fatal(err)
	}
	// nsenter forks healgate into the PID namespace; signals go to it.
	signal := func(p *testproc.Proc, sig syscall.Signal) error {
		pid, err := childPID(p)
		if err != nil {
			return err
		}
		return syscall.Kill(pid, sig)
	}
	g.Proc = testproc.Start(t, "healgate (nobody, inside)", testproc.Options{Signal: signal}, "nsenter",
		"-t", strconv.Itoa(e.sys.PID()), "-p", "-m", "-u", "-i", "--wd=/", "--",
		"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
		e.healgate, "run", "-config", file)
	g.waitUp(t)
	if pid, err := childPID(g.Proc); err != nil {
		t.Fatal(err)
	} else if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err != nil || !strings.Contains(string(b), "\nUid:\t65534\t") {
		t.Fatalf("healgate inside does not run as nobody (uid 65534): %v\n%s", err, b)
	}
	return g
}

// waitUp waits until the admin /status answers and the healer has read
// every unit of the target.
func (g *gate) waitUp(t *testing.T) {
	t.Helper()
	g.waitStatus(t, 20*time.Second, "healgate answers /status with its units read", func(s *admin.Status) bool {
		ts := target(s)
		return ts != nil && len(ts.UnitStates) == len(g.cfg.units)
	})
}

// status fetches and decodes /status; ok is false if healgate did not answer.
func (g *gate) status() (*admin.Status, bool) {
	req, err := http.NewRequest(http.MethodGet, "http://"+g.admin+"/status", nil)
	if err != nil {
		return nil, false
	}
	req.Header.Set("Accept", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	var s admin.Status
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&s) != nil {
		return nil, false
	}
	return &s, true
}

// waitStatus polls /status until cond holds, failing the test (with the
// last status) after timeout or if healgate exits.
func (g *gate) waitStatus(t *testing.T, timeout time.Duration, what string, cond func(*admin.Status) bool) *admin.Status {
	t.Helper()
	var last *admin.Status
	ok := testproc.Poll(timeout, func() bool {
		if g.Exited() {
			return true
		}
		s, ok := g.status()
		if ok {
			last = s
		}
		return ok && cond(s)
	})
	if g.Exited() {
		t.Fatalf("healgate exited (%v) while waiting until %s", g.Err(), what)
	}
	if !ok {
		b, _ := json.MarshalIndent(last, "", "  ")
		t.Fatalf("timed out after %v waiting until %s; last /status:\n%s", timeout, what, b)
	}
	return last
}

// target returns the healing target of a status, nil if none.
func target(s *admin.Status) *healing.TargetStatus {
	if s == nil || s.Healing == nil || len(s.Healing.Targets) != 1 {
		return nil
	}
	return &s.Healing.Targets[0]
}

// events returns the target's events of the given kinds (all if none given).
func events(s *admin.Status, kinds ...healing.EventKind) []healing.Event {
	ts := target(s)
	if ts == nil {
		return nil
	}
	var out []healing.Event
	for _, e := range ts.Events {
		if len(kinds) == 0 || slices.Contains(kinds, e.Kind) {
			out = append(out, e)
		}
	}
	return out
}

// stateIs reports whether the target is in state st.
func stateIs(s *admin.Status, st healing.State) bool {
	ts := target(s)
	return ts != nil && ts.Machine.State == st
}

// dumpEvents formats events for failure messages.
func dumpEvents(evs []healing.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "\n  %s %-15s %s→%s unit=%q result=%q reason=%q details=%v",
			e.Time.Format("15:04:05.000"), e.Kind, e.From, e.To, e.Unit, e.Result, e.Reason, e.Details)
	}
	return b.String()
}

// receiver is a webhook endpoint on loopback that records the generic JSON
// events healgate posts.
type receiver struct {
	url string
	mu  sync.Mutex
	evs []healing.Event
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var e healing.Event
		if err := json.NewDecoder(io.LimitReader(req.Body, 1<<20)).Decode(&e); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.evs = append(r.evs, e)
		r.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/hook"
	return r
}

// list returns the events received so far, of the given kinds (all if none).
func (r *receiver) list(kinds ...healing.EventKind) []healing.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []healing.Event
	for _, e := range r.evs {
		if len(kinds) == 0 || slices.Contains(kinds, e.Kind) {
			out = append(out, e)
		}
	}
	return out
}

// newClient returns an HTTP client for one test: no proxy from the
// environment, no redirects, an overall bound per request; its idle
// connections are closed when the test ends.
func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// healthcheck asks DocService at addr for /healthcheck once, with its own
// short deadline, and returns the status and trimmed body.
func healthcheck(addr string, timeout time.Duration) (int, string, error) {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/healthcheck")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// waitHealthcheck polls DocService's /healthcheck until it answers 200
// (with body want, if set), failing the test after timeout.
func waitHealthcheck(t *testing.T, addr string, timeout time.Duration, want string) {
	t.Helper()
	testproc.PollUntil(t, timeout, "http://"+addr+"/healthcheck answers 200 "+want, func() bool {
		code, body, err := healthcheck(addr, 500*time.Millisecond)
		return err == nil && code == http.StatusOK && (want == "" || body == want)
	})
}

// setMode switches dsemu's fault mode at addr.
func setMode(t *testing.T, addr, mode string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Post("http://"+addr+"/_dsemu/mode", "text/plain", strings.NewReader(mode))
	if err != nil {
		t.Fatalf("dsemu: set mode %s: %v", mode, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		t.Fatalf("dsemu: set mode %s: %s %s", mode, resp.Status, b)
	}
}
