package dsemu

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLimit bounds every wait in these tests.
const waitLimit = 5 * time.Second

// env is a Server serving a real loopback listener.
type env struct {
	s      *Server
	addr   string // host:port
	url    string // http://host:port
	client *http.Client
	stop   func() error // stops Serve and returns its error; idempotent
}

func start(t *testing.T, opts Options) *env {
	t.Helper()
	s := New(opts)
	ln, err := s.Listen(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	e := &env{
		s:      s,
		addr:   ln.Addr().String(),
		url:    "http://" + ln.Addr().String(),
		client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	}
	e.stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(waitLimit):
			t.Errorf("Serve did not return within %v of its context ending", waitLimit)
			return nil
		}
	})
	t.Cleanup(func() {
		e.client.CloseIdleConnections()
		if err := e.stop(); err != nil && !errors.Is(err, ErrCrashed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

// do sends a request and returns the status and body; it fails the test on a
// transport error.
func (e *env) do(t *testing.T, method, path, body string, hdr ...string) (int, string) {
	t.Helper()
	resp, err := e.send(t.Context(), method, path, body, hdr...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, path, err)
	}
	return resp.StatusCode, string(b)
}

// send sends a request with headers given as name, value pairs.
func (e *env) send(ctx context.Context, method, path, body string, hdr ...string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, e.url+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return e.client.Do(req)
}

func (e *env) setMode(t *testing.T, mode string) {
	t.Helper()
	if code, body := e.do(t, "POST", "/_dsemu/mode", mode); code != 200 {
		t.Fatalf("POST /_dsemu/mode %q: %d %s", mode, code, body)
	}
}

func (e *env) stats(t *testing.T) Stats {
	t.Helper()
	code, body := e.do(t, "GET", "/_dsemu/stats", "")
	if code != 200 {
		t.Fatalf("GET /_dsemu/stats: %d %s", code, body)
	}
	var st Stats
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("stats: %v in %s", err, body)
	}
	return st
}

// eventually polls cond until it holds or waitLimit passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitLimit)
		}
		<-tick.C
	}
}

// result is the outcome of an asynchronous request.
type result struct {
	code int
	body string
	err  error
}

// goSend sends a request in a goroutine owned by the test; the returned
// channel yields its result once.
func (e *env) goSend(t *testing.T, ctx context.Context, method, path string) <-chan result {
	ch := make(chan result, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		resp, err := e.send(ctx, method, path, "")
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- result{code: resp.StatusCode, body: string(b), err: err}
	})
	t.Cleanup(wg.Wait)
	return ch
}

func recv(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitLimit):
		t.Fatalf("no result within %v", waitLimit)
		return result{}
	}
}

func TestHealthcheckAndLiveness(t *testing.T) {
	e := start(t, Options{Name: "ds1"})
	if code, body := e.do(t, "GET", "/healthcheck", ""); code != 200 || strings.TrimSpace(body) != "true" {
		t.Errorf("healthcheck = %d %q, want 200 true", code, body)
	}
	resp, err := e.send(t.Context(), "GET", "/index.html", "")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Dsemu-Name") != "ds1" {
		t.Errorf("index.html = %d name %q, want 200 ds1", resp.StatusCode, resp.Header.Get("X-Dsemu-Name"))
	}

	e.setMode(t, "false")
	if code, body := e.do(t, "GET", "/healthcheck", ""); code != 200 || strings.TrimSpace(body) != "false" {
		t.Errorf("mode false: healthcheck = %d %q, want 200 false", code, body)
	}
	if code, _ := e.do(t, "GET", "/index.html", ""); code != 200 {
		t.Errorf("mode false: index.html = %d, want 200", code)
	}
	if code, _ := e.do(t, "GET", "/nope", ""); code != 404 {
		t.Errorf("unknown path = %d, want 404", code)
	}
}

