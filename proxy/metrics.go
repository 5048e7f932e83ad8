package proxy

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
)

// metrics are the proxy's Prometheus collectors, registered with the
// Registerer from Options (never the global registry). Label-bound children
// for the success path are cached so that a proxied request allocates little.
type metrics struct {
	requests       *prometheus.CounterVec   // route, upstream, code, class
	duration       *prometheus.HistogramVec // route
	retries        *prometheus.CounterVec   // route
	upstreamErrors *prometheus.CounterVec   // upstream, class
	breaker        *prometheus.GaugeVec     // upstream
	inflight       prometheus.Gauge
	upgraded       prometheus.Gauge

	// okCounters[route][upstream+1][code] caches requests{class=""}
	// children; upstream index -1 (slot 0) is "no upstream".
	okCounters [][][]atomic.Pointer[prometheus.Counter]
}

// maxCachedCode bounds the status codes whose counters are cached.
const maxCachedCode = 600

func newMetrics(reg prometheus.Registerer, routes []*route, ups []*upstream) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "healgate_requests_total",
			Help: "Proxied requests by route class, last upstream tried, status code (499: client went away) and error class.",
		}, []string{"route", "upstream", "code", "class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "healgate_request_duration_seconds",
			Help:    "Time from request received to response written (or to the end of an upgraded connection), by route class.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800},
		}, []string{"route"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "healgate_retries_total",
			Help: "Tries after the first (next upstream), by route class.",
		}, []string{"route"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "healgate_upstream_errors_total",
			Help: "Failed tries by upstream and error class.",
		}, []string{"upstream", "class"}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "healgate_breaker_state",
			Help: "Circuit breaker state by upstream: 0 closed, 1 half-open, 2 open.",
		}, []string{"upstream"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "healgate_inflight_requests",
			Help: "Requests being proxied, upgraded connections included.",
		}),
		upgraded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "healgate_upgraded_connections",
			Help: "Upgraded (WebSocket) connections open through the proxy.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.retries, m.upstreamErrors, m.breaker, m.inflight, m.upgraded} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	m.okCounters = make([][][]atomic.Pointer[prometheus.Counter], len(routes))
	for i, r := range routes {
		r.duration = m.duration.WithLabelValues(r.name)
		r.retries = m.retries.WithLabelValues(r.name)
		m.okCounters[i] = make([][]atomic.Pointer[prometheus.Counter], len(ups)+1)
		for j := range m.okCounters[i] {
			m.okCounters[i][j] = make([]atomic.Pointer[prometheus.Counter], maxCachedCode)
		}
	}
	for _, u := range ups {
		m.breaker.WithLabelValues(u.name).Set(0)
	}
	return m, nil
}

// request counts one finished request.
func (m *metrics) request(r *route, u *upstream, code int, class ErrorClass) {
	upIdx, upName := 0, ""
	if u != nil {
		upIdx, upName = u.idx+1, u.name
	}
	if class != ClassNone || code < 0 || code >= maxCachedCode {
		m.requests.WithLabelValues(r.name, upName, strconv.Itoa(code), string(class)).Inc()
		return
	}
	slot := &m.okCounters[r.idx][upIdx][code]
	c := slot.Load()
	if c == nil {
		cc := m.requests.WithLabelValues(r.name, upName, strconv.Itoa(code), "")
		slot.CompareAndSwap(nil, &cc)
		c = slot.Load()
	}
	(*c).Inc()
}

// breakerState sets the healgate_breaker_state gauge.
func (m *metrics) breakerState(upstream string, s gobreaker.State) {
	v := 0.0
	switch s {
	case gobreaker.StateHalfOpen:
		v = 1
	case gobreaker.StateOpen:
		v = 2
	}
	m.breaker.WithLabelValues(upstream).Set(v)
}
