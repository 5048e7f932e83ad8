package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawExchange sends raw bytes to the front on a fresh connection, half-closes
// it when halfClose is set, and reads what comes back: a response, or
// (res == nil) everything the server sent before it closed the connection.
func rawExchange(t *testing.T, f *front, raw string, halfClose bool) (res *http.Response, body, rest string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", f.srv.Listener.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write request: %v", err)
	}
	if halfClose {
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
	}
	br := bufio.NewReader(c)
	peek, _ := br.Peek(1)
	if len(peek) == 0 {
		b, _ := io.ReadAll(br)
		return nil, "", string(b)
	}
	res, err = http.ReadResponse(br, nil)
	if err != nil {
		b, _ := io.ReadAll(br)
		return nil, "", string(peek) + string(b)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return res, string(b), ""
}

// upstreamErrorsTotal sums healgate_upstream_errors_total over its labels.
func upstreamErrorsTotal(t *testing.T, f *front) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "healgate_upstream_errors_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// wantBreakerUntouched asserts that every breaker counted no try either way
// (client faults are excluded) and is closed.
func wantBreakerUntouched(t *testing.T, f *front, obs *recordObserver) {
	t.Helper()
	for _, u := range f.p.pool.all {
		if c := u.breaker.Counts(); c.TotalExclusions != c.Requests || c.TotalFailures != 0 || c.TotalSuccesses != 0 {
			t.Errorf("breaker %s counts %+v, want none: a client's fault says nothing about the upstream", u.name, c)
		}
		if s := u.breakerState().String(); s != "closed" {
			t.Errorf("breaker %s is %s, want closed", u.name, s)
		}
	}
	if n := upstreamErrorsTotal(t, f); n != 0 {
		t.Errorf("healgate_upstream_errors_total = %v, want 0", n)
	}
	if n := obs.len(); n != 0 {
		t.Errorf("observer saw %d outcomes, want 0", n)
	}
}

// startBodyFailure starts a primary that answers only a whole request body,
// a backup that reads the body and answers nothing, and healgate in front of
// them with a small replay buffer (so bodies larger than 1 KiB stream) and a
// breaker that opens at the first failure, reporting to the returned
// observer.
func startBodyFailure(t *testing.T) (primary, backup *backend, obs *recordObserver, f *front) {
	t.Helper()
	primary = newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err == nil {
			io.WriteString(w, "primary got a whole body")
		}
	})
	backup = newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	cfg := testConfig(up("primary", primary.URL), backupUp("backup", backup.URL))
	cfg.NextUpstream.MaxReplayBody = 1 << 10
	cfg.NextUpstream.NonIdempotent = true // even so, a broken body is never retried
	cfg.Breaker.ConsecutiveFailures = 1
	cfg.Breaker.OpenTimeout = time.Minute
	obs = &recordObserver{}
	return primary, backup, obs, newFront(t, cfg, Options{Observer: obs})
}

func TestMalformedRequestBodyIs400(t *testing.T) {
	chunk := strings.Repeat("x", 2048)
	for name, raw := range map[string]string{
		// Buffered: the bad chunk size is read before any try.
		"buffered": "POST /upload/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n",
		// Streamed: 2 KiB went to the upstream before the bad chunk size.
		"streamed": "POST /upload/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + chunk + "\r\nZZ\r\nabc\r\n0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			primary, backup, obs, f := startBodyFailure(t)

			res, body, rest := rawExchange(t, f, raw, false)
			if res == nil {
				t.Fatalf("no response (connection closed after %q); want 400", rest)
			}
			wantError(t, res, body, http.StatusBadRequest, ClassBadRequest)
			if !strings.Contains(body, "malformed request body") {
				t.Errorf("body %q does not say the request body was malformed", body)
			}
			if !res.Close {
				t.Error("the 400 does not close the connection (the rest of a broken body is unread)")
			}
			if n := backup.hits.Load(); n != 0 {
				t.Errorf("backup received %d requests: a broken body must not be retried", n)
			}
			// A buffered body fails before any try; a streamed one during
			// the try on the primary (which may or may not have seen it).
			upName := ""
			if name == "streamed" {
				upName = "primary"
			} else if n := primary.hits.Load(); n != 0 {
				t.Errorf("primary received %d requests, want 0", n)
			}
			waitFor(t, 2*time.Second, "the 400 to be counted", func() bool {
				return metricValue(t, f.p.metrics.requests.WithLabelValues("default", upName, "400", string(ClassBadRequest))) == 1
			})
			wantBreakerUntouched(t, f, obs)
		})
	}
}

func TestRequestBodyCutByClientIsDropped(t *testing.T) {
	for name, raw := range map[string]string{
		"buffered": "POST /upload/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("a", 50),
		"streamed": "POST /upload/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n" + strings.Repeat("a", 2000),
	} {
		t.Run(name, func(t *testing.T) {
			_, backup, obs, f := startBodyFailure(t)

			// The FIN that cuts the body short is also, to net/http, the
			// client going away: it gets no answer at all, never a 200.
			res, body, rest := rawExchange(t, f, raw, true)
			if res != nil {
				t.Fatalf("a request whose body broke off was answered %s (%q); want a dropped connection", res.Status, body)
			}
			if rest != "" {
				t.Errorf("the server sent %q before closing; want nothing", rest)
			}
			waitFor(t, 2*time.Second, "the request to be counted as 499", func() bool {
				var n float64
				for _, u := range []string{"", "primary"} {
					n += metricValue(t, f.p.metrics.requests.WithLabelValues("default", u, "499", string(ClassClientCanceled)))
				}
				return n == 1
			})
			if n := backup.hits.Load(); n != 0 {
				t.Errorf("backup received %d requests: a broken body must not be retried", n)
			}
			wantBreakerUntouched(t, f, obs)
		})
	}
}
