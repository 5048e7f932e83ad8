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
		return nil, bodyFailure(ctx, err)
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

// bodyFailure is the answer to a request whose client's body could not be
// read (err is a *bodyError): client_timeout when it stalled past
// server.body_timeout, else bad_request while the client is there to read
// it, client_canceled when it is gone. None is the upstream's fault.
func bodyFailure(ctx context.Context, err error) *Error {
	class := clientBodyClass(err)
	if ctx.Err() != nil && class != ClassClientTimeout {
		class = ClassClientCanceled
	}
	return &Error{Class: class, Err: err}
}

// discard drains a little of a response that is replaced by a retry (so its
// connection may be reused) and closes it.
func discard(res *http.Response) {
	_, _ = io.CopyN(io.Discard, res.Body, 4<<10)
	_ = res.Body.Close()
}

// try is one attempt of one request on one upstream. Its outcome is
// reported once (settle): at its error, at its response headers for an
// upgrade or a response the next try may replace, else when the response
// body ends.
type try struct {
	p      *Proxy
	st     *reqState
	l      lease
	u      *upstream
	tt     tryTimer
	client context.Context // the request's context: done when the client went away
	ctx    context.Context // the try's context, under the try's timer
	cancel context.CancelCauseFunc
	trace  httptrace.ClientTrace
	url    url.URL
	body   timedBody // the response body, when one arrived
	begin  time.Time
	status int // the upstream's response status, 0 before one arrived

	wroteHeaders atomic.Bool
	settled      atomic.Bool
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

// settle reports the try's outcome, the first time it is called: the
// breaker's done is called exactly once per try.
func (t *try) settle(class ErrorClass, d time.Duration) {
	if t.settled.CompareAndSwap(false, true) {
		t.p.report(t.st, t.l, class, t.status, d)
	}
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

	t := &try{p: p, st: st, l: l, u: u, client: ctx}
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

	t.begin = time.Now()
	res, err := u.transport.RoundTrip(req)
	elapsed := time.Since(t.begin)
	if err != nil {
		cause := context.Cause(t.ctx)
		t.end()
		var (
			class = ClassClientCanceled
			berr  = body.readErr()
		)
		switch {
		case berr != nil && clientBodyClass(berr) == ClassClientTimeout:
			// The client stalled: net/http cancels the request's context
			// on that read error too, but the client is still there.
			class, err = ClassClientTimeout, berr
		case ctx.Err() != nil:
			if berr != nil {
				err = berr
			}
		case berr != nil:
			// The client's body broke off: the transport's error is its
			// consequence, not the upstream's doing.
			class, err = clientBodyClass(berr), berr
		default:
			class = classify(err, cause)
		}
		var te *timeoutError
		if errors.As(cause, &te) {
			err = te
		}
		t.settle(class, elapsed)
		st.lastClass = class
		if class == ClassBadRequest || class == ClassClientTimeout {
			return nil, false, &Error{Class: class, Err: err}
		}
		neverSent := class.isDial() || (!t.wroteHeaders.Load() && body.consumed.Load() == 0)
		e := &Error{Class: class, Upstream: u.name, Addr: u.host, Err: err}
		return nil, p.retryable(ctx, st, condForClass(class), neverSent, body), e
	}
	t.status = res.StatusCode

	if res.StatusCode == http.StatusSwitchingProtocols {
		// Never retried; judged by its 101. The try's context stays alive
		// with the connection.
		t.settle(ClassNone, elapsed)
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

	again := p.retryable(ctx, st, condForStatus(res.StatusCode), false, body)
	if again {
		// The next try may replace this response: its status is all that
		// counts, and the breaker should know it before the next pick.
		t.settle(ClassNone, elapsed)
	}
	t.tt.enter(phaseRead)
	t.body = timedBody{rc: res.Body, t: t, head: elapsed}
	res.Body = &t.body
	return res, again, nil
}

// report feeds a try's outcome to the upstream's breaker (when the route
// took a slot), the Observer (on routes that feed it) and the error metrics.
// The client's faults (it went away, its body broke off) are excluded from
// the breaker's counts and reach neither the metric nor the Observer.
func (p *Proxy) report(st *reqState, l lease, class ErrorClass, status int, d time.Duration) {
	if class.clientFault() {
		if l.done != nil {
			l.done(errExcluded)
		}
		return
	}
	if l.done != nil {
		l.done(breakerOutcome(class, status))
	}
	if class != ClassNone {
		p.metrics.upstreamErrors.WithLabelValues(l.u.name, string(class)).Inc()
	}
	if st.route.feeds && p.observer != nil {
		p.observer.Observe(Outcome{Upstream: l.u.name, Route: st.route.name, Class: class, Status: status, Duration: d})
	}
}

// timedBody is a response body under the route's read timeout: each read
// restarts the try's timer. Its end settles the try (unless the response was
// judged at its headers): EOF, or Close while the client is there, by the
// response's status; a read error from the upstream as a failure of its
// class; a client that went away neither way. Close ends the try.
type timedBody struct {
	rc     io.ReadCloser
	t      *try
	head   time.Duration // from the start of the try to the response headers
	closed atomic.Bool
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.t.tt.touch()
	}
	switch {
	case err == nil:
	case err == io.EOF:
		b.t.settle(ClassNone, b.head)
	default:
		cause := context.Cause(b.t.ctx)
		var te *timeoutError
		if errors.As(cause, &te) {
			err = te
		}
		b.t.st.bodyErr = err
		class := ClassClientCanceled
		if b.t.client.Err() == nil {
			class = classify(err, cause)
		}
		b.t.settle(class, time.Since(b.t.begin))
	}
	return n, err
}

func (b *timedBody) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := b.rc.Close()
	class := ClassNone
	if b.t.client.Err() != nil {
		class = ClassClientCanceled
	}
	b.t.settle(class, b.head)
	b.t.end()
	return err
}
