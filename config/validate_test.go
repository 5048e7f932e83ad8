package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/healgate/healgate/config"
)

// parseErrs parses src and returns its problems, failing the test if there
// are none or if the error is not an Errors.
func parseErrs(t *testing.T, src string) config.Errors {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(src))
	if err == nil {
		t.Fatalf("Parse succeeded, want an error; config: %+v", cfg)
	}
	if cfg != nil {
		t.Errorf("Parse returned a Config along with errors")
	}
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %T is not a config.Errors: %v", err, err)
	}
	return errs
}

// TestValidateRules has one failing case per validation rule; each asserts
// that exactly one problem is reported, at the exact path and line.
func TestValidateRules(t *testing.T) {
	tests := []struct {
		name string
		src  string
		path string
		line int
		msg  string // a fragment of the message
	}{
		// listen forms
		{"listen bare port", "log: {level: info}\nlisten: 8080\n", "listen", 2, "want host:port, unix:/absolute/path or systemd:NAME"},
		{"listen port too big", "listen: 127.0.0.1:70000\n", "listen", 1, "port number from 1 to 65535"},
		{"listen port zero", "listen: 127.0.0.1:0\n", "listen", 1, "port number"},
		{"listen named port", "listen: 127.0.0.1:http\n", "listen", 1, "port number"},
		{"listen bad host", "listen: bad_host:80\n", "listen", 1, "neither an IP address nor a DNS name"},
		{"listen relative unix", "listen: unix:run/healgate.sock\n", "listen", 1, "absolute socket path"},
		{"listen unix root", "listen: unix:/\n", "listen", 1, "absolute socket path"},
		{"listen systemd empty", "listen: \"systemd:\"\n", "listen", 1, "socket name"},
		{"listen systemd colon", "listen: \"systemd:a:b\"\n", "listen", 1, "printable ASCII"},
		{"admin listen bad", "admin:\n  listen: localhost\n", "admin.listen", 2, "want host:port"},
		{"admin on all interfaces without token", "admin:\n  listen: :9090\n", "admin.listen", 2, "admin listens on a non-loopback address without admin.token_file"},
		{"admin on public IP without token", "admin:\n  token_file: \"\"\n  listen: 192.0.2.1:9090\n", "admin.listen", 3, "non-loopback"},
		{"admin token file relative", "admin:\n  token_file: token\n", "admin.token_file", 2, "absolute path"},

		// server
		{"server header timeout zero", "server:\n  header_timeout: 0s\n", "server.header_timeout", 2, "greater than 0"},
		{"server keepalive negative", "server:\n  keepalive_timeout: -1s\n", "server.keepalive_timeout", 2, "greater than 0"},
		{"server shutdown negative", "server:\n  shutdown_timeout: -1s\n", "server.shutdown_timeout", 2, "negative"},
		{"server max header zero", "server:\n  max_header_bytes: 0\n", "server.max_header_bytes", 2, "1 byte to 2GiB"},

		// upstreams
		{"no upstreams", "upstreams: []\n", "upstreams", 1, "at least one upstream"},
		{"only backups", "upstreams:\n  - url: http://127.0.0.1:8000\n    backup: true\n", "upstreams", 1, "must not be a backup"},
		{"upstream url missing", "upstreams:\n  - name: a\n", "upstreams[0].url", 2, "a URL is required"},
		{"upstream url scheme", "upstreams:\n  - url: ftp://127.0.0.1:21\n", "upstreams[0].url", 2, "scheme http or https"},
		{"upstream url no scheme", "upstreams:\n  - url: 127.0.0.1:8000\n", "upstreams[0].url", 2, "want a URL such as http://127.0.0.1:8000"},
		{"upstream url no port", "upstreams:\n  - url: http://127.0.0.1\n", "upstreams[0].url", 2, "has no port"},
		{"upstream url path", "upstreams:\n  - url: http://127.0.0.1:8000/ds\n", "upstreams[0].url", 2, "without a path"},
		{"upstream url query", "upstreams:\n  - url: http://127.0.0.1:8000?a=b\n", "upstreams[0].url", 2, "without a path, query"},
		{"upstream url userinfo", "upstreams:\n  - url: http://u:p@127.0.0.1:8000\n", "upstreams[0].url", 2, "user information"},
		{"upstream names explicit duplicate", "upstreams:\n  - {name: ds, url: \"http://127.0.0.1:8000\"}\n  - {name: ds, url: \"http://127.0.0.1:8001\"}\n", "upstreams[1].name", 3, `name "ds" is already used by upstreams[0]`},
		{"upstream names default duplicate", "upstreams:\n  - url: http://127.0.0.1:8000\n  - url: http://127.0.0.1:8000\n", "upstreams[1].name", 3, `"127.0.0.1:8000" is already used`},

		// timeouts
		{"connect zero", "timeouts:\n  connect: 0s\n", "timeouts.connect", 2, "greater than 0"},
		{"send negative", "timeouts:\n  send: -5s\n", "timeouts.send", 2, "negative"},
		{"response header negative", "timeouts:\n  response_header: -5s\n", "timeouts.response_header", 2, "negative"},
		{"read negative", "timeouts:\n  read: -1ms\n", "timeouts.read", 2, "negative"},
		{"idle negative", "timeouts:\n  idle: -1h\n", "timeouts.idle", 2, "negative"},

		// routes
		{"route name missing", "routes:\n  - path_prefix: [/a]\n", "routes[0].name", 2, "name is required"},
		{"route name default", "routes:\n  - name: default\n    path_prefix: [/a]\n", "routes[0].name", 2, "reserved"},
		{"route name duplicate", "routes:\n  - {name: a, path_prefix: [/a]}\n  - {name: a, path_prefix: [/b]}\n", "routes[1].name", 3, `"a" is already used by routes[0]`},
		{"route upgrade", "routes:\n  - name: a\n    upgrade: h2c\n", "routes[0].upgrade", 3, `want "websocket" or nothing`},
		{"route path prefix", "routes:\n  - name: a\n    path_prefix:\n      - /ok\n      - converter\n", "routes[0].path_prefix[1]", 5, "starting with /"},
		{"route catch-all not last", "routes:\n  - name: all\n  - {name: b, path_prefix: [/b]}\n", "routes[0]", 2, "matches every request"},
		{"route timeout negative", "routes:\n  - name: a\n    path_prefix: [/a]\n    timeouts:\n      read: -1s\n", "routes[0].timeouts.read", 5, "negative"},
		{"route connect negative", "routes:\n  - name: a\n    path_prefix: [/a]\n    timeouts: {connect: -1s}\n", "routes[0].timeouts.connect", 4, "negative"},

		// next_upstream
		{"next upstream unknown condition", "next_upstream:\n  on:\n    - error\n    - http_404\n", "next_upstream.on[1]", 4, "want one of error, timeout"},
		{"next upstream off not alone", "next_upstream:\n  on: [error, off]\n", "next_upstream.on[1]", 2, "off must be the only condition"},
		{"next upstream duplicate", "next_upstream:\n  on: [error, error]\n", "next_upstream.on[1]", 2, "listed twice"},
		{"next upstream tries", "next_upstream:\n  tries: -1\n", "next_upstream.tries", 2, "negative"},
		{"next upstream timeout", "next_upstream:\n  timeout: -1s\n", "next_upstream.timeout", 2, "negative"},

		// breaker
		{"breaker ratio above one", "breaker:\n  failure_ratio: 1.5\n", "breaker.failure_ratio", 2, "fraction from 0 to 1"},
		{"breaker ratio negative", "breaker:\n  failure_ratio: -0.1\n", "breaker.failure_ratio", 2, "fraction"},
		{"breaker ratio NaN", "breaker:\n  failure_ratio: .nan\n", "breaker.failure_ratio", 2, "fraction"},
		{"breaker min requests", "breaker:\n  min_requests: 0\n", "breaker.min_requests", 2, "at least 1"},
		{"breaker window", "breaker:\n  window: -1s\n", "breaker.window", 2, "negative"},
		{"breaker open timeout", "breaker:\n  open_timeout: 0s\n", "breaker.open_timeout", 2, "greater than 0"},
		{"breaker half open", "breaker:\n  half_open_requests: 0\n", "breaker.half_open_requests", 2, "at least 1"},

		// sticky
		{"sticky unknown kind", "sticky:\n  keys: [\"cookie:x\"]\n", "sticky.keys[0]", 2, "want query:NAME, header:NAME or path:/prefix/{key}/"},
		{"sticky no colon", "sticky:\n  keys: [shardkey]\n", "sticky.keys[0]", 2, "want query:NAME"},
		{"sticky empty query", "sticky:\n  keys:\n    - \"query:\"\n", "sticky.keys[0]", 3, "parameter name"},
		{"sticky bad header", "sticky:\n  keys: [\"header:X Doc\"]\n", "sticky.keys[0]", 2, "header field name"},
		{"sticky path without key", "sticky:\n  keys: [\"path:/doc/\"]\n", "sticky.keys[0]", 2, "exactly one {key}"},
		{"sticky path two keys", "sticky:\n  keys: [\"path:/doc/{key}/{key}/\"]\n", "sticky.keys[0]", 2, "exactly one {key}"},
		{"sticky path relative", "sticky:\n  keys: [\"path:doc/{key}/\"]\n", "sticky.keys[0]", 2, "exactly one {key}"},

		// health
		{"health rise", "health:\n  rise: 0\n", "health.rise", 2, "at least 1"},
		{"health fall", "health:\n  fall: -1\n", "health.fall", 2, "at least 1"},
		{"health timeout zero", "health:\n  timeout: 0s\n", "health.timeout", 2, "greater than 0"},
		{"health interval zero", "health:\n  interval: 0s\n", "health.interval", 2, "greater than 0"},
		{"health timeout not below interval", "health:\n  interval: 2s\n  timeout: 2s\n", "health.timeout", 3, "less than health.interval (2s)"},
		{"health timeout default above interval", "health:\n  interval: 500ms\n", "health.timeout", 1, "less than health.interval"},
		{"liveness path", "health:\n  liveness:\n    path: index.html\n", "health.liveness.path", 3, "starting with /"},
		{"readiness path empty", "health:\n  readiness:\n    path: \"\"\n", "health.readiness.path", 3, "starting with /"},
		{"expect status low", "health:\n  liveness: {expect_status: 99}\n", "health.liveness.expect_status", 2, "100 to 599"},
		{"expect status high", "health:\n  readiness:\n    expect_status: 600\n", "health.readiness.expect_status", 3, "100 to 599"},

		// healing
		{"healing action", "healing:\n  action: restart\n", "healing.action", 2, "want one of systemd, exec, none"},
		{"unit without suffix", "healing:\n  units: [ds-docservice]\n", "healing.units[0]", 2, "systemd unit name"},
		{"unit unknown suffix", "healing:\n  units: [ds.daemon]\n", "healing.units[0]", 2, "systemd unit name"},
		{"unit bad character", "healing:\n  units: [\"ds docservice.service\"]\n", "healing.units[0]", 2, "letters, digits"},
		{"unit template", "healing:\n  units:\n    - ok.service\n    - ds@.service\n", "healing.units[1]", 4, "template"},
		{"unit empty prefix", "healing:\n  units: [\"@x.service\"]\n", "healing.units[0]", 2, "before @ is empty"},
		{"unit only suffix", "healing:\n  units: [.service]\n", "healing.units[0]", 2, "systemd unit name"},
		{"unit too long", "healing:\n  units: [" + strings.Repeat("a", 248) + ".service]\n", "healing.units[0]", 2, "systemd unit name"},
		{"unit duplicate", "healing:\n  units:\n    - a.service\n    - a.service\n", "healing.units[1]", 4, "already listed as healing.units[0]"},
		{"systemd without units", "healing:\n  units: []\n", "healing.units", 2, "at least one unit is required with action systemd"},
		{"exec without command", "healing:\n  action: exec\n", "healing.exec.command", 1, "command is required with action exec"},
		{"exec empty program", "healing:\n  action: exec\n  exec:\n    command: [\"\"]\n", "healing.exec.command", 4, "command is required"},
		{"exec timeout zero", "healing:\n  action: exec\n  exec:\n    command: [true]\n    timeout: 0s\n", "healing.exec.timeout", 5, "greater than 0"},
		{"dependency name", "healing:\n  dependencies:\n    - probe: tcp://127.0.0.1:5672\n", "healing.dependencies[0].name", 3, "name is required"},
		{"dependency duplicate", "healing:\n  dependencies:\n    - {name: mq, probe: \"amqp://127.0.0.1:5672\"}\n    - {name: mq, probe: \"amqp://127.0.0.1:5673\"}\n", "healing.dependencies[1].name", 4, "already used by healing.dependencies[0]"},
		{"dependency probe scheme", "healing:\n  dependencies:\n    - name: pg\n      probe: http://127.0.0.1:5432\n", "healing.dependencies[0].probe", 4, "scheme postgres or postgresql or amqp or redis or tcp"},
		{"dependency probe port", "healing:\n  dependencies:\n    - name: pg\n      probe: postgres://127.0.0.1\n", "healing.dependencies[0].probe", 4, "has no port"},
		{"dependency unit", "healing:\n  dependencies:\n    - name: pg\n      probe: postgres://127.0.0.1:5432\n      unit: postgresql\n", "healing.dependencies[0].unit", 5, "systemd unit name"},
		{"start period", "healing:\n  start_period: -1s\n", "healing.start_period", 2, "negative"},
		{"restart timeout", "healing:\n  restart_timeout: 0s\n", "healing.restart_timeout", 2, "greater than 0"},
		{"recovery timeout", "healing:\n  recovery_timeout: 0s\n", "healing.recovery_timeout", 2, "greater than 0"},
		{"budget restarts", "healing:\n  budget:\n    restarts: -1\n", "healing.budget.restarts", 3, "negative"},
		{"budget window", "healing:\n  budget:\n    window: 0s\n", "healing.budget.window", 3, "greater than 0"},
		{"backoff initial zero", "healing:\n  backoff: {initial: 0s}\n", "healing.backoff.initial", 2, "greater than 0"},
		{"backoff max zero", "healing:\n  backoff: {max: 0s}\n", "healing.backoff.max", 2, "greater than 0"},
		{"backoff initial above max", "healing:\n  backoff:\n    initial: 10m\n", "healing.backoff.initial", 3, "must not exceed healing.backoff.max (5m0s)"},
		{"hold timeout", "healing:\n  hold_timeout: -1s\n", "healing.hold_timeout", 2, "negative"},
		{"drain timeout", "healing:\n  drain:\n    enabled: true\n    timeout: 0s\n", "healing.drain.timeout", 4, "greater than 0"},

		// notify
		{"webhook url missing", "notify:\n  webhooks:\n    - format: slack\n", "notify.webhooks[0].url", 3, "URL is required"},
		{"webhook url scheme", "notify:\n  webhooks:\n    - url: ftp://example.com/x\n", "notify.webhooks[0].url", 3, "http or https URL"},
		{"webhook url port", "notify:\n  webhooks:\n    - url: https://example.com:0/x\n", "notify.webhooks[0].url", 3, "port number"},
		{"webhook format", "notify:\n  webhooks:\n    - url: https://example.com/x\n      format: teams\n", "notify.webhooks[0].format", 4, "want one of generic, slack, dingtalk, wecom"},
		{"queue size", "notify:\n  queue_size: 0\n", "notify.queue_size", 2, "at least 1"},

		// log
		{"log format", "log:\n  format: xml\n", "log.format", 2, "want one of auto, json, text"},
		{"log level", "log:\n  level: trace\n", "log.level", 2, "want one of debug, info, warn, error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseErrs(t, tt.src)
			if len(errs) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v", len(errs), errs)
			}
			e := errs[0]
			if e.Path != tt.path || e.Line != tt.line || e.File != "test.yaml" {
				t.Errorf("got %s:%d at %q, want test.yaml:%d at %q (%v)", e.File, e.Line, e.Path, tt.line, tt.path, e)
			}
			if !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("message %q does not contain %q", e.Msg, tt.msg)
			}
		})
	}
}

