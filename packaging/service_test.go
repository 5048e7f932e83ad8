package packaging_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/healgate/healgate/internal/dsemu"
	"github.com/healgate/healgate/internal/dsemu/dsemutest"
	"github.com/healgate/healgate/internal/testnginx"
	"github.com/healgate/healgate/internal/testproc"
	"github.com/healgate/healgate/test/systemdtest"
)

// These are issue 4's runtime acceptance tests: the real healgate binary
// under the packaged healgate.service (and its socket units) on the shared
// real systemd 252, with a Document Server emulator on the host (the test
// system shares the host's network) and, for the restart test, Debian's
// nginx in front as Document Server's ds.conf puts it. A drop-in changes
// only the binary's and the config's paths, and what a test names.

// serviceConfigPath is where the tests' healgate config lives inside the
// test system (on its private /run, readable by user healgate).
const serviceConfigPath = "/run/healgate-test/service.yaml"

// service is healgate.service running a freshly built healgate binary with
// a config of the test's.
type service struct {
	s   *systemdtest.System
	bin string // the healgate binary, inside
}

// newService boots (or reuses) the shared test system with the packaged
// units, and installs the healgate binary built from this tree.
func newService(t *testing.T) *service {
	t.Helper()
	s := bootSystem(t)
	bin, err := s.InstallBinary(systemdtest.GoBuild(t, "github.com/healgate/healgate/cmd/healgate"))
	if err != nil {
		t.Fatal(err)
	}
	return &service{s: s, bin: bin}
}

// configure writes cfg as healgate's config and a drop-in for
// healgate.service that runs the test's binary on it, plus extra lines of
// the [Service] section. t.Cleanup stops the service and removes the drop-in.
func (v *service) configure(t *testing.T, cfg, extra string) {
	t.Helper()
	v.writeConfig(t, cfg)
	dropIn(t, v.s, "healgate.service", fmt.Sprintf("[Service]\nExecStart=\nExecStart=%[1]s run -config %[2]s\n"+
		"ExecReload=\nExecReload=%[1]s reload -pid $MAINPID -config %[2]s\n%[3]s", v.bin, serviceConfigPath, extra))
}

// writeConfig replaces healgate's config file, as an operator's edit does.
func (v *service) writeConfig(t *testing.T, cfg string) {
	t.Helper()
	if err := v.s.WriteFile(serviceConfigPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// systemctl runs systemctl inside and fails t with the journal on an error.
func (v *service) systemctl(t *testing.T, args ...string) {
	t.Helper()
	if out, err := v.s.Systemctl(args...); err != nil {
		t.Fatalf("systemctl %s: %v\n%s\n%s", strings.Join(args, " "), err, out, journal(v.s))
	}
}

// show returns one property of healgate.service.
func (v *service) show(t *testing.T, property string) string {
	t.Helper()
	val, err := v.s.Show("healgate.service", property)
	if err != nil {
		t.Fatal(err)
	}
	return val
}

// showInt returns an integer property of healgate.service.
func (v *service) showInt(t *testing.T, property string) int64 {
	t.Helper()
	val := v.show(t, property)
	n, err := strconv.ParseInt(val, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", property, val, err)
	}
	return n
}

// journalSince returns the messages about healgate.service logged since
// since (the test system's clock is the host's).
func (v *service) journalSince(t *testing.T, since time.Time) string {
	t.Helper()
	// journald may still be writing the last lines: sync first.
	_, _ = v.s.Exec("journalctl", "--sync")
	out, err := v.s.Exec("journalctl", "--no-pager", "-o", "cat", "-u", "healgate.service",
		"--since", since.Format("2006-01-02 15:04:05.000000"))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// healgateConfig is a healgate config for the tests: the proxy and admin
// listeners, one upstream, no healing (these tests are about the service,
// not the healer), and further top-level YAML in extra.
func healgateConfig(listen, admin, upstream, extra string) string {
	return fmt.Sprintf(`listen: %s
admin: {listen: %s}
upstreams: [{name: docservice, url: "http://%s"}]
healing: {action: none, units: []}
log: {level: info}
%s`, listen, admin, upstream, extra)
}

// loopback returns a free 127.0.0.1 address.
func loopback(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", testproc.FreePort(t)) }

// load is a steady client load: workers goroutines each send GET url one
// after another, until stop, at most maxLoadRequests in all or for
// maxLoadDuration. Every answer other than 200 with the emulator's page,
// and every transport error, is a failure. The test owns it: stop waits
// for the workers.
type load struct {
	sent, failed atomic.Int64
	cancel       context.CancelFunc
	wg           sync.WaitGroup

	mu       sync.Mutex
	failures []string // the first few, for the message
}

const (
	maxLoadRequests = 500_000
	maxLoadDuration = 3 * time.Minute
)

// startLoad starts the load. keepAlive says whether each worker reuses its
// connection (false: one connection per request, as nginx talks to
// healgate).
func startLoad(t *testing.T, url string, workers int, keepAlive bool) *load {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), maxLoadDuration)
	l := &load{cancel: cancel}
	for range workers {
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			Proxy: nil, DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 1,
		}}
		l.wg.Go(func() {
			defer client.CloseIdleConnections()
			for ctx.Err() == nil && l.sent.Load() < maxLoadRequests {
				err := l.one(ctx, client, url)
				if ctx.Err() != nil {
					return // stopped mid-request: not the service's failure
				}
				l.sent.Add(1)
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.failures) < 10 {
						l.failures = append(l.failures, time.Now().Format("15:04:05.000")+" "+err.Error())
					}
					l.mu.Unlock()
				}
			}
		})
	}
	t.Cleanup(l.stop)
	return l
}