func TestModeEndpoint(t *testing.T) {
	e := start(t, Options{})
	tests := []struct {
		body     string
		wantCode int
		wantMode string
	}{
		{"slow=250ms", 200, "slow=250ms"},
		{"  5xx \n", 200, "5xx=502"},
		{`{"mode":"5xx=503"}`, 200, "5xx=503"},
		{"bogus", 400, "5xx=503"},
		{"slow=fast", 400, "5xx=503"},
		{"5xx=404", 400, "5xx=503"},
		{"wait-for=127.0.0.1:1", 400, "5xx=503"},
		{`{"mode":"ok","colour":"red"}`, 400, "5xx=503"},
		{`{"mode":"ok","convert_delay":"soon"}`, 400, "5xx=503"}, // nothing applied
		{`{"convert_delay":"10ms","convert_error":-4,"poll_hold":"1ms"}`, 200, "5xx=503"},
		{"ok", 200, "ok"},
	}
	for _, tt := range tests {
		code, body := e.do(t, "POST", "/_dsemu/mode", tt.body)
		if code != tt.wantCode {
			t.Errorf("POST %q = %d %q, want %d", tt.body, code, body, tt.wantCode)
		}
		if code == 200 && strings.TrimSpace(body) != tt.wantMode {
			t.Errorf("POST %q answered %q, want the new mode %q", tt.body, body, tt.wantMode)
		}
		if code == 400 && strings.TrimSpace(body) == "" {
			t.Errorf("POST %q: 400 without a reason", tt.body)
		}
		if got := e.s.Mode().String(); got != tt.wantMode {
			t.Errorf("after POST %q mode = %q, want %q", tt.body, got, tt.wantMode)
		}
	}
	if _, body := e.do(t, "GET", "/_dsemu/mode", ""); strings.TrimSpace(body) != "ok" {
		t.Errorf("GET /_dsemu/mode = %q, want ok", body)
	}
	if code, body := e.do(t, "POST", "/ConvertService.ashx", "{}"); code != 200 || strings.TrimSpace(body) != `{"error":-4}` {
		t.Errorf("convert after convert_error -4 = %d %q", code, body)
	}
}

func TestHang(t *testing.T) {
	e := start(t, Options{Mode: Mode{Kind: KindHang}})

	// Received and counted, never answered: the client's deadline ends it.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := e.send(ctx, "GET", "/healthcheck", "")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hang: err = %v, want a deadline error", err)
	}
	if st := e.stats(t); st.Requests["GET /healthcheck"] != 1 {
		t.Errorf("hang: counted %v, want GET /healthcheck once", st.Requests)
	}

	// A hanging request is served once the mode changes.
	ch := e.goSend(t, t.Context(), "GET", "/healthcheck")
	eventually(t, "second request counted", func() bool { return e.s.Stats().Total == 2 })
	e.s.SetMode(Mode{Kind: KindFalse})
	if r := recv(t, ch); r.err != nil || r.code != 200 || strings.TrimSpace(r.body) != "false" {
		t.Errorf("after mode change: %+v, want 200 false", r)
	}

	// A hanging request ends, without an answer, when the server stops.
	e.s.SetMode(Mode{Kind: KindHang})
	ch = e.goSend(t, t.Context(), "POST", "/ConvertService.ashx")
	eventually(t, "third request counted", func() bool { return e.s.Stats().Total == 3 })
	if err := e.stop(); err != nil {
		t.Errorf("Serve = %v, want nil", err)
	}
	if r := recv(t, ch); r.err == nil {
		t.Errorf("hang then stop: got an answer %+v, want a dropped connection", r)
	}
}

func TestHangHandlerEndsOnClose(t *testing.T) {
	// Mounted on someone else's server, Close ends the hanging handlers.
	s := New(Options{Mode: Mode{Kind: KindHang}})
	ts := httptest.NewServer(s)
	defer ts.Close()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	errc := make(chan error, 1)
	go func() {
		resp, err := client.Get(ts.URL + "/index.html")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	eventually(t, "request counted", func() bool { return s.Stats().Total == 1 })
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(waitLimit):
		t.Fatal("Close did not return while a request hung")
	}
	if err := <-errc; err == nil {
		t.Error("hanging request got an answer after Close, want a dropped connection")
	}
}

