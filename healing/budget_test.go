package healing

import (
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/healgate/healgate/config"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// maxInWindow returns the largest number of times that fall in any window
// [t, t+w) — it suffices to start windows at each time.
func maxInWindow(times []time.Time, w time.Duration) (int, time.Time) {
	best, at := 0, time.Time{}
	j := 0
	for i := range times {
		for j < len(times) && times[j].Sub(times[i]) < w {
			j++
		}
		if j-i > best {
			best, at = j-i, times[i]
		}
	}
	return best, at
}

// TestBudgetSlidingWindowProperty simulates many hours of random restart
// attempts and checks that no window of length W ever holds more than N
// allowed restarts.
func TestBudgetSlidingWindowProperty(t *testing.T) {
	for _, cfg := range []config.Budget{
		{Restarts: 3, Window: 30 * time.Minute},
		{Restarts: 1, Window: 10 * time.Minute},
		{Restarts: 5, Window: time.Hour},
	} {
		for seed := range uint64(20) {
			rnd := rand.New(rand.NewPCG(seed, 7))
			b := NewBudget(cfg)
			now := t0
			var allowed []time.Time
			for range 20000 { // ≈ 20000 × 0–60 s ≈ 170 simulated hours
				now = now.Add(time.Duration(rnd.Int64N(int64(time.Minute))))
				left := b.Left(now)
				if b.Allow(now) {
					allowed = append(allowed, now)
					if left < 1 {
						t.Fatalf("%+v seed %d: Allow granted with Left %d", cfg, seed, left)
					}
				} else if left != 0 {
					t.Fatalf("%+v seed %d: Allow refused with Left %d", cfg, seed, left)
				}
			}
			if n, at := maxInWindow(allowed, cfg.Window); n > cfg.Restarts {
				t.Fatalf("%+v seed %d: %d restarts in the window starting %v", cfg, seed, n, at)
			}
			// The budget is not merely refusing everything.
			if min := int(now.Sub(t0) / cfg.Window / 2); len(allowed) < min {
				t.Fatalf("%+v seed %d: only %d restarts allowed in %v", cfg, seed, len(allowed), now.Sub(t0))
			}
		}
	}
}

// TestBudgetNaiveLimiterOverspends documents the trap: rate.Every(W/N) with
// burst N refills a whole burst within one window. The Budget holds the line
// on the same attempts.
func TestBudgetNaiveLimiterOverspends(t *testing.T) {
	const n, w = 3, 30 * time.Minute
	naive := rate.NewLimiter(rate.Every(w/n), n)
	b := NewBudget(config.Budget{Restarts: n, Window: w})
	var naiveAllowed, allowed []time.Time
	for m := range 60 { // one attempt a minute for an hour
		at := t0.Add(time.Duration(m) * time.Minute)
		if naive.AllowN(at, 1) {
			naiveAllowed = append(naiveAllowed, at)
		}
		if b.Allow(at) {
			allowed = append(allowed, at)
		}
	}
	if got, _ := maxInWindow(naiveAllowed, w); got != 2*n-1 {
		t.Fatalf("Every(W/N): %d in one window, want the documented %d", got, 2*n-1)
	}
	if got, _ := maxInWindow(allowed, w); got != n {
		t.Fatalf("budget: %d in one window, want %d", got, n)
	}
	// Burst at 0, 1, 2 min; then one per W as the bucket refills.
	want := []time.Duration{0, time.Minute, 2 * time.Minute, 30 * time.Minute}
	if len(allowed) != len(want) {
		t.Fatalf("budget allowed %v, want offsets %v", allowed, want)
	}
	for i, at := range allowed {
		if at.Sub(t0) != want[i] {
			t.Fatalf("budget allowed %v, want offsets %v", allowed, want)
		}
	}
}

func TestBudgetEdges(t *testing.T) {
	zero := NewBudget(config.Budget{Restarts: 0, Window: time.Minute})
	if zero.Allow(t0) || zero.Left(t0) != 0 {
		t.Error("zero restarts: a restart was allowed")
	}
	unlimited := NewBudget(config.Budget{Restarts: 1, Window: 0})
	for i := range 10 {
		if !unlimited.Allow(t0.Add(time.Duration(i))) {
			t.Fatal("zero window: restart refused")
		}
	}
	if unlimited.Left(t0) != -1 {
		t.Errorf("zero window: Left = %d, want -1", unlimited.Left(t0))
	}
	b := NewBudget(config.Budget{Restarts: 2, Window: time.Hour})
	if b.Left(t0) != 2 || !b.Allow(t0) || b.Left(t0) != 1 || !b.Allow(t0) || b.Allow(t0) || b.Left(t0) != 0 {
		t.Fatal("Left/Allow disagree on a fresh budget")
	}
	b.Reset()
	if b.Left(t0) != 2 || !b.Allow(t0) {
		t.Fatal("Reset did not refill")
	}
}
