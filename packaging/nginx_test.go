package packaging_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/healgate/healgate/config"
)

// nginxTest runs "nginx -t" on an http-context snippet of packaging/nginx,
// wrapped in a generated nginx.conf whose logs, pid and temp paths live in
// a temp prefix; extra is added to the http block after the snippet.
func nginxTest(t *testing.T, snippet, extra string) {
	t.Helper()
	nginx := lookTool(t, "nginx", "nginx-light")
	abs, err := filepath.Abs(filepath.Join("nginx", snippet))
	if err != nil {
		t.Fatal(err)
	}
	prefix := t.TempDir()
	conf := fmt.Sprintf(`pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
  access_log %[1]s/access.log;
  client_body_temp_path %[1]s/client_body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  include %[2]s;
  %[3]s
}
`, prefix, abs, extra)
	path := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	out := command(t, nginx, "-t", "-q", "-e", filepath.Join(prefix, "error.log"), "-p", prefix, "-c", path)
	if strings.Contains(out, "[warn]") || strings.Contains(out, "[emerg]") {
		t.Errorf("nginx -t on %s:\n%s", snippet, out)
	}
}

func TestNginxExampleParses(t *testing.T) {
	nginxTest(t, "ds-healgate.conf", "")
}

func TestNginxUpstreamSnippetParses(t *testing.T) {
	nginxTest(t, "upstream-docservice.conf", "server { listen 127.0.0.1:1; location / { proxy_pass http://docservice; } }")
}

