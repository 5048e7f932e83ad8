package packaging_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/healgate/healgate/config"
	"github.com/healgate/healgate/healing"
	"github.com/healgate/healgate/proxy"
)

// describingRegisterer registers collectors in a real registry and records
// the name of every metric family each one describes — all of them, even
// the vectors that no observation has created a child of yet, which a
// Gather would not show.
type describingRegisterer struct {
	reg   *prometheus.Registry
	names map[string]bool
}

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

func (d *describingRegisterer) Register(c prometheus.Collector) error {
	if err := d.reg.Register(c); err != nil {
		return err
	}
	ch := make(chan *prometheus.Desc)
	go func() { // ends when Describe returns
		c.Describe(ch)
		close(ch)
	}()
	for desc := range ch {
		// Desc has no name accessor; its String form is stable:
		// Desc{fqName: "...", help: "...", ...}.
		if m := fqNameRE.FindStringSubmatch(desc.String()); m != nil {
			d.names[m[1]] = true
		}
	}
	return nil
}

func (d *describingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := d.Register(c); err != nil {
			panic(err)
		}
	}
}

func (d *describingRegisterer) Unregister(c prometheus.Collector) bool { return d.reg.Unregister(c) }

// exportedMetrics returns the names of the metric families healgate
// registers: it builds the notifier, the healer and the proxy the way "run"
// does, on the packaged config with a webhook added (none of them touches
// the network before Run).
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	cfg, err := config.Load("healgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Notify.Webhooks = []config.Webhook{{URL: "http://127.0.0.1:1/hook", Format: config.FormatGeneric}}
	rec := &describingRegisterer{reg: prometheus.NewRegistry(), names: map[string]bool{}}
	n, err := healing.NewNotifier(cfg.Notify, healing.NotifierOptions{Registerer: rec, Host: "test"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := healing.New(cfg, healing.Options{Registerer: rec, Notify: n})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proxy.New(cfg, proxy.Options{Registerer: rec, Health: h}); err != nil {
		t.Fatal(err)
	}
	if len(rec.names) < 10 {
		t.Fatalf("only %d metric families described: %v", len(rec.names), rec.names)
	}
	return rec.names
}

// metricRE finds healgate metric names in a PromQL expression.
var metricRE = regexp.MustCompile(`healgate_[a-z_]+`)

// checkMetricNames reports every healgate_* name in expr that healgate does
// not export; a histogram's _bucket, _sum and _count series count as the
// histogram. It returns the names found.
func checkMetricNames(t *testing.T, where, expr string, exported map[string]bool) []string {
	t.Helper()
	names := metricRE.FindAllString(expr, -1)
	for _, name := range names {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && exported[b] {
				base = b
			}
		}
		if !exported[base] {
			t.Errorf("%s: %s is not a metric healgate exports (it exports %s)", where, name, sortedKeys(exported))
		}
	}
	return names
}

func sortedKeys(m map[string]bool) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// promRules is the part of a Prometheus rule file the tests read.
type promRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert  string `yaml:"alert"`
			Record string `yaml:"record"`
			Expr   string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestPrometheusRules runs promtool check rules on the packaged alerts,
// checks that the alerts the issue names exist, and that every expression
// names only metrics healgate exports.
func TestPrometheusRules(t *testing.T) {
	promtool := lookTool(t, "promtool", "prometheus")
	out := command(t, promtool, "check", "rules", filepath.Join("prometheus", "healgate-rules.yaml"))
	t.Log(strings.TrimSpace(out))

	var rules promRules
	if err := yaml.Unmarshal(readFile(t, "prometheus/healgate-rules.yaml"), &rules); err != nil {
		t.Fatal(err)
	}
	exported := exportedMetrics(t)
	var alerts []string
	used := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			for _, n := range checkMetricNames(t, "alert "+r.Alert, r.Expr, exported) {
				used[n] = true
			}
		}
	}
	for _, want := range []string{"HealgateGaveUp", "HealgateUpstreamDown", "HealgateBreakerOpen", "HealgateHighErrorRate", "HealgateNotifyDropping", "HealgateRestartDenied"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s (have %v)", want, alerts)
		}
	}
	if len(used) < 6 {
		t.Errorf("the rules use only %d healgate metrics: %v", len(used), used)
	}
}

// grafanaPanel is the part of a Grafana panel the tests read.
type grafanaPanel struct {
	ID      int                     `json:"id"`
	Title   string                  `json:"title"`
	Type    string                  `json:"type"`
	Targets []struct{ Expr string } `json:"targets"`
	Panels  []grafanaPanel          `json:"panels"` // a collapsed row's panels
}

// TestGrafanaDashboard parses the dashboard, checks that every panel has a
// query, that every query names only metrics healgate exports, and that
// every query is valid PromQL: promtool checks them as recording rules,
// with Grafana's variables replaced by values.
func TestGrafanaDashboard(t *testing.T) {
	var dash struct {
		UID         string         `json:"uid"`
		Title       string         `json:"title"`
		Panels      []grafanaPanel `json:"panels"`
		Annotations struct {
			List []struct{ Expr string } `json:"list"`
		} `json:"annotations"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(readFile(t, "grafana/healgate-dashboard.json"), &dash); err != nil {
		t.Fatalf("the dashboard is not valid JSON: %v", err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Errorf("dashboard uid %q title %q: both are required", dash.UID, dash.Title)
	}
	exported := exportedMetrics(t)

	var exprs []string
	ids := map[int]bool{}
	var walk func(ps []grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d is used twice", p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if len(checkMetricNames(t, fmt.Sprintf("panel %q", p.Title), tg.Expr, exported)) == 0 {
					t.Errorf("panel %q: query %q names no healgate metric", p.Title, tg.Expr)
				}
				exprs = append(exprs, tg.Expr)
			}
		}
	}
	walk(dash.Panels)
	for _, a := range dash.Annotations.List {
		checkMetricNames(t, "annotation", a.Expr, exported)
		exprs = append(exprs, a.Expr)
	}
	for _, v := range dash.Templating.List {
		if q, err := json.Marshal(v.Query); err == nil {
			checkMetricNames(t, "variable "+v.Name, string(q), exported)
		}
	}
	if len(exprs) < 15 {
		t.Fatalf("only %d panel queries", len(exprs))
	}

	// Every query as a recording rule, for promtool's PromQL parser.
	promtool := lookTool(t, "promtool", "prometheus")
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$instance", ".*")
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		q, err := json.Marshal(vars.Replace(e)) // a JSON string is a YAML string
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "      - record: dashboard:query%d\n        expr: %s\n", i, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	command(t, promtool, "check", "rules", path)
}
