package e2e

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/healgate/healgate/internal/testproc"
)

// one returns a single-upstream list.
func one(e *emu) []upstreamSpec { return []upstreamSpec{{name: e.name, addr: e.addr}} }

// TestF1SlowConversionHTTP10 is fault corpus F1: a ~700 B conversion POST,
// passed by nginx's "location /" as HTTP/1.0 with "Connection: close", whose
// upstream answers only after longer than the default route allows but
// within the conversion route's budget. The client gets the upstream's own
// 200 and the breaker stays closed.
func TestF1SlowConversionHTTP10(t *testing.T) {
	const delay = 2500 * time.Millisecond
	up := startDsemu(t, "primary", "ok", "-convert-delay", delay.String())
	s := startStack(t, gateConfig{upstreams: one(up), responseHeader: time.Second, conversion: 6 * time.Second})
	if delay <= s.gate.cfg.responseHeader || delay >= s.gate.cfg.conversion {
		t.Fatalf("scenario: delay %v must lie between the default (%v) and conversion (%v) budgets",
			delay, s.gate.cfg.responseHeader, s.gate.cfg.conversion)
	}

	ids := newRequestIDs(t)
	id := ids.next()
	body := conversionBody("doc-f1")
	r := do(t, s.client, http.MethodPost, s.nginx.URL("/ConvertService.ashx"), reqOpts{
		body:   strings.NewReader(body),
		length: int64(len(body)),
		header: map[string]string{"Content-Type": "application/json", "Accept": "application/json", "X-Request-ID": id},
	})
	if r.status != http.StatusOK {
		t.Fatalf("status %d (%s), want the upstream's 200; body %q", r.status, r.header.Get("X-Healgate-Error"), r.body)
	}
	if got := r.header.Get("X-Dsemu-Name"); got != "primary" {
		t.Errorf("answered by %q, want the upstream primary", got)
	}
	if got := r.header.Get("X-Dsemu-Body-Bytes"); got != strconv.Itoa(len(body)) {
		t.Errorf("upstream read %s body bytes, want %d", got, len(body))
	}
	var conv struct {
		EndConvert bool   `json:"endConvert"`
		FileURL    string `json:"fileUrl"`
	}
	if err := json.Unmarshal([]byte(r.body), &conv); err != nil || !conv.EndConvert {
		t.Errorf("body %q is not the upstream's finished conversion (%v)", r.body, err)
	}
	if r.elapsed < delay {
		t.Errorf("answered after %v, before the upstream's %v delay: not the upstream's answer", r.elapsed, delay)
	}
	if n := up.stats(t).RequestIDs[id]; n != 1 {
		t.Errorf("upstream received the conversion %d times, want 1", n)
	}
	if b := s.gate.breaker(t, "primary"); b != "closed" {
		t.Errorf("breaker %q after a slow conversion, want closed", b)
	}
}

