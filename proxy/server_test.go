package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"errors"
)

func TestHTTP10ConnectionClose(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		io.WriteString(w, "converted:"+string(body))
	})
	f := newFront(t, testConfig(up("a", b.URL)), Options{})
	conn, err := net.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	const req = "POST /ConvertService.ashx HTTP/1.0\r\nHost: docs\r\nConnection: close\r\n" +
		"Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || string(body) != `converted:{"a":1}` {
		t.Errorf("got %d %q", res.StatusCode, body)
	}
	// The server closes the connection after the answer.
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("connection still open after an HTTP/1.0 Connection: close exchange")
	}
}

func TestHealingHoldServesAfterHeal(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	h := newFakeHealth()
	h.startHeal("a")
	cfg := testConfig(up("a", b.URL))
	cfg.Healing.HoldTimeout = 5 * time.Second
	f := newFront(t, cfg, Options{Health: h})
	h.endHealWhenAsked("a")
	res, body := f.do(t, "GET", "/", nil)
	if res.StatusCode != 200 || body != "ok" {
		t.Errorf("held request: %d %q, want 200 ok", res.StatusCode, body)
	}
}

// TestHealingHoldAfterBackupRefused: the primary is being healed and the
// backup refuses; the request is held for the heal and served by the healed
// primary, not answered with the backup's 502.
func TestHealingHoldAfterBackupRefused(t *testing.T) {
	a := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "healed") })
	h := newFakeHealth()
	h.startHeal("a")
	cfg := testConfig(up("a", a.URL), backupUp("b", refusedURL(t)))
	cfg.Healing.HoldTimeout = 5 * time.Second
	f := newFront(t, cfg, Options{Health: h})
	h.endHealWhenAsked("a")
	res, body := f.do(t, "GET", "/", nil)
	if res.StatusCode != 200 || body != "healed" {
		t.Errorf("got %d %q, want 200 from the healed primary", res.StatusCode, body)
	}
}

// TestHealingHoldAfterBackupRefusedExpires: the heal outlasts the hold, so
// the answer is 503 healing, not the backup's refusal.
func TestHealingHoldAfterBackupRefusedExpires(t *testing.T) {
	a := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	h := newFakeHealth()
	h.startHeal("a")
	cfg := testConfig(up("a", a.URL), backupUp("b", refusedURL(t)))
	cfg.Healing.HoldTimeout = 100 * time.Millisecond
	f := newFront(t, cfg, Options{Health: h})
	res, body := f.do(t, "GET", "/", nil)
	wantError(t, res, body, http.StatusServiceUnavailable, ClassHealing)
	if !strings.Contains(body, "connection refused") {
		t.Errorf("body %q does not name the backup's refusal", body)
	}
	if a.hits.Load() != 0 {
		t.Errorf("the upstream being healed got %d requests", a.hits.Load())
	}
}

func TestHealingHoldExpires(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	h := newFakeHealth()
	h.startHeal("a")
	cfg := testConfig(up("a", b.URL))
	cfg.Healing.HoldTimeout = 150 * time.Millisecond
	f := newFront(t, cfg, Options{Health: h})
	start := time.Now()
	res, body := f.do(t, "GET", "/", nil)
	wantError(t, res, body, http.StatusServiceUnavailable, ClassHealing)
	if res.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("answered after %v, before the hold timeout", d)
	}
	if b.hits.Load() != 0 {
		t.Errorf("upstream being healed got %d requests", b.hits.Load())
	}
}

func TestUnreadyPrimaryTriedWhenNothingElse(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	h := newFakeHealth()
	h.ready["a"] = false
	f := newFront(t, testConfig(up("a", b.URL)), Options{Health: h})
	if res, body := f.do(t, "GET", "/", nil); res.StatusCode != 200 || body != "ok" {
		t.Errorf("got %d %q", res.StatusCode, body)
	}
	if f.p.Ready() {
		t.Error("Ready() with the only upstream unready")
	}
}

// genReader yields n deterministic bytes.
type genReader struct{ n, i int64 }

func (g *genReader) Read(p []byte) (int, error) {
	if g.i >= g.n {
		return 0, io.EOF
	}
	if int64(len(p)) > g.n-g.i {
		p = p[:g.n-g.i]
	}
	for j := range p {
		p[j] = byte((g.i + int64(j)) * 31)
	}
	g.i += int64(len(p))
	return len(p), nil
}

func TestStreamedUploadBoundedMemory(t *testing.T) {
	const size = 100 << 20
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			w.WriteHeader(500)
			return
		}
		io.WriteString(w, hex.EncodeToString(h.Sum(nil))+" "+itoa(n))
	})
	f := newFront(t, testConfig(up("a", b.URL)), Options{})
	want := sha256.New()
	io.Copy(want, &genReader{n: size})

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	// Chunked (no Content-Length): the proxy reads MaxReplayBody+1 bytes,
	// then must stream the rest.
	req, _ := http.NewRequestWithContext(t.Context(), "POST", f.srv.URL+"/upload", io.NopCloser(&genReader{n: size}))
	res, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	runtime.ReadMemStats(&after)
	if wantS := hex.EncodeToString(want.Sum(nil)) + " " + itoa(size); string(got) != wantS {
		t.Fatalf("backend saw %q, want %q", got, wantS)
	}
	// Everything in this process (client, proxy, backend) allocated less
	// than half the body: it was streamed, not buffered.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/2 {
		t.Errorf("allocated %d MiB for a %d MiB upload", alloc>>20, size>>20)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestListenUnix(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hg.sock")

	// A stale socket (its listener gone, the file left behind) is replaced.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	ln, err := Listen(t.Context(), "unix:"+path, nil)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	defer ln.Close()

	// A live one is not.
	if _, err := Listen(t.Context(), "unix:"+path, nil); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("live socket: err = %v, want EADDRINUSE", err)
	}
	// Nor is a regular file.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Listen(t.Context(), "unix:"+file, nil); err == nil {
		t.Error("a regular file was replaced by a socket")
	}
}