func TestSlow(t *testing.T) {
	const delay = 150 * time.Millisecond
	e := start(t, Options{Mode: Mode{Kind: KindSlow, Delay: delay}})
	begin := time.Now()
	code, body := e.do(t, "GET", "/healthcheck", "")
	if elapsed := time.Since(begin); elapsed < delay {
		t.Errorf("slow: answered after %v, want at least %v", elapsed, delay)
	}
	if code != 200 || strings.TrimSpace(body) != "true" {
		t.Errorf("slow: %d %q, want 200 true", code, body)
	}
}

func TestReset(t *testing.T) {
	e := start(t, Options{Mode: Mode{Kind: KindReset}})
	resp, err := e.send(t.Context(), "GET", "/index.html", "")
	if err != nil {
		t.Fatalf("reset: headers should arrive, got %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatalf("reset: body read %d bytes without error, want a cut connection", len(b))
	}
	if resp.StatusCode != 200 || resp.ContentLength != resetDeclared || len(b) > resetWritten {
		t.Errorf("reset: status %d, length %d, read %d; want 200, %d, at most %d",
			resp.StatusCode, resp.ContentLength, len(b), resetDeclared, resetWritten)
	}
	if st := e.s.Stats(); st.Total != 1 {
		t.Errorf("reset: counted %d, want 1", st.Total)
	}
}

func TestResetBefore(t *testing.T) {
	e := start(t, Options{Mode: Mode{Kind: KindResetBefore}})
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(waitLimit))
	if _, err := io.WriteString(conn, "GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	n, err := conn.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("reset-before: read %d bytes, err %v; want 0 and ECONNRESET", n, err)
	}
	if st := e.s.Stats(); st.Requests["GET /healthcheck"] != 1 {
		t.Errorf("reset-before: counted %v, want GET /healthcheck once", st.Requests)
	}
}

func Test5xx(t *testing.T) {
	e := start(t, Options{Mode: Mode{Kind: Kind5xx, Status: 502}})
	for _, p := range []string{"/healthcheck", "/index.html", "/doc/k/c/?EIO=4&transport=polling"} {
		if code, _ := e.do(t, "GET", p, ""); code != 502 {
			t.Errorf("5xx: GET %s = %d, want 502", p, code)
		}
	}
	e.setMode(t, "5xx=503")
	if code, _ := e.do(t, "GET", "/healthcheck", ""); code != 503 {
		t.Errorf("5xx=503: %d, want 503", code)
	}
	if st := e.stats(t); st.Total != 4 || st.Mode != "5xx=503" {
		t.Errorf("stats under 5xx: total %d mode %q, want 4 and 5xx=503", st.Total, st.Mode)
	}
}

func TestCrashAfter(t *testing.T) {
	e := start(t, Options{})
	if code, _ := e.do(t, "GET", "/healthcheck", ""); code != 200 {
		t.Fatalf("before the crash: %d", code)
	}
	e.setMode(t, "crash-after=50ms")
	select {
	case <-e.s.Crashed():
	case <-time.After(waitLimit):
		t.Fatal("crash-after did not fire")
	}
	if err := e.stop(); !errors.Is(err, ErrCrashed) {
		t.Errorf("Serve = %v, want ErrCrashed", err)
	}
	if c, err := net.Dial("tcp", e.addr); err == nil {
		c.Close()
		t.Error("listener still accepts after the crash")
	}
}

func TestCrashAfterDisarmed(t *testing.T) {
	s := New(Options{Mode: Mode{Kind: KindCrashAfter, Delay: time.Hour}})
	defer s.Close()
	s.SetMode(Mode{Kind: KindCrashAfter, Delay: 20 * time.Millisecond})
	s.SetMode(Mode{})
	// The crash timer was stopped: a later crash-after arms a new one.
	s.SetMode(Mode{Kind: KindCrashAfter, Delay: 30 * time.Millisecond})
	select {
	case <-s.Crashed():
	case <-time.After(waitLimit):
		t.Fatal("re-armed crash-after did not fire")
	}
	rec := httptest.NewRecorder()
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Errorf("request after crash: recovered %v, want http.ErrAbortHandler", p)
			}
		}()
		s.ServeHTTP(rec, httptest.NewRequest("GET", "/healthcheck", nil))
	}()
}

