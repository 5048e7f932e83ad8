package heal

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/healgate/healgate/admin"
	"github.com/healgate/healgate/healing"
	"github.com/healgate/healgate/internal/testnginx"
	"github.com/healgate/healgate/internal/testproc"
)

// answer is one client request's outcome through nginx.
type answer struct {
	start, end time.Time
	status     int    // 0: transport error
	err        string // transport error
	class      string // X-Healgate-Error
	retryAfter string
}

// clientLoop sends GET /healthcheck through nginx from workers goroutines,
// one request after another, until stop is called or max answers are
// recorded. It is owned by the test: stop waits for the workers.
type clientLoop struct {
	mu      sync.Mutex
	answers []answer
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func startClients(t *testing.T, url string, workers, max int) *clientLoop {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	l := &clientLoop{cancel: cancel}
	client := newClient(t)
	for range workers {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				a := answer{start: time.Now()}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				resp, err := client.Do(req)
				a.end = time.Now()
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					a.err = err.Error()
				} else {
					resp.Body.Close()
					a.status = resp.StatusCode
					a.class = resp.Header.Get("X-Healgate-Error")
					a.retryAfter = resp.Header.Get("Retry-After")
				}
				l.mu.Lock()
				l.answers = append(l.answers, a)
				n := len(l.answers)
				l.mu.Unlock()
				if n >= max {
					return
				}
				time.Sleep(5 * time.Millisecond) // pacing: a client, not a load test
			}
		})
	}
	t.Cleanup(func() { l.stop() })
	return l
}

// stop ends the loop and waits for its workers; it returns the answers.
func (l *clientLoop) stop() []answer {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.answers)
}

// count returns how many answers have status code (after since).
func (l *clientLoop) count(code int, since time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.answers {
		if a.status == code && a.start.After(since) {
			n++
		}
	}
	return n
}

// statusSet summarizes answers as "status×count" (status 0: transport error).
func statusSet(as []answer) map[int]int {
	m := map[int]int{}
	for _, a := range as {
		m[a.status]++
	}
	return m
}

