package proxy

import "time"

// Health is what the data path needs from the healer. It is declared here, by
// its consumer, implemented by package healing and wired in cmd/healgate.
// Implementations must be safe for concurrent use and must not block: both
// methods are called on every request.
type Health interface {
	// Ready reports the upstream's readiness. An upstream that is not ready
	// is skipped unless no candidate is left, in which case the first
	// primary is tried anyway (an honest error beats none).
	Ready(upstream string) bool

	// Healing reports whether a heal of the upstream is in progress; done
	// is closed when it ends. While every candidate is unusable and one of
	// them is healing, a request waits up to Healing.HoldTimeout for it.
	Healing(upstream string) (done <-chan struct{}, healing bool)
}

// Observer receives the passive result of every try on routes whose breaker
// is enabled (Route.BreakerEnabled), such as the healer's outlier detection:
// a failed try when it fails, and a response when its body ends (a read
// error from the upstream then arrives with its class), or at its headers
// when the next try may replace it. Observe is called on the request's
// goroutine and must not block.
type Observer interface {
	Observe(o Outcome)
}

// BreakerObserver is implemented by an Observer that also wants to learn of
// circuit breaker state changes ("closed", "half-open", "open"), such as
// the healer, which takes an opened breaker as evidence of an outage.
// BreakerChanged is called while the breaker holds its lock: it must not
// block and must not call back into the proxy.
type BreakerObserver interface {
	BreakerChanged(upstream, from, to string)
}

// Outcome is the passive result of one try of one request on one upstream.
type Outcome struct {
	// Upstream is the upstream's configured name.
	Upstream string
	// Route is the route class ("default" when no route matched).
	Route string
	// Class is why the try failed; ClassNone when a response arrived (which
	// may still carry a 5xx Status).
	Class ErrorClass
	// Status is the upstream's response status, 0 when none arrived.
	Status int
	// Duration runs from the start of the try to its response headers or
	// its error.
	Duration time.Duration
}

// allReady is the Health used when Options.Health is nil: every upstream is
// ready and none is healing.
type allReady struct{}

func (allReady) Ready(string) bool                      { return true }
func (allReady) Healing(string) (<-chan struct{}, bool) { return nil, false }
