package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// browserConnection sends the upgrade with the browser's
// "Connection: keep-alive, Upgrade" instead of the library's "Upgrade".
type browserConnection struct{ next http.RoundTripper }

func (b browserConnection) RoundTrip(r *http.Request) (*http.Response, error) {
	r.Header.Set("Connection", "keep-alive, Upgrade")
	return b.next.RoundTrip(r)
}

// echoWS is a WebSocket backend: it greets, then echoes every message.
func echoWS(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !isWebSocket(r.Header) {
			io.WriteString(w, "plain:"+r.URL.RawQuery)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
			return
		}
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, append([]byte("echo:"), msg...)); err != nil {
				return
			}
		}
	}
}

func dialWS(t *testing.T, ctx context.Context, base string) *websocket.Conn {
	t.Helper()
	tr := &http.Transport{Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	url := "ws" + strings.TrimPrefix(base, "http") + "/doc/abc/c/?EIO=4&transport=websocket"
	c, res, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: browserConnection{tr}},
		HTTPHeader: http.Header{"X-Forwarded-Proto": {"https"}},
	})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("X-Request-ID") == "" {
		t.Errorf("handshake: %d, X-Request-ID %q", res.StatusCode, res.Header.Get("X-Request-ID"))
	}
	return c
}

func exchange(t *testing.T, ctx context.Context, c *websocket.Conn) {
	t.Helper()
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "hello" {
		t.Fatalf("server→client: %q, %v", msg, err)
	}
	for _, m := range []string{"2probe", "42[\"x\"]"} {
		if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatalf("client→server: %v", err)
		}
		if _, msg, err := c.Read(ctx); err != nil || string(msg) != "echo:"+m {
			t.Fatalf("echo: %q, %v", msg, err)
		}
	}
}

func TestWebSocketThroughProxyAndIdleClose(t *testing.T) {
	var proto string
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		proto = r.Header.Get("X-Forwarded-Proto")
		echoWS(t)(w, r)
	})
	cfg := testConfig(up("a", b.URL))
	cfg.Routes[1].Timeouts.Read = 300 * time.Millisecond // websocket route: idle close
	f := newFront(t, cfg, Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	c := dialWS(t, ctx, f.srv.URL)
	defer c.CloseNow()
	exchange(t, ctx, c)
	if proto != "https" {
		t.Errorf("X-Forwarded-Proto upstream = %q, want https unchanged (F9)", proto)
	}
	if v := metricValue(t, f.p.metrics.upgraded); v != 1 {
		t.Errorf("healgate_upgraded_connections = %v, want 1", v)
	}
	start := time.Now()
	_, _, err := c.Read(ctx)
	if err == nil {
		t.Fatal("read on an idle tunnel succeeded, want it closed")
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("idle tunnel closed after %v, want about 300ms", d)
	}
	waitFor(t, 5*time.Second, "the tunnel's end to be counted", func() bool {
		return metricValue(t, f.p.metrics.upgraded) == 0 &&
			metricValue(t, f.p.metrics.requests.WithLabelValues("websocket", "a", "101", "")) == 1
	})
}

func TestPollingURLIsPlainHTTP(t *testing.T) {
	b := newBackend(t, echoWS(t))
	f := newFront(t, testConfig(up("a", b.URL)), Options{})
	res, body := f.do(t, "GET", "/doc/abc/c/?EIO=4&transport=polling&t=Pabc", nil)
	if res.StatusCode != 200 || body != "plain:EIO=4&transport=polling&t=Pabc" {
		t.Errorf("polling: %d %q", res.StatusCode, body)
	}
	if v := metricValue(t, f.p.metrics.requests.WithLabelValues("default", "a", "200", "")); v != 1 {
		t.Errorf("default-route 200s = %v, want 1", v)
	}
}

func TestGracefulShutdown(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	ws := echoWS(t)
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(arrived)
			<-release
			io.WriteString(w, "done")
			return
		}
		ws(w, r)
	})
	cfg := testConfig(up("a", b.URL))
	cfg.Server.ShutdownTimeout = 10 * time.Second
	p, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(t.Context(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, ln) }()

	tr := &http.Transport{Proxy: nil}
	defer tr.CloseIdleConnections()
	slow := make(chan string, 1)
	go func() {
		res, err := (&http.Client{Transport: tr}).Get(base + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		slow <- res.Status + " " + string(b)
	}()
	<-arrived
	wctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c := dialWS(t, wctx, base)
	defer c.CloseNow()
	exchange(t, wctx, c)

	stop()
	// The listener closes first; the in-flight request is still running.
	waitFor(t, 5*time.Second, "the listener to close", func() bool {
		res, err := http.Get(base + "/slow")
		if err == nil {
			res.Body.Close()
		}
		return err != nil
	})
	close(release)
	if got := <-slow; got != "200 OK done" {
		t.Errorf("in-flight request: %q, want 200 OK done", got)
	}
	if _, _, err := c.Read(wctx); err == nil {
		t.Error("upgraded connection still open after shutdown")
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if errors.Is(context.Cause(wctx), context.DeadlineExceeded) {
		t.Error("test ran into its own deadline")
	}
}
