package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Error is one problem with a configuration: a key that is unknown, a value of
// the wrong type, or a value that fails validation.
type Error struct {
	// File is the configuration file the value came from, as given to Parse
	// or Load; empty for a Config built in code.
	File string

	// Line is the 1-based line of the offending key or value in File; zero
	// when unknown (a default value, or a Config built in code). For a value
	// that was not written in the file, Load gives the line of the closest
	// enclosing key that was.
	Line int

	// Path names the key, like "upstreams[1].url", "timeouts.connect" or
	// "routes[0].timeouts.read"; empty for a problem with the document as a
	// whole (a YAML syntax error).
	Path string

	// Msg says what is wrong, in lower case, without the path.
	Msg string

	// Env is the environment variable the value came from (see ApplyEnv);
	// empty when the value came from the file or from code.
	Env string
}

// Error formats the problem as "FILE:LINE: key.path: what is wrong", the form
// of compilers and "nginx -t". Parts that are unknown are left out: an error
// without a line reads "FILE: key.path: ...", one from the environment reads
// "HEALGATE_LISTEN: listen: ...".
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.Env != "":
		b.WriteString(e.Env)
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File + ":" + strconv.Itoa(e.Line))
	case e.File != "":
		b.WriteString(e.File)
	case e.Line > 0:
		b.WriteString("line " + strconv.Itoa(e.Line))
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one configuration, in file order. Parse,
// Load, Validate and ApplyEnv return it as their error; get at the problems
// with a type assertion or errors.As:
//
//	var errs config.Errors
//	if errors.As(err, &errs) {
//		for _, e := range errs { ... e.Path, e.Line ... }
//	}
//
// errors.As with a **Error target finds the first problem.
type Errors []*Error

// Error returns one line per problem.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems, so that errors.As and errors.Is see each one.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Listen address kinds, as returned by ParseListen.
const (
	ListenTCP     = "tcp"     // "host:port"
	ListenUnix    = "unix"    // "unix:/absolute/path"
	ListenSystemd = "systemd" // "systemd:NAME", a socket passed by systemd
)

// ParseListen splits a listen address (Config.Listen, Admin.Listen) into its
// kind (ListenTCP, ListenUnix or ListenSystemd) and address: "host:port" for
// TCP (an empty host means every interface), the absolute socket path for a
// unix socket, and the FileDescriptorName for a socket passed by systemd. It
// returns an error naming the accepted forms when s is none of them.
func ParseListen(s string) (kind, addr string, err error) {
	const forms = "want host:port, unix:/absolute/path or systemd:NAME"
	switch {
	case strings.HasPrefix(s, "unix:"):
		p := strings.TrimPrefix(s, "unix:")
		if !strings.HasPrefix(p, "/") || path.Clean(p) == "/" {
			return "", "", fmt.Errorf("%s: want an absolute socket path after unix:", strconv.Quote(s))
		}
		return ListenUnix, p, nil
	case strings.HasPrefix(s, "systemd:"):
		name := strings.TrimPrefix(s, "systemd:")
		if err := checkFDName(name); err != nil {
			return "", "", fmt.Errorf("%s: %w", strconv.Quote(s), err)
		}
		return ListenSystemd, name, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", "", fmt.Errorf("%s: %s", strconv.Quote(s), forms)
	}
	if host != "" {
		if err := checkHost(host); err != nil {
			return "", "", fmt.Errorf("%s: %w", strconv.Quote(s), err)
		}
	}
	if err := checkPort(port); err != nil {
		return "", "", fmt.Errorf("%s: %w", strconv.Quote(s), err)
	}
	return ListenTCP, s, nil
}

// checkFDName applies systemd's rules for FileDescriptorName=: 1 to 255
// printable ASCII characters other than ':'.
func checkFDName(name string) error {
	if name == "" || len(name) > 255 {
		return errors.New("want a socket name of 1 to 255 characters after systemd: (the socket unit's FileDescriptorName=)")
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c >= 0x7f || c == ':' {
			return fmt.Errorf("socket name %q may hold only printable ASCII other than ':' and space", name)
		}
	}
	return nil
}

// checkHost accepts an IP address or a DNS name.
func checkHost(host string) error {
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if len(host) > 253 {
		return fmt.Errorf("host %q is too long", host)
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(host, "."), ".") {
		ok := label != "" && len(label) <= 63 && label[0] != '-' && label[len(label)-1] != '-'
		for _, c := range []byte(label) {
			ok = ok && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-')
		}
		if !ok {
			return fmt.Errorf("host %q is neither an IP address nor a DNS name", host)
		}
	}
	return nil
}

