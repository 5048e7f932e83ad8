package healing

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/healgate/healgate/config"
)

// monitor runs one upstream's liveness and readiness probes and keeps their
// rise/fall status; Ready (for the proxy) is liveness and readiness up.
type monitor struct {
	name       string
	baseURL    string
	live       *HTTPProbe // nil when health.liveness.path is empty
	readyProbe *HTTPProbe // nil when health.readiness.path is empty
	timeout    time.Duration
	metrics    *healerMetrics

	ready      atomic.Bool // liveness and readiness up: read per request
	firstRound chan struct{}
	firstOnce  sync.Once

	mu                  sync.Mutex
	liveH, readyH       Hysteresis
	liveLast, readyLast ProbeStatus
}

func newMonitor(u config.Upstream, hc config.Health, client *http.Client, m *healerMetrics) (*monitor, error) {
	mon := &monitor{
		name:       u.Name,
		baseURL:    u.URL,
		timeout:    hc.Timeout,
		metrics:    m,
		firstRound: make(chan struct{}),
		liveH:      NewHysteresis(hc.Rise, hc.Fall, true),
		readyH:     NewHysteresis(hc.Rise, hc.Fall, true),
	}
	var err error
	if hc.Liveness.Path != "" {
		if mon.live, err = NewHTTPProbe(client, u.URL, hc.Liveness, hc.Timeout); err != nil {
			return nil, err
		}
		mon.liveLast.Target = mon.live.URL()
	}
	if hc.Readiness.Path != "" {
		if mon.readyProbe, err = NewHTTPProbe(client, u.URL, hc.Readiness, hc.Timeout); err != nil {
			return nil, err
		}
		mon.readyLast.Target = mon.readyProbe.URL()
	}
	mon.ready.Store(true)
	m.upstreamUp.WithLabelValues(u.Name).Set(1)
	return mon, nil
}

// run probes every interval until ctx ends.
func (m *monitor) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		m.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// round probes liveness and readiness at once and records both results. It
// returns them (a zero Result with OK true for a probe that is not
// configured). A round cut short by ctx records nothing.
func (m *monitor) round(ctx context.Context) (live, ready Result) {
	var wg sync.WaitGroup
	live, ready = Result{OK: true}, Result{OK: true}
	if m.live != nil {
		wg.Go(func() { live = m.live.Probe(ctx) })
	}
	if m.readyProbe != nil {
		wg.Go(func() { ready = m.readyProbe.Probe(ctx) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return live, ready
	}
	now := time.Now()
	m.mu.Lock()
	if m.live != nil {
		m.liveH.Record(live.OK)
		m.liveLast = probeStatus(m.liveLast.Target, m.liveH.Up(), live, now)
		m.metrics.observeProbe(m.name, "liveness", live)
	}
	if m.readyProbe != nil {
		m.readyH.Record(ready.OK)
		m.readyLast = probeStatus(m.readyLast.Target, m.readyH.Up(), ready, now)
		m.metrics.observeProbe(m.name, "readiness", ready)
	}
	up := m.liveH.Up() && m.readyH.Up()
	m.mu.Unlock()
	if m.ready.Swap(up) != up {
		m.metrics.upstreamUp.WithLabelValues(m.name).Set(b2f(up))
	}
	m.firstOnce.Do(func() { close(m.firstRound) })
	return live, ready
}

func (m *monitor) snapshot() UpstreamHealth {
	m.mu.Lock()
	defer m.mu.Unlock()
	return UpstreamHealth{Name: m.name, Ready: m.ready.Load(), Liveness: m.liveLast, Readiness: m.readyLast}
}

func probeStatus(target string, up bool, r Result, at time.Time) ProbeStatus {
	ps := ProbeStatus{Target: target, Up: up, OK: r.OK, Detail: r.Detail, Latency: r.Latency, At: at}
	if r.Err != nil {
		ps.Error = r.Err.Error()
	}
	return ps
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// inherit takes old's statuses: the upstream keeps its standing across a
// reload instead of starting up (ready) again.
func (m *monitor) inherit(old *monitor) {
	old.mu.Lock()
	liveUp, readyUp := old.liveH.Up(), old.readyH.Up()
	liveLast, readyLast := old.liveLast, old.readyLast
	old.mu.Unlock()
	m.mu.Lock()
	m.liveH.Set(liveUp)
	m.readyH.Set(readyUp)
	if liveLast.Target == m.liveLast.Target {
		m.liveLast = liveLast
	}
	if readyLast.Target == m.readyLast.Target {
		m.readyLast = readyLast
	}
	up := m.liveH.Up() && m.readyH.Up()
	m.mu.Unlock()
	m.ready.Store(up)
	m.metrics.upstreamUp.WithLabelValues(m.name).Set(b2f(up))
}