func TestWaitFor(t *testing.T) {
	// Find a free port for the "RabbitMQ" that is not up yet.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dep := probe.Addr().String()
	probe.Close()

	s := New(Options{WaitFor: dep, WaitInterval: 10 * time.Millisecond})
	defer s.Close()
	type listened struct {
		ln  net.Listener
		err error
	}
	ch := make(chan listened, 1)
	go func() {
		ln, err := s.Listen(t.Context(), "127.0.0.1:0")
		ch <- listened{ln, err}
	}()
	select {
	case l := <-ch:
		t.Fatalf("Listen returned (%v) while %s was closed", l.err, dep)
	case <-time.After(100 * time.Millisecond): // ten attempts
	}
	rabbit, err := net.Listen("tcp", dep)
	if err != nil {
		t.Skipf("cannot take the free port back: %v", err)
	}
	defer rabbit.Close()
	select {
	case l := <-ch:
		if l.err != nil {
			t.Fatalf("Listen after the dependency came up: %v", l.err)
		}
		l.ln.Close()
	case <-time.After(waitLimit):
		t.Fatal("Listen did not return after the dependency came up")
	}

	// Waiting ends with the context.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	s2 := New(Options{WaitFor: "127.0.0.1:1", WaitInterval: 10 * time.Millisecond})
	defer s2.Close()
	if _, err := s2.Listen(ctx, "127.0.0.1:0"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Listen with an expired context = %v, want DeadlineExceeded", err)
	}
}

func TestBaseURL(t *testing.T) {
	e := start(t, Options{})
	tests := []struct {
		name string
		hdr  []string
		want string
	}{
		{"no headers", nil, "http://" + e.addr},
		{"forwarded", []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "docs.example", "X-Forwarded-Prefix", "/office"},
			"https://docs.example/office"},
		{"first of comma lists", []string{"X-Forwarded-Proto", "https, http", "X-Forwarded-Host", "a.example:8443 , b.example", "X-Forwarded-Prefix", "/p1,/p2"},
			"https://a.example:8443/p1"},
		{"first of repeated lines", []string{"X-Forwarded-Proto", "https", "X-Forwarded-Proto", "http", "X-Forwarded-Host", "a", "X-Forwarded-Host", "b"},
			"https://a"},
		{"proto other than http(s)", []string{"X-Forwarded-Proto", "ftp"}, "http://" + e.addr},
		{"proto case kept", []string{"X-Forwarded-Proto", "HTTPS"}, "HTTPS://" + e.addr},
		{"prefix only", []string{"X-Forwarded-Prefix", "/ds"}, "http://" + e.addr + "/ds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.do(t, "GET", "/baseurl", "", tt.hdr...)
			if code != 200 || strings.TrimSpace(body) != tt.want {
				t.Errorf("baseurl = %d %q, want %q", code, body, tt.want)
			}
		})
	}
}

