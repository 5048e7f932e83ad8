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

func TestRefusedPrimaryBackupServes(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, "backup:"+string(body))
	})
	cfg := testConfig(up("primary", refusedURL(t)), backupUp("backup", b.URL))
	cfg.Breaker.Disabled = true // every request must meet the refusing primary
	f := newFront(t, cfg, Options{})

	for i := range 5 {
		res, body := f.do(t, "GET", "/web-apps/app.js", nil)
		if res.StatusCode != 200 || body != "backup:" {
			t.Fatalf("GET %d: %d %q", i, res.StatusCode, body)
		}
	}
	res, body := f.do(t, "POST", "/coauthoring/CommandService.ashx", strings.NewReader(`{"c":"info"}`))
	if res.StatusCode != 200 || body != `backup:{"c":"info"}` {
		t.Fatalf("POST: %d %q", res.StatusCode, body)
	}
	if n := b.posts.Load(); n != 1 {
		t.Errorf("backup received the POST %d times, want exactly 1", n)
	}
	if n := metricValue(t, f.p.metrics.retries.WithLabelValues("default")); n != 6 {
		t.Errorf("retries = %v, want 6", n)
	}
}

// resetAfterBody reads the whole request body, then drops the connection
// without answering: the request's bytes reached the upstream.
func resetAfterBody(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	conn.Close()
}

func TestResetAfterBytesPOSTNotReplayedGETIs(t *testing.T) {
	primary := newBackend(t, resetAfterBody)
	backup := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "backup") })
	cfg := testConfig(up("primary", primary.URL), backupUp("backup", backup.URL))
	f := newFront(t, cfg, Options{})

	res, body := f.do(t, "POST", "/coauthoring/CommandService.ashx", strings.NewReader("payload"))
	wantError(t, res, body, http.StatusBadGateway, ClassReset)
	if p, b := primary.posts.Load(), backup.posts.Load(); p != 1 || b != 0 {
		t.Errorf("POST reached primary %d, backup %d times; want 1, 0", p, b)
	}

	res, body = f.do(t, "GET", "/healthcheck", nil)
	if res.StatusCode != 200 || body != "backup" {
		t.Fatalf("GET: %d %q", res.StatusCode, body)
	}
	if p, b := primary.hits.Load(), backup.hits.Load(); p != 2 || b != 1 {
		t.Errorf("hits: primary %d, backup %d; want 2, 1", p, b)
	}
}

func TestNonIdempotentReplayedWhenAllowed(t *testing.T) {
	primary := newBackend(t, resetAfterBody)
	backup := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, string(b))
	})
	cfg := testConfig(up("primary", primary.URL), backupUp("backup", backup.URL))
	cfg.NextUpstream.NonIdempotent = true
	f := newFront(t, cfg, Options{})
	res, body := f.do(t, "POST", "/x", strings.NewReader("same body"))
	if res.StatusCode != 200 || body != "same body" {
		t.Fatalf("POST: %d %q", res.StatusCode, body)
	}
}

func TestKeyedRequestNotSplitAfterBytes(t *testing.T) {
	a := newBackend(t, resetAfterBody)
	b := newBackend(t, resetAfterBody)
	cfg := testConfig(up("a", a.URL), up("b", b.URL))
	f := newFront(t, cfg, Options{})
	res, body := f.do(t, "GET", "/doc/key1/c/?EIO=4&transport=polling", nil)
	wantError(t, res, body, http.StatusBadGateway, ClassReset)
	if n := a.hits.Load() + b.hits.Load(); n != 1 {
		t.Errorf("keyed GET reached upstreams %d times, want 1", n)
	}
}

