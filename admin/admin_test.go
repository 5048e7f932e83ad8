package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/healgate/healgate/admin"
	"github.com/healgate/healgate/healing"
	"github.com/healgate/healgate/proxy"
)

// fakeProxy is an admin.Proxy with a fixed answer.
type fakeProxy struct {
	ready     bool
	upstreams []proxy.UpstreamStatus
}

func (p *fakeProxy) Ready() bool                       { return p.ready }
func (p *fakeProxy) Upstreams() []proxy.UpstreamStatus { return p.upstreams }

// healCall is one call the fake healer received.
type healCall struct {
	op, target, reason string
}

// fakeHealer is an admin.Healer that records calls and answers err.
type fakeHealer struct {
	status  healing.Status
	due     map[string]bool
	targets []string
	err     error // returned by Heal and Reset

	mu    sync.Mutex
	calls []healCall
}

func (h *fakeHealer) Status() healing.Status { return h.status }

func (h *fakeHealer) Heal(_ context.Context, target, reason string) error {
	h.record(healCall{"heal", target, reason})
	return h.err
}

func (h *fakeHealer) Reset(_ context.Context, target string) error {
	h.record(healCall{"reset", target, ""})
	return h.err
}

func (h *fakeHealer) RestartDue(target string) bool { return h.due[target] }
func (h *fakeHealer) Targets() []string             { return h.targets }

func (h *fakeHealer) record(c healCall) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, c)
}

func (h *fakeHealer) got() []healCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]healCall(nil), h.calls...)
}

var (
	_ admin.Proxy  = (*fakeProxy)(nil)
	_ admin.Healer = (*fakeHealer)(nil)
	_ admin.Healer = (*healing.Healer)(nil) // the real one fits too
)

const testToken = "s3cret-token"

var testUpstreams = []proxy.UpstreamStatus{
	{Name: "docservice", URL: "http://127.0.0.1:8000", Breaker: "open", Ready: false},
	{Name: "spare", URL: "http://127.0.0.1:8001", Backup: true, Breaker: "closed", Ready: false},
}

// serve starts the admin handler for opts on a loopback httptest server.
func serve(t *testing.T, opts admin.Options) *httptest.Server {
	t.Helper()
	h, err := admin.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// do sends method path with the Authorization header auth (none if empty)
// and returns the response and its body.
func do(t *testing.T, srv *httptest.Server, method, path, auth string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, string(b)
}

func TestNewRequiresProxy(t *testing.T) {
	if _, err := admin.New(admin.Options{}); err == nil {
		t.Error("New without a Proxy: nil error")
	}
}

func TestHealthz(t *testing.T) {
	srv := serve(t, admin.Options{Proxy: &fakeProxy{}}) // healgate answers even when no upstream is ready
	resp, body := do(t, srv, http.MethodGet, "/healthz", "")
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok", resp.StatusCode, body)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
}

func TestReadyz(t *testing.T) {
	t.Run("ready", func(t *testing.T) {
		srv := serve(t, admin.Options{Proxy: &fakeProxy{ready: true, upstreams: testUpstreams}})
		resp, body := do(t, srv, http.MethodGet, "/readyz", "")
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(body) != "ready" {
			t.Errorf("/readyz = %d %q, want 200 ready", resp.StatusCode, body)
		}
	})
	t.Run("not ready", func(t *testing.T) {
		srv := serve(t, admin.Options{Proxy: &fakeProxy{ready: false, upstreams: testUpstreams}})
		resp, body := do(t, srv, http.MethodGet, "/readyz", "")
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("/readyz status = %d, want 503", resp.StatusCode)
		}
		for _, u := range testUpstreams {
			line := fmt.Sprintf("%s %s: breaker %s, ready %t", u.Name, u.URL, u.Breaker, u.Ready)
			if !strings.Contains(body, line) {
				t.Errorf("/readyz body lacks %q:\n%s", line, body)
			}
		}
	})
}

func TestUpstreamLiveness(t *testing.T) {
	for _, c := range []struct {
		name   string
		healer admin.Healer
		want   int
	}{
		{"no healer", nil, http.StatusOK},
		{"not due", &fakeHealer{targets: []string{"docservice"}, due: map[string]bool{}}, http.StatusOK},
		{"due", &fakeHealer{targets: []string{"docservice"}, due: map[string]bool{"docservice": true}}, http.StatusServiceUnavailable},
		{"due elsewhere", &fakeHealer{targets: []string{"docservice"}, due: map[string]bool{"other": true}}, http.StatusOK},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := serve(t, admin.Options{Proxy: &fakeProxy{ready: true}, Healer: c.healer})
			resp, body := do(t, srv, http.MethodGet, "/healthz/upstream", "")
			if resp.StatusCode != c.want {
				t.Errorf("/healthz/upstream = %d %q, want %d", resp.StatusCode, body, c.want)
			}
			if c.want != http.StatusOK && !strings.Contains(body, "docservice") {
				t.Errorf("body %q does not name the target", body)
			}
		})
	}
}