// checkPort accepts a port number from 1 to 65535.
func checkPort(port string) error {
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port[0] == '+' {
		return fmt.Errorf("want a port number from 1 to 65535, got %q", port)
	}
	return nil
}

// isLoopbackListen reports whether a TCP listen address is reachable only
// from this host: a loopback IP or "localhost". An empty host (every
// interface) is not.
func isLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// validator collects problems, each with its path.
type validator struct{ errs Errors }

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, &Error{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) nonNegative(path string, d time.Duration) {
	if d < 0 {
		v.add(path, "must not be negative, got %s", d)
	}
}

func (v *validator) positive(path string, d time.Duration) {
	if d <= 0 {
		v.add(path, "must be greater than 0, got %s", d)
	}
}

func (v *validator) oneOf(path, value string, allowed ...string) {
	if !slices.Contains(allowed, value) {
		v.add(path, "want one of %s, got %q", strings.Join(allowed, ", "), value)
	}
}

// Validate checks the whole configuration and returns nil or an Errors with
// every problem found, each naming its key path (File and Line are left
// empty; Load fills them in). Validate does not modify c; it accepts a Config
// that Normalize has not seen (an empty Upstream.Name counts as its URL's
// host:port, an empty Webhook.Format as generic).
func (c *Config) Validate() error {
	v := &validator{}
	if _, _, err := ParseListen(c.Listen); err != nil {
		v.add("listen", "%v", err)
	}
	if c.Admin.Listen != "" {
		kind, addr, err := ParseListen(c.Admin.Listen)
		switch {
		case err != nil:
			v.add("admin.listen", "%v", err)
		case kind == ListenTCP && !isLoopbackListen(addr) && c.Admin.TokenFile == "":
			v.add("admin.listen", "admin listens on a non-loopback address without admin.token_file (%q)", addr)
		}
	}
	if c.Admin.TokenFile != "" && !strings.HasPrefix(c.Admin.TokenFile, "/") {
		v.add("admin.token_file", "want an absolute path, got %q", c.Admin.TokenFile)
	}
	for i, p := range c.TrustedProxies {
		if !p.IsValid() {
			v.add(fmt.Sprintf("trusted_proxies[%d]", i), "want an address prefix such as 127.0.0.1/32")
		}
	}
	c.Server.validate(v)
	c.validateUpstreams(v)
	c.Timeouts.validate(v, "timeouts", false)
	c.validateRoutes(v)
	c.NextUpstream.validate(v)
	c.Breaker.validate(v)
	c.Sticky.validate(v)
	c.Health.validate(v)
	c.Healing.validate(v, c.Upstreams)
	c.Notify.validate(v)
	v.oneOf("log.format", c.Log.Format, LogAuto, LogJSON, LogText)
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

func (s *Server) validate(v *validator) {
	v.positive("server.header_timeout", s.HeaderTimeout)
	v.positive("server.keepalive_timeout", s.KeepaliveTimeout)
	v.nonNegative("server.body_timeout", s.BodyTimeout)
	v.nonNegative("server.shutdown_timeout", s.ShutdownTimeout)
	if s.MaxHeaderBytes <= 0 || s.MaxHeaderBytes > math.MaxInt32 {
		v.add("server.max_header_bytes", "want a size from 1 byte to 2GiB, got %s", s.MaxHeaderBytes)
	}
}

// upstreamName is the name Normalize gives an upstream: its own, or its
// URL's host:port.
func upstreamName(u *Upstream) string {
	if u.Name != "" {
		return u.Name
	}
	if p, err := url.Parse(u.URL); err == nil {
		return p.Host
	}
	return ""
}

func (c *Config) validateUpstreams(v *validator) {
	if len(c.Upstreams) == 0 {
		v.add("upstreams", "at least one upstream is required")
		return
	}
	names := map[string]int{}
	primary := false
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		p := fmt.Sprintf("upstreams[%d]", i)
		primary = primary || !u.Backup
		if err := checkURL(u.URL, false, "http", "https"); err != nil {
			v.add(p+".url", "%v", err)
		}
		name := upstreamName(u)
		if name == "" {
			continue
		}
		if j, dup := names[name]; dup {
			v.add(p+".name", "name %q is already used by upstreams[%d] (an empty name means the URL's host:port)", name, j)
		} else {
			names[name] = i
		}
	}
	if !primary {
		v.add("upstreams", "at least one upstream must not be a backup")
	}
}