func TestStickyPinsKeyToOnePrimary(t *testing.T) {
	var seen [2]int
	a := newBackend(t, func(w http.ResponseWriter, r *http.Request) { seen[0]++ })
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { seen[1]++ })
	cfg := testConfig(up("a", a.URL), up("b", b.URL))
	f := newFront(t, cfg, Options{})
	paths := []string{"/doc/K7/c/?EIO=4", "/x?shardkey=K7", "/coauthoring?WOPISrc=K7"}
	for range 3 {
		for _, p := range paths {
			f.do(t, "GET", p, nil)
		}
	}
	if !(seen[0] == 9 && seen[1] == 0) && !(seen[0] == 0 && seen[1] == 9) {
		t.Errorf("key K7 spread over upstreams: %v", seen)
	}
	// Keys spread over both nodes.
	for i := range 40 {
		f.do(t, "GET", "/x?shardkey=k"+string(rune('a'+i%26))+string(rune('a'+i/26)), nil)
	}
	if seen[0] == 9 || seen[1] == 9 || seen[0] == 0 || seen[1] == 0 {
		t.Errorf("40 keys all went to one node: %v", seen)
	}
}

func TestStatusPassedThroughWhenTriesRunOut(t *testing.T) {
	a := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "a is busy")
	})
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, "b is broken")
	})
	cfg := testConfig(up("a", a.URL), up("b", b.URL))
	cfg.Breaker.Disabled = true
	f := newFront(t, cfg, Options{})
	res, body := f.do(t, "GET", "/", nil)
	if res.StatusCode != http.StatusBadGateway || body != "b is broken" || res.Header.Get("X-Healgate-Error") != "" {
		t.Errorf("got %d %q (%q), want the last upstream's own 502", res.StatusCode, body, res.Header.Get("X-Healgate-Error"))
	}
	if a.hits.Load() != 1 || b.hits.Load() != 1 {
		t.Errorf("hits a=%d b=%d, want 1 each", a.hits.Load(), b.hits.Load())
	}
}

func TestBreakerOpens(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	cfg := testConfig(up("a", b.URL))
	cfg.Breaker.ConsecutiveFailures = 3
	cfg.Breaker.OpenTimeout = 30 * time.Second
	obs := &recordObserver{}
	f := newFront(t, cfg, Options{Observer: obs})
	for i := range 3 {
		res, _ := f.do(t, "GET", "/", nil)
		if res.StatusCode != http.StatusBadGateway || res.Header.Get("X-Healgate-Error") != "" {
			t.Fatalf("request %d: %d %q, want the upstream's 502", i, res.StatusCode, res.Header.Get("X-Healgate-Error"))
		}
	}
	res, body := f.do(t, "GET", "/", nil)
	wantError(t, res, body, http.StatusServiceUnavailable, ClassBreakerOpen)
	if ra := res.Header.Get("Retry-After"); ra != "30" && ra != "29" {
		t.Errorf("Retry-After = %q, want about 30", ra)
	}
	if b.hits.Load() != 3 {
		t.Errorf("upstream hits = %d, want 3 (the open breaker sheds the 4th)", b.hits.Load())
	}
	if obs.len() != 3 {
		t.Errorf("observer saw %d outcomes, want 3", obs.len())
	}
	if got := obs.breakerChanges(); !slices.Equal(got, []string{"a closed->open"}) {
		t.Errorf("BreakerObserver saw %q, want [a closed->open]", got)
	}
	if f.p.Ready() {
		t.Error("Ready() = true with the only breaker open")
	}
	if st := f.p.Upstreams(); st[0].Breaker != "open" {
		t.Errorf("Upstreams()[0].Breaker = %q, want open", st[0].Breaker)
	}
	if v := metricValue(t, f.p.metrics.breaker.WithLabelValues("a")); v != 2 {
		t.Errorf("healgate_breaker_state = %v, want 2", v)
	}
}

