package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// TestF8QueryByteExact is fault corpus F8: a socket.io polling query with
// "+", "%20" and a given parameter order reaches the upstream byte for
// byte, through nginx's "location /", its versioned location, and directly.
func TestF8QueryByteExact(t *testing.T) {
	up := startDsemu(t, "primary", "ok", "-poll-hold", "1ms")
	s := startStack(t, gateConfig{upstreams: one(up)})
	const path = "/doc/k/c/"
	const query = "EIO=4&transport=polling&t=Pabc&sid=XYZ&shardkey=k&x=a+b%20c"
	for _, tc := range []struct{ name, url string }{
		{"NginxRoot", s.nginx.URL(path + "?" + query)},
		{"NginxVersioned", s.nginx.URL(socketIOVersion + path + "?" + query)},
		{"Direct", s.gate.url(path + "?" + query)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := newRequestIDs(t).next()
			r := do(t, s.client, http.MethodGet, tc.url, reqOpts{header: map[string]string{"X-Request-ID": id}})
			if r.status != http.StatusOK || r.header.Get("X-Dsemu-Name") != "primary" {
				t.Fatalf("%d %q (%s), want the upstream's 200", r.status, r.body, r.header.Get("X-Healgate-Error"))
			}
			st := up.stats(t)
			found := false
			for _, rec := range st.Recent {
				if rec.Header.Get("X-Request-Id") != id {
					continue
				}
				found = true
				if rec.RawQuery != query {
					t.Errorf("upstream query\n got %q\nwant %q", rec.RawQuery, query)
				}
				if rec.URI != path+"?"+query {
					t.Errorf("upstream request-target\n got %q\nwant %q", rec.URI, path+"?"+query)
				}
			}
			if !found {
				t.Fatalf("upstream did not record request %s", id)
			}
		})
	}
}

// TestF10ForwardedProto is fault corpus F10 on normal requests:
// X-Forwarded-Proto https from nginx reaches Document Server unchanged (and
// its /baseurl is built from it); X-Forwarded-Host and X-Forwarded-Prefix
// pass unchanged and X-Forwarded-For is appended to. Without the header,
// healgate does not invent https: it adds "http" only when
// set_x_forwarded_proto is on.
func TestF10ForwardedProto(t *testing.T) {
	up := startDsemu(t, "primary", "ok")
	s := startStack(t, gateConfig{upstreams: one(up)})
	ids := newRequestIDs(t)

	// record returns the upstream's record of the request with X-Request-ID id.
	record := func(t *testing.T, id string) http.Header {
		t.Helper()
		st := up.stats(t)
		for i := len(st.Recent) - 1; i >= 0; i-- {
			if st.Recent[i].Header.Get("X-Request-Id") == id {
				return st.Recent[i].Header
			}
		}
		t.Fatalf("upstream did not record request %s", id)
		return nil
	}

	t.Run("NginxHTTPS", func(t *testing.T) {
		id := ids.next()
		r := s.get(t, "/baseurl", map[string]string{
			"X-Request-ID":       id,
			"X-Forwarded-Proto":  "https",
			"X-Forwarded-Host":   "docs.example.com",
			"X-Forwarded-Prefix": "/office",
			"X-Forwarded-For":    "203.0.113.7",
		})
		if r.status != http.StatusOK || strings.TrimSpace(r.body) != "https://docs.example.com/office" {
			t.Errorf("/baseurl: %d %q, want https://docs.example.com/office", r.status, r.body)
		}
		h := record(t, id)
		for k, want := range map[string]string{
			"X-Forwarded-Proto":  "https",
			"X-Forwarded-Host":   "docs.example.com",
			"X-Forwarded-Prefix": "/office",
			// The client's, then nginx's peer (the client), then healgate's peer (nginx).
			"X-Forwarded-For": "203.0.113.7, 127.0.0.1, 127.0.0.1",
		} {
			if got := strings.Join(h.Values(k), ", "); got != want {
				t.Errorf("upstream saw %s %q, want %q", k, got, want)
			}
		}
	})
	t.Run("NginxAbsent", func(t *testing.T) {
		// ds.conf's map sends $scheme (http) when the client sent none.
		id := ids.next()
		r := s.get(t, "/baseurl", map[string]string{"X-Request-ID": id})
		if r.status != http.StatusOK || strings.TrimSpace(r.body) != "http://"+s.nginx.Addr {
			t.Errorf("/baseurl: %d %q, want http://%s", r.status, r.body, s.nginx.Addr)
		}
		if got := record(t, id).Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != "http" {
			t.Errorf("upstream saw X-Forwarded-Proto %q, want exactly nginx's \"http\"", got)
		}
	})
	t.Run("DirectHTTPS", func(t *testing.T) {
		id := ids.next()
		r := do(t, s.client, http.MethodGet, s.gate.url("/baseurl"), reqOpts{header: map[string]string{
			"X-Request-ID": id, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "docs.example.com",
		}})
		if r.status != http.StatusOK || strings.TrimSpace(r.body) != "https://docs.example.com" {
			t.Errorf("/baseurl: %d %q, want https://docs.example.com", r.status, r.body)
		}
		if got := record(t, id).Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != "https" {
			t.Errorf("upstream saw X-Forwarded-Proto %q, want exactly \"https\"", got)
		}
	})
	t.Run("DirectAbsent", func(t *testing.T) {
		id := ids.next()
		r := do(t, s.client, http.MethodGet, s.gate.url("/baseurl"), reqOpts{header: map[string]string{"X-Request-ID": id}})
		if r.status != http.StatusOK || !strings.HasPrefix(r.body, "http://") {
			t.Errorf("/baseurl: %d %q, want an http:// base URL", r.status, r.body)
		}
		if got := record(t, id).Values("X-Forwarded-Proto"); len(got) != 0 {
			t.Errorf("upstream saw X-Forwarded-Proto %q; with set_x_forwarded_proto off it must stay absent", got)
		}
	})
	t.Run("DirectAbsentSetXForwardedProto", func(t *testing.T) {
		g := startHealgate(t, gateConfig{upstreams: one(up), setXForwardedProto: true})
		id := ids.next()
		r := do(t, s.client, http.MethodGet, g.url("/baseurl"), reqOpts{header: map[string]string{"X-Request-ID": id}})
		if r.status != http.StatusOK || !strings.HasPrefix(r.body, "http://") {
			t.Errorf("/baseurl: %d %q, want an http:// base URL", r.status, r.body)
		}
		if got := record(t, id).Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != "http" {
			t.Errorf("upstream saw X-Forwarded-Proto %q; with set_x_forwarded_proto on, want exactly \"http\"", got)
		}
		// And an inbound value still wins over the listener's scheme.
		id = ids.next()
		do(t, s.client, http.MethodGet, g.url("/baseurl"), reqOpts{header: map[string]string{"X-Request-ID": id, "X-Forwarded-Proto": "https"}})
		if got := record(t, id).Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != "https" {
			t.Errorf("upstream saw X-Forwarded-Proto %q, want the inbound \"https\" unchanged", got)
		}
	})
}