// checkURL checks an http(s)-like URL with a host and an explicit port. When
// allowPath is false, the URL may have no path other than "/".
func checkURL(raw string, allowPath bool, schemes ...string) error {
	example := schemes[0] + "://127.0.0.1:8000"
	if raw == "" {
		return fmt.Errorf("a URL is required, such as %s", example)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("want a URL such as %s, got %q", example, raw)
	}
	if !slices.Contains(schemes, u.Scheme) {
		return fmt.Errorf("want a URL with scheme %s, got %q", strings.Join(schemes, " or "), raw)
	}
	if u.Opaque != "" || u.Host == "" {
		return fmt.Errorf("want a URL with host:port such as %s, got %q", example, raw)
	}
	if u.User != nil && !allowPath {
		return fmt.Errorf("%q: user information is not allowed", raw)
	}
	if u.Port() == "" {
		return fmt.Errorf("%q has no port: want host:port such as %s", raw, example)
	}
	if err := checkPort(u.Port()); err != nil {
		return fmt.Errorf("%q: %w", raw, err)
	}
	if err := checkHost(u.Hostname()); err != nil {
		return fmt.Errorf("%q: %w", raw, err)
	}
	if !allowPath && (u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery) {
		return fmt.Errorf("%q: want only scheme://host:port, without a path, query or fragment", raw)
	}
	return nil
}

func (t *Timeouts) validate(v *validator, prefix string, route bool) {
	v.nonNegative(prefix+".send", t.Send)
	v.nonNegative(prefix+".response_header", t.ResponseHeader)
	v.nonNegative(prefix+".read", t.Read)
	v.nonNegative(prefix+".idle", t.Idle)
	if route {
		v.nonNegative(prefix+".connect", t.Connect)
	} else {
		v.positive(prefix+".connect", t.Connect)
	}
}

func (c *Config) validateRoutes(v *validator) {
	names := map[string]int{}
	for i := range c.Routes {
		r := &c.Routes[i]
		p := fmt.Sprintf("routes[%d]", i)
		switch j, dup := names[r.Name]; {
		case r.Name == "":
			v.add(p+".name", "a route name is required")
		case r.Name == "default":
			v.add(p+".name", `"default" is reserved for requests that match no route`)
		case dup:
			v.add(p+".name", "name %q is already used by routes[%d]", r.Name, j)
		default:
			names[r.Name] = i
		}
		for k, prefix := range r.PathPrefix {
			if !strings.HasPrefix(prefix, "/") {
				v.add(fmt.Sprintf("%s.path_prefix[%d]", p, k), "want a path starting with /, got %q", prefix)
			}
		}
		if r.Upgrade != "" && r.Upgrade != "websocket" {
			v.add(p+".upgrade", `want "websocket" or nothing, got %q`, r.Upgrade)
		}
		if len(r.PathPrefix) == 0 && r.Upgrade == "" && i < len(c.Routes)-1 {
			v.add(p, "matches every request (no path_prefix, no upgrade), so routes[%d] and later are never used", i+1)
		}
		r.Timeouts.validate(v, p+".timeouts", true)
	}
}

// nextConditions are the values allowed in NextUpstream.On.
func nextConditions() []string {
	return []string{
		NextError, NextTimeout, NextInvalidHeader, NextHTTP500, NextHTTP502,
		NextHTTP503, NextHTTP504, NextHTTP429, NextNonIdempotent, NextOff,
	}
}

func (n *NextUpstream) validate(v *validator) {
	allowed := nextConditions()
	for i, on := range n.On {
		p := fmt.Sprintf("next_upstream.on[%d]", i)
		switch {
		case !slices.Contains(allowed, on):
			v.add(p, "want one of %s, got %q", strings.Join(allowed, ", "), on)
		case on == NextOff && len(n.On) > 1:
			v.add(p, "off must be the only condition")
		case slices.Index(n.On, on) < i:
			v.add(p, "%q is listed twice", on)
		}
	}
	if n.Tries < 0 {
		v.add("next_upstream.tries", "must not be negative, got %d", n.Tries)
	}
	v.nonNegative("next_upstream.timeout", n.Timeout)
	if n.MaxReplayBody < 0 {
		v.add("next_upstream.max_replay_body", "must not be negative, got %d", n.MaxReplayBody)
	}
}