func TestConversionSlowDoesNotTripOrRetry(t *testing.T) {
	release := make(chan struct{})
	slow := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, `{"error":-4}`)
	})
	other := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	cfg := testConfig(up("a", slow.URL), up("b", other.URL))
	cfg.Breaker.ConsecutiveFailures = 1
	cfg.Timeouts.ResponseHeader = 100 * time.Millisecond
	cfg.Routes[0].Timeouts.ResponseHeader = 300 * time.Millisecond
	cfg.Routes[0].Timeouts.Read = 0
	obs := &recordObserver{}
	f := newFront(t, cfg, Options{Observer: obs})

	for range 3 {
		res, body := f.do(t, "POST", "/ConvertService.ashx", strings.NewReader(`{"async":false}`))
		wantError(t, res, body, http.StatusGatewayTimeout, ClassUpstreamTimeout)
	}
	if n := slow.posts.Load(); n != 3 || other.hits.Load() != 0 {
		t.Errorf("slow got %d, other %d: a timed-out conversion must not be retried", n, other.hits.Load())
	}
	if st := f.p.Upstreams()[0].Breaker; st != "closed" {
		t.Errorf("breaker %s after slow conversions, want closed", st)
	}
	if obs.len() != 0 {
		t.Errorf("observer saw %d outcomes from a breaker:false route", obs.len())
	}
	// A conversion slower than the default route's header timeout but within
	// its own succeeds (fault corpus F1).
	go func() { time.Sleep(150 * time.Millisecond); close(release) }()
	res, body := f.do(t, "POST", "/ConvertService.ashx", strings.NewReader(`{}`))
	if res.StatusCode != 200 || body != `{"error":-4}` {
		t.Errorf("slow conversion: %d %q", res.StatusCode, body)
	}
}

func TestResponseHeaderTimeout(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	cfg := testConfig(up("a", b.URL))
	cfg.Timeouts.ResponseHeader = 100 * time.Millisecond
	cfg.NextUpstream.Tries = 1
	f := newFront(t, cfg, Options{})
	start := time.Now()
	res, body := f.do(t, "GET", "/", nil)
	wantError(t, res, body, http.StatusGatewayTimeout, ClassUpstreamTimeout)
	if !strings.Contains(body, "no response header within 100ms") {
		t.Errorf("body %q does not say which timeout", body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestReadTimeoutMidBody(t *testing.T) {
	b := newBackend(t, stallMidBody)
	cfg := testConfig(up("a", b.URL))
	cfg.Timeouts.Read = 100 * time.Millisecond
	f := newFront(t, cfg, Options{})
	req, _ := http.NewRequestWithContext(t.Context(), "GET", f.srv.URL+"/download", nil)
	res, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err == nil || string(got) != "first" {
		t.Errorf("read %q, %v; want the first chunk then a cut connection", got, err)
	}
	waitFor(t, 2*time.Second, "the request to be counted", func() bool {
		return metricValue(t, f.p.metrics.requests.WithLabelValues("default", "a", "200", string(ClassUpstreamTimeout))) == 1
	})
}

func TestConnectTimeout(t *testing.T) {
	cfg := testConfig(up("a", "http://127.0.0.1:1"))
	cfg.Timeouts.Connect = 100 * time.Millisecond
	f := newFront(t, cfg, Options{})
	// A dial that never completes, as to a blackholed address: it ends only
	// when the try's context is canceled.
	f.p.pool.all[0].transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: network, Err: context.Cause(ctx)}
	}
	res, body := f.do(t, "POST", "/x", strings.NewReader("x"))
	wantError(t, res, body, http.StatusGatewayTimeout, ClassConnectTimeout)
	if !strings.Contains(body, "connect to a 127.0.0.1:1: no connection within 100ms") {
		t.Errorf("body %q", body)
	}
}

func TestRefusedErrorBody(t *testing.T) {
	u := refusedURL(t)
	cfg := testConfig(up("docservice", u))
	f := newFront(t, cfg, Options{})
	start := time.Now()
	res, body := f.do(t, "GET", "/", nil)
	wantError(t, res, body, http.StatusBadGateway, ClassRefused)
	want := "502 Bad Gateway: upstream_refused (connect to docservice " + strings.TrimPrefix(u, "http://") + ": connection refused); request "
	if !strings.HasPrefix(body, want) {
		t.Errorf("body %q, want prefix %q", body, want)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refused answered after %v, want fast", d)
	}
}
