package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/healgate/healgate/config"
)

// maxUpstreams bounds the pool so that one request's tried set is a bit mask.
const maxUpstreams = 64

// defaultMaxIdleConns is Upstream.MaxIdleConns when it is zero.
const defaultMaxIdleConns = 64

// upstream is one configured upstream with its runtime state.
type upstream struct {
	idx    int
	name   string
	rawURL string
	scheme string
	host   string // host:port, as dialed
	backup bool
	hash   uint64 // of name, for rendezvous hashing

	transport *http.Transport
	breaker   *gobreaker.TwoStepCircuitBreaker[struct{}] // nil when breakers are disabled
	openedAt  atomic.Int64                               // unix nanoseconds of the last trip
	inflight  atomic.Int64
}

// UpstreamStatus is a snapshot of one upstream, for the admin /status page.
type UpstreamStatus struct {
	// Name is the configured name.
	Name string `json:"name"`
	// URL is the configured URL.
	URL string `json:"url"`
	// Backup reports whether the upstream is a backup.
	Backup bool `json:"backup"`
	// Breaker is "closed", "half-open" or "open" ("closed" when breakers
	// are disabled).
	Breaker string `json:"breaker"`
	// Ready is Health.Ready for the upstream.
	Ready bool `json:"ready"`
	// Inflight is the number of tries on the upstream in progress,
	// upgraded connections included.
	Inflight int64 `json:"inflight"`
}

func newUpstream(idx int, uc config.Upstream, to config.Timeouts) (*upstream, error) {
	u, err := url.Parse(uc.URL)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: url: %w", uc.Name, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("upstream %q: url %q: scheme must be http or https", uc.Name, uc.URL)
	}
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	name := uc.Name
	if name == "" {
		name = u.Host
	}
	up := &upstream{
		idx: idx, name: name, rawURL: uc.URL, scheme: u.Scheme, host: host,
		backup: uc.Backup, hash: hashString(fnvOffset, name),
	}
	up.transport = newTransport(uc.MaxIdleConns, to.Idle)
	return up, nil
}

// newTransport returns the one Transport of one upstream. Its dial has no
// timeout of its own: the try's context carries the route's connect timeout.
func newTransport(maxIdle int, idle time.Duration) *http.Transport {
	dialer := &net.Dialer{KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:              nil, // never read HTTP_PROXY: a sidecar talks to its upstream directly
		DialContext:        dialer.DialContext,
		MaxIdleConns:       0, // no global limit; the per-host one below applies
		IdleConnTimeout:    idle,
		DisableCompression: true, // pass encodings through untouched
		ForceAttemptHTTP2:  false,
		// A non-nil empty map disables HTTP/2 to the upstream.
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{},
		ExpectContinueTimeout: time.Second,
	}
	switch {
	case maxIdle < 0:
		t.DisableKeepAlives = true
	case maxIdle == 0:
		t.MaxIdleConnsPerHost = defaultMaxIdleConns
	default:
		t.MaxIdleConnsPerHost = maxIdle
	}
	return t
}

// breakerState returns the breaker's state; closed when breakers are disabled.
func (u *upstream) breakerState() gobreaker.State {
	if u.breaker == nil {
		return gobreaker.StateClosed
	}
	return u.breaker.State()
}

// pool is the upstreams, primaries first in config order, then backups.
type pool struct {
	all       []*upstream // config order
	primaries []*upstream
	backups   []*upstream
}

func newPool(cfg *config.Config) (*pool, error) {
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("no upstreams")
	}
	if len(cfg.Upstreams) > maxUpstreams {
		return nil, fmt.Errorf("%d upstreams: at most %d are supported", len(cfg.Upstreams), maxUpstreams)
	}
	p := &pool{}
	for i, uc := range cfg.Upstreams {
		u, err := newUpstream(i, uc, cfg.Timeouts)
		if err != nil {
			return nil, err
		}
		p.all = append(p.all, u)
		if u.backup {
			p.backups = append(p.backups, u)
		} else {
			p.primaries = append(p.primaries, u)
		}
	}
	if len(p.primaries) == 0 {
		return nil, errors.New("every upstream is a backup: at least one primary is required")
	}
	return p, nil
}

func (p *pool) closeIdle() {
	for _, u := range p.all {
		u.transport.CloseIdleConnections()
	}
}

// tried is the set of upstreams (by index) a request has tried.
type tried uint64

