package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"time"
)

// Warnings returns the settings of a valid config that are allowed but
// risky for a Document Server host, one *Error each (Path and Msg set; File
// and Line are left empty): healgate check prints them, healgate run logs
// them. The config is not changed.
//
// They are:
//   - listen on a non-loopback TCP address: Document Server's /internal/
//     and /info/ are protected only by nginx's "allow 127.0.0.1";
//   - a trusted_proxies entry that trusts every address (0.0.0.0/0, ::/0);
//   - an upstream given by name rather than IP address: a name that
//     resolves to several addresses is a source of surprises (fault corpus
//     F4);
//   - timeouts.connect at least next_upstream.timeout: a connect that times
//     out leaves no time for the next upstream;
//   - health.interval below 100ms: probes that often load Document Server.
func Warnings(c *Config) []*Error {
	var ws []*Error
	warn := func(path, format string, args ...any) {
		ws = append(ws, &Error{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if kind, addr, err := ParseListen(c.Listen); err == nil && kind == ListenTCP && !isLoopbackListen(addr) {
		warn("listen", "%s is reachable beyond this host: Document Server's /internal/ and /info/ are protected only by nginx's allow 127.0.0.1", c.Listen)
	}
	for i, p := range c.TrustedProxies {
		if p.Bits() == 0 {
			warn(fmt.Sprintf("trusted_proxies[%d]", i), "%s trusts every peer's X-Forwarded-* headers", p)
		}
	}
	for i, u := range c.Upstreams {
		if pu, err := url.Parse(u.URL); err == nil {
			if _, err := netip.ParseAddr(pu.Hostname()); err != nil {
				warn(fmt.Sprintf("upstreams[%d].url", i), "%s names a host: give its IP address, since a name that resolves to several addresses makes failures hard to read", u.URL)
			}
		}
	}
	if c.NextUpstream.Timeout > 0 && c.Timeouts.Connect >= c.NextUpstream.Timeout {
		warn("timeouts.connect", "%s is not below next_upstream.timeout %s: a connect that times out leaves no time for the next upstream", c.Timeouts.Connect, c.NextUpstream.Timeout)
	}
	if c.Health.Interval < 100*time.Millisecond {
		warn("health.interval", "%s probes Document Server very often", c.Health.Interval)
	}
	return ws
}
