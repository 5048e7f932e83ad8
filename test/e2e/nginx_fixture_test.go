package e2e

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/healgate/healgate/internal/testnginx"
)

// seenRequest is what a plain recording upstream saw of one request.
type seenRequest struct {
	proto      string
	requestURI string
	header     http.Header
}

// TestNginxFixtureIsDSConf checks that the nginx the other tests put in front
// of healgate behaves like Document Server's shipped ds.conf in what healgate
// depends on: "location /" speaks HTTP/1.0 with "Connection: close", the
// versioned path speaks HTTP/1.1 and asks for the upgrade, the query passes
// byte for byte, and X-Forwarded-* are set as the shipped maps set them. The
// upstream is a plain recording server, so a failure here is the fixture's,
// not healgate's.
func TestNginxFixtureIsDSConf(t *testing.T) {
	seen := make(chan seenRequest, 16)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen <- seenRequest{proto: r.Proto, requestURI: r.RequestURI, header: r.Header.Clone()}
			io.WriteString(w, "ok")
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})

	n := testnginx.Start(t, bin.nginx, ln.Addr().String(), 30*time.Second)
	client := newClient(t)
	get := func(t *testing.T, path string, header map[string]string) seenRequest {
		t.Helper()
		req, err := http.NewRequestWithContext(contextFor(t, 10*time.Second), http.MethodGet, n.URL(path), nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "ok" {
			t.Fatalf("GET %s: %s %q", path, resp.Status, body)
		}
		select {
		case s := <-seen:
			return s
		default:
			t.Fatalf("GET %s: the upstream saw nothing", path)
			return seenRequest{}
		}
	}

	t.Run("RootLocationHTTP10Close", func(t *testing.T) {
		s := get(t, "/healthcheck", nil)
		if s.proto != "HTTP/1.0" {
			t.Errorf("proto %s, want HTTP/1.0 (nginx's default proxy_http_version)", s.proto)
		}
		if c := s.header.Get("Connection"); !strings.EqualFold(c, "close") {
			t.Errorf("Connection %q, want close", c)
		}
		if p := s.header.Get("X-Forwarded-Proto"); p != "http" {
			t.Errorf("X-Forwarded-Proto %q, want http ($scheme when the client sent none)", p)
		}
		if h, want := s.header.Get("X-Forwarded-Host"), n.Addr; h != want {
			t.Errorf("X-Forwarded-Host %q, want %q ($http_host)", h, want)
		}
		if f := s.header.Get("X-Forwarded-For"); f != "127.0.0.1" {
			t.Errorf("X-Forwarded-For %q, want 127.0.0.1", f)
		}
	})
	t.Run("ClientForwardedHeadersKept", func(t *testing.T) {
		s := get(t, "/baseurl", map[string]string{
			"X-Forwarded-Proto":  "https",
			"X-Forwarded-Host":   "docs.example.com",
			"X-Forwarded-Prefix": "/office",
			"X-Forwarded-For":    "203.0.113.7",
		})
		for k, want := range map[string]string{
			"X-Forwarded-Proto":  "https",
			"X-Forwarded-Host":   "docs.example.com",
			"X-Forwarded-Prefix": "/office",
			"X-Forwarded-For":    "203.0.113.7, 127.0.0.1",
		} {
			if got := s.header.Get(k); got != want {
				t.Errorf("%s %q, want %q", k, got, want)
			}
		}
	})
	t.Run("VersionedLocationHTTP11", func(t *testing.T) {
		const q = "EIO=4&transport=polling&t=Pabc&sid=XYZ&shardkey=k&x=a+b%20c"
		s := get(t, "/8.3.0-abc/doc/k/c/?"+q, nil)
		if s.proto != "HTTP/1.1" {
			t.Errorf("proto %s, want HTTP/1.1", s.proto)
		}
		if s.requestURI != "/doc/k/c/?"+q {
			t.Errorf("request URI %q, want %q", s.requestURI, "/doc/k/c/?"+q)
		}
		if c := s.header.Get("Connection"); !strings.EqualFold(c, "close") {
			t.Errorf("Connection %q without Upgrade, want close", c)
		}
		s = get(t, "/8.3.0-abc/doc/k/c/?EIO=4&transport=websocket", map[string]string{"Upgrade": "websocket", "Connection": "keep-alive, Upgrade"})
		if c := s.header.Get("Connection"); !strings.EqualFold(c, "upgrade") {
			t.Errorf("Connection %q with Upgrade, want upgrade", c)
		}
		if u := s.header.Get("Upgrade"); u != "websocket" {
			t.Errorf("Upgrade %q, want websocket", u)
		}
	})
	t.Run("RootLocationQueryByteExact", func(t *testing.T) {
		const uri = "/doc/k/c/?EIO=4&transport=polling&t=Pabc&sid=XYZ&shardkey=k&x=a+b%20c"
		if s := get(t, uri, nil); s.requestURI != uri {
			t.Errorf("request URI %q, want %q", s.requestURI, uri)
		}
	})
}
