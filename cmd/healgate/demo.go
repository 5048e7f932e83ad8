package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/healgate/healgate/admin"
	"github.com/healgate/healgate/config"
	"github.com/healgate/healgate/internal/dsemu"
)

// runDemo is "healgate demo": a self-contained tour of the data path on two
// emulated Document Servers (a primary and a backup), with healgate in front,
// printing what happens in plain words. It needs no Document Server and no
// network beyond loopback, and ends within -duration.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	duration := fs.Duration("duration", 60*time.Second, "stop the tour after this long")
	verbose := fs.Bool("v", false, "also print healgate's own log (JSON, on stderr)")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2, err: err}
	}
	if *duration <= 0 {
		return &exitError{code: 2, err: fmt.Errorf("-duration must be positive")}
	}
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()

	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	d := &demo{out: stdout, log: log, start: time.Now()}
	err := d.run(ctx)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		fmt.Fprintf(stdout, "\nThe tour stopped at -duration %s.\n", *duration)
		return nil
	}
	return err
}

// demo holds the tour's parts: two emulators and healgate between them and
// the client.
type demo struct {
	out     io.Writer
	log     *slog.Logger
	primary *emulator
	backup  *emulator
	client  *http.Client
	base    string // healgate's proxy URL
	admin   string // healgate's admin URL
	step    int
	start   time.Time
	fall    int // health.fall, for the narration
}

// emulator is one in-process dsemu on a fixed loopback address, which can be
// killed and started again on the same port.
type emulator struct {
	name   string
	addr   string
	srv    *dsemu.Server
	cancel context.CancelFunc
	done   chan error
}

func startEmulator(ctx context.Context, name, addr string, mode dsemu.Kind) (*emulator, error) {
	srv := dsemu.New(dsemu.Options{Name: name, Mode: dsemu.Mode{Kind: mode}})
	ln, err := srv.Listen(ctx, addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e := &emulator{name: name, addr: ln.Addr().String(), srv: srv, cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- srv.Serve(ctx, ln) }()
	return e, nil
}

// kill stops the emulator like a dead process: the port refuses.
func (e *emulator) kill() {
	if e.srv == nil {
		return
	}
	e.cancel()
	<-e.done
	e.srv = nil
}

// revive starts a fresh emulator on the same port.
func (e *emulator) revive(ctx context.Context, mode dsemu.Kind) error {
	e.kill()
	n, err := startEmulator(ctx, e.name, e.addr, mode)
	if err != nil {
		return err
	}
	*e = *n
	return nil
}

func (d *demo) run(ctx context.Context) (err error) {
	if d.primary, err = startEmulator(ctx, "primary", "127.0.0.1:0", dsemu.KindOK); err != nil {
		return fmt.Errorf("start primary emulator: %w", err)
	}
	defer d.primary.kill()
	if d.backup, err = startEmulator(ctx, "backup", "127.0.0.1:0", dsemu.KindOK); err != nil {
		return fmt.Errorf("start backup emulator: %w", err)
	}
	defer d.backup.kill()

	cfg := demoConfig(d.primary.addr, d.backup.addr)
	d.fall = cfg.Health.Fall
	var ls listeners
	if ls.proxy, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return err
	}
	if ls.admin, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		ls.proxy.Close()
		return err
	}
	d.base = "http://" + ls.proxy.Addr().String()
	d.admin = "http://" + ls.admin.Addr().String()
	cfg.Listen, cfg.Admin.Listen = ls.proxy.Addr().String(), ls.admin.Addr().String()

	hctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	served := make(chan error, 1)
	go func() { served <- serve(hctx, cfg, d.log, serveOptions{listeners: &ls}) }()
	defer func() {
		stop()
		if serr := <-served; err == nil {
			err = serr
		}
	}()
	d.client = &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4},
	}
	defer d.client.CloseIdleConnections()
	if err := d.waitStarted(ctx, served); err != nil {
		return err
	}

	d.printf("healgate demo: two emulated Document Servers, primary on %s and backup on %s,\n", d.primary.addr, d.backup.addr)
	d.printf("with healgate on %s in front of them (admin on %s).\n", ls.proxy.Addr(), ls.admin.Addr())
	d.printf("Demo settings: response_header timeout %s, breaker opens after %d failures in a row and\n",
		cfg.Timeouts.ResponseHeader, cfg.Breaker.ConsecutiveFailures)
	d.printf("stays open %s, next upstream on %s.\n", cfg.Breaker.OpenTimeout, strings.Join(cfg.NextUpstream.On, ", "))

	d.printf("Healing runs in Kubernetes mode (action none): when the primary must be restarted,\n")
	d.printf("healgate fails /healthz/upstream and the kubelet restarts the container; here the demo\n")
	d.printf("plays the kubelet.\n")

	for _, phase := range []func(context.Context) error{
		d.normal, d.primaryDies, d.primaryHangs, d.everythingDown, d.recovery,
	} {
		if err := phase(ctx); err != nil {
			return err
		}
	}
	d.printf("\nEvents healgate recorded (GET /status; also logged, counted, and sent to webhooks):\n")
	st, err := d.status(ctx)
	if err != nil {
		return err
	}
	for _, t := range st.Healing.Targets {
		for _, e := range t.Events {
			d.printf("   +%-6s %-15s %s\n", e.Time.Sub(d.start).Round(100*time.Millisecond), e.Kind, e.Reason)
		}
	}
	d.printf("\nThe tour is over: every failure above was answered with a status, an X-Healgate-Error\n")
	d.printf("class and a request ID, and no GET failed while some upstream could serve it.\n")
	return nil
}

