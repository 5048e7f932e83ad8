package config_test

import (
	"bytes"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/healgate/healgate/config"
)

// normalDefault is what Parse returns for an empty file.
func normalDefault() *config.Config {
	c := config.Default()
	c.Normalize()
	return c
}

func mustParse(t *testing.T, src string) *config.Config {
	t.Helper()
	c, err := config.Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return c
}

func TestParseEmptyIsDefault(t *testing.T) {
	for _, src := range []string{"", "\n", "# only a comment\n", "---\n", "~\n"} {
		if got := mustParse(t, src); !reflect.DeepEqual(got, normalDefault()) {
			t.Errorf("Parse(%q) differs from the normalised Default()", src)
		}
	}
}

// wantOneProblem parses src and checks that it has exactly one problem, at
// path on line, whose message contains msg.
func wantOneProblem(t *testing.T, src, path string, line int, msg string) {
	t.Helper()
	errs := parseErrs(t, src)
	if len(errs) != 1 {
		t.Fatalf("got %d problems, want 1:\n%v", len(errs), errs)
	}
	if e := errs[0]; e.Path != path || e.Line != line || !strings.Contains(e.Msg, msg) {
		t.Errorf("got %v\nwant test.yaml:%d: %s: ...%s...", e, line, path, msg)
	}
}

