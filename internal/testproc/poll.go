package testproc

import (
	"testing"
	"time"
)

// PollInterval is how often Poll and PollUntil call their condition.
const PollInterval = 20 * time.Millisecond

// Poll calls cond every PollInterval until it reports true (Poll returns
// true) or timeout passes (Poll returns cond's last answer, false). It is
// the bounded wait for a condition that no channel announces.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(PollInterval)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
}

// PollUntil is Poll that fails t, naming what it waited for, when timeout
// passes first.
func PollUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(timeout, cond) {
		t.Fatalf("timed out after %v waiting until %s", timeout, what)
	}
}