func TestStatusJSON(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("X", 3600))
	hs := healing.Status{
		Targets: []healing.TargetStatus{{
			Name:   "docservice",
			Action: "exec",
			Machine: healing.MachineStatus{
				State:      healing.StateBackoff,
				Reason:     "restart failed: exit 1",
				BudgetLeft: 2,
			},
			RestartDue: true,
			Events: []healing.Event{{
				Time: now, Target: "docservice", Kind: healing.EventHealFailed, Action: "exec", Result: "failed",
			}},
		}},
		Upstreams: []healing.UpstreamHealth{{
			Name:      "docservice",
			Readiness: healing.ProbeStatus{Target: "http://127.0.0.1:8000/healthcheck", Detail: `body "false"`},
		}},
	}
	srv := serve(t, admin.Options{
		Proxy:   &fakeProxy{ready: true, upstreams: testUpstreams},
		Healer:  &fakeHealer{status: hs},
		Version: "1.2.3",
		Now:     func() time.Time { return now },
	})
	resp, body := do(t, srv, http.MethodGet, "/status", "", "Accept", "application/json")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("/status = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var got admin.Status
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("decode /status: %v\n%s", err, body)
	}
	if got.Version != "1.2.3" || !got.Time.Equal(now) || got.Time.Location() != time.UTC || !got.Ready || len(got.Upstreams) != 2 || got.Upstreams[0] != testUpstreams[0] {
		t.Errorf("status = %+v", got)
	}
	if got.Healing == nil || len(got.Healing.Targets) != 1 {
		t.Fatalf("status healing = %+v, want the healer's status", got.Healing)
	}
	tg := got.Healing.Targets[0]
	if tg.Machine.State != healing.StateBackoff || tg.Machine.BudgetLeft != 2 || !tg.RestartDue ||
		len(tg.Events) != 1 || tg.Events[0].Kind != healing.EventHealFailed || !tg.Events[0].Time.Equal(now) {
		t.Errorf("target = %+v", tg)
	}
	if !strings.Contains(body, `"state": "backoff"`) {
		t.Errorf("state is not written by name:\n%s", body)
	}
	if u := got.Healing.Upstreams; len(u) != 1 || u[0].Readiness.Detail != `body "false"` {
		t.Errorf("healing upstreams = %+v", u)
	}

	// Without a healer the healing part is absent.
	srv = serve(t, admin.Options{Proxy: &fakeProxy{ready: false}})
	_, body = do(t, srv, http.MethodGet, "/status", "")
	got = admin.Status{}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Healing != nil || got.Version != "dev" || got.Ready || strings.Contains(body, `"healing"`) {
		t.Errorf("status without a healer = %s", body)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "healgate_test_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Add(7)
	srv := serve(t, admin.Options{Proxy: &fakeProxy{}, Gatherer: reg})
	resp, body := do(t, srv, http.MethodGet, "/metrics", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "healgate_test_total 7") {
		t.Errorf("/metrics = %d:\n%s", resp.StatusCode, body)
	}

	srv = serve(t, admin.Options{Proxy: &fakeProxy{}})
	if resp, _ := do(t, srv, http.MethodGet, "/metrics", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics without a Gatherer = %d, want 404", resp.StatusCode)
	}
}

func TestHealAuth(t *testing.T) {
	for _, c := range []struct {
		name, token, auth string
		want              int
	}{
		{"no token configured", "", "Bearer " + testToken, http.StatusForbidden},
		{"no token configured, none sent", "", "", http.StatusForbidden},
		{"missing", testToken, "", http.StatusUnauthorized},
		{"wrong", testToken, "Bearer wrong", http.StatusUnauthorized},
		{"prefix of the token", testToken, "Bearer " + testToken[:4], http.StatusUnauthorized},
		{"token plus more", testToken, "Bearer " + testToken + "x", http.StatusUnauthorized},
		{"not bearer", testToken, "Basic " + testToken, http.StatusUnauthorized},
		{"bare token", testToken, testToken, http.StatusUnauthorized},
	} {
		t.Run(c.name, func(t *testing.T) {
			fh := &fakeHealer{targets: []string{"docservice"}}
			srv := serve(t, admin.Options{Proxy: &fakeProxy{}, Healer: fh, Token: c.token})
			for _, path := range []string{"/heal/docservice", "/heal/docservice/reset"} {
				resp, body := do(t, srv, http.MethodPost, path, c.auth)
				if resp.StatusCode != c.want {
					t.Errorf("POST %s = %d %q, want %d", path, resp.StatusCode, body, c.want)
				}
				wantChallenge := c.want == http.StatusUnauthorized
				if got := resp.Header.Get("WWW-Authenticate"); (got != "") != wantChallenge || wantChallenge && !strings.HasPrefix(got, "Bearer ") {
					t.Errorf("POST %s: WWW-Authenticate = %q", path, got)
				}
			}
			if calls := fh.got(); len(calls) != 0 {
				t.Errorf("the healer was called without authorization: %+v", calls)
			}
		})
	}
}