// TestTypeErrors: a value of the wrong type is reported at its line and
// path, with what was expected.
func TestTypeErrors(t *testing.T) {
	tests := []struct {
		name, src, path string
		line            int
		msg             string
	}{
		{"duration as integer", "timeouts:\n  connect: 5\n", "timeouts.connect", 2, "want a duration such as 5s, 1m30s or 1h, got 5: a bare number is ambiguous"},
		{"duration as float", "timeouts:\n  connect: 1.5\n", "timeouts.connect", 2, "a bare number is ambiguous"},
		{"duration as quoted number", "timeouts:\n  read: \"5\"\n", "timeouts.read", 2, `want a duration such as 5s, 1m30s or 1h, got "5"`},
		{"duration garbage", "health:\n  interval: soon\n", "health.interval", 2, `got "soon"`},
		{"duration as list", "health:\n  interval: [1s]\n", "health.interval", 2, "got a list"},
		{"route duration", "routes:\n  - name: a\n    timeouts:\n      read: 30\n", "routes[0].timeouts.read", 4, "a bare number is ambiguous"},
		{"bool as string", "set_x_forwarded_proto: \"true\"\n", "set_x_forwarded_proto", 1, `want true or false, got "true"`},
		{"bool as word", "healing:\n  dry_run: maybe\n", "healing.dry_run", 2, "want true or false"},
		{"pointer bool", "routes:\n  - name: a\n    breaker: 1\n", "routes[0].breaker", 3, "want true or false"},
		{"int as string", "health:\n  rise: \"2\"\n", "health.rise", 2, `want a whole number, got "2"`},
		{"int as float", "health:\n  fall: 2.5\n", "health.fall", 2, "want a whole number"},
		{"uint negative", "breaker:\n  min_requests: -1\n", "breaker.min_requests", 2, "want a whole number from 0 to 4294967295"},
		{"uint too large", "breaker:\n  half_open_requests: 4294967296\n", "breaker.half_open_requests", 2, "from 0 to 4294967295"},
		{"float as string", "breaker:\n  failure_ratio: half\n", "breaker.failure_ratio", 2, "want a number such as 0.5"},
		{"size unit", "next_upstream:\n  max_replay_body: 1XB\n", "next_upstream.max_replay_body", 2, "invalid size"},
		{"size negative", "server:\n  max_header_bytes: -1\n", "server.max_header_bytes", 2, "invalid size"},
		{"size as mapping", "server:\n  max_header_bytes: {a: 1}\n", "server.max_header_bytes", 2, "want a size"},
		{"prefix", "trusted_proxies:\n  - 127.0.0.1/32\n  - 10.0.0.0/33\n", "trusted_proxies[1]", 3, "want an address or prefix"},
		{"prefix zone", "trusted_proxies: [\"fe80::1%eth0\"]\n", "trusted_proxies[0]", 1, "want an address or prefix"},
		{"list as scalar", "healing:\n  units: ds-docservice.service\n", "healing.units", 2, "want a list such as [a, b]"},
		{"list as mapping", "upstreams:\n  url: http://127.0.0.1:8000\n", "upstreams", 2, "want a list"},
		{"mapping as scalar", "timeouts: 5s\n", "timeouts", 1, "want a mapping of keys"},
		{"mapping as list", "admin: [127.0.0.1:9090]\n", "admin", 1, "want a mapping of keys, got a list"},
		{"string as mapping", "listen: {host: 127.0.0.1}\n", "listen", 1, "want a single value, got a mapping"},
		{"string list element as list", "sticky:\n  keys:\n    - [query:a]\n", "sticky.keys[0]", 3, "want a single value, got a list"},
		{"struct list element as scalar", "upstreams:\n  - http://127.0.0.1:8000\n", "upstreams[0]", 2, "want a mapping of keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantOneProblem(t, tt.src, tt.path, tt.line, tt.msg) })
	}
}

// TestDocumentErrors covers problems with the document as a whole and with
// keys: unknown keys at every depth, repeated keys, syntax.
func TestDocumentErrors(t *testing.T) {
	tests := []struct {
		name, src, path string
		line            int
		msg             string
	}{
		{"unknown top-level key", "listen: 127.0.0.1:8080\ntmeouts: {}\n", "tmeouts", 2, `unknown key (did you mean "timeouts"?)`},
		{"unknown key without suggestion", "frobnicate: true\n", "frobnicate", 1, "unknown key"},
		{"extension key below top level", "log:\n  x-note: hi\n", "log.x-note", 2, "unknown key"},
		{"unknown key at depth", "routes:\n  - name: a\n    path_prefix: [/a]\n  - name: b\n    timeouts:\n      raed: 1s\n", "routes[1].timeouts.raed", 6, `unknown key (did you mean "read"?)`},
		{"unknown key in probe", "health:\n  readiness:\n    expect-body: \"true\"\n", "health.readiness.expect-body", 3, `did you mean "expect_body"?`},
		{"unknown key holding an anchor", "x: &x {bogus: 1}\n", "x", 1, "unknown key"},
		{"key given twice", "log:\n  level: info\n  level: debug\n", "log.level", 3, "key given twice (first on line 2)"},
		{"key not a name", "log:\n  [a]: b\n", "log", 2, "want a key name"},
		{"top level list", "- listen: x\n", "", 1, "want a mapping of keys at the top level"},
		{"top level scalar", "hello\n", "", 1, "want a mapping of keys at the top level"},
		{"two documents", "listen: 127.0.0.1:8080\n---\nlisten: 127.0.0.1:8081\n", "", 2, "only one YAML document"},
		{"syntax", "listen: 127.0.0.1:8080\nadmin:\n  listen: [\n", "", 3, "yaml: "},
		{"bad indentation", "admin:\n  listen: a\n token_file: b\n", "", 2, "yaml: "},
		{"tab", "admin:\n\tlisten: a\n", "", 2, "yaml: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantOneProblem(t, tt.src, tt.path, tt.line, tt.msg) })
	}
}

// TestTypeErrorHidesItsValidation: a value of the wrong type keeps its
// default and is reported once, not again by validation.
func TestTypeErrorHidesItsValidation(t *testing.T) {
	errs := parseErrs(t, "upstreams:\n  - url: [http://127.0.0.1:8000]\n")
	if len(errs) != 1 || errs[0].Path != "upstreams[0].url" || !strings.Contains(errs[0].Msg, "want a single value") {
		t.Fatalf("got:\n%v\nwant one type error at upstreams[0].url", errs)
	}
}

// TestErrorsGolden checks a file with many problems against the expected
// report, line for line: all problems are collected, in file order.
func TestErrorsGolden(t *testing.T) {
	_, err := config.Load("testdata/errors.yaml")
	if err == nil {
		t.Fatal("Load succeeded, want errors")
	}
	want, rerr := os.ReadFile("testdata/errors.golden")
	if rerr != nil {
		t.Fatal(rerr)
	}
	if got := err.Error() + "\n"; got != string(want) {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	var errs config.Errors
	if !errors.As(err, &errs) || len(errs) != strings.Count(string(want), "\n") {
		t.Fatalf("errors.As(Errors) = %v with %d problems", errors.As(err, &errs), len(errs))
	}
	var first *config.Error
	if !errors.As(err, &first) || first != errs[0] {
		t.Errorf("errors.As(*Error) did not find the first problem")
	}
	for _, e := range errs {
		if e.File != "testdata/errors.yaml" || e.Line == 0 {
			t.Errorf("problem without file or line: %#v", e)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	c, err := config.Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if c != nil || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, %v; want nil and fs.ErrNotExist", c, err)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    config.Error
		want string
	}{
		{config.Error{File: "a.yaml", Line: 3, Path: "timeouts.read", Msg: "bad"}, "a.yaml:3: timeouts.read: bad"},
		{config.Error{File: "a.yaml", Path: "timeouts.read", Msg: "bad"}, "a.yaml: timeouts.read: bad"},
		{config.Error{File: "a.yaml", Line: 3, Msg: "yaml: oops"}, "a.yaml:3: yaml: oops"},
		{config.Error{Line: 3, Path: "listen", Msg: "bad"}, "line 3: listen: bad"},
		{config.Error{Path: "listen", Msg: "bad"}, "listen: bad"},
		{config.Error{File: "a.yaml", Line: 3, Path: "listen", Msg: "bad", Env: "HEALGATE_LISTEN"}, "HEALGATE_LISTEN: listen: bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
	errs := config.Errors{&tests[0].e, &tests[4].e}
	if got, want := errs.Error(), "a.yaml:3: timeouts.read: bad\nlisten: bad"; got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
}

// TestDecodeSemantics: null keeps the default, mappings merge into the
// defaults, lists replace them, elements start from zero.
func TestDecodeSemantics(t *testing.T) {
	t.Run("null keeps default", func(t *testing.T) {
		c := mustParse(t, "timeouts:\nroutes:\nlisten: ~\nadmin:\n  token_file: null\nhealth:\n  # all commented out\n")
		if !reflect.DeepEqual(c, normalDefault()) {
			t.Errorf("null values changed the config:\n%+v", c)
		}
	})
	t.Run("mapping merges", func(t *testing.T) {
		c := mustParse(t, "timeouts:\n  read: 2m\nhealth:\n  readiness:\n    expect_body: ok\n")
		want := config.DefaultTimeouts()
		want.Read = 2 * time.Minute
		if c.Timeouts != want {
			t.Errorf("timeouts = %+v, want %+v", c.Timeouts, want)
		}
		if r := c.Health.Readiness; r.Path != "/healthcheck" || r.ExpectStatus != 200 || r.ExpectBody != "ok" {
			t.Errorf("readiness = %+v", r)
		}
	})
	t.Run("empty list means none", func(t *testing.T) {
		c := mustParse(t, "routes: []\nsticky: {keys: []}\ntrusted_proxies: []\n")
		if len(c.Routes) != 0 || len(c.Sticky.Keys) != 0 || len(c.TrustedProxies) != 0 {
			t.Errorf("routes %v, sticky %v, trusted %v; want none", c.Routes, c.Sticky.Keys, c.TrustedProxies)
		}
	})
	t.Run("list replaces and elements start from zero", func(t *testing.T) {
		c := mustParse(t, "routes:\n  - name: api\n    path_prefix: [/api]\n")
		if len(c.Routes) != 1 {
			t.Fatalf("routes = %+v, want only api", c.Routes)
		}
		r := c.Routes[0]
		if r.Timeouts != (config.Timeouts{}) || !r.BreakerEnabled() || !r.RetryEnabled() || r.Breaker == nil || r.Retry == nil {
			t.Errorf("route = %+v, want zero timeouts and breaker/retry normalised to true", r)
		}
	})
	t.Run("empty string is set", func(t *testing.T) {
		c := mustParse(t, "health:\n  readiness:\n    expect_body: \"\"\n")
		if c.Health.Readiness.ExpectBody != "" {
			t.Errorf("expect_body = %q, want empty", c.Health.Readiness.ExpectBody)
		}
	})
	t.Run("scalars are strings", func(t *testing.T) {
		c := mustParse(t, "health:\n  readiness:\n    expect_body: true\n  liveness:\n    expect_body: 42\n")
		if c.Health.Readiness.ExpectBody != "true" || c.Health.Liveness.ExpectBody != "42" {
			t.Errorf("expect_body = %q, %q", c.Health.Readiness.ExpectBody, c.Health.Liveness.ExpectBody)
		}
	})
	t.Run("prefixes", func(t *testing.T) {
		c := mustParse(t, "trusted_proxies: [192.0.2.7, \"::1\", 10.1.2.3/8, \"fd00::1/64\"]\n")
		want := []netip.Prefix{
			netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("::1/128"),
			netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/64"),
		}
		if !reflect.DeepEqual(c.TrustedProxies, want) {
			t.Errorf("trusted_proxies = %v, want %v", c.TrustedProxies, want)
		}
	})
	t.Run("sizes", func(t *testing.T) {
		c := mustParse(t, "next_upstream: {max_replay_body: 512k}\nserver: {max_header_bytes: 1000}\n")
		if c.NextUpstream.MaxReplayBody != 512*config.KiB || c.Server.MaxHeaderBytes != 1000 {
			t.Errorf("sizes = %v, %v", c.NextUpstream.MaxReplayBody, c.Server.MaxHeaderBytes)
		}
	})
	t.Run("anchors and merge keys", func(t *testing.T) {
		c := mustParse(t, "routes:\n  - &base\n    name: a\n    path_prefix: [/a]\n    timeouts: {read: 5m}\n  - <<: *base\n    name: b\n")
		if len(c.Routes) != 2 || c.Routes[1].Name != "b" || c.Routes[1].Timeouts.Read != 5*time.Minute ||
			!reflect.DeepEqual(c.Routes[1].PathPrefix, []string{"/a"}) {
			t.Errorf("routes = %+v", c.Routes)
		}
	})
	t.Run("merge precedence", func(t *testing.T) {
		c := mustParse(t, "x-a: &a {read: 1m, send: 1s}\nx-b: &b {read: 2m, idle: 2s}\n"+
			"routes:\n  - name: r\n    path_prefix: [/r]\n    timeouts:\n      <<: [*a, *b]\n      send: 3s\n")
		want := config.Timeouts{Read: time.Minute, Send: 3 * time.Second, Idle: 2 * time.Second}
		if got := c.Routes[0].Timeouts; got != want {
			t.Errorf("timeouts = %+v, want %+v (explicit keys first, then the earlier merge source)", got, want)
		}
	})
	t.Run("default upstream name", func(t *testing.T) {
		c := mustParse(t, "upstreams:\n  - url: \"http://[::1]:8000\"\n  - {url: \"http://127.0.0.1:8001\", name: b, backup: true}\n")
		if c.Upstreams[0].Name != "[::1]:8000" || c.Upstreams[1].Name != "b" {
			t.Errorf("names = %q, %q", c.Upstreams[0].Name, c.Upstreams[1].Name)
		}
	})
	t.Run("webhook format", func(t *testing.T) {
		c := mustParse(t, "notify: {webhooks: [{url: \"https://example.com/h\"}]}\n")
		if c.Notify.Webhooks[0].Format != config.FormatGeneric {
			t.Errorf("format = %q, want generic", c.Notify.Webhooks[0].Format)
		}
	})
}

// TestAliasBomb: aliases cannot make Parse do unbounded work. A 12 KB
// document naming one 1000-prefix route 2000 times would be 2 million
// values once expanded.
func TestAliasBomb(t *testing.T) {
	src := "x-prefixes: &p [" + strings.Repeat("/a, ", 999) + "/a]\n" +
		"x-route: &r {name: a, path_prefix: *p}\n" +
		"routes: [" + strings.Repeat("*r, ", 1999) + "*r]\n"
	_, err := config.Parse("bomb.yaml", []byte(src))
	if err == nil || !strings.Contains(err.Error(), "the document is too large") {
		t.Fatalf("Parse = %.300v; want a too-large error", err)
	}
}

// TestRoundTrip: WriteYAML prints every key and Parse reads it back equal.
func TestRoundTrip(t *testing.T) {
	for _, file := range []string{"", "testdata/full.yaml", "../packaging/healgate.yaml"} {
		t.Run(file, func(t *testing.T) {
			var c *config.Config
			if file == "" {
				c = mustParse(t, "")
			} else {
				var err error
				if c, err = config.Load(file); err != nil {
					t.Fatalf("Load:\n%v", err)
				}
			}
			var buf bytes.Buffer
			if err := c.WriteYAML(&buf); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			back, err := config.Parse("written.yaml", buf.Bytes())
			if err != nil {
				t.Fatalf("Parse(WriteYAML()):\n%v\n%s", err, out)
			}
			if !reflect.DeepEqual(back, c) {
				t.Errorf("round trip differs:\n got %+v\nwant %+v\n%s", back, c, out)
			}
			for _, k := range keyPaths(reflect.TypeFor[config.Config]()) {
				if strings.Contains(k, "[]") {
					continue // list elements: present only when the list is not empty
				}
				last := k[strings.LastIndexByte(k, '.')+1:]
				if !strings.Contains(out, last+":") {
					t.Errorf("output lacks key %s", k)
				}
			}
		})
	}
	t.Run("formats", func(t *testing.T) {
		var buf bytes.Buffer
		if err := mustParse(t, "").WriteYAML(&buf); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"\n  connect: 5s\n", "\n  send: 1m\n", "\n      response_header: 30m\n", "\n      read: 1h\n",
			"\n  max_replay_body: 1MiB\n", "trusted_proxies: [127.0.0.1/32, '::1/128']\n",
			"\n  token_file: \"\"\n", "\n    expect_body: \"true\"\n", "\n  failure_ratio: 0.5\n",
		} {
			if !strings.Contains(buf.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, buf.String())
			}
		}
	})
}

// TestFullFileSetsEveryKey keeps testdata/full.yaml honest: every leaf key
// differs from its default, so the round trip above exercises every field.
func TestFullFileSetsEveryKey(t *testing.T) {
	c, err := config.Load("testdata/full.yaml")
	if err != nil {
		t.Fatalf("Load:\n%v", err)
	}
	def := normalDefault()
	var walk func(path string, got, want reflect.Value)
	walk = func(path string, got, want reflect.Value) {
		if got.Kind() == reflect.Struct && got.Type() != reflect.TypeFor[netip.Prefix]() {
			for i := range got.NumField() {
				name, _, _ := strings.Cut(got.Type().Field(i).Tag.Get("yaml"), ",")
				walk(strings.TrimPrefix(path+"."+name, "."), got.Field(i), want.Field(i))
			}
			return
		}
		if reflect.DeepEqual(got.Interface(), want.Interface()) {
			t.Errorf("testdata/full.yaml leaves %s at its default", path)
		}
	}
	walk("", reflect.ValueOf(c).Elem(), reflect.ValueOf(def).Elem())
}

// TestPackagedConfig: packaging/healgate.yaml loads, validates, and shows
// exactly the defaults, as its header says.
func TestPackagedConfig(t *testing.T) {
	c, err := config.Load("../packaging/healgate.yaml")
	if err != nil {
		t.Fatalf("Load:\n%v", err)
	}
	if !reflect.DeepEqual(c, normalDefault()) {
		var got, want bytes.Buffer
		_ = c.WriteYAML(&got)
		_ = normalDefault().WriteYAML(&want)
		t.Errorf("packaging/healgate.yaml differs from the defaults:\n%s\nwant:\n%s", got.String(), want.String())
	}
}

func TestApplyEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	t.Run("overrides", func(t *testing.T) {
		c := mustParse(t, "")
		err := config.ApplyEnv(c, env(config.EnvListen, "unix:/run/healgate.sock", config.EnvAdminListen, "127.0.0.1:9999",
			config.EnvLogLevel, "debug", config.EnvLogFormat, "json", "HEALGATE_OTHER", "x"))
		if err != nil {
			t.Fatal(err)
		}
		want := normalDefault()
		want.Listen, want.Admin.Listen, want.Log = "unix:/run/healgate.sock", "127.0.0.1:9999", config.Log{Format: "json", Level: "debug"}
		if !reflect.DeepEqual(c, want) {
			t.Errorf("got %+v", c)
		}
	})
	t.Run("unset and empty change nothing", func(t *testing.T) {
		c := mustParse(t, "")
		if err := config.ApplyEnv(c, env(config.EnvListen, "")); err != nil {
			t.Fatal(err)
		}
		if err := config.ApplyEnv(c, nil); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(c, normalDefault()) {
			t.Errorf("config changed: %+v", c)
		}
	})
	t.Run("errors name the variable and change nothing", func(t *testing.T) {
		c := mustParse(t, "")
		err := config.ApplyEnv(c, env(config.EnvListen, "127.0.0.1:8081", config.EnvLogLevel, "loud", config.EnvAdminListen, "0.0.0.0:9090", config.EnvLogFormat, "text"))
		var errs config.Errors
		if !errors.As(err, &errs) || len(errs) != 2 {
			t.Fatalf("got %v, want two problems", err)
		}
		if errs[0].Env != config.EnvAdminListen || errs[0].Path != "admin.listen" ||
			!strings.HasPrefix(errs[0].Error(), "HEALGATE_ADMIN_LISTEN: admin.listen: admin listens on a non-loopback address") {
			t.Errorf("first problem = %v", errs[0])
		}
		if errs[1].Env != config.EnvLogLevel || errs[1].Path != "log.level" || !strings.HasPrefix(errs[1].Error(), `HEALGATE_LOG_LEVEL: log.level: want one of debug, info, warn, error, got "loud"`) {
			t.Errorf("second problem = %v", errs[1])
		}
		if !reflect.DeepEqual(c, normalDefault()) {
			t.Errorf("config was half-applied: %+v", c)
		}
	})
	t.Run("bad listen", func(t *testing.T) {
		c := mustParse(t, "")
		err := config.ApplyEnv(c, env(config.EnvListen, "8080"))
		var e *config.Error
		if !errors.As(err, &e) || e.Env != config.EnvListen || e.Path != "listen" {
			t.Fatalf("got %v", err)
		}
	})
}

func TestParseListen(t *testing.T) {
	tests := []struct{ in, kind, addr string }{
		{"127.0.0.1:8080", config.ListenTCP, "127.0.0.1:8080"},
		{":8080", config.ListenTCP, ":8080"},
		{"[::1]:8080", config.ListenTCP, "[::1]:8080"},
		{"unix:/run/healgate.sock", config.ListenUnix, "/run/healgate.sock"},
		{"systemd:healgate-admin", config.ListenSystemd, "healgate-admin"},
	}
	for _, tt := range tests {
		kind, addr, err := config.ParseListen(tt.in)
		if err != nil || kind != tt.kind || addr != tt.addr {
			t.Errorf("ParseListen(%q) = %q, %q, %v; want %q, %q", tt.in, kind, addr, err, tt.kind, tt.addr)
		}
	}
	for _, bad := range []string{"", "8080", "unix:", "unix:rel", "systemd:", "tcp://127.0.0.1:80", "[::1]:99999"} {
		if _, _, err := config.ParseListen(bad); err == nil {
			t.Errorf("ParseListen(%q) succeeded", bad)
		}
	}
}
