// Package admin is healgate's operators' HTTP interface: liveness and
// readiness endpoints for healgate itself, Prometheus metrics, and a status
// page. It sits above the proxy (and, later, the healer): it reads them,
// and they know nothing of it.
//
// Endpoints:
//
//	GET  /healthz                200 while healgate's own process serves (liveness of healgate)
//	GET  /readyz                 200 when some upstream is usable, else 503 (readiness of healgate)
//	GET  /healthz/upstream       200 unless a restart of the upstream is due that healgate does
//	                             not perform (action none): Kubernetes' livenessProbe for the
//	                             Document Server container points here
//	GET  /metrics                Prometheus exposition of the registry given in Options
//	GET  /status                 upstreams, breakers, health checks and healing: an HTML
//	                             page for a browser (Accept: text/html), else JSON (also
//	                             with ?format=json)
//	POST /heal/{target}          restart the target now (bearer token required)
//	POST /heal/{target}/reset    reset a target that gave up (bearer token required)
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/healgate/healgate/healing"
	"github.com/healgate/healgate/proxy"
)

// Proxy is what the admin handler reads from the data path.
type Proxy interface {
	// Ready reports whether some upstream is usable.
	Ready() bool
	// Upstreams reports each upstream's state.
	Upstreams() []proxy.UpstreamStatus
}

// Healer is what the admin handler reads from and asks of the healer;
// *healing.Healer implements it.
type Healer interface {
	// Status is a snapshot for /status.
	Status() healing.Status
	// Heal asks for a restart of target now.
	Heal(ctx context.Context, target, reason string) error
	// Reset resets a target that gave up or is backing off.
	Reset(ctx context.Context, target string) error
	// RestartDue reports whether target needs a restart healgate does not perform.
	RestartDue(target string) bool
	// Targets names the healing targets.
	Targets() []string
}

// Options configures New.
type Options struct {
	// Proxy is the data path whose state is reported. Required.
	Proxy Proxy

	// Healer is reported by /status and driven by /heal. Nil: /status has
	// no healing part, /heal answers 404, /healthz/upstream always 200.
	Healer Healer

	// Token is the bearer token /heal requires (from admin.token_file).
	// Empty: /heal answers 403, since nobody can be authenticated.
	Token string

	// Gatherer is exposed at /metrics. Nil disables /metrics (404).
	Gatherer prometheus.Gatherer

	// Version is reported by /status. Empty reports "dev".
	Version string

	// Now is the clock used for /status timestamps. Nil means time.Now.
	Now func() time.Time
}

// Handler serves the admin endpoints.
type Handler struct {
	mux  *http.ServeMux
	opts Options
}

var _ http.Handler = (*Handler)(nil)

// New returns the admin handler. It returns an error if opts.Proxy is nil.
func New(opts Options) (*Handler, error) {
	if opts.Proxy == nil {
		return nil, fmt.Errorf("admin: Options.Proxy is nil")
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Handler{mux: http.NewServeMux(), opts: opts}
	h.mux.HandleFunc("GET /healthz", h.healthz)
	h.mux.HandleFunc("GET /readyz", h.readyz)
	h.mux.HandleFunc("GET /status", h.status)
	h.mux.HandleFunc("GET /healthz/upstream", h.upstreamLiveness)
	h.mux.HandleFunc("POST /heal/{target}", h.heal)
	h.mux.HandleFunc("POST /heal/{target}/reset", h.reset)
	if opts.Gatherer != nil {
		h.mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	}
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintln(w, "ok")
}

func (h *Handler) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if h.opts.Proxy.Ready() {
		fmt.Fprintln(w, "ready")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, "not ready: no usable upstream")
	for _, u := range h.opts.Proxy.Upstreams() {
		fmt.Fprintf(w, "  %s %s: breaker %s, ready %t\n", u.Name, u.URL, u.Breaker, u.Ready)
	}
}

// Status is the JSON document served at /status.
type Status struct {
	// Version is healgate's version.
	Version string `json:"version"`
	// Time is when the status was taken.
	Time time.Time `json:"time"`
	// Ready is what /readyz reports.
	Ready bool `json:"ready"`
	// Upstreams is each upstream's state in the data path.
	Upstreams []proxy.UpstreamStatus `json:"upstreams"`
	// Healing is the healer's state: health checks, targets, recent events.
	// Absent when no healer runs.
	Healing *healing.Status `json:"healing,omitempty"`
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	s := Status{
		Version:   h.opts.Version,
		Time:      h.opts.Now().UTC(),
		Ready:     h.opts.Proxy.Ready(),
		Upstreams: h.opts.Proxy.Upstreams(),
	}
	if h.opts.Healer != nil {
		hs := h.opts.Healer.Status()
		s.Healing = &hs
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Add("Vary", "Accept")
	if r.URL.Query().Get("format") != "json" && wantsHTML(r.Header.Get("Accept")) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = statusPage.Execute(w, s) // a write error means the client left
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(s) // a write error means the client left; nothing to tell it
}

func (h *Handler) upstreamLiveness(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if h.opts.Healer != nil {
		for _, t := range h.opts.Healer.Targets() {
			if h.opts.Healer.RestartDue(t) {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "restart due: %s failed its health checks; see /status\n", t)
				return
			}
		}
	}
	fmt.Fprintln(w, "ok")
}

// authorized checks the bearer token in constant time, and answers the
// request itself when it fails.
func (h *Handler) authorized(w http.ResponseWriter, r *http.Request) bool {
	if h.opts.Healer == nil {
		http.Error(w, "no healer runs", http.StatusNotFound)
		return false
	}
	if h.opts.Token == "" {
		http.Error(w, "forbidden: admin.token_file is not set, so /heal is disabled", http.StatusForbidden)
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(h.opts.Token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="healgate"`)
		http.Error(w, "unauthorized: a valid bearer token is required", http.StatusUnauthorized)
		return false
	}
	return true
}

func (h *Handler) heal(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(w, r) {
		return
	}
	reason := r.URL.Query().Get("reason")
	h.answer(w, h.opts.Healer.Heal(r.Context(), r.PathValue("target"), reason), "heal requested")
}

func (h *Handler) reset(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(w, r) {
		return
	}
	h.answer(w, h.opts.Healer.Reset(r.Context(), r.PathValue("target")), "reset")
}

func (h *Handler) answer(w http.ResponseWriter, err error, ok string) {
	switch {
	case err == nil:
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintln(w, ok)
	case errors.Is(err, healing.ErrUnknownTarget):
		http.Error(w, err.Error(), http.StatusNotFound)
	case errors.Is(err, healing.ErrNotAccepted):
		http.Error(w, err.Error(), http.StatusConflict)
	default:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	}
}
