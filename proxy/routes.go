package proxy

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/healgate/healgate/config"
)

// defaultRoute is the class of requests that match no configured route.
const defaultRoute = "default"

// route is one resolved route class: its matchers, its effective timeouts
// (route values over the top-level ones) and its precomputed metric children.
type route struct {
	idx      int // position in routeTable.routes
	name     string
	prefixes []string
	// websocket: the route matches only WebSocket upgrade requests.
	websocket bool
	// feeds: results feed the breaker and the Observer (Route.BreakerEnabled).
	feeds bool
	// retry: a failed try may go to the next upstream (Route.RetryEnabled).
	retry bool

	timeouts config.Timeouts
	// durs and causes are indexed by phase (see timeouts.go).
	durs   [numPhases]time.Duration
	causes [numPhases]*timeoutError

	duration prometheus.Observer
	retries  prometheus.Counter
}

// routeTable matches requests to routes, first match wins.
type routeTable struct {
	routes []*route // configured order, then the default route
}

func newRouteTable(cfg *config.Config) *routeTable {
	t := &routeTable{}
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		t.routes = append(t.routes, newRoute(rc.Name, rc.PathPrefix, rc.Upgrade != "",
			rc.BreakerEnabled(), rc.RetryEnabled(), mergeTimeouts(rc.Timeouts, cfg.Timeouts)))
	}
	t.routes = append(t.routes, newRoute(defaultRoute, nil, false, true, true, cfg.Timeouts))
	for i, r := range t.routes {
		r.idx = i
	}
	return t
}

func newRoute(name string, prefixes []string, websocket, feeds, retry bool, to config.Timeouts) *route {
	r := &route{name: name, prefixes: prefixes, websocket: websocket, feeds: feeds, retry: retry, timeouts: to}
	r.durs = [numPhases]time.Duration{
		phaseConnect: to.Connect,
		phaseSend:    to.Send,
		phaseHeader:  to.ResponseHeader,
		phaseRead:    to.Read,
	}
	r.causes = [numPhases]*timeoutError{
		phaseConnect: newTimeoutError(ClassConnectTimeout, "no connection", to.Connect),
		phaseSend:    newTimeoutError(ClassUpstreamTimeout, "request body not sent", to.Send),
		phaseHeader:  newTimeoutError(ClassUpstreamTimeout, "no response header", to.ResponseHeader),
		phaseRead:    newTimeoutError(ClassUpstreamTimeout, "no response body read", to.Read),
	}
	return r
}

// mergeTimeouts returns route's timeouts with every zero field inherited from top.
func mergeTimeouts(route, top config.Timeouts) config.Timeouts {
	pick := func(a, b time.Duration) time.Duration {
		if a != 0 {
			return a
		}
		return b
	}
	return config.Timeouts{
		Connect:        pick(route.Connect, top.Connect),
		Send:           pick(route.Send, top.Send),
		ResponseHeader: pick(route.ResponseHeader, top.ResponseHeader),
		Read:           pick(route.Read, top.Read),
		Idle:           pick(route.Idle, top.Idle),
	}
}

// match returns the first route whose every condition holds, or the default
// route. It does not allocate.
func (t *routeTable) match(r *http.Request) *route {
	last := len(t.routes) - 1
	for _, rt := range t.routes[:last] {
		if rt.websocket && !isWebSocket(r.Header) {
			continue
		}
		if len(rt.prefixes) > 0 && !hasAnyPrefix(r.URL.Path, rt.prefixes) {
			continue
		}
		return rt
	}
	return t.routes[last]
}

func hasAnyPrefix(path string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// isUpgrade reports whether the request asks for a protocol upgrade: a
// Connection header (any of its lines) holding the token "upgrade",
// case-insensitively, in a comma list such as "keep-alive, Upgrade", and a
// non-empty Upgrade header.
func isUpgrade(h http.Header) bool {
	return headerHasToken(h["Connection"], "upgrade") && len(h["Upgrade"]) > 0
}

// isWebSocket reports whether the request asks for an upgrade to WebSocket.
func isWebSocket(h http.Header) bool {
	return headerHasToken(h["Connection"], "upgrade") && headerHasToken(h["Upgrade"], "websocket")
}

// headerHasToken reports whether any of the comma-separated elements of the
// header values equals token, ASCII case-insensitively. It does not allocate.
func headerHasToken(values []string, token string) bool {
	for _, v := range values {
		for v != "" {
			var elem string
			if i := strings.IndexByte(v, ','); i >= 0 {
				elem, v = v[:i], v[i+1:]
			} else {
				elem, v = v, ""
			}
			elem = strings.Trim(elem, " \t")
			// An Upgrade element may carry a version: "websocket/13".
			if i := strings.IndexByte(elem, '/'); i >= 0 {
				elem = elem[:i]
			}
			if strings.EqualFold(elem, token) {
				return true
			}
		}
	}
	return false
}
