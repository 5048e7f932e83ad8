// Package admin is healgate's operators' HTTP interface: liveness and
// readiness endpoints for healgate itself, Prometheus metrics, and a status
// page. It sits above the proxy (and, later, the healer): it reads them,
// and they know nothing of it.
//
// Endpoints:
//
//	GET /healthz   200 while healgate's own process serves (liveness of healgate)
//	GET /readyz    200 when some upstream is usable, else 503 (readiness of healgate)
//	GET /metrics   Prometheus exposition of the registry given in Options
//	GET /status    upstreams, breakers and readiness, as JSON
package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/healgate/healgate/proxy"
)

// Proxy is what the admin handler reads from the data path.
type Proxy interface {
	// Ready reports whether some upstream is usable.
	Ready() bool
	// Upstreams reports each upstream's state.
	Upstreams() []proxy.UpstreamStatus
}

// Options configures New.
type Options struct {
	// Proxy is the data path whose state is reported. Required.
	Proxy Proxy

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
	// Upstreams is each upstream's state.
	Upstreams []proxy.UpstreamStatus `json:"upstreams"`
}

func (h *Handler) status(w http.ResponseWriter, _ *http.Request) {
	s := Status{
		Version:   h.opts.Version,
		Time:      h.opts.Now().UTC(),
		Ready:     h.opts.Proxy.Ready(),
		Upstreams: h.opts.Proxy.Upstreams(),
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(s) // a write error means the client left; nothing to tell it
}
