package healing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"time"
)

// Result is the outcome of one probe.
type Result struct {
	// OK reports whether the probed thing is up.
	OK bool

	// Err says why OK is false; it is nil when OK is true. It is always a
	// *ProbeError, so callers classify it with errors.As and ProbeError.Kind
	// (or errors.Is against the underlying network error).
	Err error

	// Latency is the time the probe took, dial included.
	Latency time.Duration

	// Detail is a short human description for /status and logs, for example
	// `HTTP 200 body "false"` or `SSLRequest answered 'N'`.
	Detail string
}

// Prober checks one thing once. Probe returns within the earlier of the
// caller's ctx deadline and the prober's own timeout, never later; it holds no
// state between calls and is safe for concurrent use.
type Prober interface {
	Probe(ctx context.Context) Result
}

// ProbeFunc adapts a function to the Prober interface.
type ProbeFunc func(ctx context.Context) Result

// Probe calls f(ctx).
func (f ProbeFunc) Probe(ctx context.Context) Result { return f(ctx) }

// Compile-time interface guards.
var (
	_ Prober = ProbeFunc(nil)
	_ Prober = (*HTTPProbe)(nil)
	_ Prober = (*TCPProbe)(nil)
	_ Prober = (*PostgresProbe)(nil)
	_ Prober = (*AMQPProbe)(nil)
	_ Prober = (*RedisProbe)(nil)
)

// FailureKind classifies a failed probe. Its values are short and stable, fit
// for a metric label.
type FailureKind string

// Failure kinds.
const (
	// KindTimeout: the probe's own timeout or the caller's deadline expired
	// (a hung process, a frozen PostgreSQL that accepts TCP but never answers).
	KindTimeout FailureKind = "timeout"
	// KindRefused: nothing listens on the port (connection refused).
	KindRefused FailureKind = "refused"
	// KindClosed: the peer closed or reset the connection before answering.
	KindClosed FailureKind = "closed"
	// KindDNS: the host name did not resolve.
	KindDNS FailureKind = "dns"
	// KindNetwork: any other network error (unreachable, TLS, ...).
	KindNetwork FailureKind = "network"
	// KindProtocol: the peer answered, but not what the protocol says a
	// healthy server answers.
	KindProtocol FailureKind = "protocol"
	// KindStatus: an HTTP probe got an unexpected status code.
	KindStatus FailureKind = "status"
	// KindBody: an HTTP probe got the expected status but an unexpected body.
	KindBody FailureKind = "body"
	// KindCanceled: the caller canceled the probe (shutdown); the result says
	// nothing about the target and should not be fed to a state machine.
	KindCanceled FailureKind = "canceled"
)

// ProbeError is the error of every failed probe.
type ProbeError struct {
	// Kind classifies the failure.
	Kind FailureKind
	// Probe names the protocol: "http", "tcp", "postgres", "amqp", "redis".
	Probe string
	// Target is the probed URL or host:port.
	Target string
	// Err is the underlying error, if any (nil for answers that were merely
	// wrong, such as a bad status code).
	Err error
	// Msg describes a wrong answer when Err is nil.
	Msg string
}

// Error returns a lowercase, single-line description.
func (e *ProbeError) Error() string {
	s := e.Probe + " probe " + e.Target + ": " + string(e.Kind)
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *ProbeError) Unwrap() error { return e.Err }

// ErrUnsupportedScheme is returned (wrapped) by ParseDependencyProbe for a URL
// whose scheme names no known probe.
var ErrUnsupportedScheme = errors.New("unsupported probe scheme")

// ParseDependencyProbe returns the protocol-level probe for a dependency URL
// (config.Dependency.Probe): postgres:// or postgresql:// (default port 5432),
// amqp:// (5672), redis:// (6379) or tcp:// (port required). Only the host and
// port are used; user info, path and query are ignored. timeout bounds each
// probe (zero: only the caller's context does). It returns an error wrapping
// ErrUnsupportedScheme for other schemes, or describing a malformed URL.
func ParseDependencyProbe(rawURL string, timeout time.Duration) (Prober, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("dependency probe: %w", err)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("dependency probe %q: no host", rawURL)
	}
	var defaultPort string
	switch u.Scheme {
	case "postgres", "postgresql":
		defaultPort = "5432"
	case "amqp":
		defaultPort = "5672"
	case "redis":
		defaultPort = "6379"
	case "tcp":
		if u.Port() == "" {
			return nil, fmt.Errorf("dependency probe %q: tcp needs a port", rawURL)
		}
	default:
		return nil, fmt.Errorf("dependency probe %q: %w %q (want postgres, amqp, redis or tcp)",
			rawURL, ErrUnsupportedScheme, u.Scheme)
	}
	port := u.Port()
	if port == "" {
		port = defaultPort
	}
	addr := net.JoinHostPort(u.Hostname(), port)
	switch u.Scheme {
	case "postgres", "postgresql":
		return NewPostgresProbe(addr, timeout), nil
	case "amqp":
		return NewAMQPProbe(addr, timeout), nil
	case "redis":
		return NewRedisProbe(addr, timeout), nil
	default:
		return NewTCPProbe(addr, timeout), nil
	}
}

// withTimeout applies a probe's own timeout on top of the caller's context.
// A timeout of zero or less leaves ctx as is.
func withTimeout(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, timeout)
}

// failure builds a failed Result for err, classifying it. ctx is the probe's
// context: a deadline it reached makes the failure a timeout whatever error
// the interrupted I/O returned.
func failure(ctx context.Context, probe, target string, start time.Time, err error) Result {
	kind := classify(ctx, err)
	pe := &ProbeError{Kind: kind, Probe: probe, Target: target, Err: err}
	return Result{Err: pe, Latency: time.Since(start), Detail: string(kind) + ": " + shortErr(err)}
}

// wrong builds a failed Result for a peer that answered something unexpected.
func wrong(kind FailureKind, probe, target string, start time.Time, detail string) Result {
	pe := &ProbeError{Kind: kind, Probe: probe, Target: target, Msg: detail}
	return Result{Err: pe, Latency: time.Since(start), Detail: detail}
}

// classify maps a network error to a FailureKind.
func classify(ctx context.Context, err error) FailureKind {
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(ctx.Err(), context.Canceled), errors.Is(err, context.Canceled):
		return KindCanceled
	case errors.Is(ctx.Err(), context.DeadlineExceeded),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, os.ErrDeadlineExceeded):
		return KindTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return KindRefused
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return KindClosed
	case errors.As(err, &dnsErr):
		return KindDNS
	case errors.As(err, &netErr) && netErr.Timeout():
		return KindTimeout
	default:
		return KindNetwork
	}
}

// shortErr returns the innermost useful text of a network error: a
// *net.OpError's "dial tcp 127.0.0.1:1: connect: connection refused" becomes
// "connect: connection refused".
func shortErr(err error) string {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err.Error()
	}
	return err.Error()
}
