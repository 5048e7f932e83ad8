package healing

import (
	"time"

	"golang.org/x/time/rate"

	"github.com/healgate/healgate/config"
)

// Budget caps restarts: at most N in ANY window of length W, and, once
// spent, it refills at one restart per W.
//
// The budget is a token bucket, rate.NewLimiter(rate.Every(W), N): N
// restarts at once, then one per W. The plausible-looking
// rate.Every(W/N) with burst N is wrong: it refills a whole burst within one
// window and lets 2N-1 restarts into it (TestBudgetNaiveLimiterOverspends).
// A token bucket only bounds windows through float arithmetic on its tokens,
// so a ring of the last N restart times states the property exactly: a
// restart is allowed only if the oldest of the last N is at least W old, and
// only then is a token taken. TestBudgetSlidingWindowProperty checks "never
// more than N in any window of length W" over many simulated hours of random
// attempts.
//
// Time is passed in, never read, so tests drive it. A Budget is not safe for
// concurrent use.
type Budget struct {
	n      int
	window time.Duration
	lim    *rate.Limiter
	ring   []time.Time // the last n allowed restarts, oldest at next
	next   int         // index of the oldest entry (and of the next write)
	count  int         // entries used, ≤ n
}

// NewBudget returns a full Budget for cfg: cfg.Restarts restarts (zero or
// less forbids every restart) per cfg.Window (zero or less: no limit).
func NewBudget(cfg config.Budget) *Budget {
	n := max(cfg.Restarts, 0)
	b := &Budget{n: n, window: cfg.Window, ring: make([]time.Time, n)}
	b.Reset()
	return b
}

// Allow reports whether a restart at now fits the budget and, if so, spends
// one. now must not go backwards between calls.
func (b *Budget) Allow(now time.Time) bool {
	if b.unlimited() {
		return true
	}
	if b.n == 0 || !b.ringAllows(now) {
		return false
	}
	if !b.lim.AllowN(now, 1) {
		return false
	}
	b.ring[b.next] = now
	b.next = (b.next + 1) % b.n
	b.count = min(b.count+1, b.n)
	return true
}

// Left returns how many restarts Allow would grant at now, one after the
// other; for /status and metrics. It is -1 for an unlimited budget.
func (b *Budget) Left(now time.Time) int {
	if b.unlimited() {
		return -1
	}
	if b.n == 0 {
		return 0
	}
	// Ring: entries older than the window are free again.
	used := 0
	for i := 0; i < b.count; i++ {
		if now.Sub(b.ring[i]) < b.window {
			used++
		}
	}
	tokens := int(b.lim.TokensAt(now))
	return max(0, min(b.n-used, tokens))
}

// Restarts returns the configured restarts per window (N).
func (b *Budget) Restarts() int { return b.n }

// Window returns the configured window (W).
func (b *Budget) Window() time.Duration { return b.window }

// Reset refills the budget (an operator's reset).
func (b *Budget) Reset() {
	if !b.unlimited() && b.n > 0 {
		b.lim = rate.NewLimiter(rate.Every(b.window), b.n)
	}
	clear(b.ring)
	b.next, b.count = 0, 0
}

func (b *Budget) unlimited() bool { return b.window <= 0 }

// ringAllows reports whether fewer than n of the recorded restarts lie in
// the window (now-W, now].
func (b *Budget) ringAllows(now time.Time) bool {
	if b.count < b.n {
		return true
	}
	return now.Sub(b.ring[b.next]) >= b.window
}

// Spent returns the times of the restarts the budget recorded, oldest
// first (at most Restarts of them).
func (b *Budget) Spent() []time.Time {
	out := make([]time.Time, 0, b.count)
	for i := range b.count {
		out = append(out, b.ring[(b.next-b.count+i+b.n)%b.n])
	}
	return out
}

// Replay spends the budget for past restarts, oldest first, as if Allow had
// granted them then: a budget rebuilt from a reloaded config keeps counting
// what was already spent. Restarts the new budget would not have granted are
// dropped.
func (b *Budget) Replay(times []time.Time) {
	for _, t := range times {
		b.Allow(t)
	}
}