func TestHeal(t *testing.T) {
	fh := &fakeHealer{targets: []string{"docservice"}}
	srv := serve(t, admin.Options{Proxy: &fakeProxy{}, Healer: fh, Token: testToken})
	auth := "Bearer " + testToken

	resp, body := do(t, srv, http.MethodPost, "/heal/docservice?reason=disk+full%21", auth)
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("POST /heal/docservice = %d %q, want 202", resp.StatusCode, body)
	}
	resp, body = do(t, srv, http.MethodPost, "/heal/docservice/reset", auth)
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("POST /heal/docservice/reset = %d %q, want 202", resp.StatusCode, body)
	}
	want := []healCall{{"heal", "docservice", "disk full!"}, {"reset", "docservice", ""}}
	if got := fh.got(); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("healer calls = %+v, want %+v", got, want)
	}

	for _, path := range []string{"/heal/docservice", "/heal/docservice/reset"} {
		resp, _ := do(t, srv, http.MethodGet, path, auth)
		if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(resp.Header.Get("Allow"), http.MethodPost) {
			t.Errorf("GET %s = %d (Allow %q), want 405 allowing POST", path, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	if resp, _ := do(t, srv, http.MethodPost, "/heal", auth); resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /heal without a target = %d, want 404", resp.StatusCode)
	}
	if n := len(fh.got()); n != 2 {
		t.Errorf("healer calls after GETs = %d, want still 2", n)
	}
}

func TestHealErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want int
	}{
		{"unknown target", fmt.Errorf("%w: %q", healing.ErrUnknownTarget, "nope"), http.StatusNotFound},
		{"not accepted", fmt.Errorf("%w: healing", healing.ErrNotAccepted), http.StatusConflict},
		{"healer stopped", context.Canceled, http.StatusServiceUnavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			fh := &fakeHealer{err: c.err}
			srv := serve(t, admin.Options{Proxy: &fakeProxy{}, Healer: fh, Token: testToken})
			for _, path := range []string{"/heal/nope", "/heal/nope/reset"} {
				resp, body := do(t, srv, http.MethodPost, path, "Bearer "+testToken)
				if resp.StatusCode != c.want || !strings.Contains(body, c.err.Error()) {
					t.Errorf("POST %s = %d %q, want %d with the error", path, resp.StatusCode, body, c.want)
				}
			}
			if n := len(fh.got()); n != 2 {
				t.Errorf("healer calls = %d, want 2", n)
			}
		})
	}
}

func TestHealWithoutHealer(t *testing.T) {
	srv := serve(t, admin.Options{Proxy: &fakeProxy{}, Token: testToken})
	if resp, body := do(t, srv, http.MethodPost, "/heal/docservice", "Bearer "+testToken); resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /heal without a healer = %d %q, want 404", resp.StatusCode, body)
	}
}

// TestStatusHTML: a browser's Accept gets the HTML page with the same facts
// (escaped); curl's */* and ?format=json get JSON.
func TestStatusHTML(t *testing.T) {
	hs := healing.Status{
		Targets: []healing.TargetStatus{{
			Name:    "docservice",
			Action:  "systemd",
			Units:   []string{"ds-docservice.service"},
			Machine: healing.MachineStatus{State: healing.StateGaveUp, Reason: "budget <spent>", BudgetRestarts: 3},
			Events:  []healing.Event{{Time: time.Now(), Kind: healing.EventGaveUp, Reason: "restarted 3 times"}},
		}},
	}
	srv := serve(t, admin.Options{Proxy: &fakeProxy{ready: false, upstreams: testUpstreams}, Healer: &fakeHealer{status: hs}})
	browser := "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	resp, body := do(t, srv, http.MethodGet, "/status", "", "Accept", browser)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("browser got Content-Type %q", ct)
	}
	for _, want := range []string{"not ready", testUpstreams[0].Name, "gave-up", "budget &lt;spent&gt;", "gave_up", "restarted 3 times", "ds-docservice.service"} {
		if !strings.Contains(body, want) {
			t.Errorf("HTML status lacks %q", want)
		}
	}
	if strings.Contains(body, "budget <spent>") {
		t.Error("HTML status does not escape the reason")
	}
	for _, tc := range []struct{ path, accept string }{{"/status", "*/*"}, {"/status", ""}, {"/status?format=json", browser}} {
		resp, _ := do(t, srv, http.MethodGet, tc.path, "", "Accept", tc.accept)
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("GET %s with Accept %q: Content-Type %q, want JSON", tc.path, tc.accept, ct)
		}
	}
}
