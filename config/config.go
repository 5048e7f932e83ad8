// Package config is healgate's configuration: the schema, its defaults, YAML
// loading and validation.
//
// It is the ground floor of the project: it imports no other healgate package,
// and holds plain data only. Runtime state lives in the packages that consume a
// Config (proxy, healing), never here.
//
// Every duration is a time.Duration and is written in YAML the way Go parses
// it ("5s", "1m30s", "1h"); every size is a ByteSize ("1MiB", "512KiB", "100MB").
// Where nginx has a directive for the same knob, the key mirrors its name and
// the field's comment names the directive.
package config

import (
	"net/netip"
	"time"
)

// Config is the whole of healgate's configuration, as loaded from one YAML file.
// Default returns a Config with every default filled in; Load decodes a file on
// top of it and validates the result.
type Config struct {
	// Listen is where the proxy accepts requests from nginx: "host:port",
	// "unix:/path/to/socket", or "systemd:NAME" for a socket passed by systemd
	// socket activation (FileDescriptorName=NAME). Default "127.0.0.1:8080".
	// Document Server's /internal/ and /info/ are protected only by nginx's
	// "allow 127.0.0.1", so the default keeps healgate on loopback.
	Listen string `yaml:"listen"`

	// TrustedProxies are the peers (CIDR prefixes) whose Host, X-Forwarded-Host,
	// X-Forwarded-Proto and X-Forwarded-Prefix are passed upstream unchanged
	// and whose X-Forwarded-For is appended to. From any other peer those headers
	// are replaced by what healgate saw. Default [127.0.0.1/32, ::1/128]; an
	// empty list trusts no one. A unix-socket peer counts as trusted, since only
	// local processes can reach the socket.
	TrustedProxies []netip.Prefix `yaml:"trusted_proxies"`

	// SetXForwardedProto, when true, adds "X-Forwarded-Proto: http" (what
	// healgate's own plain-HTTP listener saw) to requests that arrive without
	// one. Default false: the header is left absent rather than risk a wrong
	// value, since Document Server builds absolute URLs from it.
	SetXForwardedProto bool `yaml:"set_x_forwarded_proto"`

	// Server hardens the proxy's listener.
	Server Server `yaml:"server"`

	// Admin is the operators' listener: /healthz, /readyz, /metrics, /status.
	Admin Admin `yaml:"admin"`

	// Upstreams are the Document Server instances, tried in order: every
	// primary first, then the backups. At least one is required.
	Upstreams []Upstream `yaml:"upstreams"`

	// Timeouts are the default per-request timeouts toward the upstreams;
	// each route may override any of them.
	Timeouts Timeouts `yaml:"timeouts"`

	// Routes classify requests by path or upgrade (first match wins) and give
	// each class its own timeouts and breaker participation. A request that
	// matches no route gets the class "default" with the top-level Timeouts.
	// Default: the Document Server routes "conversion" and "websocket" (see
	// DefaultRoutes). Setting the key replaces the list.
	Routes []Route `yaml:"routes"`

	// NextUpstream says when a failed try is repeated on the next upstream
	// (nginx proxy_next_upstream, proxy_next_upstream_tries,
	// proxy_next_upstream_timeout).
	NextUpstream NextUpstream `yaml:"next_upstream"`

	// Breaker configures the per-upstream circuit breakers.
	Breaker Breaker `yaml:"breaker"`

	// Sticky pins co-editing requests for one document to one upstream.
	Sticky Sticky `yaml:"sticky"`

	// Health configures the active health checks of every upstream.
	Health Health `yaml:"health"`

	// Healing configures what healgate does when health checks fail.
	Healing Healing `yaml:"healing"`

	// Notify configures where heal events are sent.
	Notify Notify `yaml:"notify"`

	// Log configures healgate's own log.
	Log Log `yaml:"log"`
}