// TestHealHoldThroughNginx: real nginx (ds.conf shape) → healgate →
// DocService as a unit. While healgate heals DocService, clients through
// nginx are held: when the heal ends within hold_timeout they get the
// answer after recovery (200); when it takes longer they get 503 with
// Retry-After and X-Healgate-Error: healing. Never a 502.
func TestHealHoldThroughNginx(t *testing.T) {
	e := env(t)
	port := testproc.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	installUnit(t, e.sys, dsUnitName, dsUnit(e.dsemu, port, "ok", ""))
	if err := e.sys.Start(dsUnitName); err != nil {
		t.Fatal(err)
	}
	waitHealthcheck(t, addr, 20*time.Second, "true")
	g := startGate(t, e, gateConfig{upstream: addr, hold: 2 * time.Second})
	g.waitStatus(t, 10*time.Second, "the target is healthy", func(s *admin.Status) bool {
		return stateIs(s, healing.StateHealthy) && s.Healing.Upstreams[0].Ready
	})
	url := testnginx.Start(t, bin.nginx, g.addr, 60*time.Second).URL("/healthcheck")
	healed := func(t *testing.T, n int) *admin.Status {
		return g.waitStatus(t, 30*time.Second, fmt.Sprintf("heal %d succeeded", n), func(s *admin.Status) bool {
			return len(events(s, healing.EventHealSucceeded)) == n && stateIs(s, healing.StateHealthy)
		})
	}
	kill := func(t *testing.T) {
		pid := unitInt(t, e.sys, dsUnitName, "MainPID")
		if out, err := e.sys.Exec("kill", "-9", strconv.Itoa(pid)); err != nil {
			t.Fatalf("kill -9 %d: %v: %s", pid, err, out)
		}
	}
	// drain lets the clients run on after a heal until several requests
	// started after it got 200.
	drain := func(t *testing.T, l *clientLoop, after time.Time) {
		testproc.PollUntil(t, 10*time.Second, "clients get 200 after the heal", func() bool { return l.count(200, after) >= 5 })
	}

	t.Run("RecoveryWithinHold", func(t *testing.T) {
		l := startClients(t, url, 2, 4000)
		testproc.PollUntil(t, 10*time.Second, "clients get 200 before the kill", func() bool { return l.count(200, time.Time{}) >= 5 })
		kill(t)
		s := healed(t, 1)
		heal := events(s, healing.EventHealStarted)[0]
		done := events(s, healing.EventHealSucceeded)[0]
		drain(t, l, done.Time)
		as := beforeHeal(t, l.stop(), heal.Time)
		if set := statusSet(as); len(set) != 1 || set[200] == 0 {
			t.Errorf("statuses through nginx %v, want only 200 (the heal took %v, hold_timeout %v):%s",
				set, done.Time.Sub(heal.Time), g.cfg.hold, dumpAnswers(as))
		}
		// Requests in flight during the heal (sent during it, or sent just
		// before it and refused by the dead DocService) were held and
		// answered after it.
		held := 0
		for _, a := range as {
			if a.start.Before(done.Time) && a.end.After(heal.Time) && a.status == 200 {
				held++
				if a.end.Before(done.Time.Add(-g.cfg.interval)) {
					t.Errorf("a request sent during the heal was answered at %v, before the heal ended at %v",
						a.end.Format("15:04:05.000"), done.Time.Format("15:04:05.000"))
				}
			}
		}
		if held == 0 {
			t.Errorf("no request was in flight during the heal (%v to %v)", heal.Time, done.Time)
		}
		t.Logf("heal took %v; %d requests held and answered 200; statuses %v", done.Time.Sub(heal.Time).Round(time.Millisecond), held, statusSet(as))
	})

	t.Run("OutageLongerThanHold", func(t *testing.T) {
		// DocService now takes 4 s to start after a restart: the heal
		// outlasts hold_timeout (2 s).
		if err := e.sys.InstallUnit(dsUnitName, dsUnit(e.dsemu, port, "ok", "ExecStartPre=/bin/sleep 4\n")); err != nil {
			t.Fatal(err)
		}
		l := startClients(t, url, 2, 4000)
		testproc.PollUntil(t, 10*time.Second, "clients get 200 before the kill", func() bool { return l.count(200, time.Time{}) >= 5 })
		kill(t)
		s := healed(t, 2)
		heal := events(s, healing.EventHealStarted)[1]
		done := events(s, healing.EventHealSucceeded)[1]
		drain(t, l, done.Time)
		as := beforeHeal(t, l.stop(), heal.Time)
		set := statusSet(as)
		for code := range set {
			if code != 200 && code != 503 {
				t.Errorf("status %d through nginx during a heal; want only 200 and 503:%s", code, dumpAnswers(as))
			}
		}
		if set[503] == 0 {
			t.Errorf("no 503 although the heal outlasted hold_timeout; statuses %v", set)
		}
		for _, a := range as {
			if a.status != 503 {
				continue
			}
			if a.class != "healing" || a.retryAfter == "" {
				t.Errorf("503 with X-Healgate-Error %q and Retry-After %q, want healing and a value", a.class, a.retryAfter)
				break
			}
			if d := a.end.Sub(a.start); d < g.cfg.hold-100*time.Millisecond {
				t.Errorf("503 healing after %v, before hold_timeout %v", d, g.cfg.hold)
				break
			}
		}
		if last := as[len(as)-1]; last.status != 200 {
			t.Errorf("last answer %d, want 200 after recovery", last.status)
		}
		t.Logf("statuses %v", set)
	})
}

// beforeHeal checks the answers to requests sent before healgate started
// the heal: between the kill and the moment systemd's signal reaches
// healgate (a few milliseconds) a request finds DocService's port closed,
// and the proxy gives the healer a short grace to start healing before it
// answers; such a request must be held for the heal like the others, never
// answered 502. It returns as unchanged.
func beforeHeal(t *testing.T, as []answer, healStarted time.Time) []answer {
	t.Helper()
	var early []answer
	for _, a := range as {
		if a.status == http.StatusBadGateway && a.start.Before(healStarted) {
			early = append(early, a)
		}
	}
	if len(early) > 0 {
		t.Errorf("%d requests sent just before healgate learned of the crash (heal started %s) got 502:%s",
			len(early), healStarted.Format("15:04:05.000"), dumpAnswers(early))
	}
	return as
}

// dumpAnswers formats the answers that were not 200, for failure messages.
func dumpAnswers(as []answer) string {
	var b strings.Builder
	n := 0
	for _, a := range as {
		if a.status == 200 {
			continue
		}
		if n++; n > 20 {
			b.WriteString("\n  …")
			break
		}
		fmt.Fprintf(&b, "\n  %s +%v status %d class %q retry-after %q %s",
			a.start.Format("15:04:05.000"), a.end.Sub(a.start).Round(time.Millisecond), a.status, a.class, a.retryAfter, a.err)
	}
	return b.String()
}
