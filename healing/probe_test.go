package healing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/healgate/healgate/config"
	"github.com/healgate/healgate/internal/testproc"
)

// kindOf returns the FailureKind of a failed result, or "" for a pass.
func kindOf(t *testing.T, r Result) FailureKind {
	t.Helper()
	if r.OK {
		if r.Err != nil {
			t.Errorf("OK result carries error %v", r.Err)
		}
		return ""
	}
	var pe *ProbeError
	if !errors.As(r.Err, &pe) {
		t.Fatalf("failed result error %v (%T) is not a *ProbeError", r.Err, r.Err)
	}
	return pe.Kind
}

// fakeServer is a tiny TCP server on loopback whose handler plays one
// protocol edge case per connection. Handlers may block on done, which is
// closed at cleanup; cleanup waits for every handler.
type fakeServer struct {
	addr string
	done chan struct{}
	mu   sync.Mutex
	got  [][]byte // what each connection sent first (up to 64 bytes)
}

func newFakeServer(t *testing.T, handle func(c net.Conn, done <-chan struct{})) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeServer{addr: ln.Addr().String(), done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(&recordingConn{Conn: c, fs: fs}, fs.done)
			})
		}
	})
	t.Cleanup(func() {
		close(fs.done)
		ln.Close()
		wg.Wait()
	})
	return fs
}

// first returns what the first connection sent in its first read.
func (fs *fakeServer) first() []byte {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.got) == 0 {
		return nil
	}
	return fs.got[0]
}

type recordingConn struct {
	net.Conn
	fs   *fakeServer
	seen bool
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.seen && n > 0 {
		c.seen = true
		c.fs.mu.Lock()
		c.fs.got = append(c.fs.got, bytes.Clone(p[:n]))
		c.fs.mu.Unlock()
	}
	return n, err
}

// reply reads the client's first message, then writes answer and closes.
func reply(answer string) func(net.Conn, <-chan struct{}) {
	return func(c net.Conn, _ <-chan struct{}) {
		buf := make([]byte, 64)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err != nil {
			return
		}
		_, _ = io.WriteString(c, answer)
	}
}

// silent accepts, reads, and never answers until the test ends: a hung
// process whose kernel still accepts connections.
func silent(c net.Conn, done <-chan struct{}) {
	go func() { _, _ = io.Copy(io.Discard, c) }()
	<-done
}

// closeEarly closes the connection as soon as it is accepted.
func closeEarly(net.Conn, <-chan struct{}) {}

func TestHTTPProbe(t *testing.T) {
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) }) // runs before srv.Close (LIFO)
	var gotPath string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotPath = r.URL.RequestURI()
		mu.Unlock()
		switch r.URL.Path {
		case "/true":
			io.WriteString(w, "true\n")
		case "/false":
			io.WriteString(w, "false")
		case "/500":
			w.WriteHeader(500)
			io.WriteString(w, "boom")
		case "/204":
			w.WriteHeader(204)
		case "/big":
			w.Write(bytes.Repeat([]byte(" "), 1<<20)) // "true" lies past 4 KiB
			io.WriteString(w, "true")
		case "/redirect":
			http.Redirect(w, r, "/true", http.StatusFound)
		case "/hang":
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(srv.Close)
	want := func(path, body string) config.Probe {
		return config.Probe{Path: path, ExpectStatus: 200, ExpectBody: body}
	}
	tests := []struct {
		name       string
		base       string
		want       config.Probe
		kind       FailureKind
		detail     string
		wantSentTo string
	}{
		{"true with newline passes", srv.URL, want("/true", "true"), "", `HTTP 200 body "true\n"`, "/true"},
		{"200 false fails (F6)", srv.URL, want("/false", "true"), KindBody, `HTTP 200 body "false"`, "/false"},
		{"status mismatch", srv.URL, want("/500", ""), KindStatus, `HTTP 500 body "boom"`, "/500"},
		{"no body check", srv.URL, want("/false", ""), "", "HTTP 200", "/false"},
		{"zero status means 2xx", srv.URL, config.Probe{Path: "/204"}, "", "HTTP 204", "/204"},
		{"zero status rejects 3xx", srv.URL, config.Probe{Path: "/redirect"}, KindStatus, "HTTP 302", "/redirect"},
		{"redirect not followed", srv.URL, config.Probe{Path: "/redirect", ExpectStatus: 302}, "", "HTTP 302", "/redirect"},
		{"body beyond 4KiB is not read", srv.URL, want("/big", "true"), KindBody, "HTTP 200 body", "/big"},
		{"path with query resolves against base", srv.URL + "/ignored", want("/true?x=1", "true"), "", "HTTP 200", "/true?x=1"},
		{"hang times out", srv.URL, want("/hang", ""), KindTimeout, "timeout", "/hang"},
		{"refused", "http://" + testproc.FreeAddr(t), want("/true", ""), KindRefused, "refused", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewHTTPProbe(nil, tt.base, tt.want, 300*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			r := p.Probe(context.Background())
			if el := time.Since(start); el > 3*time.Second {
				t.Errorf("probe took %v, timeout 300ms", el)
			}
			if got := kindOf(t, r); got != tt.kind {
				t.Errorf("kind = %q, want %q (detail %q, err %v)", got, tt.kind, r.Detail, r.Err)
			}
			if !strings.HasPrefix(r.Detail, tt.detail) && !strings.Contains(r.Detail, tt.detail) {
				t.Errorf("detail = %q, want it to contain %q", r.Detail, tt.detail)
			}
			if r.Latency <= 0 {
				t.Errorf("latency = %v", r.Latency)
			}
			if tt.wantSentTo != "" {
				mu.Lock()
				defer mu.Unlock()
				if gotPath != tt.wantSentTo {
					t.Errorf("server saw %q, want %q", gotPath, tt.wantSentTo)
				}
			}
		})
	}
}

