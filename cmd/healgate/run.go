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
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/healgate/healgate/admin"
	"github.com/healgate/healgate/config"
	"github.com/healgate/healgate/healing"
	"github.com/healgate/healgate/proxy"
)

// runProxy is "healgate run": the main job.
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
	return serve(ctx, cfg, log, nil)
}

// listeners are the sockets serve runs on; tests and the demo pass their
// own to learn the chosen ports.
type listeners struct {
	proxy, admin net.Listener
}

// serve runs the proxy and the admin listener for cfg until ctx ends, then
// shuts both down gracefully. With ls nil it binds cfg.Listen and
// cfg.Admin.Listen itself.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, ls *listeners) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	var (
		notifier *healing.Notifier
		err      error
	)
	if len(cfg.Notify.Webhooks) > 0 {
		host, _ := os.Hostname()
		notifier, err = healing.NewNotifier(cfg.Notify, healing.NotifierOptions{Logger: log, Registerer: reg, Host: host})
		if err != nil {
			return err
		}
	}
	hopts := healing.Options{Logger: log, Registerer: reg}
	if notifier != nil {
		hopts.Notify = notifier
	}
	healer, err := healing.New(cfg, hopts)
	if err != nil {
		return err
	}
	p, err := proxy.New(cfg, proxy.Options{Logger: log, Registerer: reg, Health: healer, Observer: passive{healer}})
	if err != nil {
		return err
	}
	token, err := readToken(cfg.Admin.TokenFile)
	if err != nil {
		return err
	}
	adminHandler, err := admin.New(admin.Options{Proxy: p, Healer: healer, Token: token, Gatherer: reg, Version: version})
	if err != nil {
		return err
	}

	if ls == nil {
		ls = &listeners{}
		if ls.proxy, err = proxy.Listen(ctx, cfg.Listen); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		if cfg.Admin.Listen != "" {
			if ls.admin, err = proxy.Listen(ctx, cfg.Admin.Listen); err != nil {
				ls.proxy.Close()
				return fmt.Errorf("admin.listen: %w", err)
			}
		}
	}

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Serve(ctx, ls.proxy) })
	g.Go(func() error { return healer.Run(ctx) })
	if notifier != nil {
		g.Go(func() error { return notifier.Run(ctx) })
	}
	if ls.admin != nil {
		g.Go(func() error { return serveAdmin(ctx, ls.admin, adminHandler) })
	}
	log.Info("healgate started", "version", version, "listen", ls.proxy.Addr().String(),
		"admin", addrOf(ls.admin), "upstreams", len(cfg.Upstreams))
	// READY=1 once the listeners are bound; without NOTIFY_SOCKET this is a no-op.
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		log.Warn("sd_notify", "err", err)
	}
	<-ctx.Done()
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	log.Info("healgate stopping")
	return g.Wait()
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

// passive takes the proxy's passive signals to the healer: connections
// refused or timed out are failed liveness evidence, and so is an opened
// circuit breaker.
type passive struct{ h *healing.Healer }

var (
	_ proxy.Observer        = passive{}
	_ proxy.BreakerObserver = passive{}
)

func (p passive) Observe(o proxy.Outcome) {
	switch o.Class {
	case proxy.ClassRefused, proxy.ClassConnectTimeout:
		p.h.Passive(o.Upstream, healing.PassiveDialError)
	}
}

func (p passive) BreakerChanged(upstream, from, to string) { p.h.BreakerChanged(upstream, from, to) }

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