// waitStarted waits until healgate's admin answers /healthz, or returns
// serve's error if it ended first.
func (d *demo) waitStarted(ctx context.Context, served chan error) error {
	for range 100 {
		select {
		case err := <-served:
			served <- err // for the deferred wait
			return fmt.Errorf("healgate stopped: %w", err)
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.admin+"/healthz", nil)
		if err != nil {
			return err
		}
		if resp, err := d.client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("healgate did not start")
}

// demoConfig is the default config with timeouts scaled down so that the
// tour takes seconds.
func demoConfig(primary, backup string) *config.Config {
	cfg := config.Default()
	cfg.Upstreams = []config.Upstream{
		{Name: "primary", URL: "http://" + primary},
		{Name: "backup", URL: "http://" + backup, Backup: true},
	}
	cfg.Timeouts.Connect = time.Second
	cfg.Timeouts.ResponseHeader = time.Second
	cfg.NextUpstream.Timeout = 5 * time.Second
	cfg.Breaker.ConsecutiveFailures = 3
	cfg.Breaker.OpenTimeout = 3 * time.Second
	cfg.Server.ShutdownTimeout = 2 * time.Second
	cfg.Healing.Action = config.ActionNone
	cfg.Healing.Units = nil // Kubernetes: the kubelet restarts the container
	cfg.Health.Interval = 500 * time.Millisecond
	cfg.Health.Timeout = 400 * time.Millisecond
	cfg.Health.Fall = 2
	cfg.Healing.StartPeriod = time.Second
	cfg.Healing.RecoveryTimeout = 20 * time.Second
	cfg.Healing.HoldTimeout = 2 * time.Second
	cfg.Healing.Backoff.Initial = time.Second
	cfg.Normalize()
	return cfg
}

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

func (d *demo) heading(s string) {
	d.step++
	d.printf("\n%d. %s\n", d.step, s)
}

// result is what the client saw of one request.
type result struct {
	status     int
	from       string // X-Dsemu-Name: which emulator answered
	class      string // X-Healgate-Error
	retryAfter string
	body       string
	took       time.Duration
}

func (r result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d", r.status)
	if r.from != "" {
		fmt.Fprintf(&b, " from %s", r.from)
	}
	if r.class != "" {
		fmt.Fprintf(&b, ", X-Healgate-Error: %s", r.class)
	}
	if r.retryAfter != "" {
		fmt.Fprintf(&b, ", Retry-After: %ss", r.retryAfter)
	}
	fmt.Fprintf(&b, " in %s", r.took.Round(10*time.Microsecond))
	return b.String()
}

func (d *demo) do(ctx context.Context, method, path, body string) (result, error) {
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, strings.NewReader(body))
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		return result{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return result{
		status:     resp.StatusCode,
		from:       resp.Header.Get("X-Dsemu-Name"),
		class:      resp.Header.Get("X-Healgate-Error"),
		retryAfter: resp.Header.Get("Retry-After"),
		body:       strings.TrimSpace(string(b)),
		took:       time.Since(start),
	}, nil
}

// burst sends n GETs and summarises who answered.
func (d *demo) burst(ctx context.Context, n int, path string) (map[string]int, int, error) {
	from, failed := map[string]int{}, 0
	for range n {
		r, err := d.do(ctx, http.MethodGet, path, "")
		if err != nil {
			return nil, 0, err
		}
		if r.status != http.StatusOK {
			failed++
			continue
		}
		from[r.from]++
	}
	return from, failed, nil
}

func (d *demo) status(ctx context.Context) (admin.Status, error) {
	var s admin.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.admin+"/status", nil)
	if err != nil {
		return s, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("decode /status: %w", err)
	}
	if s.Healing == nil || len(s.Healing.Targets) == 0 {
		return s, errors.New("/status has no healing target")
	}
	return s, nil
}

