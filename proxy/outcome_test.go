package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// resetMidBody sends the headers and 100 of the 1000 bytes it announced,
// then resets the connection (SO_LINGER 0: an RST, not a FIN).
func resetMidBody(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Length", "1000")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, strings.Repeat("x", 100))
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		panic(err)
	}
	conn, _, err := rc.Hijack()
	if err != nil {
		panic(err)
	}
	if err := conn.(*net.TCPConn).SetLinger(0); err != nil {
		panic(err)
	}
	conn.Close()
}

func TestMidBodyResetFeedsBreaker(t *testing.T) {
	b := newBackend(t, resetMidBody)
	cfg := testConfig(up("a", b.URL))
	cfg.Breaker.ConsecutiveFailures = 3
	cfg.Breaker.OpenTimeout = 30 * time.Second
	obs := &recordObserver{}
	f := newFront(t, cfg, Options{Observer: obs})

	for i := range 3 {
		res, err := f.client.Get(f.srv.URL + "/web-apps/app.js")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || err == nil || len(got) != 100 {
			t.Fatalf("request %d: %d, read %d bytes, %v; want 200, 100 bytes, then a cut connection", i, res.StatusCode, len(got), err)
		}
	}
	res, body := f.do(t, "GET", "/web-apps/app.js", nil)
	wantError(t, res, body, http.StatusServiceUnavailable, ClassBreakerOpen)
	if n := b.hits.Load(); n != 3 {
		t.Errorf("upstream hits = %d, want 3 (the open breaker sheds the 4th)", n)
	}
	if got := obs.breakerChanges(); !slices.Equal(got, []string{"a closed->open"}) {
		t.Errorf("BreakerObserver saw %q, want [a closed->open]", got)
	}
	if v := metricValue(t, f.p.metrics.upstreamErrors.WithLabelValues("a", string(ClassReset))); v != 3 {
		t.Errorf("healgate_upstream_errors_total{upstream_reset} = %v, want 3", v)
	}
	if v := metricValue(t, f.p.metrics.requests.WithLabelValues("default", "a", "200", string(ClassReset))); v != 3 {
		t.Errorf("healgate_requests_total{200,upstream_reset} = %v, want 3", v)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.out) != 3 {
		t.Fatalf("observer saw %d outcomes, want 3", len(obs.out))
	}
	for i, o := range obs.out {
		if o.Upstream != "a" || o.Class != ClassReset || o.Status != http.StatusOK || o.Duration <= 0 {
			t.Errorf("outcome %d = %+v, want upstream a, class upstream_reset, status 200", i, o)
		}
	}
}

func TestMidBodyReadTimeoutFeedsBreaker(t *testing.T) {
	b := newBackend(t, stallMidBody)
	cfg := testConfig(up("a", b.URL))
	cfg.Timeouts.Read = 100 * time.Millisecond
	cfg.Breaker.ConsecutiveFailures = 1
	cfg.Breaker.OpenTimeout = 30 * time.Second
	f := newFront(t, cfg, Options{})
	res, err := f.client.Get(f.srv.URL + "/download")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err == nil || string(got) != "first" {
		t.Fatalf("read %q, %v; want the first chunk then a cut connection", got, err)
	}
	if v := metricValue(t, f.p.metrics.upstreamErrors.WithLabelValues("a", string(ClassUpstreamTimeout))); v != 1 {
		t.Errorf("healgate_upstream_errors_total{upstream_timeout} = %v, want 1", v)
	}
	if s := f.p.Upstreams()[0].Breaker; s != "open" {
		t.Errorf("breaker %s after a read timeout mid-body (threshold 1), want open", s)
	}
}

// TestBodyOutcomeAtItsEnd checks when a response's outcome is reported: not
// at its headers but when its body ends, exactly once per try.
func TestBodyOutcomeAtItsEnd(t *testing.T) {
	release := make(chan struct{})
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first,")
		http.NewResponseController(w).Flush()
		if r.URL.Path == "/held" {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		io.WriteString(w, "last")
	})
	cfg := testConfig(up("a", b.URL))
	obs := &recordObserver{}
	f := newFront(t, cfg, Options{Observer: obs})
	br := f.p.pool.all[0].breaker

	res, err := f.client.Get(f.srv.URL + "/held")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	first := make([]byte, len("first,"))
	if _, err := io.ReadFull(res.Body, first); err != nil {
		t.Fatal(err)
	}
	if n := obs.len(); n != 0 {
		t.Errorf("observer saw %d outcomes while the body was still coming, want 0", n)
	}
	if c := br.Counts(); c.Requests != 1 || c.TotalSuccesses != 0 {
		t.Errorf("breaker counts %+v mid-body, want 1 request in flight, no success yet", c)
	}
	close(release)
	rest, err := io.ReadAll(res.Body)
	if err != nil || string(rest) != "last" {
		t.Fatalf("rest of the body %q, %v", rest, err)
	}
	waitFor(t, 2*time.Second, "the outcome at the body's end", func() bool { return obs.len() == 1 })
	obs.mu.Lock()
	o := obs.out[0]
	obs.mu.Unlock()
	if o.Class != ClassNone || o.Status != http.StatusOK {
		t.Errorf("outcome %+v, want success with status 200", o)
	}

	const n = 5
	for range n - 1 {
		res, body := f.do(t, "GET", "/", nil)
		if res.StatusCode != http.StatusOK || body != "first,last" {
			t.Fatalf("GET /: %d %q", res.StatusCode, body)
		}
	}
	waitFor(t, 2*time.Second, "every outcome", func() bool { return obs.len() == n })
	if c := br.Counts(); c.Requests != n || c.TotalSuccesses != n || c.TotalFailures != 0 {
		t.Errorf("breaker counts %+v after %d whole responses, want %d successes, each counted once", c, n, n)
	}
	if v := upstreamErrorsTotal(t, f); v != 0 {
		t.Errorf("healgate_upstream_errors_total = %v, want 0", v)
	}
}

func TestClientGoneMidBodyExcluded(t *testing.T) {
	b := newBackend(t, stallMidBody)
	cfg := testConfig(up("a", b.URL))
	cfg.Breaker.ConsecutiveFailures = 1
	obs := &recordObserver{}
	f := newFront(t, cfg, Options{Observer: obs})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/download", nil)
	res, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, len("first"))
	if _, err := io.ReadFull(res.Body, first); err != nil {
		t.Fatal(err)
	}
	cancel() // the client goes away mid-body
	res.Body.Close()
	waitFor(t, 2*time.Second, "the request to be counted as 499", func() bool {
		return metricValue(t, f.p.metrics.requests.WithLabelValues("default", "a", "499", string(ClassClientCanceled))) == 1
	})
	wantBreakerUntouched(t, f, obs)
	if c := f.p.pool.all[0].breaker.Counts(); c.TotalExclusions != 1 {
		t.Errorf("breaker counts %+v, want the try excluded once", c)
	}
}
