package proxy

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestForwardedTrusted(t *testing.T) {
	var got http.Header
	var host string
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { got, host = r.Header.Clone(), r.Host })
	f := newFront(t, testConfig(up("a", b.URL)), Options{})

	res, body := f.do(t, "GET", "/baseurl", nil,
		"Host", "docs.example.com",
		"X-Forwarded-Host", "docs.example.com:443",
		"X-Forwarded-Proto", "https",
		"X-Forwarded-Prefix", "/office",
		"X-Forwarded-For", "203.0.113.7")
	if res.StatusCode != 200 {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	want := map[string]string{
		"X-Forwarded-Host":   "docs.example.com:443",
		"X-Forwarded-Proto":  "https",
		"X-Forwarded-Prefix": "/office",
		"X-Forwarded-For":    "203.0.113.7, 127.0.0.1",
	}
	for k, v := range want {
		if g := got.Values(k); len(g) != 1 || g[0] != v {
			t.Errorf("%s = %q, want %q", k, g, v)
		}
	}
	if host != "docs.example.com" {
		t.Errorf("Host = %q, want the inbound docs.example.com", host)
	}
	if got.Get("X-Request-ID") == "" || got.Get("X-Request-ID") != res.Header.Get("X-Request-ID") {
		t.Errorf("request ID upstream %q, response %q", got.Get("X-Request-ID"), res.Header.Get("X-Request-ID"))
	}
}

func TestForwardedTrustedWithoutProtoStaysAbsent(t *testing.T) {
	var got http.Header
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() })
	f := newFront(t, testConfig(up("a", b.URL)), Options{})
	f.do(t, "GET", "/", nil)
	if v, ok := got["X-Forwarded-Proto"]; ok {
		t.Errorf("X-Forwarded-Proto = %q, want absent", v)
	}
	if g := got.Get("X-Forwarded-For"); g != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want 127.0.0.1", g)
	}
}

func TestForwardedUntrusted(t *testing.T) {
	var got http.Header
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() })
	cfg := testConfig(up("a", b.URL))
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	cfg.SetXForwardedProto = true
	f := newFront(t, cfg, Options{})

	f.do(t, "GET", "/", nil,
		"Host", "inbound.example",
		"X-Forwarded-Host", "evil.example",
		"X-Forwarded-Proto", "https",
		"X-Forwarded-Prefix", "/evil",
		"X-Forwarded-For", "198.51.100.1")
	want := map[string]string{
		"X-Forwarded-Host":  "inbound.example",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-For":   "127.0.0.1",
	}
	for k, v := range want {
		if g := got.Values(k); len(g) != 1 || g[0] != v {
			t.Errorf("%s = %q, want %q", k, g, v)
		}
	}
	if v, ok := got["X-Forwarded-Prefix"]; ok {
		t.Errorf("X-Forwarded-Prefix = %q from an untrusted peer, want absent", v)
	}
}

func TestQueryAndPathByteExact(t *testing.T) {
	var uri string
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { uri = r.RequestURI })
	f := newFront(t, testConfig(up("a", b.URL)), Options{})
	const path = "/doc/k/c/a%2Fb/?EIO=4&transport=polling&t=Pabc&sid=XYZ&shardkey=k&x=a+b%20c"
	res, body := f.do(t, "GET", path, nil)
	if res.StatusCode != 200 {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	if uri != path {
		t.Errorf("upstream RequestURI = %q, want %q", uri, path)
	}
}

func TestRequestID(t *testing.T) {
	var got string
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("X-Request-ID")
		w.Header().Set("X-Request-ID", "upstream-own")
	})
	f := newFront(t, testConfig(up("a", b.URL)), Options{})

	res, _ := f.do(t, "GET", "/", nil, "X-Request-ID", "abc-123")
	if got != "abc-123" || res.Header.Values("X-Request-ID")[0] != "abc-123" || len(res.Header.Values("X-Request-ID")) != 1 {
		t.Errorf("kept ID: upstream %q, response %q", got, res.Header.Values("X-Request-ID"))
	}
	res, _ = f.do(t, "GET", "/", nil, "X-Request-ID", "bad id with spaces")
	if got == "bad id with spaces" || got == "" || res.Header.Get("X-Request-ID") != got {
		t.Errorf("insane ID: upstream %q, response %q", got, res.Header.Get("X-Request-ID"))
	}
	first := got
	f.do(t, "GET", "/", nil)
	if got == first || got == "" {
		t.Errorf("generated IDs not unique: %q then %q", first, got)
	}
}