// TestF3TimeoutOnLongRouteDoesNotMarkDown is fault corpus F3: conversions
// time out at healgate (after the conversion budget, not the default one);
// a moment later GET /healthcheck is proxied normally. More conversions time
// out than the breaker's consecutive-failure threshold, and it stays closed.
func TestF3TimeoutOnLongRouteDoesNotMarkDown(t *testing.T) {
	up := startDsemu(t, "primary", "ok", "-convert-delay", "1m")
	cfg := gateConfig{upstreams: one(up), responseHeader: 500 * time.Millisecond, conversion: 2 * time.Second, breakerFailures: 2}
	s := startStack(t, cfg)
	cfg = s.gate.cfg

	n := int(cfg.breakerFailures) + 1
	ids := newRequestIDs(t)
	results := make([]result, n)
	sent := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		sent[i] = ids.next()
		wg.Go(func() {
			body := conversionBody("doc-f3")
			results[i], _ = try(t, s.client, http.MethodPost, s.nginx.URL("/ConvertService.ashx"), reqOpts{
				body: strings.NewReader(body), length: int64(len(body)),
				header: map[string]string{"Content-Type": "application/json", "X-Request-ID": sent[i]},
				limit:  cfg.conversion + 10*time.Second,
			})
		})
	}
	wg.Wait()
	for i, r := range results {
		if r.status != http.StatusGatewayTimeout || errorClass(r.header) != "upstream_timeout" {
			t.Errorf("conversion %d: %d %q, want 504 upstream_timeout; body %q", i, r.status, r.header.Get("X-Healgate-Error"), r.body)
		}
		if r.elapsed < cfg.conversion {
			t.Errorf("conversion %d timed out after %v, before the conversion route's %v", i, r.elapsed, cfg.conversion)
		}
		if r.elapsed > cfg.conversion+5*time.Second {
			t.Errorf("conversion %d took %v, far beyond the conversion route's %v", i, r.elapsed, cfg.conversion)
		}
	}

	// The scenario's pause (1 s in the corpus, scaled): not a synchronisation.
	time.Sleep(200 * time.Millisecond)
	r := s.get(t, "/healthcheck", nil)
	if r.status != http.StatusOK || strings.TrimSpace(r.body) != "true" || r.header.Get("X-Dsemu-Name") != "primary" {
		t.Errorf("GET /healthcheck after the timeouts: %d %q from %q (%s), want 200 true from primary",
			r.status, r.body, r.header.Get("X-Dsemu-Name"), r.header.Get("X-Healgate-Error"))
	}
	if b := s.gate.breaker(t, "primary"); b != "closed" {
		t.Errorf("breaker %q after %d conversion timeouts, want closed (conversions never feed it)", b, n)
	}
	st := up.stats(t)
	for i, id := range sent {
		if st.RequestIDs[id] != 1 {
			t.Errorf("conversion %d reached the upstream %d times, want 1 (a POST is never replayed)", i, st.RequestIDs[id])
		}
	}
}

// TestF4NothingListens is fault corpus F4: nothing listens on the upstream
// port. healgate answers at once (well within the connect timeout) with 502
// upstream_refused and a body naming "connection refused", through nginx.
func TestF4NothingListens(t *testing.T) {
	s := startStack(t, gateConfig{
		upstreams: []upstreamSpec{{name: "docservice", addr: testproc.FreeAddr(t)}},
		connect:   5 * time.Second,
	})
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		t.Run(m, func(t *testing.T) {
			opts := reqOpts{limit: s.gate.cfg.connect + 10*time.Second}
			if m == http.MethodPost {
				body := conversionBody("doc-f4")
				opts.body, opts.length = strings.NewReader(body), int64(len(body))
			}
			r := do(t, s.client, m, s.nginx.URL("/healthcheck"), opts)
			if r.status != http.StatusBadGateway || errorClass(r.header) != "upstream_refused" {
				t.Errorf("%d %q, want 502 upstream_refused", r.status, r.header.Get("X-Healgate-Error"))
			}
			if !strings.Contains(r.body, "connection refused") {
				t.Errorf("body %q does not name the cause \"connection refused\"", r.body)
			}
			if r.header.Get("X-Request-ID") == "" {
				t.Error("error answer has no X-Request-ID")
			}
			// A refusal is not a wait: it must come back well before a
			// connect timeout could have fired.
			if r.elapsed >= s.gate.cfg.connect/2 {
				t.Errorf("answered after %v; a refused connect must not wait for the %v connect timeout", r.elapsed, s.gate.cfg.connect)
			}
		})
	}
}