// rawExchange writes a raw request and returns the parsed response.
func rawExchange(t *testing.T, addr, request string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(waitLimit))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestSocketIOPolling(t *testing.T) {
	e := start(t, Options{Name: "n1", PollHold: 20 * time.Millisecond})

	code, body := e.do(t, "GET", "/doc/k1/c/?EIO=4&transport=polling&t=Pabc", "")
	want := `0{"sid":"n1-1","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`
	if code != 200 || body != want {
		t.Errorf("open = %d %q, want 200 %q", code, body, want)
	}
	begin := time.Now()
	code, body = e.do(t, "GET", "/8.1.0-1/doc/k1/c/?EIO=4&transport=polling&sid=n1-1", "")
	if code != 200 || body != "2" || time.Since(begin) < 20*time.Millisecond {
		t.Errorf("held poll = %d %q after %v, want 200 \"2\" after the hold", code, body, time.Since(begin))
	}
	if code, body = e.do(t, "POST", "/doc/k1/c/?EIO=4&transport=polling&sid=n1-1", `42["message",{"a":1}]`); code != 200 || body != `42["message",{"a":1}]` {
		t.Errorf("POST = %d %q, want the body echoed", code, body)
	}
	if code, _ = e.do(t, "GET", "/doc/k1/c/?EIO=3&transport=polling", ""); code != 400 {
		t.Errorf("EIO=3: %d, want 400", code)
	}
	if code, _ = e.do(t, "GET", "/doc/k1/c/?EIO=4&transport=carrier-pigeon", ""); code != 400 {
		t.Errorf("unknown transport: %d, want 400", code)
	}
	if code, _ = e.do(t, "GET", "/doc//c/?EIO=4&transport=polling", ""); code != 404 {
		t.Errorf("empty key: %d, want 404", code)
	}
}

