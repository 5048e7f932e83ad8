package proxy

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/healgate/healgate/config"
)

// bucketsPerWindow splits Breaker.Window into a rolling window of this many
// buckets (gobreaker BucketPeriod), so counts age out gradually instead of
// all at once at the end of each window.
const bucketsPerWindow = 10

// newBreaker returns u's circuit breaker. It trips when ConsecutiveFailures
// failures come in a row, or when at least MinRequests requests were counted
// within the rolling Window and FailureRatio of them failed; a zero
// ConsecutiveFailures or FailureRatio disables that condition. Client
// cancellations (errExcluded) count neither way. State changes are logged and
// set the healgate_breaker_state gauge; the callback never calls back into the
// breaker (it runs under the breaker's lock).
// A non-nil obs learns of every state change.
func newBreaker(cfg config.Breaker, u *upstream, log *slog.Logger, m *metrics, obs BreakerObserver) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	st := gobreaker.Settings{
		Name:        u.name,
		MaxRequests: cfg.HalfOpenRequests,
		Interval:    cfg.Window,
		Timeout:     cfg.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if cfg.ConsecutiveFailures > 0 && c.ConsecutiveFailures >= cfg.ConsecutiveFailures {
				return true
			}
			return cfg.FailureRatio > 0 && c.Requests > 0 && c.Requests >= cfg.MinRequests &&
				float64(c.TotalFailures)/float64(c.Requests) >= cfg.FailureRatio
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errExcluded) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				u.openedAt.Store(time.Now().UnixNano())
			}
			m.breakerState(u.name, to)
			level := slog.LevelInfo
			if to == gobreaker.StateOpen {
				level = slog.LevelWarn
			}
			log.Log(context.Background(), level, "breaker state changed",
				"upstream", name, "from", from.String(), "to", to.String())
			if obs != nil {
				obs.BreakerChanged(name, from.String(), to.String())
			}
		},
	}
	if cfg.Window > 0 {
		st.BucketPeriod = cfg.Window / bucketsPerWindow
	}
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](st)
}

// errBreakerFailure is reported to a breaker for a failed try.
var errBreakerFailure = errors.New("upstream failure")

// breakerOutcome returns what a try's result means to the breaker: nil for
// success, errExcluded for a client that went away, errBreakerFailure for a
// dial error, reset, timeout, bad response or a 502/503/504 status.
func breakerOutcome(class ErrorClass, status int) error {
	switch class {
	case ClassNone:
		switch status {
		case 502, 503, 504:
			return errBreakerFailure
		}
		return nil
	case ClassClientCanceled, ClassBadRequest, ClassClientTimeout:
		// The client's fault, not the upstream's.
		return errExcluded
	default:
		return errBreakerFailure
	}
}