// breakers summarises the breakers, "primary closed, backup open".
func (d *demo) breakers(ctx context.Context) string {
	s, err := d.status(ctx)
	if err != nil {
		return "?"
	}
	parts := make([]string, 0, len(s.Upstreams))
	for _, u := range s.Upstreams {
		parts = append(parts, u.Name+" "+u.Breaker)
	}
	return strings.Join(parts, ", ")
}

// poll calls cond every 100ms until it reports true, at most for limit.
func (d *demo) poll(ctx context.Context, limit time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("waited %s for %s", limit, what)
}

// restartDue reports what /healthz/upstream (the kubelet's livenessProbe) says.
func (d *demo) restartDue(ctx context.Context) (bool, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.admin+"/healthz/upstream", nil)
	if err != nil {
		return false, "", err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return false, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	return resp.StatusCode == http.StatusServiceUnavailable, strings.TrimSpace(string(b)), nil
}

// playKubelet waits for /healthz/upstream to fail, then restarts the
// primary in mode ok, and waits for the healer to see it recover.
func (d *demo) playKubelet(ctx context.Context) error {
	var body string
	err := d.poll(ctx, 15*time.Second, "/healthz/upstream to fail", func() (bool, error) {
		due, b, err := d.restartDue(ctx)
		body = b
		return due, err
	})
	if err != nil {
		return err
	}
	st, err := d.status(ctx)
	if err != nil {
		return err
	}
	m := st.Healing.Targets[0].Machine
	d.printf("   healgate's health checks failed %d times in a row: GET /healthz/upstream now answers\n", d.fall)
	d.printf("   503 %q.\n   The target is %s; why: %s.\n", body, m.State, m.Reason)
	d.printf("   The kubelet restarts the primary's container.\n")
	if err := d.primary.revive(ctx, dsemu.KindOK); err != nil {
		return err
	}
	err = d.poll(ctx, 20*time.Second, "the primary to recover", func() (bool, error) {
		st, err := d.status(ctx)
		if err != nil {
			return false, err
		}
		m = st.Healing.Targets[0].Machine
		return m.State.String() == "healthy", nil
	})
	if err != nil {
		return err
	}
	d.printf("   healgate verified the recovery (%s) and /healthz/upstream answers 200 again.\n", m.Reason)
	return nil
}

func (d *demo) normal(ctx context.Context) error {
	d.heading("Normal traffic")
	from, failed, err := d.burst(ctx, 10, "/healthcheck")
	if err != nil {
		return err
	}
	d.printf("   10 × GET /healthcheck → %d answered by the primary, %d by the backup, %d failed.\n",
		from["primary"], from["backup"], failed)
	r, err := d.do(ctx, http.MethodPost, "/ConvertService.ashx", `{"async":false,"filetype":"docx","outputtype":"pdf"}`)
	if err != nil {
		return err
	}
	d.printf("   POST /ConvertService.ashx → %s: conversions use the \"conversion\" route (up to 1800 s).\n", r)
	return nil
}

func (d *demo) primaryDies(ctx context.Context) error {
	d.heading("The primary dies: its process is gone and its port refuses connections")
	d.primary.kill()
	from, failed, err := d.burst(ctx, 10, "/healthcheck")
	if err != nil {
		return err
	}
	d.printf("   10 × GET /healthcheck → %d answered by the backup, %d failed: the primary refused\n",
		from["backup"], failed)
	d.printf("   each connection, and healgate passed the request to the next upstream at once.\n")
	r, err := d.do(ctx, http.MethodPost, "/downloadas/demo-key", strings.Repeat("x", 1024))
	if err != nil {
		return err
	}
	d.printf("   POST /downloadas/demo-key → %s: a refused connection means the\n", r)
	d.printf("   primary never saw the POST, so sending it to the backup was safe. The backup counted it\n")
	if n := d.backup.srv.Stats().Requests["POST /downloadas/demo-key"]; n == 1 {
		d.printf("   once: the POST was not duplicated.\n")
	} else {
		d.printf("   %d times.\n", n)
	}
	d.printf("   Breakers: %s.\n", d.breakers(ctx))
	return d.playKubelet(ctx)
}

