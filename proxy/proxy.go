// Package proxy is healgate's data path: it accepts requests from nginx and
// passes them to the upstream Document Servers.
//
// A request is given an ID (X-Request-ID, kept when sane) and a route class
// (routes.go: first match by path prefix or WebSocket upgrade, else
// "default"), whose timeouts and breaker participation apply. It is then
// passed by one httputil.ReverseProxy whose Transport is the next-upstream
// loop (retry.go):
//
//   - Candidates (upstream.go): primaries in config order, then backups, which
//     are used only when no primary is left for the request. A request with a
//     document key (sticky.go) orders the primaries by rendezvous hashing on
//     the key, so a document stays on one node while that node is usable.
//     Upstreams whose breaker is open or that are not Ready are skipped; when
//     none is left and one is being healed, the request waits up to
//     Healing.HoldTimeout for the heal (503 healing if it does not end); then
//     an unready primary is tried anyway; when every breaker is open the
//     answer is 503 breaker_open with Retry-After.
//   - Tries (retry.go): at most NextUpstream.Tries, no new one after
//     NextUpstream.Timeout. A try the upstream never saw (dial error, nothing
//     written) may be repeated for any method; after bytes went out, only
//     idempotent methods (or non_idempotent), only keyless requests, and only
//     with a body buffered up to MaxReplayBody. An upgrade is never retried
//     after its 101.
//   - Timeouts (timeouts.go): one timer per try, whose typed cause tells
//     connect_timeout from upstream_timeout and both from a client that went
//     away.
//   - Breakers (breaker.go): one gobreaker TwoStepCircuitBreaker per upstream,
//     fed only by routes with breaker enabled. Routes with breaker disabled
//     (conversions, WebSockets) never take a half-open slot and never feed the
//     breaker or the Observer, but they do skip an upstream whose breaker is
//     open: it is down for them too.
//   - Outcomes: each try is reported once to its breaker, the Observer and
//     healgate_upstream_errors_total, when its outcome is known. A failed
//     try, an upgrade (101) and a response the next try may replace are
//     judged at once; any other response when its body ends: at EOF (or a
//     Close) by its status, on a read error from the upstream (a reset, the
//     read timeout) as a failure of that class, so that headers followed by
//     a reset mid-body count against the upstream. A half-open breaker's
//     probe thus lasts until its body ends. The client's faults (it went
//     away, its body broke off) count neither way.
//   - Errors (errors.go) are classified by type and answered 502, 504 or 503
//     with a short text body and X-Healgate-Error. A client whose request
//     body broke off or was malformed while it was still there gets 400
//     bad_request; a client that went away gets nothing (the connection is
//     dropped, never a "200 OK") and is logged and counted as 499.
//
// Proxy.Serve runs the hardened http.Server (server.go), and Listen opens
// TCP, unix and systemd-activated listeners (listen.go).
package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/healgate/healgate/config"
)

// Options are a Proxy's collaborators; every field may be nil.
type Options struct {
	// Logger receives one line per failed request (warn), per successful one
	// (debug) and per breaker state change. Nil discards.
	Logger *slog.Logger
	// Registerer receives the proxy's metrics. Nil: the metrics are kept but
	// not registered (still safe to use).
	Registerer prometheus.Registerer
	// Health reports upstream readiness and heals in progress. Nil: every
	// upstream is ready and none is healing.
	Health Health
	// Observer receives passive results from routes whose breaker is
	// enabled. Nil: they are dropped.
	Observer Observer
}

// Proxy is healgate's reverse proxy: an http.Handler that passes requests to
// the configured upstreams. It is safe for concurrent use.
type Proxy struct {
	cfg      *config.Config
	log      *slog.Logger
	health   Health
	observer Observer // nil when none
	routes   *routeTable
	pool     *pool
	sticky   *sticky
	next     nextPolicy
	ids      *idGen
	metrics  *metrics
	rp       *httputil.ReverseProxy
	bodyPool sync.Pool // *bytes.Buffer for replayable request bodies
}

var _ http.Handler = (*Proxy)(nil)

