package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/healgate/healgate/config"
	"github.com/healgate/healgate/internal/testproc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend is a real loopback upstream that counts what it received.
type backend struct {
	*httptest.Server
	hits  atomic.Int64
	posts atomic.Int64
}

func newBackend(t testing.TB, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		if r.Method == http.MethodPost {
			b.posts.Add(1)
		}
		h(w, r)
	}))
	t.Cleanup(b.Close)
	return b
}

// stallMidBody is a backend handler that writes and flushes "first", then
// sends nothing more until the request ends: a response that hangs mid-body.
func stallMidBody(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "first")
	http.NewResponseController(w).Flush()
	<-r.Context().Done()
}

// refusedURL returns the URL of a loopback port where nothing listens.
func refusedURL(t testing.TB) string { return "http://" + testproc.FreeAddr(t) }

// testConfig returns the defaults with the given upstreams and timeouts
// scaled down for tests.
func testConfig(ups ...config.Upstream) *config.Config {
	cfg := config.Default()
	cfg.Upstreams = ups
	cfg.Timeouts = config.Timeouts{Connect: 2 * time.Second, Send: 5 * time.Second,
		ResponseHeader: 5 * time.Second, Read: 5 * time.Second, Idle: 5 * time.Second}
	cfg.Healing.HoldTimeout = time.Second
	return cfg
}

func up(name, url string) config.Upstream { return config.Upstream{Name: name, URL: url} }

func backupUp(name, url string) config.Upstream {
	return config.Upstream{Name: name, URL: url, Backup: true}
}

// front is a Proxy served by a real loopback server, and a client for it.
type front struct {
	p      *Proxy
	srv    *httptest.Server
	client *http.Client
	reg    *prometheus.Registry
}

func newFront(t testing.TB, cfg *config.Config, opts Options) *front {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	p, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	tr := &http.Transport{Proxy: nil, DisableCompression: true}
	f := &front{p: p, srv: srv, client: &http.Client{Transport: tr}, reg: reg}
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
		p.pool.closeIdle()
	})
	return f
}

func (f *front) do(t testing.TB, method, path string, body io.Reader, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, f.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return res, string(b)
}

// wantError asserts an error answer of the given status and class.
func wantError(t *testing.T, res *http.Response, body string, status int, class ErrorClass) {
	t.Helper()
	if res.StatusCode != status {
		t.Errorf("status = %d, want %d (body %q)", res.StatusCode, status, body)
	}
	if got := res.Header.Get("X-Healgate-Error"); got != string(class) {
		t.Errorf("X-Healgate-Error = %q, want %q", got, class)
	}
	id := res.Header.Get("X-Request-ID")
	if id == "" || !strings.Contains(body, "request "+id) {
		t.Errorf("X-Request-ID %q not in body %q", id, body)
	}
	if !strings.Contains(body, string(class)) {
		t.Errorf("body %q does not name class %s", body, class)
	}
}

// fakeHealth is a Health whose answers the test sets.
type fakeHealth struct {
	mu      sync.Mutex
	ready   map[string]bool
	healing map[string]chan struct{}
	held    chan struct{}   // closed by Healing, see heldSignal
	asked   chan struct{}   // closed by Healing, see askedSignal
	autoEnd map[string]bool // see endHealWhenAsked
}

// endHealWhenAsked makes the heal of u end the first time a request asks
// whether u is being healed: the request sees the heal and is released by
// its end.
func (h *fakeHealth) endHealWhenAsked(u string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.autoEnd == nil {
		h.autoEnd = map[string]bool{}
	}
	h.autoEnd[u] = true
}

// askedSignal returns a channel closed the next time a request asks whether
// an upstream is being healed, healing or not.
func (h *fakeHealth) askedSignal() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.asked = make(chan struct{})
	return h.asked
}

func newFakeHealth() *fakeHealth {
	return &fakeHealth{ready: map[string]bool{}, healing: map[string]chan struct{}{}}
}

func (h *fakeHealth) Ready(u string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.ready[u]
	return !ok || r
}

func (h *fakeHealth) Healing(u string) (<-chan struct{}, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.healing[u]
	if ok && h.autoEnd[u] {
		// The heal ends as the request looks at it: it is held, then
		// released at once, with no goroutine to time it.
		close(c)
		delete(h.healing, u)
		delete(h.autoEnd, u)
		h.ready[u] = true
	}
	if h.asked != nil {
		close(h.asked)
		h.asked = nil
	}
	if ok && h.held != nil {
		// A request is looking at a heal in progress: it is (about to be) held.
		close(h.held)
		h.held = nil
	}
	return c, ok
}

// heldSignal returns a channel closed the next time a request asks about a
// heal in progress, so a test can end the heal while the request is held.
func (h *fakeHealth) heldSignal() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held = make(chan struct{})
	return h.held
}

func (h *fakeHealth) startHeal(u string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ready[u] = false
	h.healing[u] = make(chan struct{})
}

func (h *fakeHealth) endHeal(u string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ready[u] = true
	close(h.healing[u])
	delete(h.healing, u)
}

// recordObserver records outcomes.
type recordObserver struct {
	mu       sync.Mutex
	out      []Outcome
	breakers []string // "upstream from->to"
}

func (o *recordObserver) BreakerChanged(upstream, from, to string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.breakers = append(o.breakers, upstream+" "+from+"->"+to)
}

func (o *recordObserver) breakerChanges() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.breakers)
}

func (o *recordObserver) Observe(x Outcome) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.out = append(o.out, x)
}

func (o *recordObserver) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.out)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metricValue returns a counter's or gauge's current value.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	switch {
	case d.Counter != nil:
		return d.GetCounter().GetValue()
	case d.Gauge != nil:
		return d.GetGauge().GetValue()
	}
	t.Fatalf("metric %v is neither a counter nor a gauge", m.Desc())
	return 0
}
