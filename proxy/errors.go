package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"
)

// ErrorClass names why a request (or one try of it) failed. It is the value of
// the X-Healgate-Error response header, the "class" log field and metric label.
type ErrorClass string

// Error classes. Each maps to one response status (see ErrorClass.Status).
const (
	// ClassNone means no error: a response arrived from an upstream.
	ClassNone ErrorClass = ""
	// ClassRefused: the upstream refused the connection or could not be
	// reached (nothing listens on its port). 502.
	ClassRefused ErrorClass = "upstream_refused"
	// ClassReset: the connection broke after it was established (reset,
	// closed before or during the response headers). 502.
	ClassReset ErrorClass = "upstream_reset"
	// ClassConnectTimeout: no connection within the connect timeout. 504.
	ClassConnectTimeout ErrorClass = "connect_timeout"
	// ClassUpstreamTimeout: the send, response_header or read timeout
	// expired. 504.
	ClassUpstreamTimeout ErrorClass = "upstream_timeout"
	// ClassDNS: the upstream's host name did not resolve. 502.
	ClassDNS ErrorClass = "dns"
	// ClassTLS: the TLS handshake with the upstream failed. 502.
	ClassTLS ErrorClass = "tls"
	// ClassBadResponse: the upstream sent something that is not an HTTP
	// response. 502.
	ClassBadResponse ErrorClass = "bad_response"
	// ClassBreakerOpen: every candidate's breaker is open. 503 + Retry-After.
	ClassBreakerOpen ErrorClass = "breaker_open"
	// ClassNoUpstream: no upstream could be tried. 503 + Retry-After.
	ClassNoUpstream ErrorClass = "no_upstream"
	// ClassHealing: every usable candidate is being healed and the heal did
	// not end within Healing.HoldTimeout. 503 + Retry-After.
	ClassHealing ErrorClass = "healing"
	// ClassClientCanceled: the client went away. No response is written
	// (the connection is dropped); logs and metrics record status 499
	// (nginx's convention). Never counted as an upstream failure.
	ClassClientCanceled ErrorClass = "client_canceled"
	// ClassBadRequest: the client's request body broke off or was malformed
	// (malformed chunked encoding) while the client was still there to read
	// an answer. 400, and the connection is closed. It is the client's
	// fault: never retried, never fed to a breaker, the Observer or
	// healgate_upstream_errors_total. A body cut short by the client's FIN
	// is ClassClientCanceled instead: net/http cancels the request's context
	// on that very EOF, so such a client counts as gone.
	ClassBadRequest ErrorClass = "bad_request"
	// ClassClientTimeout: the client sent nothing of its request body for
	// server.body_timeout (nginx client_body_timeout). 408, and the
	// connection is closed. The client's fault, like ClassBadRequest.
	ClassClientTimeout ErrorClass = "client_timeout"
)

// StatusClientClosed is the status logged and counted for ClassClientCanceled
// (nginx's 499); it is never sent.
const StatusClientClosed = 499

// Status returns the HTTP status answered for the class: 502 for refused,
// reset, dns, tls and bad_response; 504 for the timeouts; 503 for
// breaker_open, no_upstream and healing; 400 for bad_request; 408 for
// client_timeout; 499 for
// client_canceled; 200 for ClassNone.
func (c ErrorClass) Status() int {
	switch c {
	case ClassNone:
		return http.StatusOK
	case ClassBadRequest:
		return http.StatusBadRequest
	case ClassClientTimeout:
		return http.StatusRequestTimeout
	case ClassConnectTimeout, ClassUpstreamTimeout:
		return http.StatusGatewayTimeout
	case ClassBreakerOpen, ClassNoUpstream, ClassHealing:
		return http.StatusServiceUnavailable
	case ClassClientCanceled:
		return StatusClientClosed
	default:
		return http.StatusBadGateway
	}
}

// isDial reports whether the class means the upstream never saw the request.
func (c ErrorClass) isDial() bool {
	return c == ClassRefused || c == ClassConnectTimeout || c == ClassDNS
}

// clientFault reports whether the class is the client's doing (it went away,
// or its request body broke off), so that it says nothing about the upstream.
func (c ErrorClass) clientFault() bool {
	return c == ClassClientCanceled || c == ClassBadRequest || c == ClassClientTimeout
}

// clientBodyClass is the class of a failure to read the client's body while
// the client is still there: client_timeout when the read deadline of
// server.body_timeout passed, bad_request otherwise.
func clientBodyClass(err error) ErrorClass {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return ClassClientTimeout
	}
	return ClassBadRequest
}

// Error is the error a proxied request failed with, as handed to the
// ReverseProxy's ErrorHandler and written to the client.
type Error struct {
	// Class is why the request failed.
	Class ErrorClass
	// Upstream is the name of the upstream of the last try, "" when no
	// upstream was tried or the failure was the client's (bad_request).
	Upstream string
	// Addr is that upstream's host:port, "" when no upstream was tried.
	Addr string
	// RetryAfter is the wait suggested to the client with a 503 (at least
	// one second when sent); zero otherwise.
	RetryAfter time.Duration
	// Err is the underlying error (a net.OpError, a timeout cause, a
	// *BodyError…); nil for breaker_open, no_upstream and healing.
	Err error
}

