package healing

import (
	"math/rand/v2"
	"time"

	"github.com/healgate/healgate/config"
)

// Backoff computes the waits between consecutive failed heal attempts of one
// target: exponential from Initial, doubling per attempt, capped at Max, with
// "equal jitter": attempt n waits a uniformly random time in [d/2, d], where
// d = min(Max, Initial·2ⁿ). The jitter spreads healers that failed together;
// the half that is not random keeps the waits growing: every wait is at least
// as long as the longest possible previous one until the cap is reached.
//
// A Backoff is not safe for concurrent use.
type Backoff struct {
	initial, max time.Duration
	rnd          *rand.Rand
	attempt      int
}

// NewBackoff returns a Backoff for cfg. cfg.Initial zero or less means no wait
// at all; cfg.Max below cfg.Initial means waits never grow past Initial. rnd
// is the jitter source (tests pass a seeded one); nil uses math/rand/v2's
// global source.
func NewBackoff(cfg config.Backoff, rnd *rand.Rand) *Backoff {
	initial := max(cfg.Initial, 0)
	return &Backoff{initial: initial, max: max(cfg.Max, initial), rnd: rnd}
}

// Next returns the wait before the next attempt and counts the attempt.
func (b *Backoff) Next() time.Duration {
	d := b.initial
	for i := 0; i < b.attempt && d < b.max; i++ {
		if d > b.max/2 { // doubling would pass the cap (or overflow)
			d = b.max
			break
		}
		d *= 2
	}
	b.attempt++
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + time.Duration(b.float64()*float64(d-half))
}

// Attempts returns how many waits were handed out since the last Reset.
func (b *Backoff) Attempts() int { return b.attempt }

// Reset starts over from Initial (after a successful heal).
func (b *Backoff) Reset() { b.attempt = 0 }

func (b *Backoff) float64() float64 {
	if b.rnd == nil {
		return rand.Float64()
	}
	return b.rnd.Float64()
}