func (b *Breaker) validate(v *validator) {
	if !(b.FailureRatio >= 0 && b.FailureRatio <= 1) {
		v.add("breaker.failure_ratio", "want a fraction from 0 to 1, got %v", b.FailureRatio)
	}
	if b.FailureRatio > 0 && b.MinRequests == 0 {
		v.add("breaker.min_requests", "must be at least 1 when breaker.failure_ratio is set")
	}
	v.nonNegative("breaker.window", b.Window)
	v.positive("breaker.open_timeout", b.OpenTimeout)
	if b.HalfOpenRequests == 0 {
		v.add("breaker.half_open_requests", "must be at least 1")
	}
}

func (s *Sticky) validate(v *validator) {
	for i, k := range s.Keys {
		if err := checkStickyKey(k); err != nil {
			v.add(fmt.Sprintf("sticky.keys[%d]", i), "%v", err)
		}
	}
}

// checkStickyKey checks "query:NAME", "header:NAME" or "path:/prefix/{key}/".
func checkStickyKey(k string) error {
	kind, arg, ok := strings.Cut(k, ":")
	switch {
	case !ok:
	case kind == "query":
		if arg == "" || strings.ContainsAny(arg, "&=#? \t") {
			return fmt.Errorf("want query:NAME with a parameter name, got %q", k)
		}
		return nil
	case kind == "header":
		if !isToken(arg) {
			return fmt.Errorf("want header:NAME with a header field name, got %q", k)
		}
		return nil
	case kind == "path":
		if !strings.HasPrefix(arg, "/") || strings.Count(arg, "{key}") != 1 ||
			strings.Count(arg, "{") != 1 || strings.Count(arg, "}") != 1 ||
			strings.ContainsAny(arg, "?# \t") {
			return fmt.Errorf("want path:/prefix/{key}/ with exactly one {key}, got %q", k)
		}
		return nil
	}
	return fmt.Errorf("want query:NAME, header:NAME or path:/prefix/{key}/, got %q", k)
}

// isToken reports whether s is an HTTP token (RFC 9110 section 5.6.2), the
// syntax of a header field name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func (h *Health) validate(v *validator) {
	h.Liveness.validate(v, "health.liveness")
	h.Readiness.validate(v, "health.readiness")
	v.positive("health.interval", h.Interval)
	v.positive("health.timeout", h.Timeout)
	if h.Timeout > 0 && h.Interval > 0 && h.Timeout >= h.Interval {
		v.add("health.timeout", "must be less than health.interval (%s), got %s", h.Interval, h.Timeout)
	}
	if h.Rise < 1 {
		v.add("health.rise", "must be at least 1, got %d", h.Rise)
	}
	if h.Fall < 1 {
		v.add("health.fall", "must be at least 1, got %d", h.Fall)
	}
}

func (p *Probe) validate(v *validator, prefix string) {
	if !strings.HasPrefix(p.Path, "/") {
		v.add(prefix+".path", "want a path starting with /, got %q", p.Path)
	}
	if p.ExpectStatus < 100 || p.ExpectStatus > 599 {
		v.add(prefix+".expect_status", "want an HTTP status from 100 to 599, got %d", p.ExpectStatus)
	}
}

