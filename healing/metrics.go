package healing

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// healerMetrics are the healer's Prometheus metrics.
type healerMetrics struct {
	upstreamUp     *prometheus.GaugeVec     // healgate_upstream_up{upstream}
	probeUp        *prometheus.GaugeVec     // healgate_probe_success{target,probe}
	probeDuration  *prometheus.HistogramVec // healgate_probe_duration_seconds{target,probe}
	heals          *prometheus.CounterVec   // healgate_heals_total{target,action,result}
	events         *prometheus.CounterVec   // healgate_heal_events_total{kind}
	state          *prometheus.GaugeVec     // healgate_target_state{target,state}
	budget         *prometheus.GaugeVec     // healgate_restart_budget_remaining{target}
	passiveDropped prometheus.Counter       // healgate_passive_signals_dropped_total
}

func newHealerMetrics(reg prometheus.Registerer) (*healerMetrics, error) {
	m := &healerMetrics{
		upstreamUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "healgate_upstream_up",
			Help: "Whether the upstream passes its health checks (liveness and readiness after rise/fall): 1 up, 0 down.",
		}, []string{"upstream"}),
		probeUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "healgate_probe_success",
			Help: "Whether the latest probe passed: 1 passed, 0 failed.",
		}, []string{"target", "probe"}),
		probeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "healgate_probe_duration_seconds",
			Help:    "Time a probe took, connect included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"target", "probe"}),
		heals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "healgate_heals_total",
			Help: "Heal actions by target, action (systemd, exec, none) and result (done, failed, denied, timeout, dry_run).",
		}, []string{"target", "action", "result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "healgate_heal_events_total",
			Help: "Heal events by kind (heal_started, heal_succeeded, heal_failed, gave_up, ...).",
		}, []string{"kind"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "healgate_target_state",
			Help: "The healing target's state: 1 for the current state, 0 for the others.",
		}, []string{"target", "state"}),
		budget: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "healgate_restart_budget_remaining",
			Help: "Restarts the budget would grant now (-1: unlimited).",
		}, []string{"target"}),
		passiveDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "healgate_passive_signals_dropped_total",
			Help: "Passive signals from traffic dropped because the healer was behind.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.upstreamUp, m.probeUp, m.probeDuration, m.heals, m.events, m.state, m.budget, m.passiveDropped} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// observeProbe records one probe result, unless the probe was canceled
// (shutdown), which says nothing about the target.
func (m *healerMetrics) observeProbe(target, probe string, r Result) {
	var pe *ProbeError
	if errors.As(r.Err, &pe) && pe.Kind == KindCanceled {
		return
	}
	m.probeUp.WithLabelValues(target, probe).Set(b2f(r.OK))
	m.probeDuration.WithLabelValues(target, probe).Observe(r.Latency.Seconds())
}

// setState sets the target's state gauge: 1 for s, 0 for the others.
func (m *healerMetrics) setState(target string, s State) {
	for i, name := range stateNames {
		m.state.WithLabelValues(target, name).Set(b2f(State(i) == s))
	}
}