// TestNginxUpstreamsPointAtHealgate: both snippets send docservice traffic
// to the packaged config's listen address, with max_fails=0.
func TestNginxUpstreamsPointAtHealgate(t *testing.T) {
	cfg, err := config.Load("healgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^\s*server\s+` + regexp.QuoteMeta(cfg.Listen) + `\s+max_fails=0\b`)
	for _, f := range []string{"upstream-docservice.conf", "ds-healgate.conf"} {
		if !want.Match(readFile(t, "nginx/"+f)) {
			t.Errorf("%s: upstream docservice does not list \"server %s max_fails=0\"", f, cfg.Listen)
		}
	}
}

// TestNginxTimeoutsAboveHealgate checks the example's timeouts against the
// packaged healgate config: for a request of each healgate route class,
// the nginx location that would serve it must wait longer than healgate
// may take — before the headers, hold_timeout + tries × (connect +
// response_header); between body reads, the route's read timeout — so that
// healgate, not nginx, decides that Document Server is too slow.
func TestNginxTimeoutsAboveHealgate(t *testing.T) {
	cfg, err := config.Load("healgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv := parseNginxServer(t, string(readFile(t, "nginx/ds-healgate.conf")))

	routeTimeouts := func(name string) config.Timeouts {
		eff := cfg.Timeouts
		if name == "default" {
			return eff
		}
		for _, r := range cfg.Routes {
			if r.Name != name {
				continue
			}
			for _, f := range []struct{ dst, src *time.Duration }{
				{&eff.Connect, &r.Timeouts.Connect}, {&eff.Send, &r.Timeouts.Send},
				{&eff.ResponseHeader, &r.Timeouts.ResponseHeader}, {&eff.Read, &r.Timeouts.Read},
			} {
				if *f.src > 0 {
					*f.dst = *f.src
				}
			}
			return eff
		}
		t.Fatalf("the packaged config has no route %q", name)
		return eff
	}
	tries := cfg.NextUpstream.Tries
	if tries < 1 {
		tries = len(cfg.Upstreams)
	}

	// Requests of each class, as the browser sends them to nginx.
	var cases []struct{ route, uri string }
	for _, r := range cfg.Routes {
		for _, p := range r.PathPrefix {
			cases = append(cases, struct{ route, uri string }{r.Name, p + "?async=false"})
		}
	}
	cases = append(cases,
		struct{ route, uri string }{"websocket", "/9.0.3-4b3e1f5c7d/doc/abc123/c/?EIO=4&transport=websocket"},
		struct{ route, uri string }{"default", "/healthcheck"},
		struct{ route, uri string }{"default", "/coauthoring/CommandService.ashx"},
		struct{ route, uri string }{"default", "/9.0.3-4b3e1f5c7d/doc/abc123/c/?EIO=4&transport=polling"},
	)
	if len(cases) < 6 {
		t.Fatalf("the packaged config's routes gave only %d cases", len(cases))
	}
	for _, c := range cases {
		loc := srv.match(c.uri)
		if loc == nil {
			t.Errorf("%s (%s): no location matches", c.uri, c.route)
			continue
		}
		if !loc.proxied {
			continue // served by nginx itself (static files)
		}
		to := routeTimeouts(c.route)
		headers := cfg.Healing.HoldTimeout + time.Duration(tries)*(to.Connect+to.ResponseHeader)
		need := max(headers, to.Read)
		if loc.readTimeout <= need {
			t.Errorf("%s (healgate route %s) is served by location %q with proxy_read_timeout %s; healgate may take %s (headers %s, read %s)",
				c.uri, c.route, loc.pattern, loc.readTimeout, need, headers, to.Read)
		}
		if loc.sendTimeout <= to.Send {
			t.Errorf("%s: location %q proxy_send_timeout %s is not above healgate's send %s", c.uri, loc.pattern, loc.sendTimeout, to.Send)
		}
		if loc.connectTimeout <= to.Connect && c.route == "default" {
			t.Errorf("location %q proxy_connect_timeout %s is not above healgate's connect %s", loc.pattern, loc.connectTimeout, to.Connect)
		}
		t.Logf("%-58s route %-10s location %-45q read %6s > %s", c.uri, c.route, loc.pattern, loc.readTimeout, need)
	}
}

// TestNginxLocationsKeepDocumentServerRules: Document Server's /internal/
// and /info/ stay restricted to loopback, versioned or not, and static
// files are served by nginx, not proxied — the order of the regex locations
// decides both.
func TestNginxLocationsKeepDocumentServerRules(t *testing.T) {
	srv := parseNginxServer(t, string(readFile(t, "nginx/ds-healgate.conf")))
	for _, uri := range []string{"/internal/cluster/inactive", "/info/info.json", "/9.0.3-4b3e1f5c7d/internal/connections/edit", "/9.0.3-4b3e1f5c7d/info/info.json"} {
		if l := srv.match(uri); l == nil || !l.restricted || !l.proxied {
			t.Errorf("%s: location %+v, want a restricted (deny all) proxied location", uri, l)
		}
	}
	for _, uri := range []string{"/web-apps/apps/api/documents/api.js", "/9.0.3-4b3e1f5c7d/web-apps/apps/api/documents/api.js", "/9.0.3-4b3e1f5c7d/sdkjs/word/sdk-all.js"} {
		if l := srv.match(uri); l == nil || l.proxied {
			t.Errorf("%s: location %+v, want a static (not proxied) location", uri, l)
		}
	}
}

// nginxLocation is one location block of the example's server.
type nginxLocation struct {
	pattern        string
	regex          *regexp.Regexp // nil for a prefix location
	proxied        bool           // proxy_pass to the docservice upstream
	restricted     bool           // "deny all" (allow-listed peers only)
	readTimeout    time.Duration
	sendTimeout    time.Duration
	connectTimeout time.Duration
}

type nginxServer struct{ locations []*nginxLocation }

// match picks the location nginx would use for uri (no "=" or "^~"
// locations are used in the example): the first regex location that
// matches, else the longest matching prefix location.
func (s *nginxServer) match(uri string) *nginxLocation {
	path, _, _ := strings.Cut(uri, "?")
	var best *nginxLocation
	for _, l := range s.locations {
		if l.regex != nil {
			if l.regex.MatchString(path) {
				return l
			}
			continue
		}
		if strings.HasPrefix(path, l.pattern) && (best == nil || len(l.pattern) > len(best.pattern)) {
			best = l
		}
	}
	return best
}

// parseNginxServer reads the locations of the example and their effective
// proxy timeouts (a location's own, else the http-level one, else nginx's
// default 60s). It understands the subset of nginx syntax the example uses:
// one directive per line, blocks opened at the end of a line.
func parseNginxServer(t *testing.T, conf string) *nginxServer {
	t.Helper()
	top := map[string]time.Duration{}
	var (
		srv   nginxServer
		cur   *nginxLocation
		local map[string]time.Duration
		depth int
	)
	finish := func() {
		get := func(k string) time.Duration {
			if d, ok := local[k]; ok {
				return d
			}
			if d, ok := top[k]; ok {
				return d
			}
			return 60 * time.Second
		}
		cur.readTimeout, cur.sendTimeout, cur.connectTimeout = get("proxy_read_timeout"), get("proxy_send_timeout"), get("proxy_connect_timeout")
		srv.locations = append(srv.locations, cur)
		cur = nil
	}
	for n, line := range strings.Split(conf, "\n") {
		line = strings.TrimSpace(line)
		if i := strings.Index(line, "#"); i == 0 || line == "" {
			continue
		}
		f := strings.Fields(strings.TrimSuffix(line, ";"))
		switch {
		case f[0] == "location" && strings.HasSuffix(line, "{"):
			if cur != nil {
				t.Fatalf("line %d: nested location", n+1)
			}
			cur, local = &nginxLocation{}, map[string]time.Duration{}
			args := f[1 : len(f)-1]
			if len(args) == 2 && args[0] == "~" {
				re, err := regexp.Compile(args[1])
				if err != nil {
					t.Fatalf("line %d: location regex: %v", n+1, err)
				}
				cur.pattern, cur.regex = args[1], re
			} else if len(args) == 1 {
				cur.pattern = args[0]
			} else {
				t.Fatalf("line %d: location form not understood: %s", n+1, line)
			}
			depth++
			continue
		case strings.HasSuffix(line, "{"):
			depth++
			continue
		case line == "}":
			depth--
			if cur != nil && depth == 1 {
				finish()
			}
			continue
		}
		switch f[0] {
		case "proxy_read_timeout", "proxy_send_timeout", "proxy_connect_timeout":
			d, err := time.ParseDuration(f[1])
			if err != nil {
				t.Fatalf("line %d: %s %s: %v", n+1, f[0], f[1], err)
			}
			if cur != nil {
				local[f[0]] = d
			} else if depth == 0 {
				top[f[0]] = d
			} else {
				t.Fatalf("line %d: %s at depth %d outside a location", n+1, f[0], depth)
			}
		case "deny":
			if cur != nil && f[1] == "all" {
				cur.restricted = true
			}
		case "proxy_pass":
			if cur != nil && strings.HasPrefix(f[1], "http://docservice") {
				cur.proxied = true
			}
		}
	}
	if depth != 0 {
		t.Fatalf("unbalanced braces (depth %d at the end)", depth)
	}
	if len(srv.locations) < 4 {
		t.Fatalf("found %d locations, want the example's", len(srv.locations))
	}
	return &srv
}
