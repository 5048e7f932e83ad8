package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/healgate/healgate/config"
)

// Next-upstream conditions (nginx proxy_next_upstream), as indexes.
type nextCond uint8

const (
	condNever nextCond = iota
	condError
	condTimeout
	condInvalidHeader
	condHTTP500
	condHTTP502
	condHTTP503
	condHTTP504
	condHTTP429
	numConds
)

// nextPolicy is the resolved NextUpstream config.
type nextPolicy struct {
	on            [numConds]bool
	nonIdempotent bool
	tries         int           // 0: no limit but the number of upstreams
	timeout       time.Duration // 0: none
}

func newNextPolicy(c config.NextUpstream) nextPolicy {
	n := nextPolicy{nonIdempotent: c.NonIdempotent, tries: c.Tries, timeout: c.Timeout}
	for _, s := range c.On {
		switch s {
		case config.NextOff:
			return nextPolicy{}
		case config.NextError:
			n.on[condError] = true
		case config.NextTimeout:
			n.on[condTimeout] = true
		case config.NextInvalidHeader:
			n.on[condInvalidHeader] = true
		case config.NextHTTP500:
			n.on[condHTTP500] = true
		case config.NextHTTP502:
			n.on[condHTTP502] = true
		case config.NextHTTP503:
			n.on[condHTTP503] = true
		case config.NextHTTP504:
			n.on[condHTTP504] = true
		case config.NextHTTP429:
			n.on[condHTTP429] = true
		case config.NextNonIdempotent:
			n.nonIdempotent = true
		}
	}
	return n
}

func condForClass(c ErrorClass) nextCond {
	switch c {
	case ClassRefused, ClassReset, ClassDNS, ClassTLS:
		return condError
	case ClassConnectTimeout, ClassUpstreamTimeout:
		return condTimeout
	case ClassBadResponse:
		return condInvalidHeader
	default:
		return condNever
	}
}

func condForStatus(code int) nextCond {
	switch code {
	case 500:
		return condHTTP500
	case 502:
		return condHTTP502
	case 503:
		return condHTTP503
	case 504:
		return condHTTP504
	case 429:
		return condHTTP429
	default:
		return condNever
	}
}

// idempotent reports whether a request with this method may be repeated
// after the upstream saw it (RFC 9110 idempotent methods).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// retryTransport is the http.RoundTripper the ReverseProxy calls: the next
// upstream loop. It picks a candidate, points the outbound request at it,
// runs one try under the route's timeouts and decides from the result whether
// the next candidate is tried. When the tries run out after an http_5xx
// condition, the last upstream response is returned, as nginx does.
type retryTransport struct{ p *Proxy }

// RoundTrip runs the tries of one proxied request. Errors are *Error.
func (t retryTransport) RoundTrip(out *http.Request) (*http.Response, error) {
	p := t.p
	ctx := out.Context()
	st := stateFrom(ctx)
	if st == nil {
		return nil, errors.New("proxy: request did not come through Proxy.ServeHTTP")
	}
	body, err := p.prepareBody(out, st.upgrade)
	if err != nil {
		// The client's body broke off; nobody is left to answer.
		return nil, &Error{Class: ClassClientCanceled, Err: err}
	}
	defer body.release()
	var (
		res     *http.Response
		lastErr error
	)
	for {
		l, perr := p.pick(ctx, st)
		if perr != nil {
			var pe *Error
			if errors.As(perr, &pe) && pe.Class == ClassHealing {
				// A heal outlasted the hold: say so rather than pass on the
				// last failure of another upstream, which the answer still
				// names.
				if res != nil {
					discard(res)
				}
				if pe.Err == nil && lastErr != nil {
					pe.Err = lastErr
				}
				return nil, perr
			}
			switch {
			case res != nil:
				return res, nil
			case lastErr != nil:
				return nil, lastErr
			}
			return nil, perr
		}
		if res != nil {
			discard(res)
			st.bodyErr = nil
			res = nil
		}
		if st.tries > 0 {
			st.route.retries.Inc()
		}
		var again bool
		res, again, lastErr = p.try(ctx, out, st, l, body)
		if !again || !p.mayTryAgain(ctx, st) {
			if res != nil {
				return res, nil
			}
			return nil, lastErr
		}
	}
}

// mayTryAgain reports whether the tries and time budgets allow another try.
func (p *Proxy) mayTryAgain(ctx context.Context, st *reqState) bool {
	if ctx.Err() != nil {
		return false
	}
	if p.next.tries > 0 && st.tries >= p.next.tries {
		return false
	}
	return p.next.timeout <= 0 || time.Since(st.start) < p.next.timeout
}

// retryable reports whether a failed try may be repeated on the next
// upstream. A try the upstream never saw (dial error, or no request byte
// written) may be repeated for any method, if its body can be sent again.
// Once bytes went out, only idempotent methods (or any with non_idempotent),
// only keyless requests (a document must not be split across nodes) and only
// with a buffered body.
func (p *Proxy) retryable(ctx context.Context, st *reqState, cond nextCond, neverSent bool, body *reqBody) bool {
	if ctx.Err() != nil || !st.route.retry || !p.next.on[cond] {
		return false
	}
	if neverSent {
		return body.replayable()
	}
	if st.key != "" {
		return false
	}
	if !idempotent(st.method) && !p.next.nonIdempotent {
		return false
	}
	return body.kind != bodyStreamed
}