func TestHTTPProbeBadURL(t *testing.T) {
	for _, u := range []string{"127.0.0.1:8000", "ftp://x/", "http://", "http://a b/"} {
		if _, err := NewHTTPProbe(nil, u, config.Probe{}, time.Second); err == nil {
			t.Errorf("NewHTTPProbe(%q) accepted", u)
		}
	}
}

// TestProbeCallerDeadline: the caller's deadline wins when it is shorter than
// the probe's own timeout, and a cancellation is reported as such.
func TestProbeCallerDeadline(t *testing.T) {
	fs := newFakeServer(t, silent)
	p := NewRedisProbe(fs.addr, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := p.Probe(ctx)
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("probe took %v past a 100ms caller deadline", el)
	}
	if k := kindOf(t, r); k != KindTimeout {
		t.Fatalf("kind = %q, want timeout", k)
	}

	ctx, cancel = context.WithCancel(context.Background())
	res := make(chan Result, 1)
	go func() { res <- p.Probe(ctx) }()
	// Cancel once the server holds the connection (it recorded the PING).
	deadline := time.Now().Add(5 * time.Second)
	for fs.first() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // poll until the server saw the PING
	}
	cancel()
	select {
	case r := <-res:
		if k := kindOf(t, r); k != KindCanceled {
			t.Fatalf("kind = %q, want canceled", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("canceled probe did not return")
	}
}

func TestProtocolProbes(t *testing.T) {
	amqpStart := "\x01\x00\x00\x00\x00\x01\x00\x00\x0a\x00\x0a\x00\x09" // frame type 1, ch 0, size 256, class 10, method 10, 0-9
	tests := []struct {
		name   string
		handle func(net.Conn, <-chan struct{})
		probe  func(addr string) Prober
		sent   string
		kind   FailureKind
		detail string
	}{
		{"tcp connects", silent, tcp, "", "", "connected"},
		{"postgres S", reply("S"), pg, string(sslRequest), "", `'S'`},
		{"postgres N", reply("N"), pg, string(sslRequest), "", `'N'`},
		{"postgres wrong byte", reply("E"), pg, string(sslRequest), KindProtocol, `'E'`},
		{"postgres closes early", closeEarly, pg, "", KindClosed, ""},
		{"postgres frozen", silent, pg, string(sslRequest), KindTimeout, "timeout"},
		{"amqp start", reply(amqpStart), amqp, string(amqpHeader), "", "Connection.Start, AMQP 0-9"},
		{"amqp version mismatch", reply("AMQP\x00\x00\x09\x01"), amqp, string(amqpHeader), KindProtocol, "protocol header"},
		{"amqp wrong method", reply("\x01\x00\x00\x00\x00\x01\x00\x00\x0a\x00\x32\x00\x09"), amqp, string(amqpHeader), KindProtocol, "method 10.50"},
		{"amqp heartbeat frame", reply("\x08\x00\x00\x00\x00\x00\x00\xce\x00\x00\x00\x00\x00"), amqp, string(amqpHeader), KindProtocol, "frame type 8"},
		{"amqp short frame", reply("\x01\x00\x00"), amqp, string(amqpHeader), KindClosed, ""},
		{"amqp hung", silent, amqp, string(amqpHeader), KindTimeout, ""},
		{"redis pong", reply("+PONG\r\n"), redis, "PING\r\n", "", "PONG"},
		{"redis noauth is alive", reply("-NOAUTH Authentication required.\r\n"), redis, "PING\r\n", "", "NOAUTH"},
		{"redis loading is down", reply("-LOADING Redis is loading the dataset in memory\r\n"), redis, "PING\r\n", KindProtocol, "LOADING"},
		{"redis no newline then close", reply("+PON"), redis, "PING\r\n", KindClosed, ""},
		{"redis hung", silent, redis, "PING\r\n", KindTimeout, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFakeServer(t, tt.handle)
			r := tt.probe(fs.addr).Probe(context.Background())
			if k := kindOf(t, r); k != tt.kind {
				t.Fatalf("kind = %q, want %q (detail %q, err %v)", k, tt.kind, r.Detail, r.Err)
			}
			if !strings.Contains(r.Detail, tt.detail) {
				t.Errorf("detail = %q, want it to contain %q", r.Detail, tt.detail)
			}
			if tt.sent != "" && string(fs.first()) != tt.sent {
				t.Errorf("server received %q, want %q", fs.first(), tt.sent)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		addr := testproc.FreeAddr(t)
		for _, p := range []Prober{tcp(addr), pg(addr), amqp(addr), redis(addr)} {
			r := p.Probe(context.Background())
			if k := kindOf(t, r); k != KindRefused {
				t.Errorf("%T: kind = %q, want refused", p, k)
			}
		}
	})
}

func tcp(addr string) Prober   { return NewTCPProbe(addr, 300*time.Millisecond) }
func pg(addr string) Prober    { return NewPostgresProbe(addr, 300*time.Millisecond) }
func amqp(addr string) Prober  { return NewAMQPProbe(addr, 300*time.Millisecond) }
func redis(addr string) Prober { return NewRedisProbe(addr, 300*time.Millisecond) }

func TestParseDependencyProbe(t *testing.T) {
	tests := []struct {
		url, typ, addr string
	}{
		{"postgres://127.0.0.1:5432", "*healing.PostgresProbe", "127.0.0.1:5432"},
		{"postgresql://user:pw@db.local/onlyoffice?sslmode=disable", "*healing.PostgresProbe", "db.local:5432"},
		{"amqp://guest:guest@127.0.0.1", "*healing.AMQPProbe", "127.0.0.1:5672"},
		{"amqp://[::1]:5673", "*healing.AMQPProbe", "[::1]:5673"},
		{"redis://127.0.0.1", "*healing.RedisProbe", "127.0.0.1:6379"},
		{"tcp://127.0.0.1:9000", "*healing.TCPProbe", "127.0.0.1:9000"},
	}
	for _, tt := range tests {
		p, err := ParseDependencyProbe(tt.url, time.Second)
		if err != nil {
			t.Errorf("%s: %v", tt.url, err)
			continue
		}
		var addr string
		switch p := p.(type) {
		case *PostgresProbe:
			addr = p.addr
		case *AMQPProbe:
			addr = p.addr
		case *RedisProbe:
			addr = p.addr
		case *TCPProbe:
			addr = p.addr
		}
		if typ := fmt.Sprintf("%T", p); typ != tt.typ || addr != tt.addr {
			t.Errorf("%s: got %s %q, want %s %q", tt.url, typ, addr, tt.typ, tt.addr)
		}
	}
	for _, bad := range []string{"http://127.0.0.1:80", "amqps://x", "tcp://127.0.0.1", "postgres://", "::"} {
		if _, err := ParseDependencyProbe(bad, time.Second); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := ParseDependencyProbe("mysql://127.0.0.1", time.Second); !errors.Is(err, ErrUnsupportedScheme) {
		t.Errorf("mysql: err = %v, want ErrUnsupportedScheme", err)
	}
}