// Server hardens the proxy's http.Server. It has no read or write timeout on
// purpose: those would cut long-lived WebSockets; Timeouts bound the upstream
// side and HeaderTimeout/KeepaliveTimeout the client side.
type Server struct {
	// HeaderTimeout bounds reading a request's headers (http.Server
	// ReadHeaderTimeout; nginx client_header_timeout). Default 60s.
	HeaderTimeout time.Duration `yaml:"header_timeout"`

	// KeepaliveTimeout closes an idle client keep-alive connection (http.Server
	// IdleTimeout; nginx keepalive_timeout). Default 75s.
	KeepaliveTimeout time.Duration `yaml:"keepalive_timeout"`

	// MaxHeaderBytes bounds the request line plus headers (http.Server
	// MaxHeaderBytes; nginx large_client_header_buffers). Default 64KiB.
	MaxHeaderBytes ByteSize `yaml:"max_header_bytes"`

	// BodyTimeout bounds the time between two successive reads of a request
	// body from the client (nginx client_body_timeout): a client that sends
	// nothing for this long is answered 408 and its connection closed.
	// Default 60s; zero means no limit.
	BodyTimeout time.Duration `yaml:"body_timeout"`

	// ShutdownTimeout is how long a graceful shutdown lets in-flight requests
	// finish before upgraded connections are closed and the rest are cut.
	// Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// Admin is the operators' HTTP listener.
type Admin struct {
	// Listen is the admin address, in the same forms as Config.Listen.
	// Default "127.0.0.1:9090". An empty string disables the admin listener.
	Listen string `yaml:"listen"`

	// TokenFile holds the bearer token required by the admin's mutating
	// endpoints (POST /heal/...). Default "" (those endpoints are refused).
	TokenFile string `yaml:"token_file"`
}

// Upstream is one Document Server (DocService) instance.
type Upstream struct {
	// Name identifies the upstream in logs, metrics and errors. Default: the
	// URL's host:port. Names must be unique.
	Name string `yaml:"name"`

	// URL is the upstream's base URL, "http://127.0.0.1:8000" for a local
	// DocService. Only the scheme and host are used; a path is an error.
	// Give an IP address: a name that resolves to several addresses is a
	// source of surprises (fault corpus F4).
	URL string `yaml:"url"`

	// Backup marks an upstream tried only when every primary is unusable
	// (nginx server ... backup). Default false.
	Backup bool `yaml:"backup"`

	// MaxIdleConns bounds the idle keep-alive connections kept open to this
	// upstream (nginx keepalive in an upstream block). Default 64; zero means
	// the default; a negative value disables keep-alive.
	MaxIdleConns int `yaml:"max_idle_conns"`
}

// Timeouts bound each phase of a proxied request. In a Route, a zero field
// inherits the top-level value.
type Timeouts struct {
	// Connect bounds establishing the TCP connection to an upstream (nginx
	// proxy_connect_timeout). Default 5s.
	Connect time.Duration `yaml:"connect"`

	// Send bounds the time between two successive writes of the request body
	// to the upstream (nginx proxy_send_timeout). Default 60s.
	Send time.Duration `yaml:"send"`

	// ResponseHeader bounds the wait for the response headers after the
	// request was written (the first read of nginx proxy_read_timeout).
	// Default 60s.
	ResponseHeader time.Duration `yaml:"response_header"`

	// Read bounds the time between two successive reads of the response body
	// from the upstream (nginx proxy_read_timeout); for an upgraded
	// connection it bounds idleness in either direction. Default 60s, above
	// socket.io's 25 s ping plus 20 s answer window.
	Read time.Duration `yaml:"read"`

	// Idle closes an idle keep-alive connection to an upstream (nginx
	// keepalive_timeout in an upstream block). Default 90s.
	Idle time.Duration `yaml:"idle"`
}

// Route is a class of requests with its own timeouts. Routes are matched in
// order; the first whose every given condition holds wins.
type Route struct {
	// Name is the route class, used in logs and as a metric label. Required,
	// unique; "default" is reserved for requests matching no route.
	Name string `yaml:"name"`

	// PathPrefix matches when the request path starts with one of these
	// prefixes (case-sensitive, like nginx "location ^~"). Empty matches any path.
	PathPrefix []string `yaml:"path_prefix"`

	// Upgrade matches requests asking for this protocol upgrade
	// ("Connection: upgrade" plus "Upgrade: websocket"); the only value is
	// "websocket". Empty matches requests with or without an upgrade.
	Upgrade string `yaml:"upgrade"`

	// Timeouts override the top-level Timeouts for this class; a zero field
	// inherits.
	Timeouts Timeouts `yaml:"timeouts"`

	// Breaker says whether this class's results feed the upstream's circuit
	// breaker and the healer's passive signals. Default true; false for
	// classes where slowness or failure is an application answer, not an
	// outage (conversions, upgraded connections).
	Breaker *bool `yaml:"breaker"`

	// Retry says whether a failed try of this class may go to the next
	// upstream under the NextUpstream rules. Default true. Upgraded
	// connections are never retried once the upgrade succeeded.
	Retry *bool `yaml:"retry"`
}

// BreakerEnabled reports whether the route feeds the breaker (Breaker, default true).
func (r *Route) BreakerEnabled() bool { return r.Breaker == nil || *r.Breaker }

// RetryEnabled reports whether the route may use next upstream (Retry, default true).
func (r *Route) RetryEnabled() bool { return r.Retry == nil || *r.Retry }

// Next-upstream conditions, mirroring nginx proxy_next_upstream.
const (
	NextError         = "error"          // dial failed, connection reset, bad TLS
	NextTimeout       = "timeout"        // connect or response-header timeout
	NextInvalidHeader = "invalid_header" // the upstream sent a malformed response
	NextHTTP500       = "http_500"
	NextHTTP502       = "http_502"
	NextHTTP503       = "http_503"
	NextHTTP504       = "http_504"
	NextHTTP429       = "http_429"
	NextNonIdempotent = "non_idempotent" // also retry POST, LOCK, PATCH after bytes went out
	NextOff           = "off"            // never try the next upstream
)

// NextUpstream says when a try is repeated on the next upstream.
type NextUpstream struct {
	// On lists the conditions under which the next upstream is tried (nginx
	// proxy_next_upstream): error, timeout, invalid_header, http_500,
	// http_502, http_503, http_504, http_429, non_idempotent, or off alone.
	// Default [error, timeout, http_502, http_503, http_504].
	On []string `yaml:"on"`

	// Tries bounds the number of tries of one request, the first included
	// (nginx proxy_next_upstream_tries). Default 2; zero means no limit other
	// than the number of upstreams.
	Tries int `yaml:"tries"`

	// Timeout bounds the time spent passing one request to upstreams before
	// no further try starts (nginx proxy_next_upstream_timeout). Default 10s;
	// zero means no limit.
	Timeout time.Duration `yaml:"timeout"`

	// NonIdempotent, like "non_idempotent" in On, allows retrying requests
	// with a non-idempotent method (POST, LOCK, PATCH) after some of their
	// bytes reached an upstream. Default false: such a request is retried
	// only when the upstream never saw it (dial refused, connect timeout).
	NonIdempotent bool `yaml:"non_idempotent"`

	// MaxReplayBody is the largest request body kept in memory so that the
	// request can be replayed on the next upstream. A larger body streams
	// through and its request is tried once (unless the dial failed before a
	// byte was read). Default 1MiB; zero disables replay of bodies.
	MaxReplayBody ByteSize `yaml:"max_replay_body"`
}

// Breaker configures one circuit breaker per upstream (sony/gobreaker):
// closed → open when the trip condition holds; open → half-open after
// OpenTimeout; half-open → closed after HalfOpenRequests successes, or back
// to open on a failure.
type Breaker struct {
	// Disabled turns every breaker off. Default false.
	Disabled bool `yaml:"disabled"`

	// ConsecutiveFailures trips the breaker after this many failures in a
	// row. Default 5; zero disables this condition.
	ConsecutiveFailures uint32 `yaml:"consecutive_failures"`

	// FailureRatio trips the breaker when, within Window, at least
	// MinRequests requests were counted and this fraction of them failed.
	// Default 0.5; zero disables this condition.
	FailureRatio float64 `yaml:"failure_ratio"`

	// MinRequests is the sample size FailureRatio needs. Default 20.
	MinRequests uint32 `yaml:"min_requests"`

	// Window is the rolling period over which closed-state counts are kept
	// (gobreaker Interval). Default 10s; zero keeps counts until a trip.
	Window time.Duration `yaml:"window"`

	// OpenTimeout is how long the breaker stays open before letting a probe
	// request through (gobreaker Timeout). Default 15s. It is also the
	// Retry-After given to clients when every breaker is open.
	OpenTimeout time.Duration `yaml:"open_timeout"`

	// HalfOpenRequests is how many requests may pass while half-open, all of
	// which must succeed to close the breaker (gobreaker MaxRequests).
	// Default 1.
	HalfOpenRequests uint32 `yaml:"half_open_requests"`
}

// Sticky pins every request for one document to one upstream, as Document
// Server's co-editing requires.
type Sticky struct {
	// Keys are where a request's document key is found, tried in order:
	// "query:NAME" (a query parameter), "header:NAME" (a request header) or
	// "path:/prefix/{key}/" (a path segment). Default [query:shardkey,
	// query:WOPISrc, path:/doc/{key}/]. An empty list disables pinning.
	Keys []string `yaml:"keys"`
}

// Probe is one HTTP health check against an upstream.
type Probe struct {
	// Path is the request path. Liveness default "/index.html" (Document
	// Server's static page, no dependency checks; ONLYOFFICE's Helm chart
	// uses it); readiness default "/healthcheck".
	Path string `yaml:"path"`

	// ExpectStatus is the status code a healthy upstream answers. Default 200.
	ExpectStatus int `yaml:"expect_status"`

	// ExpectBody, when set, must equal the response body with surrounding
	// white space trimmed. Readiness default "true": Document Server's
	// /healthcheck answers 200 both ways, with body true or false.
	ExpectBody string `yaml:"expect_body"`
}

// Health configures the active health checks.
type Health struct {
	// Liveness checks that the upstream process answers at all; failing it
	// means the upstream itself must be healed.
	Liveness Probe `yaml:"liveness"`

	// Readiness checks that the upstream can serve (its dependencies are up);
	// failing it while liveness passes points at a dependency.
	Readiness Probe `yaml:"readiness"`

	// Interval is the time between two checks of one upstream. Default 2s.
	Interval time.Duration `yaml:"interval"`

	// Timeout bounds one check, connect to last body byte. Default 1s.
	// Document Server's /healthcheck has no internal timeout: a hung
	// dependency hangs it.
	Timeout time.Duration `yaml:"timeout"`

	// Rise is the number of passes in a row that mark an upstream up. Default 2.
	Rise int `yaml:"rise"`

	// Fall is the number of failures in a row that mark an upstream down. Default 3.
	Fall int `yaml:"fall"`
}

// Healing actions.
const (
	ActionSystemd = "systemd" // restart units over D-Bus
	ActionExec    = "exec"    // run a command
	ActionNone    = "none"    // observe only; Kubernetes mode via /healthz/upstream
)

// Healing configures the healer.
type Healing struct {
	// Action is how the upstream is restarted: "systemd", "exec" or "none".
	// Default "systemd".
	Action string `yaml:"action"`

	// Upstream names the upstream (Upstream.Name) that Units serve: the one
	// healgate heals. Every upstream is health-checked, and readiness steers
	// traffic, but only this one is restarted. Default: the first upstream
	// that is not a backup (Normalize fills it in).
	Upstream string `yaml:"upstream"`

	// Units are the systemd units restarted by the systemd action, and the
	// only units healgate may touch. Default [ds-docservice.service].
	Units []string `yaml:"units"`

	// Exec is the command run by the exec action.
	Exec Exec `yaml:"exec"`

	// Dependencies are probed when the upstream fails, so that a dependency
	// outage heals the dependency instead of restarting Document Server.
	// Default: none.
	Dependencies []Dependency `yaml:"dependencies"`

	// StartPeriod ignores failed checks after a restart while the upstream
	// boots. Default 60s.
	StartPeriod time.Duration `yaml:"start_period"`

	// RestartTimeout bounds waiting for a restart job's result. Default 90s.
	RestartTimeout time.Duration `yaml:"restart_timeout"`

	// RecoveryTimeout bounds waiting for Rise passes after a restart.
	// Default 120s.
	RecoveryTimeout time.Duration `yaml:"recovery_timeout"`

	// Budget caps restarts: at most Restarts in any Window.
	Budget Budget `yaml:"budget"`

	// Backoff spaces consecutive heal attempts of one target.
	Backoff Backoff `yaml:"backoff"`

	// HoldTimeout is how long a request waits for a heal in progress before
	// it is answered 503 with Retry-After; a route whose response_header
	// timeout is shorter waits only that long. Default 10s; zero answers at
	// once.
	HoldTimeout time.Duration `yaml:"hold_timeout"`

	// Drain asks Document Server to stop taking new sessions before a restart.
	Drain Drain `yaml:"drain"`

	// DryRun logs what the healer would do and does nothing. Default false.
	DryRun bool `yaml:"dry_run"`
}

// Exec is a command run by the exec action.
type Exec struct {
	// Command is the program and its arguments, without a shell, for example
	// [supervisorctl, restart, "ds:docservice"]. Required with action exec.
	Command []string `yaml:"command"`

	// Timeout bounds the command. Default 60s.
	Timeout time.Duration `yaml:"timeout"`
}

// Dependency is a service Document Server needs (PostgreSQL, RabbitMQ, Redis).
type Dependency struct {
	// Name identifies the dependency in logs and events. Required, unique.
	Name string `yaml:"name"`

	// Probe is a URL whose scheme picks the protocol-level check:
	// postgres://host:port, amqp://host:port, redis://host:port or
	// tcp://host:port. Required.
	Probe string `yaml:"probe"`

	// Unit is the systemd unit healed when the dependency is down. Empty
	// means alert only.
	Unit string `yaml:"unit"`
}

// Budget caps restarts: at most Restarts restarts in any Window.
type Budget struct {
	// Restarts is the number of restarts allowed per Window. Default 3; zero
	// forbids restarts (the healer only alerts).
	Restarts int `yaml:"restarts"`

	// Window is the sliding window. Default 30m.
	Window time.Duration `yaml:"window"`
}

// Backoff is exponential backoff with jitter between heal attempts.
type Backoff struct {
	// Initial is the first wait. Default 10s.
	Initial time.Duration `yaml:"initial"`

	// Max caps the wait. Default 5m.
	Max time.Duration `yaml:"max"`
}

// Drain configures "PUT /internal/cluster/inactive" before a restart.
type Drain struct {
	// Enabled turns draining on. Default false.
	Enabled bool `yaml:"enabled"`

	// Timeout bounds the drain. Default 60s.
	Timeout time.Duration `yaml:"timeout"`
}

// Webhook formats.
const (
	FormatGeneric  = "generic"
	FormatSlack    = "slack"
	FormatDingTalk = "dingtalk"
	FormatWeCom    = "wecom"
)

// Notify configures the event sinks.
type Notify struct {
	// Webhooks receive every heal event. Default: none.
	Webhooks []Webhook `yaml:"webhooks"`

	// QueueSize bounds the events waiting to be sent; when full, new events
	// are dropped and counted. Default 64.
	QueueSize int `yaml:"queue_size"`
}

// Webhook is one HTTP endpoint that receives events as a POST.
type Webhook struct {
	// URL is the endpoint. Required.
	URL string `yaml:"url"`

	// Format is the body's shape: generic (JSON), slack, dingtalk or wecom.
	// Default generic.
	Format string `yaml:"format"`
}

// Log formats and levels.
const (
	LogAuto = "auto" // text without timestamps under systemd (journald adds them), else JSON
	LogJSON = "json"
	LogText = "text"
)

// Log configures healgate's own log (log/slog).
type Log struct {
	// Format is auto, json or text. Default auto.
	Format string `yaml:"format"`

	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
}