// TestF6HealthcheckFalse is fault corpus F6 at the proxy's level: Document
// Server's /healthcheck answering 200 "false" passes through unchanged (the
// readiness judgement belongs to the health checks, not to the data path).
func TestF6HealthcheckFalse(t *testing.T) {
	up := startDsemu(t, "primary", "false")
	s := startStack(t, gateConfig{upstreams: one(up)})
	for i := range 3 {
		r := s.get(t, "/healthcheck", nil)
		if r.status != http.StatusOK || r.body != "false\n" || r.header.Get("X-Dsemu-Name") != "primary" {
			t.Fatalf("GET /healthcheck #%d: %d %q from %q (%s), want the upstream's 200 \"false\\n\" unchanged",
				i, r.status, r.body, r.header.Get("X-Dsemu-Name"), r.header.Get("X-Healgate-Error"))
		}
	}
	// The healer's readiness probe compares the trimmed body with "true":
	// healgate's /readyz turns 503 once the readiness check has failed
	// `fall` times, and /status says why.
	var code int
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if code, body = s.gate.adminGet(t, "/readyz"); code == http.StatusServiceUnavailable {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling interval, bounded by the deadline
	}
	if code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz: %d %q, want 503 once readiness (body false) failed", code, body)
	}
	st := s.gate.status(t)
	if st.Healing == nil || len(st.Healing.Upstreams) == 0 || st.Healing.Upstreams[0].Readiness.OK {
		t.Errorf("/status does not show the failed readiness check: %+v", st.Healing)
	} else if d := st.Healing.Upstreams[0].Readiness.Detail; !strings.Contains(d, "false") {
		t.Errorf("readiness detail %q does not name the body false", d)
	}
}

// TestF11UpstreamHangs is fault corpus F11: the upstream accepts and never
// answers. Each client gets 504 upstream_timeout within the route's budget
// (never a hang); then, once the breaker's threshold is reached or the
// healer has started healing (action none here: /healthz/upstream fails so
// a kubelet would restart the container), 503 with Retry-After — never a
// wait beyond the route's timeout.
func TestF11UpstreamHangs(t *testing.T) {
	up := startDsemu(t, "primary", "hang")
	s := startStack(t, gateConfig{upstreams: one(up), responseHeader: time.Second, breakerFailures: 3})
	cfg := s.gate.cfg
	bound := time.Duration(cfg.tries)*cfg.responseHeader + 3*time.Second
	ids := newRequestIDs(t)

	timeouts := 0
	for i := 0; ; i++ {
		if i > int(cfg.breakerFailures)+1 {
			t.Fatalf("no 503 after %d timed-out requests (breaker threshold %d)", timeouts, cfg.breakerFailures)
		}
		id := ids.next()
		r, err := try(t, s.client, http.MethodGet, s.nginx.URL("/healthcheck"), reqOpts{
			header: map[string]string{"X-Request-ID": id},
			limit:  bound,
		})
		if err != nil {
			t.Fatalf("request %d: %v after %v: the client must never wait beyond the route's timeout", i, err, r.elapsed)
		}
		class := errorClass(r.header)
		if r.status == http.StatusGatewayTimeout && class == "upstream_timeout" {
			timeouts++
			if r.elapsed < cfg.responseHeader {
				t.Errorf("request %d timed out after %v, before the %v response_header timeout", i, r.elapsed, cfg.responseHeader)
			}
			continue
		}
		if r.status != http.StatusServiceUnavailable || (class != "breaker_open" && class != "healing") {
			t.Fatalf("request %d: %d %q, want 504 upstream_timeout, 503 breaker_open or 503 healing; body %q", i, r.status, class, r.body)
		}
		if timeouts == 0 {
			t.Fatalf("%s before any failure", class)
		}
		ra, err := strconv.Atoi(r.header.Get("Retry-After"))
		if err != nil || ra < 1 {
			t.Errorf("Retry-After %q, want a positive number of seconds", r.header.Get("Retry-After"))
		}
		if r.elapsed > cfg.responseHeader+500*time.Millisecond {
			t.Errorf("%s answered after %v, beyond the route's %v response_header timeout", class, r.elapsed, cfg.responseHeader)
		}
		if n := up.stats(t).RequestIDs[id]; n != 0 {
			t.Errorf("the hung upstream received the request %d times though healgate answered %s", n, class)
		}
		if class == "breaker_open" {
			if b := s.gate.breaker(t, "primary"); b != "open" {
				t.Errorf("/status breaker %q, want open", b)
			}
		} else if code, body := s.gate.adminGet(t, "/healthz/upstream"); code != http.StatusServiceUnavailable {
			t.Errorf("healing, but /healthz/upstream answers %d %q, want 503 restart due", code, body)
		}
		break
	}
}