// New returns a Proxy for cfg, which must have passed config validation; New
// checks only what it needs to build (upstream URLs, sticky keys, the metric
// registration). cfg must not change afterwards.
func New(cfg *config.Config, opts Options) (*Proxy, error) {
	if cfg == nil {
		return nil, errors.New("proxy: nil config")
	}
	p := &Proxy{
		cfg:      cfg,
		log:      opts.Logger,
		health:   opts.Health,
		observer: opts.Observer,
		routes:   newRouteTable(cfg),
		next:     newNextPolicy(cfg.NextUpstream),
		ids:      newIDGen(),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.health == nil {
		p.health = allReady{}
	}
	var err error
	if p.pool, err = newPool(cfg); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	if p.sticky, err = newSticky(cfg.Sticky.Keys); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	if p.metrics, err = newMetrics(opts.Registerer, p.routes.routes, p.pool.all); err != nil {
		return nil, fmt.Errorf("proxy: register metrics: %w", err)
	}
	if !cfg.Breaker.Disabled {
		bo, _ := opts.Observer.(BreakerObserver)
		for _, u := range p.pool.all {
			u.breaker = newBreaker(cfg.Breaker, u, p.log, p.metrics, bo)
		}
	}
	p.bodyPool.New = func() any { return new(bytes.Buffer) }
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      retryTransport{p: p},
		FlushInterval:  -1, // stream: socket.io long polling and downloads are never buffered
		BufferPool:     newCopyBuffers(),
		ErrorHandler:   p.handleError,
		ModifyResponse: p.modifyResponse,
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	return p, nil
}

// stateKey is the context key of a request's *reqState.
type stateKey struct{}

// reqState is what the data path knows about one request, from ServeHTTP to
// the log line. It travels in the request's context; only the request's own
// goroutine touches it.
type reqState struct {
	id      string
	method  string
	route   *route
	key     string // document key, "" when none
	upgrade bool
	start   time.Time

	tried     tried
	tries     int
	last      *upstream
	lastClass ErrorClass // why the last try failed; ClassNone if it got a response
	order     []*upstream
	orderBuf  [8]*upstream

	err      *Error // set by the error handler
	bodyErr  error  // the upstream's response body failed mid-copy
	upgraded bool   // a 101 went to the client
	sw       statusWriter
}

func stateFrom(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// ServeHTTP proxies one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &reqState{start: time.Now(), method: r.Method}
	st.id = p.ids.requestID(r.Header[headerRequestID])
	st.route = p.routes.match(r)
	st.upgrade = isUpgrade(r.Header)
	st.key = p.sticky.key(r)
	st.sw.ResponseWriter = w
	w.Header()[headerRequestID] = []string{st.id}
	p.metrics.inflight.Inc()
	defer p.finish(st, r)
	if d := p.cfg.Server.BodyTimeout; d > 0 && r.Body != nil && r.Body != http.NoBody && !st.upgrade {
		cb := &clientBody{rc: r.Body, ctl: http.NewResponseController(w), timeout: d}
		defer cb.finish()
		r.Body = cb
	}
	p.rp.ServeHTTP(&st.sw, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
}

// rewrite is the ReverseProxy's Rewrite: forwarding headers, the request ID
// and a byte-exact query. The upstream's scheme and host are set per try.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	p.setForwarded(pr)
	if st := stateFrom(pr.In.Context()); st != nil {
		pr.Out.Header[headerRequestID] = []string{st.id}
	}
}

// modifyResponse keeps healgate's X-Request-ID the only one and notes upgrades.
func (p *Proxy) modifyResponse(res *http.Response) error {
	res.Header.Del(headerRequestID)
	if res.StatusCode == http.StatusSwitchingProtocols {
		if st := stateFrom(res.Request.Context()); st != nil {
			st.upgraded = true
			st.sw.code = http.StatusSwitchingProtocols
			p.metrics.upgraded.Inc()
			if ci := connInfoFrom(res.Request.Context()); ci != nil {
				ci.t.upgradeStarted()
			}
		}
	}
	return nil
}

// handleError is the ReverseProxy's ErrorHandler: it answers the error
// (writeError), or, when the client went away, aborts the response with
// http.ErrAbortHandler so that net/http sends nothing at all.
func (p *Proxy) handleError(w http.ResponseWriter, r *http.Request, err error) {
	st := stateFrom(r.Context())
	var e *Error
	if !errors.As(err, &e) {
		class := ClassBadResponse
		if r.Context().Err() != nil {
			class = ClassClientCanceled
		}
		e = &Error{Class: class, Err: err}
	}
	id := ""
	if st != nil {
		st.err = e
		id = st.id
	}
	if e.Class == ClassClientCanceled {
		// Nobody is there to read an answer. Returning without one would
		// let net/http send "200 OK"; abort the response instead (finish
		// counts it as 499).
		panic(http.ErrAbortHandler)
	}
	writeError(w, e, id)
}

// finish logs and counts the request, and passes on the panic with which
// ReverseProxy aborts a response cut mid-body.
func (p *Proxy) finish(st *reqState, r *http.Request) {
	v := recover()
	if v != nil && v != http.ErrAbortHandler {
		p.metrics.inflight.Dec()
		panic(v)
	}
	p.metrics.inflight.Dec()
	if st.upgraded {
		p.metrics.upgraded.Dec()
		if ci := connInfoFrom(r.Context()); ci != nil {
			ci.t.upgradeEnded(ci.c)
		}
	}
	class, status := ClassNone, st.sw.code
	switch {
	case st.err != nil:
		class, status = st.err.Class, st.err.Class.Status()
	case v != nil && st.bodyErr != nil && r.Context().Err() == nil:
		class = classify(st.bodyErr, nil)
	case v != nil:
		class, status = ClassClientCanceled, StatusClientClosed
	}
	if status == 0 {
		status = http.StatusOK
	}
	d := time.Since(st.start)
	p.metrics.request(st.route, st.last, status, class)
	st.route.duration.Observe(d.Seconds())
	p.logRequest(r, st, class, status, d)
	if v != nil {
		panic(v)
	}
}

// logRequest writes the request's one log line: warn when it failed, info
// when the client went away or its body broke off, debug otherwise.
func (p *Proxy) logRequest(r *http.Request, st *reqState, class ErrorClass, status int, d time.Duration) {
	level := slog.LevelDebug
	switch class {
	case ClassNone:
	case ClassClientCanceled, ClassBadRequest, ClassClientTimeout:
		level = slog.LevelInfo
	default:
		level = slog.LevelWarn
	}
	ctx := r.Context()
	if !p.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("request_id", st.id),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("route", st.route.name),
		slog.String("upstreams", p.triedNames(st)),
		slog.Int("tries", st.tries),
		slog.String("class", string(class)),
		slog.Int("status", status),
		slog.Duration("duration", d),
	}
	msg := "request"
	if class != ClassNone {
		msg = "request failed"
		if st.err != nil {
			attrs = append(attrs, slog.String("error", st.err.Error()))
		} else if st.bodyErr != nil {
			attrs = append(attrs, slog.String("error", st.bodyErr.Error()))
		}
	}
	p.log.LogAttrs(ctx, level, msg, attrs...)
}