// pageMark is in the body of the emulator's /index.html.
const pageMark = "Document Server is running"

func (l *load) one(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return fmt.Errorf("reading the body: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), pageMark) {
		return fmt.Errorf("%s (X-Healgate-Error %q): %.100q", resp.Status, resp.Header.Get("X-Healgate-Error"), body)
	}
	return nil
}

// stop ends the load and waits for the workers. It may be called more than
// once.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// waitFor waits until at least n more requests were answered than when it
// was called (the load is running through whatever the test does), or
// fails t after a minute.
func (l *load) waitFor(t *testing.T, n int64) {
	t.Helper()
	target := l.sent.Load() + n
	testproc.PollUntil(t, time.Minute, fmt.Sprintf("%d more requests of the load", n), func() bool { return l.sent.Load() >= target })
}

// report stops the load, logs its figures and fails t if a request failed
// or too few were sent for the test to mean something.
func (l *load) report(t *testing.T, min int64) {
	t.Helper()
	l.stop()
	sent, failed := l.sent.Load(), l.failed.Load()
	t.Logf("load: %d requests sent, %d failed", sent, failed)
	if failed > 0 {
		l.mu.Lock()
		t.Errorf("%d of %d requests failed; first ones:\n\t%s", failed, sent, strings.Join(l.failures, "\n\t"))
		l.mu.Unlock()
	}
	if sent < min {
		t.Errorf("only %d requests were sent, want at least %d", sent, min)
	}
}