func TestQueryAndHeadersRecordedByteExact(t *testing.T) {
	e := start(t, Options{PollHold: -1})
	const query = "EIO=4&transport=polling&t=Pabc&sid=XYZ&shardkey=k&x=a+b%20c&y=%2F%2f&empty=&flag"
	const uri = "/doc/k/c/?" + query
	resp, _ := rawExchange(t, e.addr, "GET "+uri+" HTTP/1.0\r\n"+
		"Host: docs.example\r\n"+
		"Connection: close\r\n"+
		"X-Forwarded-For: 203.0.113.7, 10.0.0.1\r\n"+
		"X-Forwarded-For: 127.0.0.1\r\n"+
		"X-Forwarded-Proto: https\r\n"+
		"X-Forwarded-Host: docs.example\r\n"+
		"X-Forwarded-Prefix: /ds\r\n"+
		"X-Request-ID: rid-1\r\n"+
		"Cookie: not=recorded\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	st := e.s.Stats()
	if len(st.Recent) != 1 {
		t.Fatalf("recent = %d requests, want 1", len(st.Recent))
	}
	r := st.Recent[0]
	if r.RawQuery != query || r.URI != uri || r.Proto != "HTTP/1.0" || r.Host != "docs.example" || r.Path != "/doc/k/c/" {
		t.Errorf("recorded %+v; want raw query %q, uri %q, HTTP/1.0, host docs.example", r, query, uri)
	}
	wantHdr := map[string][]string{
		"Connection":         {"close"},
		"X-Forwarded-For":    {"203.0.113.7, 10.0.0.1", "127.0.0.1"},
		"X-Forwarded-Proto":  {"https"},
		"X-Forwarded-Host":   {"docs.example"},
		"X-Forwarded-Prefix": {"/ds"},
		"X-Request-Id":       {"rid-1"},
	}
	if fmt.Sprint(r.Header) != fmt.Sprint(http.Header(wantHdr)) {
		t.Errorf("recorded headers %v, want %v", r.Header, wantHdr)
	}
}

func TestWebSocketEcho(t *testing.T) {
	e := start(t, Options{})
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+e.addr+"/doc/k/c/?EIO=4&transport=websocket", &websocket.DialOptions{
		HTTPHeader: http.Header{"X-Forwarded-Proto": {"https"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(-1)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("handshake status %d, want 101", resp.StatusCode)
	}
	msgs := []struct {
		typ  websocket.MessageType
		data []byte
	}{
		{websocket.MessageText, []byte(`2probe`)},
		{websocket.MessageBinary, []byte{0, 1, 2, 255}},
		{websocket.MessageText, []byte(strings.Repeat("x", 100_000))}, // beyond the default read limit
	}
	for _, m := range msgs {
		if err := c.Write(ctx, m.typ, m.data); err != nil {
			t.Fatal(err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if typ != m.typ || string(got) != string(m.data) {
			t.Errorf("echo of %v (%d bytes) = %v (%d bytes)", m.typ, len(m.data), typ, len(got))
		}
	}
	r := e.s.Stats().Recent[0]
	if r.Header.Get("Upgrade") != "websocket" || r.Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("recorded headers %v, want Upgrade websocket and X-Forwarded-Proto https", r.Header)
	}

	// The server's stop closes the WebSocket.
	if err := e.stop(); err != nil {
		t.Errorf("Serve = %v", err)
	}
	if _, _, err := c.Read(ctx); err == nil {
		t.Error("WebSocket still open after the server stopped")
	}
}

func TestWebSocketBrowserConnectionHeader(t *testing.T) {
	e := start(t, Options{})
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(waitLimit))
	_, err = io.WriteString(conn, "GET /doc/k/c/?EIO=4&transport=websocket HTTP/1.1\r\n"+
		"Host: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-Websocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake: %d accept %q, want 101 and the RFC 6455 sample key",
			resp.StatusCode, resp.Header.Get("Sec-Websocket-Accept"))
	}
	// One masked text frame "hi" (RFC 6455 §5.2); the echo comes back unmasked.
	mask := []byte{1, 2, 3, 4}
	frame := []byte{0x81, 0x80 | 2, mask[0], mask[1], mask[2], mask[3], 'h' ^ mask[0], 'i' ^ mask[1]}
	if _, err := conn.Write(frame); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != "\x81\x02hi" {
		t.Errorf("echo frame %q, want %q", got, "\x81\x02hi")
	}
}

func TestConvert(t *testing.T) {
	e := start(t, Options{})
	body := `{"async":false,"filetype":"docx","key":"k1","outputtype":"pdf","title":"t","url":"http://x/y.docx"}`
	body += strings.Repeat(" ", 700-len(body))

	const delay = 60 * time.Millisecond
	begin := time.Now()
	resp, err := e.send(t.Context(), "POST", "/ConvertService.ashx?delay="+delay.String(), body,
		"X-Forwarded-Proto", "https", "X-Forwarded-Host", "docs.example")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if elapsed := time.Since(begin); elapsed < delay {
		t.Errorf("answered after %v, want at least %v", elapsed, delay)
	}
	var got convertResult
	if err := json.Unmarshal(b, &got); err != nil || resp.StatusCode != 200 || !got.EndConvert ||
		!strings.HasPrefix(got.FileURL, "https://docs.example/") {
		t.Errorf("convert = %d %s (%v)", resp.StatusCode, b, err)
	}
	if n := resp.Header.Get("X-Dsemu-Body-Bytes"); n != "700" {
		t.Errorf("body bytes read = %s, want 700", n)
	}

	for _, p := range []string{"/converter?error=-4", "/docbuilder?error=-4"} {
		if code, body := e.do(t, "POST", p, "{}"); code != 200 || strings.TrimSpace(body) != `{"error":-4}` {
			t.Errorf("POST %s = %d %q, want 200 {\"error\":-4}", p, code, body)
		}
	}
	if code, _ := e.do(t, "POST", "/ConvertService.ashx?delay=soon", "{}"); code != 400 {
		t.Errorf("bad delay: %d, want 400", code)
	}
}

func TestConvertDelayEndsEarly(t *testing.T) {
	e := start(t, Options{ConvertDelay: time.Hour})

	// The client goes away: the handler returns (Close waits for it below).
	ctx, cancel := context.WithCancel(t.Context())
	ch := e.goSend(t, ctx, "POST", "/ConvertService.ashx")
	eventually(t, "conversion counted", func() bool { return e.s.Stats().Total == 1 })
	cancel()
	if r := recv(t, ch); !errors.Is(r.err, context.Canceled) {
		t.Errorf("canceled conversion: %+v", r)
	}

	// The server stops: the waiting conversion is dropped and Serve returns.
	ch = e.goSend(t, t.Context(), "POST", "/ConvertService.ashx")
	eventually(t, "second conversion counted", func() bool { return e.s.Stats().Total == 2 })
	if err := e.stop(); err != nil {
		t.Errorf("Serve = %v", err)
	}
	if r := recv(t, ch); r.err == nil {
		t.Errorf("conversion answered after stop: %+v", r)
	}
}

// pattern is an endless deterministic byte stream.
type pattern struct{ i byte }

func (p *pattern) Read(b []byte) (int, error) {
	for k := range b {
		b[k] = p.i
		p.i = p.i*31 + 7
	}
	return len(b), nil
}

func TestUploadStreamsAndHashes(t *testing.T) {
	e := start(t, Options{})
	const size = 64 << 20
	sum := sha256.New()
	body := io.TeeReader(io.LimitReader(&pattern{}, size), sum)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	req, err := http.NewRequestWithContext(t.Context(), "PUT", e.url+"/downloadas/key1?cmd=x", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1 // chunked, as a streaming client sends it
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got UploadResult
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(sum.Sum(nil)); got.Bytes != size || got.SHA256 != want {
		t.Errorf("upload = %+v, want %d bytes sha256 %s", got, size, want)
	}
	// Client and server together allocated far less than the body: it was
	// streamed, not buffered.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/4 {
		t.Errorf("upload of %d MiB allocated %d MiB: body buffered?", size>>20, alloc>>20)
	}

	if code, body := e.do(t, "POST", "/upload/k2", "hello"); code != 200 ||
		!strings.Contains(body, `"sha256":"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"`) {
		t.Errorf("small upload = %d %s", code, body)
	}
	if code, _ := e.do(t, "GET", "/upload/k2", ""); code != 405 {
		t.Errorf("GET upload: %d, want 405", code)
	}
}

func TestStatsCounting(t *testing.T) {
	e := start(t, Options{History: 3})
	e.do(t, "GET", "/healthcheck", "", "X-Request-ID", "a")
	e.do(t, "GET", "/healthcheck", "", "X-Request-ID", "a")
	e.do(t, "POST", "/ConvertService.ashx", "{}", "X-Request-ID", "b")
	e.do(t, "PUT", "/internal/cluster/inactive", "")
	e.do(t, "GET", "/index.html?v=5", "")

	st := e.stats(t) // control endpoints are not counted
	if st.Total != 5 {
		t.Errorf("total %d, want 5", st.Total)
	}
	wantReq := map[string]int64{"GET /healthcheck": 2, "POST /ConvertService.ashx": 1,
		"PUT /internal/cluster/inactive": 1, "GET /index.html": 1}
	if fmt.Sprint(st.Requests) != fmt.Sprint(wantReq) {
		t.Errorf("requests %v, want %v", st.Requests, wantReq)
	}
	if st.RequestIDs["a"] != 2 || st.RequestIDs["b"] != 1 || len(st.RequestIDs) != 2 {
		t.Errorf("request ids %v, want a:2 b:1", st.RequestIDs)
	}
	if len(st.Recent) != 3 || st.Recent[0].Seq != 3 || st.Recent[2].Seq != 5 || st.Recent[2].RawQuery != "v=5" {
		t.Errorf("recent %+v, want seq 3..5, the last with query v=5", st.Recent)
	}
	if !st.Inactive || st.Name != "dsemu" || st.Mode != "ok" {
		t.Errorf("inactive %v name %q mode %q, want true dsemu ok", st.Inactive, st.Name, st.Mode)
	}

	if code, _ := e.do(t, "POST", "/_dsemu/stats/reset", ""); code != 200 {
		t.Errorf("reset: %d", code)
	}
	st = e.stats(t)
	if st.Total != 0 || len(st.Requests) != 0 || len(st.RequestIDs) != 0 || len(st.Recent) != 0 || !st.Inactive {
		t.Errorf("after reset: %+v, want empty counts, still inactive", st)
	}
	e.do(t, "DELETE", "/internal/cluster/inactive", "")
	if st = e.stats(t); st.Inactive || st.Total != 1 {
		t.Errorf("after DELETE inactive: inactive %v total %d, want false 1", st.Inactive, st.Total)
	}
}
