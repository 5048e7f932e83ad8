package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/healgate/healgate/admin"
	"github.com/healgate/healgate/config"
	"github.com/healgate/healgate/healing"
	"github.com/healgate/healgate/proxy"
)

// generation is everything built from one config: the proxy, the healer,
// the notifier, the admin handler and their metrics. A reload builds a new
// generation and swaps it in; the listeners stay.
type generation struct {
	cfg      *config.Config
	proxy    *proxy.Proxy
	healer   *healing.Healer
	notifier *healing.Notifier // nil without webhooks
	admin    *admin.Handler
	reg      *prometheus.Registry // this generation's metrics

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newGeneration builds a generation for cfg. Its metrics go to a registry
// of its own; /metrics serves base and the current generation's registry
// (counters restart from zero after a reload, which Prometheus' rate()
// takes as a counter reset).
func newGeneration(cfg *config.Config, log *slog.Logger, cur *current, base *prometheus.Registry) (*generation, error) {
	gen := &generation{cfg: cfg, reg: prometheus.NewRegistry()}
	var err error
	if len(cfg.Notify.Webhooks) > 0 {
		host, _ := os.Hostname()
		gen.notifier, err = healing.NewNotifier(cfg.Notify, healing.NotifierOptions{Logger: log, Registerer: gen.reg, Host: host})
		if err != nil {
			return nil, err
		}
	}
	hopts := healing.Options{Logger: log, Registerer: gen.reg}
	if gen.notifier != nil {
		hopts.Notify = gen.notifier
	}
	if gen.healer, err = healing.New(cfg, hopts); err != nil {
		return nil, err
	}
	gen.proxy, err = proxy.New(cfg, proxy.Options{Logger: log, Registerer: gen.reg, Health: gen.healer, Observer: passive{gen.healer}})
	if err != nil {
		return nil, err
	}
	token, err := readToken(cfg.Admin.TokenFile)
	if err != nil {
		return nil, err
	}
	gen.admin, err = admin.New(admin.Options{
		Proxy:    gen.proxy,
		Healer:   gen.healer,
		Token:    token,
		Gatherer: prometheus.Gatherers{base, currentGatherer{cur}},
		Version:  version,
	})
	if err != nil {
		return nil, err
	}
	return gen, nil
}

// start runs the generation's background loops (healer, notifier) under ctx
// until stop.
func (g *generation) start(ctx context.Context) {
	ctx, g.cancel = context.WithCancel(ctx)
	g.wg.Go(func() { _ = g.healer.Run(ctx) })
	if g.notifier != nil {
		g.wg.Go(func() { _ = g.notifier.Run(ctx) })
	}
}

// stop ends the background loops and waits for them, then closes the
// proxy's idle upstream connections. Requests still in flight on this
// generation's proxy finish on their own.
func (g *generation) stop() {
	g.stopLoops()
	g.proxy.CloseIdleConnections()
}

// stopLoops ends the background loops and waits for them.
func (g *generation) stopLoops() {
	if g.cancel != nil {
		g.cancel()
	}
	g.wg.Wait()
}

// current holds the generation in service.
type current struct{ p atomic.Pointer[generation] }

func (c *current) load() *generation   { return c.p.Load() }
func (c *current) store(g *generation) { c.p.Store(g) }

// proxyHandler serves each request with the current generation's proxy.
type proxyHandler struct{ cur *current }

func (h proxyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.cur.load().proxy.ServeHTTP(w, r)
}

// adminHandler serves each request with the current generation's admin.
type adminHandler struct{ cur *current }

func (h adminHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.cur.load().admin.ServeHTTP(w, r)
}

// currentGatherer gathers the current generation's metrics.
type currentGatherer struct{ cur *current }

func (c currentGatherer) Gather() ([]*dto.MetricFamily, error) { return c.cur.load().reg.Gather() }

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

// statusLine is the one-line summary for systemd's STATUS=.
func statusLine(g *generation) string {
	ups := g.proxy.Upstreams()
	ready := 0
	for _, u := range ups {
		if u.Ready && u.Breaker != "open" {
			ready++
		}
	}
	s := fmt.Sprintf("%d/%d upstreams usable", ready, len(ups))
	for _, t := range g.healer.Status().Targets {
		s += fmt.Sprintf("; %s %s", t.Name, t.Machine.State)
		if t.Machine.State != healing.StateHealthy && t.Machine.Reason != "" {
			s += " (" + t.Machine.Reason + ")"
		}
	}
	return s
}
