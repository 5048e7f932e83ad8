package healing_test

import (
	"slices"
	"testing"
	"time"

	"github.com/healgate/healgate/config"
	"github.com/healgate/healgate/healing"
	"github.com/healgate/healgate/internal/dsemu"
)

// TestBudgetReplayKeepsWhatWasSpent: a budget rebuilt from a reloaded config
// and replayed with the old one's restarts grants no more than the old one
// would have.
func TestBudgetReplayKeepsWhatWasSpent(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := config.Budget{Restarts: 3, Window: 30 * time.Minute}
	old := healing.NewBudget(cfg)
	for i := range 3 {
		if !old.Allow(t0.Add(time.Duration(i) * time.Minute)) {
			t.Fatalf("restart %d refused by a fresh budget", i)
		}
	}
	spent := old.Spent()
	if len(spent) != 3 || !slices.IsSortedFunc(spent, func(a, b time.Time) int { return a.Compare(b) }) {
		t.Fatalf("Spent() = %v, want the 3 restarts, oldest first", spent)
	}
	now := t0.Add(5 * time.Minute)
	nb := healing.NewBudget(cfg)
	nb.Replay(spent)
	if got, want := nb.Left(now), old.Left(now); got != want || got != 0 {
		t.Errorf("replayed budget: %d left, the old one %d; want 0", got, want)
	}
	if nb.Allow(now) {
		t.Error("the replayed budget granted a 4th restart inside the window")
	}
	// Once the first restart leaves the window, one is granted again.
	if !nb.Allow(t0.Add(cfg.Window + time.Minute)) {
		t.Error("the replayed budget refused a restart after the window moved on")
	}
}

// TestHealerInheritKeepsGaveUpAndDown: a healer that gave up hands its state
// to the one built from a reloaded config: the new one stays gave-up with
// the budget spent, does not restart again, and keeps the upstream unready
// and the events. Without Inherit, the new healer would restart at once.
func TestHealerInheritKeepsGaveUpAndDown(t *testing.T) {
	healerLeakCheck(t)
	_, url := healerEmu(t, "ds", dsemu.KindHang)
	marker := healerMarker(t)
	cfg := healerConfig(url, "sh", "-c", "echo x >> "+marker+"; exit 1")
	cfg.Healing.Budget = config.Budget{Restarts: 1, Window: time.Hour}
	cfg.Healing.Backoff = config.Backoff{Initial: 200 * time.Millisecond, Max: 200 * time.Millisecond}
	old := startHealer(t, cfg)
	old.waitState(healing.StateGaveUp)
	old.stop()
	if old.h.Ready(healerTarget) {
		t.Fatalf("the hung upstream is ready before the reload")
	}
	oldEvents := old.target().Events

	// The reloaded config: the same, but a different (slower) backoff.
	cfg2 := healerConfig(url, "sh", "-c", "echo x >> "+marker+"; exit 1")
	cfg2.Healing.Budget = cfg.Healing.Budget
	cfg2.Healing.Backoff = config.Backoff{Initial: 300 * time.Millisecond, Max: 300 * time.Millisecond}
	r := newHealer(t, cfg2)
	r.h.Inherit(old.h)
	if r.h.Ready(healerTarget) {
		t.Error("the new healer calls the hung upstream ready")
	}
	r.run()
	r.waitRounds(8)
	m := r.target().Machine
	if m.State != healing.StateGaveUp || m.BudgetLeft != 0 {
		t.Errorf("after the reload: state %s, budget left %d; want gave-up and 0", m.State, m.BudgetLeft)
	}
	if n := len(r.rec.of(healing.EventHealStarted)); n != 0 {
		t.Errorf("the new healer restarted %d times after inheriting a spent budget", n)
	}
	if got := r.target().Events; len(got) < len(oldEvents) || got[len(oldEvents)-1].Kind != oldEvents[len(oldEvents)-1].Kind {
		t.Errorf("events after the reload = %v, want the old ones kept (%d)", got, len(oldEvents))
	}
	if r.h.Ready(healerTarget) {
		t.Error("the hung upstream became ready after the reload")
	}
}