// TestStartReturnsAfterReady: "systemctl start healgate" returns only once
// healgate sent READY=1, which it does after binding its listeners and
// probing every upstream once. The emulator answers every request 1.5 s
// late, so the first probe round takes that long: start must take at least
// as long, and right after it returns the proxy and admin ports answer (no
// retry) and systemd's StatusText is healgate's STATUS= line.
func TestStartReturnsAfterReady(t *testing.T) {
	v := newService(t)
	const delay = 1500 * time.Millisecond
	emu, upstream := dsemutest.Start(t, dsemu.Options{Name: "ds", Mode: dsemu.Mode{Kind: dsemu.KindSlow, Delay: delay}})
	listen, admin := loopback(t), loopback(t)
	v.configure(t, healgateConfig(listen, admin, upstream,
		"health: {interval: 10s, timeout: 5s}\n"), "")

	begin := time.Now()
	v.systemctl(t, "start", "healgate.service")
	took := time.Since(begin)
	// Right after start returned, with no retry: the admin listener...
	expectStatus(t, "http://"+admin+"/healthz", http.StatusOK)
	// ...and the proxy, through to the emulator.
	resp := get(t, "http://"+listen+"/index.html")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Dsemu-Name") != "ds" {
		t.Errorf("proxy right after start: %s from %q, want 200 from the emulator", resp.Status, resp.Header.Get("X-Dsemu-Name"))
	}
	t.Logf("systemctl start took %v (first probe round >= %v)", took.Round(time.Millisecond), delay)
	if took < delay {
		t.Errorf("systemctl start returned after %v, before the first probe round could end (%v): READY=1 came too early", took, delay)
	}
	if st := v.show(t, "ActiveState") + "/" + v.show(t, "SubState"); st != "active/running" {
		t.Errorf("after start: %s, want active/running", st)
	}
	status := v.show(t, "StatusText")
	t.Logf("StatusText: %q", status)
	if !strings.HasPrefix(status, "1/1 upstreams usable") {
		t.Errorf("StatusText %q, want healgate's STATUS= line \"1/1 upstreams usable; ...\"", status)
	}
	// The probe round READY waited for reached the emulator.
	probed := map[string]bool{}
	for _, r := range emu.Stats().Recent {
		probed[r.Path] = true
	}
	if !probed["/healthcheck"] || !probed["/index.html"] {
		t.Errorf("the emulator saw no liveness and readiness probes: %v", probed)
	}
}

// Config differences the reload tests apply: the emulator's conversion
// endpoint answers after ?delay=, and a route of its own gives it a
// response-header timeout shorter or longer than that delay. So the route's
// timeout in force is observable: 504 from healgate, or 200.
const (
	convertDelay = 1500 * time.Millisecond
	shortRoute   = `routes: [{name: convert, path_prefix: [/ConvertService.ashx], timeouts: {response_header: 300ms}, retry: false, breaker: false}]` + "\n"
	longRoute    = `routes: [{name: convert, path_prefix: [/ConvertService.ashx], timeouts: {response_header: 10s}, retry: false, breaker: false}]` + "\n"
)

// expectRouteTimeout sends one slow conversion through healgate: with
// short, healgate must answer 504 with its own error class; otherwise the
// emulator's 200.
func expectRouteTimeout(t *testing.T, listen string, short bool) {
	t.Helper()
	resp := get(t, fmt.Sprintf("http://%s/ConvertService.ashx?delay=%s", listen, convertDelay))
	switch {
	case short && (resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get("X-Healgate-Error") == ""):
		t.Errorf("slow conversion under response_header 300ms: %s (X-Healgate-Error %q), want healgate's 504",
			resp.Status, resp.Header.Get("X-Healgate-Error"))
	case !short && resp.StatusCode != http.StatusOK:
		t.Errorf("slow conversion under response_header 10s: %s (X-Healgate-Error %q), want 200",
			resp.Status, resp.Header.Get("X-Healgate-Error"))
	}
}

// TestReloadUnderLoadZeroFailures: while clients send a steady load straight
// to healgate (half on keep-alive connections, which outlive a reload, half
// on a connection each), "systemctl reload healgate" applies a changed
// route timeout, several times back and forth. Each reload returns only
// once the new timeout is in force (the very next request sees it: the
// packaged ExecReload=, "healgate reload", sends RELOADING=1 before SIGHUP
// so that systemd 252 waits for healgate's READY=1), the service never
// leaves active, keeps its MainPID, and no request fails.
func TestReloadUnderLoadZeroFailures(t *testing.T) {
	v := newService(t)
	_, upstream := dsemutest.Start(t, dsemu.Options{Name: "ds"})
	listen, admin := loopback(t), loopback(t)
	extra := "health: {interval: 1s, timeout: 500ms}\n"
	v.configure(t, healgateConfig(listen, admin, upstream, extra+shortRoute), "")
	v.systemctl(t, "start", "healgate.service")
	pid := v.showInt(t, "MainPID")
	expectRouteTimeout(t, listen, true)

	keep := startLoad(t, "http://"+listen+"/index.html", 2, true)
	fresh := startLoad(t, "http://"+listen+"/index.html", 2, false)
	keep.waitFor(t, 100)
	since := time.Now()
	const reloads = 4
	for i := range reloads {
		short := i%2 == 1 // the first reload lengthens the timeout
		route := longRoute
		if short {
			route = shortRoute
		}
		v.writeConfig(t, healgateConfig(listen, admin, upstream, extra+route))
		begin := time.Now()
		v.systemctl(t, "reload", "healgate.service")
		took := time.Since(begin)
		// The reload's job ended: healgate must be running the new config
		// already, with no retry.
		if st := v.show(t, "ActiveState"); st != "active" {
			t.Errorf("reload %d: ActiveState %q right after systemctl reload returned, want active", i+1, st)
		}
		expectRouteTimeout(t, listen, short)
		t.Logf("reload %d (response_header %s): systemctl reload took %v",
			i+1, map[bool]string{true: "300ms", false: "10s"}[short], took.Round(time.Millisecond))
		keep.waitFor(t, 100)
		fresh.waitFor(t, 100)
	}
	if got := v.showInt(t, "MainPID"); got != pid {
		t.Errorf("MainPID %d -> %d: a reload restarted healgate", pid, got)
	}
	if n := strings.Count(v.journalSince(t, since), "reload: new config applied"); n != reloads {
		t.Errorf("the journal says %d reloads applied, want %d\n%s", n, reloads, journal(v.s))
	}
	keep.report(t, 500)
	fresh.report(t, 500)
}