func (t tried) has(u *upstream) bool { return t&(1<<uint(u.idx)) != 0 }
func (t *tried) add(u *upstream)     { *t |= 1 << uint(u.idx) }
func (t *tried) remove(u *upstream)  { *t &^= 1 << uint(u.idx) }

// lease is one try's claim on an upstream: done reports the outcome to the
// breaker (nil when the route does not feed it).
type lease struct {
	u    *upstream
	done func(error)
}

// pick chooses the next upstream for the request (see the package comment for
// the rules). When no candidate is usable and one is being healed, it holds
// the request for the heal, on a later try too: a request whose other
// candidates failed is served by the healed upstream, or answered 503
// healing, never a bare 502 while a heal is in progress. It returns an *Error
// when no upstream can be tried.
func (p *Proxy) pick(ctx context.Context, st *reqState) (lease, error) {
	if l, ok := p.pickUsable(st); ok {
		return l, nil
	}
	if err := p.holdForHeal(ctx, st); err != nil {
		return lease{}, err
	}
	if l, ok := p.pickUsable(st); ok {
		return l, nil
	}
	if st.tries > 0 {
		if p.awaitHealStart(ctx, st) {
			// The upstream that just failed is being healed now: hold for
			// the heal and try it again (the retry rules allowed another
			// try).
			st.tried.remove(st.last)
			if err := p.holdForHeal(ctx, st); err != nil {
				return lease{}, err
			}
			if l, ok := p.pickUsable(st); ok {
				return l, nil
			}
		}
		// Later tries never fall back: the caller answers with the last result.
		return lease{}, &Error{Class: ClassNoUpstream}
	}
	// Nothing usable: try an unready primary whose breaker lets it through
	// (the health check may be wrong; an honest error beats none).
	for _, u := range p.order(st) {
		if u.backup || st.tried.has(u) {
			continue
		}
		if l, ok := p.acquire(st, u); ok {
			return l, nil
		}
	}
	if wait, open := p.breakerWait(); open {
		return lease{}, &Error{Class: ClassBreakerOpen, RetryAfter: wait}
	}
	return lease{}, &Error{Class: ClassNoUpstream, RetryAfter: time.Second}
}

// pickUsable returns the first untried primary (in the request's order) that
// is ready and whose breaker lets the try through, else the first such backup.
func (p *Proxy) pickUsable(st *reqState) (lease, bool) {
	for _, u := range p.order(st) {
		if st.tried.has(u) || !p.health.Ready(u.name) {
			continue
		}
		if l, ok := p.acquire(st, u); ok {
			return l, true
		}
	}
	return lease{}, false
}

// order returns the request's candidate order: for a keyed request the
// primaries by rendezvous score, else in config order; then the backups.
// The slice lives in st and is computed once per request.
func (p *Proxy) order(st *reqState) []*upstream {
	if st.order != nil {
		return st.order
	}
	o := st.orderBuf[:0]
	if st.key != "" {
		o = appendRendezvous(o, p.pool.primaries, st.key)
	} else {
		o = append(o, p.pool.primaries...)
	}
	o = append(o, p.pool.backups...)
	st.order = o
	return o
}

// acquire asks u's breaker for a try. Routes that feed the breaker take a slot
// with Allow (a half-open breaker admits HalfOpenRequests of them); routes that
// do not skip an open breaker but never spend a half-open slot.
func (p *Proxy) acquire(st *reqState, u *upstream) (lease, bool) {
	if u.breaker == nil {
		return lease{u: u}, true
	}
	if !st.route.feeds {
		return lease{u: u}, u.breaker.State() != gobreaker.StateOpen
	}
	done, err := u.breaker.Allow()
	if err != nil {
		return lease{}, false
	}
	return lease{u: u, done: done}, true
}

// breakerWait reports whether some breaker is open and, if so, the shortest
// time until one of them lets a probe through.
func (p *Proxy) breakerWait() (time.Duration, bool) {
	var (
		best time.Duration
		open bool
		now  = time.Now()
	)
	for _, u := range p.pool.all {
		if u.breakerState() != gobreaker.StateOpen {
			continue
		}
		left := time.Unix(0, u.openedAt.Load()).Add(p.cfg.Breaker.OpenTimeout).Sub(now)
		if !open || left < best {
			best, open = left, true
		}
	}
	return best, open
}

