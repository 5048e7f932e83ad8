package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAdversarialTruncatedBodyIsNot200 — BUG: when a client's request body
// breaks off (Content-Length not reached before the client half-closes, or
// malformed chunked encoding) healgate writes nothing, so net/http sends
// "200 OK" with an empty body for a POST that never reached any upstream;
// the log and metrics say 499. A client still reading must get a 400 (or no
// response at all), never a success.
func TestAdversarialTruncatedBodyIsNot200(t *testing.T) {
	up := startDsemu(t, "primary", "ok")
	g := startHealgate(t, gateConfig{upstreams: one(up)})
	for name, raw := range map[string]string{
		"short-content-length": "POST /upload/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("a", 50),
		"bad-chunk":            "POST /upload/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n",
		"big-short":            "POST /upload/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n\r\n" + strings.Repeat("a", 2000000),
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", g.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := fmt.Fprint(c, raw); err != nil {
				t.Fatal(err)
			}
			c.(*net.TCPConn).CloseWrite()
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return // the connection was dropped: acceptable
			}
			res.Body.Close()
			if res.StatusCode < 400 {
				t.Errorf("a request whose body broke off was answered %s; want 400 or a dropped connection", res.Status)
			}
		})
	}
}

// TestAdversarialMidBodyResetFeedsBreaker — BUG: an upstream that sends its
// headers and then resets the connection mid-body is reported to the
// breaker as a success (report runs before the body is read) and is missing
// from healgate_upstream_errors_total, though healgate_requests_total
// counts the same requests as class upstream_reset. More consecutive
// mid-body resets than breaker.consecutive_failures leave the breaker
// closed.
func TestAdversarialMidBodyResetFeedsBreaker(t *testing.T) {
	up := startDsemu(t, "primary", "ok")
	g := startHealgate(t, gateConfig{upstreams: one(up), breakerFailures: 3})
	up.setMode(t, "reset")
	for range 6 {
		// Each answer is a 200 whose body breaks off: an error is expected.
		_, _ = try(t, g.client, http.MethodGet, g.url("/index.html"), reqOpts{limit: 10 * time.Second})
	}
	_, metrics := g.adminGet(t, "/metrics")
	if !strings.Contains(metrics, `healgate_upstream_errors_total{class="upstream_reset",upstream="primary"}`) {
		t.Errorf("healgate_upstream_errors_total does not count the mid-body resets")
	}
	if b := g.breaker(t, "primary"); b != "open" {
		t.Errorf("breaker %q after 6 mid-body resets (threshold 3), want open", b)
	}
}