// TestValidateAccepts covers the forms each rule must let through.
func TestValidateAccepts(t *testing.T) {
	tests := map[string]string{
		"empty file":              "",
		"comments only":           "# nothing here\n",
		"listen unix":             "listen: unix:/run/healgate/healgate.sock\n",
		"listen systemd":          "listen: systemd:healgate\n",
		"listen IPv6":             "listen: \"[::1]:8080\"\n",
		"listen all interfaces":   "listen: :8080\n",
		"listen hostname":         "listen: localhost:8080\n",
		"admin disabled":          "admin: {listen: \"\"}\n",
		"admin localhost":         "admin: {listen: \"localhost:9090\"}\n",
		"admin IPv6 loopback":     "admin: {listen: \"[::1]:9090\"}\n",
		"admin public with token": "admin: {listen: \"0.0.0.0:9090\", token_file: /etc/healgate/admin.token}\n",
		"admin unix":              "admin: {listen: \"unix:/run/healgate/admin.sock\"}\n",
		"admin systemd":           "admin: {listen: \"systemd:admin\"}\n",
		"upstream https IPv6":     "upstreams: [{url: \"https://[::1]:8443/\"}]\n",
		"backup with primary":     "upstreams: [{url: \"http://127.0.0.1:8000\"}, {url: \"http://127.0.0.1:8001\", backup: true}]\n",
		"no routes":               "routes: []\n",
		"catch-all last":          "routes: [{name: a, path_prefix: [/a]}, {name: rest}]\n",
		"off alone":               "next_upstream: {on: [off]}\n",
		"every condition":         "next_upstream: {on: [error, timeout, invalid_header, http_500, http_502, http_503, http_504, http_429, non_idempotent]}\n",
		"sticky header and path":  "sticky: {keys: [\"header:X-Doc-Key\", \"path:/cache/files/{key}\", \"query:WOPISrc\"]}\n",
		"no sticky":               "sticky: {keys: []}\n",
		"ratio bounds":            "breaker: {failure_ratio: 1}\n",
		"ratio off":               "breaker: {failure_ratio: 0, min_requests: 0}\n",
		"instance unit":           "healing: {units: [\"ds@docservice.service\", \"a:b\\\\x2d.socket\", \"x@y@z.target\"]}\n",
		"action none":             "healing: {action: none, units: []}\n",
		"action exec":             "healing: {action: exec, units: [], exec: {command: [supervisorctl, restart, \"ds:docservice\"]}}\n",
		"dependencies": "healing:\n  dependencies:\n    - {name: pg, probe: \"postgresql://127.0.0.1:5432/onlyoffice\", unit: postgresql.service}\n" +
			"    - {name: mq, probe: \"amqp://guest:guest@127.0.0.1:5672/\"}\n    - {name: redis, probe: \"redis://localhost:6379\"}\n    - {name: any, probe: \"tcp://[::1]:1\"}\n",
		"zero budget":        "healing: {budget: {restarts: 0}}\n",
		"webhooks":           "notify: {webhooks: [{url: \"https://hooks.slack.com/services/T/B/X\", format: slack}, {url: \"http://127.0.0.1:9/x\"}]}\n",
		"log json debug":     "log: {format: json, level: debug}\n",
		"initial equals max": "healing: {backoff: {initial: 1m, max: 1m}}\n",
	}
	for name, src := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := config.Parse("test.yaml", []byte(src)); err != nil {
				t.Errorf("Parse:\n%v", err)
			}
		})
	}
}

// TestValidateDefault checks that Default is valid as it is, before
// Normalize, and that Validate does not modify the Config.
func TestValidateDefault(t *testing.T) {
	c := config.Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate():\n%v", err)
	}
	c.Upstreams = []config.Upstream{{URL: "http://127.0.0.1:8000"}, {URL: "http://127.0.0.1:8000"}}
	err := c.Validate()
	var e *config.Error
	if !errors.As(err, &e) || e.Path != "upstreams[1].name" || e.File != "" || e.Line != 0 {
		t.Fatalf("duplicate default names: got %v, want one error at upstreams[1].name", err)
	}
	if c.Upstreams[0].Name != "" {
		t.Errorf("Validate set Upstreams[0].Name to %q", c.Upstreams[0].Name)
	}
}