func TestServeOverUnixSocketTrustsPeer(t *testing.T) {
	var xff, proto string
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		xff, proto = r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto")
	})
	cfg := testConfig(up("a", b.URL))
	cfg.TrustedProxies = nil
	p, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "hg.sock")
	ln, err := Listen(t.Context(), "unix:"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, ln) }()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}
	req, _ := http.NewRequest("GET", "http://docs/", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("X-Forwarded-Proto", "https")
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	tr.CloseIdleConnections()
	stop()
	if err := <-served; err != nil {
		t.Errorf("Serve = %v", err)
	}
	if xff != "203.0.113.9" || proto != "https" {
		t.Errorf("unix peer not trusted: X-Forwarded-For %q, Proto %q", xff, proto)
	}
}

func TestRouteMatchDoesNotAllocate(t *testing.T) {
	p, err := New(testConfig(up("a", "http://127.0.0.1:8000")), Options{})
	if err != nil {
		t.Fatal(err)
	}
	reqs := []*http.Request{
		httptestRequest("GET", "/ConvertService.ashx", nil),
		httptestRequest("GET", "/doc/k/c/?EIO=4&transport=websocket", http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}}),
		httptestRequest("GET", "/web-apps/apps/api/documents/api.js", nil),
	}
	want := []string{"conversion", "websocket", "default"}
	for i, r := range reqs {
		if got := p.routes.match(r).name; got != want[i] {
			t.Errorf("%s: route %q, want %q", r.URL, got, want[i])
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, r := range reqs {
			p.routes.match(r)
		}
	}); n != 0 {
		t.Errorf("route match allocates %v times", n)
	}
}

func httptestRequest(method, target string, h http.Header) *http.Request {
	r, _ := http.NewRequestWithContext(context.Background(), method, "http://docs"+target, nil)
	for k, v := range h {
		r.Header[k] = v
	}
	return r
}

func TestListenSystemdTakesPassedSocketByName(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	passed := map[string][]net.Listener{"proxy": {ln}}
	got, err := Listen(t.Context(), "systemd:proxy", passed)
	if err != nil || got != ln {
		t.Fatalf("Listen(systemd:proxy) = %v, %v; want the passed listener", got, err)
	}
	if _, err := Listen(t.Context(), "systemd:admin", passed); err == nil {
		t.Error("Listen(systemd:admin) with no such socket succeeded")
	}
	passed["twice"] = []net.Listener{ln, ln}
	if _, err := Listen(t.Context(), "systemd:twice", passed); err == nil {
		t.Error("Listen(systemd:twice) with two sockets of that name succeeded")
	}
}

// TestRefusedThenHealHolds: the only upstream refuses (it just crashed) and
// the healer starts healing it a moment later, as a D-Bus notice arrives a
// few milliseconds after the crash. The request is held for the heal and
// served by the restarted upstream, not answered 502 in that gap.
func TestRefusedThenHealHolds(t *testing.T) {
	url := refusedURL(t)
	h := newFakeHealth()
	cfg := testConfig(up("a", url))
	cfg.Healing.HoldTimeout = 5 * time.Second
	f := newFront(t, cfg, Options{Health: h})

	asked := h.askedSignal()
	restarted := make(chan *http.Server, 1)
	go func() {
		<-asked // the request's try was refused; the healer learns of the crash
		held := h.heldSignal()
		h.startHeal("a")
		ln, err := net.Listen("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Errorf("restart the upstream: %v", err)
			h.endHeal("a")
			restarted <- nil
			return
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "restarted") })}
		go srv.Serve(ln)
		<-held // the request saw the heal and waits for it
		h.endHeal("a")
		restarted <- srv
	}()
	res, body := f.do(t, "POST", "/", strings.NewReader("x"))
	if srv := <-restarted; srv != nil {
		defer srv.Close()
	}
	if res.StatusCode != 200 || body != "restarted" {
		t.Errorf("got %d %q (%s), want 200 from the restarted upstream", res.StatusCode, body, res.Header.Get("X-Healgate-Error"))
	}
}

// TestRefusedWithoutHealAnswersSoon: nothing listens and no heal starts; the
// answer is 502 upstream_refused after at most the short grace given to the
// healer, and at once when the checks already call the upstream down.
func TestRefusedWithoutHealAnswersSoon(t *testing.T) {
	h := newFakeHealth()
	cfg := testConfig(up("a", refusedURL(t)))
	cfg.Healing.HoldTimeout = 5 * time.Second
	f := newFront(t, cfg, Options{Health: h})
	start := time.Now()
	res, body := f.do(t, "GET", "/", nil)
	wantError(t, res, body, http.StatusBadGateway, ClassRefused)
	if d := time.Since(start); d >= cfg.Healing.HoldTimeout {
		t.Errorf("answered after %v, not before the hold timeout %v", d, cfg.Healing.HoldTimeout)
	}
	h.mu.Lock()
	h.ready["a"] = false
	h.mu.Unlock()
	asked := h.askedSignal()
	res, body = f.do(t, "GET", "/", nil)
	wantError(t, res, body, http.StatusBadGateway, ClassRefused)
	select {
	case <-asked:
	default:
		t.Error("the proxy did not look for a heal before answering")
	}
}