// discard drains a little of a response that is replaced by a retry (so its
// connection may be reused) and closes it.
func discard(res *http.Response) {
	_, _ = io.CopyN(io.Discard, res.Body, 4<<10)
	_ = res.Body.Close()
}

// try is one attempt of one request on one upstream.
type try struct {
	u      *upstream
	tt     tryTimer
	ctx    context.Context
	cancel context.CancelCauseFunc
	trace  httptrace.ClientTrace
	url    url.URL

	wroteHeaders atomic.Bool
}

func (t *try) gotConn(httptrace.GotConnInfo) { t.tt.enter(phaseSend) }
func (t *try) wroteHeadersHook()             { t.wroteHeaders.Store(true) }
func (t *try) wroteRequest(httptrace.WroteRequestInfo) {
	t.tt.enter(phaseHeader)
}

// end releases the try's timer, context and inflight count.
func (t *try) end() {
	t.tt.stop()
	t.cancel(nil)
	t.u.inflight.Add(-1)
}

// try runs one try on l.u and reports its outcome (breaker, observer,
// metrics). It returns the response or an *Error, and whether the request may
// go to the next upstream.
func (p *Proxy) try(ctx context.Context, out *http.Request, st *reqState, l lease, body *reqBody) (*http.Response, bool, error) {
	u := l.u
	st.tries++
	st.tried.add(u)
	st.last = u
	st.lastClass = ClassNone
	u.inflight.Add(1)

	t := &try{u: u}
	t.ctx, t.cancel = context.WithCancelCause(ctx)
	t.tt.start(st.route, t.cancel)
	t.trace = httptrace.ClientTrace{GotConn: t.gotConn, WroteHeaders: t.wroteHeadersHook, WroteRequest: t.wroteRequest}
	req := out.WithContext(httptrace.WithClientTrace(t.ctx, &t.trace))
	t.url = *out.URL
	t.url.Scheme, t.url.Host = u.scheme, u.host
	req.URL = &t.url
	req.Body, req.ContentLength = body.reader(&t.tt)
	req.GetBody = nil
	if body.kind == bodyBuffered {
		req.TransferEncoding = nil // sent with a Content-Length
	}

	begin := time.Now()
	res, err := u.transport.RoundTrip(req)
	elapsed := time.Since(begin)
	if err != nil {
		cause := context.Cause(t.ctx)
		t.end()
		class := ClassClientCanceled
		if ctx.Err() == nil {
			class = classify(err, cause)
		}
		var te *timeoutError
		if errors.As(cause, &te) {
			err = te
		}
		p.report(st, l, class, 0, elapsed)
		neverSent := class.isDial() || (!t.wroteHeaders.Load() && body.consumed.Load() == 0)
		st.lastClass = class
		e := &Error{Class: class, Upstream: u.name, Addr: u.host, Err: err}
		return nil, p.retryable(ctx, st, condForClass(class), neverSent, body), e
	}
	p.report(st, l, ClassNone, res.StatusCode, elapsed)

	if res.StatusCode == http.StatusSwitchingProtocols {
		// Never retried. The try's context stays alive with the connection.
		t.tt.stop()
		if rwc, ok := res.Body.(io.ReadWriteCloser); ok {
			res.Body = newUpgradeConn(rwc, st.route.timeouts.Read, func() {
				t.cancel(nil)
				u.inflight.Add(-1)
			})
		} else {
			t.end()
		}
		return res, false, nil
	}

	t.tt.enter(phaseRead)
	res.Body = &timedBody{rc: res.Body, t: t, st: st}
	return res, p.retryable(ctx, st, condForStatus(res.StatusCode), false, body), nil
}

// report feeds a try's outcome to the upstream's breaker (when the route
// took a slot), the Observer (on routes that feed it) and the error metrics.
func (p *Proxy) report(st *reqState, l lease, class ErrorClass, status int, d time.Duration) {
	if l.done != nil {
		l.done(breakerOutcome(class, status))
	}
	if class == ClassClientCanceled {
		return
	}
	if class != ClassNone {
		p.metrics.upstreamErrors.WithLabelValues(l.u.name, string(class)).Inc()
	}
	if st.route.feeds && p.observer != nil {
		p.observer.Observe(Outcome{Upstream: l.u.name, Route: st.route.name, Class: class, Status: status, Duration: d})
	}
}

// timedBody is a response body under the route's read timeout: each read
// restarts the try's timer. Close ends the try.
type timedBody struct {
	rc     io.ReadCloser
	t      *try
	st     *reqState
	closed atomic.Bool
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.t.tt.touch()
	}
	if err != nil && err != io.EOF {
		var te *timeoutError
		if cause := context.Cause(b.t.ctx); errors.As(cause, &te) {
			err = te
		}
		b.st.bodyErr = err
	}
	return n, err
}

func (b *timedBody) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := b.rc.Close()
	b.t.end()
	return err
}