func (d *demo) primaryHangs(ctx context.Context) error {
	d.heading("The primary hangs: it accepts connections and never answers (a stuck event loop)")
	// Let the breaker close again: requests go to the primary once it is
	// ready and its breaker lets them through.
	err := d.poll(ctx, 15*time.Second, "the primary to serve again", func() (bool, error) {
		r, err := d.do(ctx, http.MethodGet, "/healthcheck", "")
		return r.from == "primary" && strings.Contains(d.breakers(ctx), "primary closed"), err
	})
	if err != nil {
		return err
	}
	d.primary.srv.SetMode(dsemu.Mode{Kind: dsemu.KindHang})
	r, err := d.do(ctx, http.MethodPost, "/downloadas/demo-key", strings.Repeat("x", 1024))
	if err != nil {
		return err
	}
	d.printf("   POST /downloadas/demo-key → %s\n", r)
	if r.status == http.StatusGatewayTimeout {
		d.printf("   The POST's bytes reached the primary, which may have acted on them, so healgate does\n")
		d.printf("   not replay it on the backup. It says why:\n     %s\n", r.body)
	}
	for i := range 4 {
		r, err := d.do(ctx, http.MethodGet, "/healthcheck", "")
		if err != nil {
			return err
		}
		d.printf("   GET /healthcheck #%d → %s\n", i+1, r)
	}
	d.printf("   A GET that reaches the hung primary waits out its response_header timeout and is\n")
	d.printf("   passed to the backup; once the primary's breaker opens or its health checks fail,\n")
	d.printf("   requests skip it at once. Breakers: %s.\n", d.breakers(ctx))
	return nil
}

func (d *demo) everythingDown(ctx context.Context) error {
	d.heading("The backup dies too, while the primary is still hung")
	d.backup.kill()
	seen := map[string]bool{}
	for i := range 5 {
		r, err := d.do(ctx, http.MethodGet, "/healthcheck", "")
		if err != nil {
			return err
		}
		d.printf("   GET /healthcheck #%d → %s\n", i+1, r)
		seen[r.class] = true
	}
	d.printf("   Nothing can serve, and each answer names its cause:\n")
	if seen["upstream_refused"] {
		d.printf("   - upstream_refused: the backup's port refused the connection (502), after healgate\n")
		d.printf("     gave the healer a moment (up to 250 ms) to start a heal it could wait for;\n")
	}
	if seen["upstream_timeout"] {
		d.printf("   - upstream_timeout: the hung primary did not answer in time (504);\n")
	}
	if seen["breaker_open"] {
		d.printf("   - breaker_open: every breaker is open, so healgate answers at once (503 + Retry-After);\n")
	}
	if seen["healing"] {
		d.printf("   - healing: the primary is being healed; the request waited hold_timeout for it,\n")
		d.printf("     then got 503 + Retry-After rather than a bare 502.\n")
	}
	return d.playKubelet(ctx)
}

func (d *demo) recovery(ctx context.Context) error {
	d.heading("The backup comes back; the primary's breaker lets a trial request through and closes")
	if err := d.backup.revive(ctx, dsemu.KindOK); err != nil {
		return err
	}
	err := d.poll(ctx, 15*time.Second, "the primary to serve again", func() (bool, error) {
		r, err := d.do(ctx, http.MethodGet, "/healthcheck", "")
		return r.status == http.StatusOK && r.from == "primary", err
	})
	if err != nil {
		return err
	}
	from, failed, err := d.burst(ctx, 10, "/healthcheck")
	if err != nil {
		return err
	}
	d.printf("   10 × GET /healthcheck → %d answered by the primary, %d by the backup, %d failed.\n",
		from["primary"], from["backup"], failed)
	d.printf("   Breakers: %s.\n", d.breakers(ctx))
	return nil
}