// TestReloadInvalidConfigKeepsRunning: a config with an error (a duration
// without a unit, and a changed route timeout that must not take effect)
// is written, under load, and healgate is asked to reload it both ways an
// operator can:
//
//   - "systemctl reload healgate": ExecReload's "healgate reload" validates
//     the file first, so the reload job fails (systemctl exits 1, "Job for
//     healgate.service failed because the control process exited with
//     error code") with file:line in the journal, and healgate is not even
//     signalled. systemd 252 then keeps the unit active/running with the
//     same MainPID; Result stays success (a failed reload is not a failed
//     unit).
//   - SIGHUP by hand ("systemctl kill -s HUP", or kill -HUP): healgate
//     validates it itself, logs file:line, and keeps the old config.
//
// Either way no request fails, the old config (the short route timeout:
// 504) stays in force, and a later valid reload applies.
func TestReloadInvalidConfigKeepsRunning(t *testing.T) {
	v := newService(t)
	_, upstream := dsemutest.Start(t, dsemu.Options{Name: "ds"})
	listen, admin := loopback(t), loopback(t)
	extra := "health: {interval: 1s, timeout: 500ms}\n"
	v.configure(t, healgateConfig(listen, admin, upstream, extra+shortRoute), "")
	v.systemctl(t, "start", "healgate.service")
	pid, restarts := v.showInt(t, "MainPID"), v.showInt(t, "NRestarts")

	l := startLoad(t, "http://"+listen+"/index.html", 2, false)
	l.waitFor(t, 50)
	bad := healgateConfig(listen, admin, upstream, extra+longRoute+"timeouts: {read: 30}\n")
	line := 0
	for i, s := range strings.Split(bad, "\n") {
		if s == "timeouts: {read: 30}" {
			line = i + 1
		}
	}
	where := fmt.Sprintf("%s:%d: timeouts.read", serviceConfigPath, line)
	v.writeConfig(t, bad)

	// stillUp checks that the unit and the old config are untouched.
	stillUp := func(t *testing.T) {
		t.Helper()
		for prop, want := range map[string]string{"ActiveState": "active", "SubState": "running", "Result": "success"} {
			if got := v.show(t, prop); got != want {
				t.Errorf("%s=%q, want %q", prop, got, want)
			}
		}
		if got := v.showInt(t, "MainPID"); got != pid {
			t.Errorf("MainPID %d -> %d", pid, got)
		}
		if got := v.showInt(t, "NRestarts"); got != restarts {
			t.Errorf("NRestarts %d -> %d", restarts, got)
		}
		expectRouteTimeout(t, listen, true) // the old, short timeout
		l.waitFor(t, 50)
	}

	t.Run("SystemctlReload", func(t *testing.T) {
		since := time.Now()
		out, err := v.s.Systemctl("reload", "healgate.service")
		t.Logf("systemctl reload with an invalid config: %v", err)
		if err == nil {
			t.Errorf("systemctl reload succeeded with an invalid config: %q", out)
		} else if !strings.Contains(out, "Job for healgate.service failed.") {
			t.Errorf("systemctl reload failed, but not as a failed reload job: %q", out)
		}
		t.Logf("StatusText: %q", v.show(t, "StatusText"))
		stillUp(t)
		logged := v.journalSince(t, since)
		if !strings.Contains(logged, "healgate reload: the new config is invalid") || !strings.Contains(logged, where) {
			t.Errorf("the journal does not report the invalid config with %s:\n%s", where, logged)
		}
		if !strings.Contains(logged, "Reload failed for healgate.service") {
			t.Errorf("systemd did not log the failed reload:\n%s", logged)
		}
		if strings.Contains(logged, "reload: new config applied") || strings.Contains(logged, "Reloaded healgate.service") {
			t.Errorf("the journal says the invalid config was applied:\n%s", logged)
		}
	})

	t.Run("SIGHUP", func(t *testing.T) {
		since := time.Now()
		if err := v.s.Kill("healgate.service", "SIGHUP"); err != nil {
			t.Fatal(err)
		}
		var logged string
		testproc.PollUntil(t, 10*time.Second, "healgate logging the refused reload", func() bool {
			logged = v.journalSince(t, since)
			return strings.Contains(logged, `msg="reload: the new config is invalid`)
		})
		if !strings.Contains(logged, where) {
			t.Errorf("healgate's log does not name %s:\n%s", where, logged)
		}
		// healgate sent RELOADING=1 and READY=1 around the refusal.
		testproc.PollUntil(t, 10*time.Second, "healgate.service active again", func() bool { return v.show(t, "ActiveState") == "active" })
		t.Logf("StatusText: %q", v.show(t, "StatusText"))
		stillUp(t)
	})

	// The operator fixes the file: the next reload applies it.
	v.writeConfig(t, healgateConfig(listen, admin, upstream, extra+longRoute))
	v.systemctl(t, "reload", "healgate.service")
	expectRouteTimeout(t, listen, false)
	l.report(t, 100)
}