// Error returns a short reason such as "connect to docservice
// 127.0.0.1:8000: connection refused".
func (e *Error) Error() string {
	var reason string
	switch {
	case (e.Class == ClassBadRequest || e.Class == ClassClientTimeout) && e.Err != nil:
		reason = e.Err.Error()
	case e.Err != nil && e.Class != ClassHealing:
		reason = rootReason(e.Err)
	case e.Class == ClassBreakerOpen:
		reason = "every usable upstream's circuit breaker is open"
	case e.Class == ClassHealing:
		reason = "the upstream is being healed"
		if e.Err != nil {
			reason += "; the last try: " + rootReason(e.Err)
		}
	case e.Class == ClassNoUpstream:
		reason = "no upstream is available"
	default:
		reason = string(e.Class)
	}
	switch {
	case e.Upstream == "":
		return reason
	case e.Class.isDial():
		return "connect to " + e.Upstream + " " + e.Addr + ": " + reason
	default:
		return e.Upstream + " " + e.Addr + ": " + reason
	}
}

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }

// bodyError is a failure to read the client's request body: it broke off
// (io.ErrUnexpectedEOF, a connection error) or was malformed (net/http's
// chunked decoding errors). It is the Err of a bad_request or client_canceled
// *Error whose cause was the client's body.
type bodyError struct{ err error }

// Error returns "request body broke off: unexpected EOF" or, for a body that
// arrived but was not valid HTTP, "malformed request body: " and the reason.
func (e *bodyError) Error() string {
	var ne net.Error
	if errors.Is(e.err, io.ErrUnexpectedEOF) || errors.As(e.err, &ne) {
		return "request body broke off: " + rootReason(e.err)
	}
	return "malformed request body: " + e.err.Error()
}

func (e *bodyError) Unwrap() error { return e.err }

// rootReason returns the most telling message of err: a system error's own
// text ("connection refused") rather than the full chain of operations.
func rootReason(err error) string {
	var te *timeoutError
	if errors.As(err, &te) {
		return te.Error()
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.Error()
	}
	return err.Error()
}

// timeoutError is the cause given to a try's context when one of the route's
// timeouts expires, so that the failure is classified precisely and told apart
// from a client that went away. One value exists per route and phase.
type timeoutError struct {
	class ErrorClass
	msg   string
}

func newTimeoutError(class ErrorClass, what string, d time.Duration) *timeoutError {
	return &timeoutError{class: class, msg: what + " within " + d.String()}
}

func (e *timeoutError) Error() string { return e.msg }

// Timeout reports true, so that the error satisfies net.Error's contract.
func (e *timeoutError) Timeout() bool { return true }

// errExcluded is reported to a breaker for a try whose outcome says nothing
// about the upstream (the client went away); the breaker ignores it.
var errExcluded = errors.New("excluded from breaker counts")

// classify returns the class of a try's error. The caller checks first
// whether the client went away; cause is context.Cause of the try's context
// (nil while it was not canceled).
func classify(err, cause error) ErrorClass {
	var te *timeoutError
	if errors.As(cause, &te) || errors.As(err, &te) {
		return te.class
	}
	if errors.Is(err, context.Canceled) {
		return ClassClientCanceled
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return ClassDNS
	}
	if isTLSError(err) {
		return ClassTLS
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return ClassRefused
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		if op.Timeout() {
			return ClassConnectTimeout
		}
		return ClassRefused // unreachable host or network: never saw the request
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return ClassReset
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ClassUpstreamTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ClassUpstreamTimeout
	}
	if op != nil {
		return ClassReset
	}
	// What is left is the transport's complaint about what the upstream
	// sent: a malformed status line or header, a bad chunk, an unsupported
	// transfer encoding.
	return ClassBadResponse
}

func isTLSError(err error) bool {
	var (
		rh  tls.RecordHeaderError
		cv  *tls.CertificateVerificationError
		al  tls.AlertError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		ech *tls.ECHRejectionError
	)
	return errors.As(err, &rh) || errors.As(err, &cv) || errors.As(err, &al) ||
		errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) || errors.As(err, &ech)
}

// retryAfterSeconds renders d as a Retry-After value: whole seconds, rounded
// up, at least 1.
func retryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

// writeError answers a failed request: a short text/plain body naming the
// status, class, reason and request ID, with X-Healgate-Error and X-Request-ID
// headers (and Retry-After on a 503; Connection: close on a 400, whose request
// body was not read to its end). For ClassClientCanceled it writes nothing:
// nobody is listening, and the caller aborts the response.
func writeError(w http.ResponseWriter, e *Error, requestID string) {
	if e.Class == ClassClientCanceled {
		return
	}
	status := e.Class.Status()
	h := w.Header()
	// Headers the upstream may have put there do not belong to this answer.
	clear(h)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set(headerError, string(e.Class))
	h.Set(headerRequestID, requestID)
	switch status {
	case http.StatusServiceUnavailable:
		h.Set("Retry-After", retryAfterSeconds(e.RetryAfter))
	case http.StatusBadRequest, http.StatusRequestTimeout:
		h.Set("Connection", "close")
	}
	w.WriteHeader(status)
	fmt.Fprintf(w, "%d %s: %s (%s); request %s\n", status, http.StatusText(status), e.Class, e.Error(), requestID)
}
