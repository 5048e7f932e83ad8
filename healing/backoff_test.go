package healing

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/healgate/healgate/config"
)

func TestBackoffGrowsWithJitterUpToMax(t *testing.T) {
	cfg := config.Backoff{Initial: 10 * time.Second, Max: 5 * time.Minute}
	for seed := range uint64(200) {
		b := NewBackoff(cfg, rand.New(rand.NewPCG(seed, 1)))
		prevMax := time.Duration(0)
		for n := range 12 {
			d := min(cfg.Initial<<n, cfg.Max)
			got := b.Next()
			if got < d/2 || got > d {
				t.Fatalf("seed %d attempt %d: wait %v outside [%v, %v]", seed, n, got, d/2, d)
			}
			// Equal jitter keeps waits growing: never below the previous ceiling
			// until the cap.
			if d < cfg.Max && got < prevMax {
				t.Fatalf("seed %d attempt %d: wait %v shorter than previous ceiling %v", seed, n, got, prevMax)
			}
			prevMax = d
		}
		if b.Attempts() != 12 {
			t.Fatalf("attempts = %d", b.Attempts())
		}
	}
}

func TestBackoffJitterSpreads(t *testing.T) {
	cfg := config.Backoff{Initial: 10 * time.Second, Max: 5 * time.Minute}
	seen := map[time.Duration]bool{}
	for seed := range uint64(20) {
		seen[NewBackoff(cfg, rand.New(rand.NewPCG(seed, 2))).Next()] = true
	}
	if len(seen) < 10 {
		t.Fatalf("20 seeds gave only %d distinct first waits", len(seen))
	}
}

func TestBackoffEdges(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 1))
	if d := NewBackoff(config.Backoff{}, rnd).Next(); d != 0 {
		t.Errorf("zero initial: wait %v, want 0", d)
	}
	b := NewBackoff(config.Backoff{Initial: time.Second}, rnd) // Max below Initial
	for range 5 {
		if d := b.Next(); d < time.Second/2 || d > time.Second {
			t.Fatalf("max < initial: wait %v outside [0.5s, 1s]", d)
		}
	}
	huge := NewBackoff(config.Backoff{Initial: time.Hour, Max: 1<<63 - 1}, rnd)
	for range 100 {
		if d := huge.Next(); d < 0 {
			t.Fatalf("overflow: wait %v", d)
		}
	}
	b = NewBackoff(config.Backoff{Initial: time.Second, Max: time.Minute}, rnd)
	b.Next()
	b.Next()
	b.Reset()
	if d := b.Next(); d > time.Second || b.Attempts() != 1 {
		t.Fatalf("after Reset: wait %v attempts %d", d, b.Attempts())
	}
	if d := NewBackoff(config.Backoff{Initial: time.Second, Max: time.Minute}, nil).Next(); d < time.Second/2 || d > time.Second {
		t.Fatalf("nil rand: wait %v", d)
	}
}