// TestRestartUnderLoadWithSocketActivation: healgate.socket and
// healgate-admin.socket hold the listening sockets (ports moved to free
// ones by drop-ins) and healgate takes them by name (listen: systemd:proxy,
// admin.listen: systemd:admin). Clients send a steady load through nginx,
// which opens a connection to healgate per request, while "systemctl
// restart healgate" runs several times: connections made while no healgate
// runs wait in the socket's backlog for the next one, so no request fails.
func TestRestartUnderLoadWithSocketActivation(t *testing.T) {
	v := newService(t)
	_, upstream := dsemutest.Start(t, dsemu.Options{Name: "ds"})
	listen, admin := loopback(t), loopback(t)
	v.configure(t, healgateConfig("systemd:proxy", "systemd:admin", upstream, "health: {interval: 1s, timeout: 500ms}\n"), "")
	dropIn(t, v.s, "healgate.socket", "[Socket]\nListenStream=\nListenStream="+listen+"\n")
	dropIn(t, v.s, "healgate-admin.socket", "[Socket]\nListenStream=\nListenStream="+admin+"\n")
	v.systemctl(t, "start", "healgate.socket", "healgate-admin.socket")
	v.systemctl(t, "start", "healgate.service")
	expectStatus(t, "http://"+admin+"/healthz", http.StatusOK)
	if names := listenFDNames(t, v.s); names != "proxy:admin" && names != "admin:proxy" {
		t.Fatalf("LISTEN_FDNAMES=%q, want proxy and admin", names)
	}
	n := testnginx.Start(t, lookTool(t, "nginx", "nginx"), listen, 120*time.Second)

	l := startLoad(t, n.URL("/index.html"), 4, true)
	l.waitFor(t, 200)
	// The first start and these restarts stay within systemd's default
	// start limit (StartLimitBurst=5 in 10 s), which the unit keeps.
	const restarts = 4
	for i := range restarts {
		pid := v.showInt(t, "MainPID")
		begin := time.Now()
		v.systemctl(t, "restart", "healgate.service")
		took := time.Since(begin)
		after := v.showInt(t, "MainPID")
		t.Logf("restart %d: MainPID %d -> %d, systemctl restart took %v", i+1, pid, after, took.Round(time.Millisecond))
		if after == pid || after <= 1 {
			t.Errorf("restart %d: MainPID %d -> %d: no new process", i+1, pid, after)
		}
		l.waitFor(t, 200)
	}
	for _, u := range []string{"healgate.socket", "healgate-admin.socket"} {
		if st, _ := v.s.Show(u, "ActiveState"); st != "active" {
			t.Errorf("%s is %q after the restarts, want active", u, st)
		}
	}
	l.report(t, 500)
}