// triedNames lists the upstreams the request tried, in config order.
func (p *Proxy) triedNames(st *reqState) string {
	var b strings.Builder
	for _, u := range p.pool.all {
		if st.tried.has(u) {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(u.name)
		}
	}
	return b.String()
}

// Ready reports whether some upstream is usable: its breaker is not open and
// Health reports it ready. The admin listener's /readyz answers with it.
func (p *Proxy) Ready() bool {
	for _, u := range p.pool.all {
		if u.breakerState() != gobreaker.StateOpen && p.health.Ready(u.name) {
			return true
		}
	}
	return false
}

// Upstreams returns a snapshot of every upstream, in config order.
func (p *Proxy) Upstreams() []UpstreamStatus {
	out := make([]UpstreamStatus, 0, len(p.pool.all))
	for _, u := range p.pool.all {
		out = append(out, UpstreamStatus{
			Name:     u.name,
			URL:      u.rawURL,
			Backup:   u.backup,
			Breaker:  u.breakerState().String(),
			Ready:    p.health.Ready(u.name),
			Inflight: u.inflight.Load(),
		})
	}
	return out
}

// statusWriter records the status sent to the client. It unwraps, so that
// http.ResponseController reaches the connection's Flush and Hijack.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap returns the wrapped ResponseWriter.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