func (h *Healing) validate(v *validator, upstreams []Upstream) {
	v.oneOf("healing.action", h.Action, ActionSystemd, ActionExec, ActionNone)
	if h.Upstream != "" && !slices.ContainsFunc(upstreams, func(u Upstream) bool { return u.Name == h.Upstream }) {
		v.add("healing.upstream", "no upstream is named %q", h.Upstream)
	}
	seen := map[string]int{}
	for i, u := range h.Units {
		p := fmt.Sprintf("healing.units[%d]", i)
		if err := checkUnit(u); err != nil {
			v.add(p, "%v", err)
		} else if j, dup := seen[u]; dup {
			v.add(p, "unit %q is already listed as healing.units[%d]", u, j)
		} else {
			seen[u] = i
		}
	}
	if h.Action == ActionSystemd && len(h.Units) == 0 {
		v.add("healing.units", "at least one unit is required with action systemd")
	}
	if h.Action == ActionExec {
		if len(h.Exec.Command) == 0 || h.Exec.Command[0] == "" {
			v.add("healing.exec.command", "a command is required with action exec, such as [supervisorctl, restart, \"ds:docservice\"]")
		}
		v.positive("healing.exec.timeout", h.Exec.Timeout)
	} else {
		v.nonNegative("healing.exec.timeout", h.Exec.Timeout)
	}
	names := map[string]int{}
	for i := range h.Dependencies {
		d := &h.Dependencies[i]
		p := fmt.Sprintf("healing.dependencies[%d]", i)
		switch j, dup := names[d.Name]; {
		case d.Name == "":
			v.add(p+".name", "a dependency name is required")
		case dup:
			v.add(p+".name", "name %q is already used by healing.dependencies[%d]", d.Name, j)
		default:
			names[d.Name] = i
		}
		if err := checkURL(d.Probe, true, "postgres", "postgresql", "amqp", "redis", "tcp"); err != nil {
			v.add(p+".probe", "%v", err)
		}
		if d.Unit != "" {
			if err := checkUnit(d.Unit); err != nil {
				v.add(p+".unit", "%v", err)
			}
		}
	}
	v.nonNegative("healing.start_period", h.StartPeriod)
	v.positive("healing.restart_timeout", h.RestartTimeout)
	v.positive("healing.recovery_timeout", h.RecoveryTimeout)
	if h.Budget.Restarts < 0 {
		v.add("healing.budget.restarts", "must not be negative, got %d", h.Budget.Restarts)
	}
	v.positive("healing.budget.window", h.Budget.Window)
	v.positive("healing.backoff.initial", h.Backoff.Initial)
	v.positive("healing.backoff.max", h.Backoff.Max)
	if h.Backoff.Initial > h.Backoff.Max && h.Backoff.Max > 0 {
		v.add("healing.backoff.initial", "must not exceed healing.backoff.max (%s), got %s", h.Backoff.Max, h.Backoff.Initial)
	}
	v.nonNegative("healing.hold_timeout", h.HoldTimeout)
	if h.Drain.Enabled {
		v.positive("healing.drain.timeout", h.Drain.Timeout)
	} else {
		v.nonNegative("healing.drain.timeout", h.Drain.Timeout)
	}
}

// isUnitType reports whether s is one of systemd's unit type suffixes.
func isUnitType(s string) bool {
	switch s {
	case "service", "socket", "target", "device", "mount", "automount",
		"swap", "timer", "path", "slice", "scope":
		return true
	}
	return false
}

// checkUnit applies systemd's unit_name_is_valid rules to a unit that can be
// restarted: "prefix.type" or "prefix@instance.type", fewer than 256
// characters from [A-Za-z0-9:_.\-] plus '@' (the first '@' starts the
// instance), a known type suffix, and no template without an instance.
func checkUnit(u string) error {
	dot := strings.LastIndexByte(u, '.')
	if u == "" || len(u) >= 256 || dot <= 0 || !isUnitType(u[dot+1:]) {
		return fmt.Errorf("want a systemd unit name such as ds-docservice.service, got %q", u)
	}
	for _, c := range []byte(u[:dot]) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte(":-_.\\@", c) >= 0) {
			return fmt.Errorf("unit %q: a unit name holds only letters, digits and :-_.\\@", u)
		}
	}
	switch at := strings.IndexByte(u, '@'); {
	case at == 0:
		return fmt.Errorf("unit %q: the name before @ is empty", u)
	case at == dot-1:
		return fmt.Errorf("unit %q is a template: name an instance, such as %s", u, u[:at+1]+"NAME"+u[dot:])
	}
	return nil
}

func (n *Notify) validate(v *validator) {
	for i, w := range n.Webhooks {
		p := fmt.Sprintf("notify.webhooks[%d]", i)
		if err := checkWebhookURL(w.URL); err != nil {
			v.add(p+".url", "%v", err)
		}
		if w.Format != "" {
			v.oneOf(p+".format", w.Format, FormatGeneric, FormatSlack, FormatDingTalk, FormatWeCom)
		}
	}
	if n.QueueSize < 1 {
		v.add("notify.queue_size", "must be at least 1, got %d", n.QueueSize)
	}
}

// checkWebhookURL accepts an absolute http or https URL; the port may be
// implied by the scheme.
func checkWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return errors.New("a URL is required, such as https://hooks.example.com/healgate")
	case err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Opaque != "":
		return fmt.Errorf("want an http or https URL, got %q", raw)
	case u.Port() != "":
		if err := checkPort(u.Port()); err != nil {
			return fmt.Errorf("%q: %w", raw, err)
		}
	}
	return checkHost(u.Hostname())
}