// TestWatchdogRestartsWedgedHealgate: with WatchdogSec=2s (a drop-in), the
// running healgate pings systemd's watchdog (WatchdogTimestamp moves on and
// the service outlives WatchdogSec); SIGSTOP freezes it, so the pings stop,
// and systemd aborts it (Result=watchdog) and starts a new one (Restart=
// on-failure, RestartSec=2s as packaged) that serves again, all within
// WatchdogSec + RestartSec + a margin for the stop and the start.
func TestWatchdogRestartsWedgedHealgate(t *testing.T) {
	v := newService(t)
	_, upstream := dsemutest.Start(t, dsemu.Options{Name: "ds"})
	listen, admin := loopback(t), loopback(t)
	const watchdogSec = 2 * time.Second
	v.configure(t, healgateConfig(listen, admin, upstream, "health: {interval: 500ms, timeout: 250ms}\n"),
		fmt.Sprintf("WatchdogSec=%dms\n", watchdogSec.Milliseconds()))
	v.systemctl(t, "start", "healgate.service")
	pid, restarts := v.showInt(t, "MainPID"), v.showInt(t, "NRestarts")
	if got := v.show(t, "WatchdogUSec"); got != "2s" {
		t.Fatalf("WatchdogUSec=%q, want 2s from the drop-in", got)
	}

	// Alive: the pings move WatchdogTimestamp, and the service outlives
	// two watchdog periods.
	started := time.Now()
	first := v.showInt(t, "WatchdogTimestampMonotonic")
	testproc.PollUntil(t, 4*watchdogSec, "a watchdog ping", func() bool { return v.showInt(t, "WatchdogTimestampMonotonic") != first })
	testproc.PollUntil(t, 4*watchdogSec, "healgate alive for two watchdog periods", func() bool {
		if got := v.showInt(t, "MainPID"); got != pid {
			t.Fatalf("MainPID %d -> %d while healthy: the watchdog fired\n%s", pid, got, journal(v.s))
		}
		return time.Since(started) > 2*watchdogSec
	})

	stopped := time.Now()
	if err := v.s.Kill("healgate.service", "SIGSTOP"); err != nil {
		t.Fatal(err)
	}
	restartSec := 2 * time.Second // packaged RestartSec
	bound := watchdogSec + restartSec + 10*time.Second
	var newPID int64
	testproc.PollUntil(t, bound, "a new healgate after the watchdog fired", func() bool {
		newPID = v.showInt(t, "MainPID")
		return newPID != pid && newPID > 1 && v.show(t, "ActiveState") == "active"
	})
	took := time.Since(stopped)
	t.Logf("SIGSTOP to a new running healgate: %v (bound %v); MainPID %d -> %d", took.Round(time.Millisecond), bound, pid, newPID)
	if took < watchdogSec-time.Second {
		t.Errorf("healgate was replaced %v after SIGSTOP, before the watchdog (%v) could fire", took, watchdogSec)
	}
	if got := v.showInt(t, "NRestarts"); got != restarts+1 {
		t.Errorf("NRestarts %d -> %d, want one restart", restarts, got)
	}
	logged := v.journalSince(t, stopped)
	for _, want := range []string{"Watchdog timeout", "Failed with result 'watchdog'"} {
		if !strings.Contains(logged, want) {
			t.Errorf("the journal lacks %q:\n%s", want, logged)
		}
	}
	expectStatus(t, "http://"+admin+"/healthz", http.StatusOK)
	resp := get(t, "http://"+listen+"/index.html")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the restarted healgate answers %s", resp.Status)
	}
}