// holdForHeal waits, while no candidate is usable and one of them is being
// healed, for a heal to end — at most Healing.HoldTimeout in all, and never
// longer than the route's response_header timeout. It returns
// nil when a re-selection is worth trying, and an *Error (healing or
// client_canceled) otherwise. Without a heal in progress it returns nil at once.
func (p *Proxy) holdForHeal(ctx context.Context, st *reqState) error {
	hold := p.cfg.Healing.HoldTimeout
	if rh := st.route.timeouts.ResponseHeader; rh > 0 && rh < hold {
		// Never keep a client longer than the route's own timeout would.
		hold = rh
	}
	var (
		deadline  <-chan time.Time
		prev      <-chan struct{}
		pollTimer *time.Timer
	)
	for {
		done, healing := p.anyHealing(st)
		if !healing {
			return nil
		}
		if deadline == nil {
			if hold <= 0 {
				return &Error{Class: ClassHealing, RetryAfter: time.Second}
			}
			t := time.NewTimer(hold)
			defer t.Stop()
			deadline = t.C
		}
		var poll <-chan time.Time
		if done == prev {
			// The heal we waited for ended but the upstream still reports
			// healing (a new heal, or a racy report): poll instead of spinning.
			if pollTimer == nil {
				pollTimer = time.NewTimer(healPoll)
				defer pollTimer.Stop()
			} else {
				pollTimer.Reset(healPoll)
			}
			poll, done = pollTimer.C, nil
		}
		prev = done
		select {
		case <-done:
		case <-poll:
		case <-ctx.Done():
			return &Error{Class: ClassClientCanceled, Err: context.Cause(ctx)}
		case <-deadline:
			if p.anyUsable(st) {
				return nil
			}
			return &Error{Class: ClassHealing, RetryAfter: hold}
		}
		if p.anyUsable(st) {
			return nil
		}
	}
}

// healStartGrace bounds how long a request whose last try was refused (the
// upstream never saw it) waits for the healer to start healing that upstream:
// right after a crash the connection is refused a few milliseconds before
// systemd reports the dead unit over D-Bus, and a request should be held for
// the heal rather than answered 502 in that gap.
const healStartGrace = 250 * time.Millisecond

// awaitHealStart reports whether a heal of the request's last upstream
// starts within healStartGrace (bounded by the hold timeout). The caller
// asks only when another try is allowed (the next-upstream rules said so:
// the upstream never saw the request, or it may be replayed). It waits only
// when the last try ended as a dead process does (connection refused or
// reset, connect timeout) and the health checks still call the upstream
// ready: the failure is fresh and the healer may not know yet. An upstream
// the checks already call down, and no heal started for, is given up at
// once (the healer gave up, or it is not healgate's to heal).
func (p *Proxy) awaitHealStart(ctx context.Context, st *reqState) bool {
	u := st.last
	if u == nil || p.cfg.Healing.HoldTimeout <= 0 {
		return false
	}
	switch st.lastClass {
	case ClassRefused, ClassReset, ClassConnectTimeout:
	default:
		return false
	}
	if _, healing := p.health.Healing(u.name); healing {
		return true
	}
	if !p.health.Ready(u.name) {
		return false
	}
	deadline := time.NewTimer(min(healStartGrace, p.cfg.Healing.HoldTimeout))
	defer deadline.Stop()
	tick := time.NewTicker(healPoll / 10)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-tick.C:
			if _, healing := p.health.Healing(u.name); healing {
				return true
			}
		}
	}
}

// healPoll is how often a held request looks again when a heal's done channel
// is already closed but the upstream still reports healing.
const healPoll = 100 * time.Millisecond

// anyUsable reports whether some untried candidate is ready and not behind an
// open breaker, without taking a breaker slot.
func (p *Proxy) anyUsable(st *reqState) bool {
	for _, u := range p.order(st) {
		if !st.tried.has(u) && p.health.Ready(u.name) && u.breakerState() != gobreaker.StateOpen {
			return true
		}
	}
	return false
}

// anyHealing returns the done channel of the first untried candidate being
// healed.
func (p *Proxy) anyHealing(st *reqState) (<-chan struct{}, bool) {
	for _, u := range p.order(st) {
		if st.tried.has(u) {
			continue
		}
		if done, ok := p.health.Healing(u.name); ok {
			return done, true
		}
	}
	return nil, false
}
