package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/healgate/healgate/config"
	"github.com/healgate/healgate/proxy"
)

// runProxy is "healgate run": the main job. SIGHUP reloads the config file.
func runProxy(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfigPath, "config `file`")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2, err: err}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return &exitError{code: 1}
	}
	log := newLogger(cfg.Log, stderr, os.Getenv)
	logWarnings(log, cfg)

	// One buffered slot: SIGHUPs that arrive during a reload fold into one
	// more reload.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	return serve(ctx, cfg, log, serveOptions{
		reload: hup,
		load:   func() (*config.Config, error) { return loadConfig(*path) },
		notify: systemdNotifier{},
	})
}

// listeners are the sockets serve runs on; tests and the demo pass their
// own to learn the chosen ports.
type listeners struct {
	proxy, admin net.Listener
}

// serveOptions are serve's collaborators; every field may be zero.
type serveOptions struct {
	// listeners, when set, are used instead of binding cfg.Listen and
	// cfg.Admin.Listen.
	listeners *listeners
	// reload asks for the config to be loaded again with load (SIGHUP).
	reload <-chan os.Signal
	load   func() (*config.Config, error)
	// notify tells the service manager what happens; nil tells no one.
	notify notifier
}

// serve runs the proxy, the healer and the admin listener for cfg until ctx
// ends, then shuts them down gracefully. A value on opts.reload applies a
// config from opts.load without dropping a request (see reloadConfig).
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, opts serveOptions) error {
	if opts.notify == nil {
		opts.notify = nopNotifier{}
	}
	base := prometheus.NewRegistry()
	base.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	var cur current
	gen, err := newGeneration(cfg, log, &cur, base)
	if err != nil {
		return err
	}

	ls := opts.listeners
	if ls == nil {
		if ls, err = listen(ctx, cfg); err != nil {
			return err
		}
	}

	// Generations run their background loops under bg, which outlives ctx
	// until the servers have drained.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	gen.start(bg)
	cur.store(gen)
	defer func() { cur.load().stop() }()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return proxy.Serve(gctx, ls.proxy, proxyHandler{&cur}, cfg.Server, log) })
	if ls.admin != nil {
		g.Go(func() error { return serveAdmin(gctx, ls.admin, adminHandler{&cur}) })
	}
	log.Info("healgate started", "version", version, "listen", ls.proxy.Addr().String(),
		"admin", addrOf(ls.admin), "upstreams", len(cfg.Upstreams))

	// READY=1 only once the listeners are bound and every upstream was
	// probed once, bounded so a hung probe cannot hold the start forever.
	select {
	case <-gen.healer.FirstRound():
	case <-time.After(2 * cfg.Health.Timeout):
	case <-gctx.Done():
	}
	opts.notify.ready(statusLine(cur.load()))

	g.Go(func() error {
		watchdog(gctx, &cur, ls.admin, opts.notify, log)
		return nil
	})
	for done := false; !done; {
		select {
		case <-gctx.Done():
			done = true
		case <-opts.reload:
			reloadConfig(bg, &cur, opts, log, base)
		}
	}
	opts.notify.stopping()
	log.Info("healgate stopping")
	err = g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil
	}
	return err
}

// listen binds cfg.Listen and cfg.Admin.Listen. Sockets passed by systemd
// socket activation ("systemd:NAME") are taken once, by name; passed sockets
// that neither claims are closed.
func listen(ctx context.Context, cfg *config.Config) (*listeners, error) {
	var passed map[string][]net.Listener
	if strings.HasPrefix(cfg.Listen, "systemd:") || strings.HasPrefix(cfg.Admin.Listen, "systemd:") {
		var err error
		if passed, err = activation.ListenersWithNames(); err != nil {
			return nil, fmt.Errorf("socket activation: %w", err)
		}
	}
	ls := &listeners{}
	var err error
	if ls.proxy, err = proxy.Listen(ctx, cfg.Listen, passed); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if cfg.Admin.Listen != "" {
		if ls.admin, err = proxy.Listen(ctx, cfg.Admin.Listen, passed); err != nil {
			ls.proxy.Close()
			return nil, fmt.Errorf("admin.listen: %w", err)
		}
	}
	for _, lns := range passed {
		for _, ln := range lns {
			if ln != ls.proxy && ln != ls.admin {
				ln.Close()
			}
		}
	}
	return ls, nil
}

// reloadConfig loads the config again and, if it is valid, builds a new
// generation, stops the old one's healer and hands its knowledge to the new
// one (Healer.Inherit), starts the new generation and swaps it in: requests
// in flight finish on the old proxy, new ones go to the new. Circuit
// breakers and metrics start afresh (a counter reset, to Prometheus). An
// invalid config keeps the old generation and says why. Changes to listen, admin.listen
// and server need a restart and are not applied (a warning says so).
func reloadConfig(bg context.Context, cur *current, opts serveOptions, log *slog.Logger, base *prometheus.Registry) {
	if opts.load == nil {
		return
	}
	opts.notify.reloading()
	old := cur.load()
	var failed error
	defer func() {
		status := statusLine(cur.load())
		if failed != nil {
			status = "reload refused (" + firstLine(failed.Error()) + "), running on the previous config; " + status
		}
		opts.notify.ready(status)
	}()
	cfg, err := opts.load()
	if err != nil {
		failed = err
		log.Error("reload: the new config is invalid; still running on the previous one", "err", err)
		return
	}
	logWarnings(log, cfg)
	for _, k := range restartOnly(old.cfg, cfg) {
		log.Warn("reload: this setting needs a restart; keeping the running value", "key", k)
	}
	keepRestartOnly(old.cfg, cfg)
	gen, err := newGeneration(cfg, log, cur, base)
	if err != nil {
		failed = err
		log.Error("reload: cannot apply the new config; still running on the previous one", "err", err)
		return
	}
	// The old healer stops first and hands what it knows to the new one:
	// which upstreams are down, the restart budget spent, a gave-up state.
	// Until the swap, the old proxy serves on the old healer's last word.
	old.stopLoops()
	gen.healer.Inherit(old.healer)
	gen.start(bg)
	cur.store(gen)
	old.stop()
	log.Info("reload: new config applied", "upstreams", len(cfg.Upstreams))
}

// restartOnly lists the keys that differ between a and b and that a reload
// cannot apply: the listeners are bound once, and the server's settings
// belong to them.
func restartOnly(a, b *config.Config) []string {
	var keys []string
	if a.Listen != b.Listen {
		keys = append(keys, "listen")
	}
	if a.Admin.Listen != b.Admin.Listen {
		keys = append(keys, "admin.listen")
	}
	if a.Server != b.Server {
		keys = append(keys, "server")
	}
	return keys
}

// keepRestartOnly copies the restart-only settings of running into next.
func keepRestartOnly(running, next *config.Config) {
	next.Listen = running.Listen
	next.Admin.Listen = running.Admin.Listen
	next.Server = running.Server
}

// serveAdmin serves h on ln until ctx ends.
func serveAdmin(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("admin: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// readToken reads the admin bearer token from path ("" for none), trimmed
// of surrounding white space. An empty file is an error.
func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin.token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("admin.token_file: %s is empty", path)
	}
	return tok, nil
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
