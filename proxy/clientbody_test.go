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

// TestClientBodyTimeout: a client that stalls mid-body gets 408
// client_timeout once server.body_timeout passes without a byte, whether
// its body was being buffered for replay or streamed; the upstream is never
// blamed (its breaker stays closed).
func TestClientBodyTimeout(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	cfg := testConfig(up("a", b.URL))
	cfg.Server.BodyTimeout = 200 * time.Millisecond
	cfg.NextUpstream.MaxReplayBody = 64
	f := newFront(t, cfg, Options{})
	for name, length := range map[string]int{"buffered": 60, "streamed": 4096} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", f.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			start := time.Now()
			// Send part of the body, then nothing (the connection stays open).
			req := "POST /upload/x HTTP/1.1\r\nHost: x\r\nContent-Length: " + itoa(int64(length)) + "\r\n\r\n" + strings.Repeat("a", 10)
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatal(err)
			}
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer to a stalled body: %v", err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusRequestTimeout || res.Header.Get(headerError) != string(ClassClientTimeout) {
				t.Fatalf("got %d %q %q, want 408 client_timeout", res.StatusCode, res.Header.Get(headerError), body)
			}
			if d := time.Since(start); d < cfg.Server.BodyTimeout {
				t.Errorf("answered after %v, before body_timeout %v", d, cfg.Server.BodyTimeout)
			}
		})
	}
	if st := f.p.Upstreams(); st[0].Breaker != "closed" {
		t.Errorf("breaker %q after clients stalled, want closed", st[0].Breaker)
	}
}

// TestClientBodySlowButSteady: a body that keeps coming, each piece within
// body_timeout, gets through however long it takes in all.
func TestClientBodySlowButSteady(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		io.WriteString(w, itoa(n))
	})
	cfg := testConfig(up("a", b.URL))
	cfg.Server.BodyTimeout = 300 * time.Millisecond
	f := newFront(t, cfg, Options{})
	pr, pw := io.Pipe()
	go func() {
		for range 5 {
			pw.Write([]byte(strings.Repeat("b", 100)))
			time.Sleep(100 * time.Millisecond) // the client's pace: below body_timeout, 500ms in all
		}
		pw.Close()
	}()
	res, body := f.do(t, "POST", "/upload/x", pr)
	if res.StatusCode != 200 || body != "500" {
		t.Errorf("got %d %q (%s), want 200 and 500 bytes through", res.StatusCode, body, res.Header.Get(headerError))
	}
}
