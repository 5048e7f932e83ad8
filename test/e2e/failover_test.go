package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/healgate/healgate/internal/testproc"
)

// primaryAndBackup returns healgate's upstreams: primary first, then backup.
func primaryAndBackup(primary, backup string) []upstreamSpec {
	return []upstreamSpec{{name: "primary", addr: primary}, {name: "backup", addr: backup, backup: true}}
}

// TestFailoverGET: while clients keep sending keyless GETs, the primary
// crashes (SIGKILL); every GET still succeeds, via the backup once the
// primary is gone. Zero client errors.
func TestFailoverGET(t *testing.T) {
	primary := startDsemu(t, "primary", "ok")
	backup := startDsemu(t, "backup", "ok")
	s := startStack(t, gateConfig{upstreams: primaryAndBackup(primary.addr, backup.addr)})

	if r := s.get(t, "/index.html", nil); r.status != http.StatusOK || r.header.Get("X-Dsemu-Name") != "primary" {
		t.Fatalf("before the crash: %d from %q, want 200 from primary", r.status, r.header.Get("X-Dsemu-Name"))
	}

	// Clients send GETs continuously; the primary is killed in the middle
	// of the traffic, and the traffic goes on for as long again.
	const workers, maxPerWorker, killAfter, afterKill = 4, 500, 20, 40
	var (
		completed atomic.Int64
		byBackup  atomic.Int64
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		mu        sync.Mutex
		failures  []string
	)
	for w := range workers {
		wg.Go(func() {
			for i := range maxPerWorker {
				select {
				case <-stop:
					return
				default:
				}
				r, err := try(t, s.client, http.MethodGet, s.nginx.URL("/index.html"), reqOpts{limit: 20 * time.Second})
				completed.Add(1)
				switch {
				case err != nil:
					err = fmt.Errorf("worker %d request %d: %w", w, i, err)
				case r.status != http.StatusOK:
					err = fmt.Errorf("worker %d request %d: %d %s %q", w, i, r.status, r.header.Get("X-Healgate-Error"), r.body)
				case r.header.Get("X-Dsemu-Name") == "backup":
					byBackup.Add(1)
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
				}
			}
		})
	}
	stopped := false
	stopWorkers := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopWorkers()
	testproc.PollUntil(t, 30*time.Second, fmt.Sprintf("%d requests completed", killAfter), func() bool {
		return completed.Load() >= killAfter
	})
	primary.Kill()
	atKill := completed.Load()
	testproc.PollUntil(t, 30*time.Second, fmt.Sprintf("%d requests completed after the crash", afterKill), func() bool {
		return completed.Load() >= atKill+afterKill
	})
	stopWorkers()
	total := completed.Load()

	if len(failures) > 0 {
		t.Errorf("%d of %d client requests failed across the primary's crash:\n%s",
			len(failures), total, strings.Join(failures, "\n"))
	}
	if byBackup.Load() == 0 {
		t.Error("no request was served by the backup after the primary crashed")
	}
	for i := range 3 {
		if r := s.get(t, "/index.html", nil); r.status != http.StatusOK || r.header.Get("X-Dsemu-Name") != "backup" {
			t.Errorf("after the crash, request %d: %d from %q, want 200 from backup", i, r.status, r.header.Get("X-Dsemu-Name"))
		}
	}
}

// TestFailoverPOSTDialRefusedReachesBackupOnce: nothing listens on the
// primary's port, so a POST's dial is refused before any byte was sent:
// healgate may, and does, try the backup, which receives it exactly once.
func TestFailoverPOSTDialRefusedReachesBackupOnce(t *testing.T) {
	backup := startDsemu(t, "backup", "ok")
	s := startStack(t, gateConfig{upstreams: primaryAndBackup(testproc.FreeAddr(t), backup.addr)})
	ids := newRequestIDs(t)
	for i := range 3 {
		id := ids.next()
		body := conversionBody(fmt.Sprintf("doc-failover-%d", i))
		r := do(t, s.client, http.MethodPost, s.nginx.URL("/ConvertService.ashx"), reqOpts{
			body: strings.NewReader(body), length: int64(len(body)),
			header: map[string]string{"Content-Type": "application/json", "X-Request-ID": id},
		})
		if r.status != http.StatusOK || r.header.Get("X-Dsemu-Name") != "backup" {
			t.Fatalf("POST %d: %d from %q (%s), want 200 from backup; body %q",
				i, r.status, r.header.Get("X-Dsemu-Name"), r.header.Get("X-Healgate-Error"), r.body)
		}
		if got := r.header.Get("X-Dsemu-Body-Bytes"); got != fmt.Sprint(len(body)) {
			t.Errorf("POST %d: backup read %s body bytes, want %d (the body must survive the refused dial)", i, got, len(body))
		}
		if n := backup.stats(t).RequestIDs[id]; n != 1 {
			t.Errorf("POST %d reached the backup %d times, want exactly 1", i, n)
		}
	}
}

// TestPOSTNotReplayedAfterBytesSent: the primary reads a POST and then drops
// the connection (reset before, or in the middle of, its answer). The POST's
// bytes reached an upstream, so it is not replayed on the backup: each
// request ID is received exactly once overall. A GET under the same fault is
// idempotent and is retried on the backup.
func TestPOSTNotReplayedAfterBytesSent(t *testing.T) {
	primary := startDsemu(t, "primary", "reset-before")
	backup := startDsemu(t, "backup", "ok")
	s := startStack(t, gateConfig{upstreams: primaryAndBackup(primary.addr, backup.addr), breakerFailures: 100})
	ids := newRequestIDs(t)

	post := func(t *testing.T) (string, result, error) {
		t.Helper()
		id := ids.next()
		body := conversionBody("doc-not-replayed")
		r, err := try(t, s.client, http.MethodPost, s.nginx.URL("/ConvertService.ashx"), reqOpts{
			body: strings.NewReader(body), length: int64(len(body)),
			header: map[string]string{"Content-Type": "application/json", "X-Request-ID": id},
		})
		return id, r, err
	}
	counts := func(t *testing.T, id string) (int64, int64) {
		t.Helper()
		return primary.stats(t).RequestIDs[id], backup.stats(t).RequestIDs[id]
	}

	t.Run("ResetBeforeAnswer", func(t *testing.T) {
		id, r, err := post(t)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		if r.status != http.StatusBadGateway || errorClass(r.header) != "upstream_reset" {
			t.Errorf("%d %q, want 502 upstream_reset; body %q", r.status, r.header.Get("X-Healgate-Error"), r.body)
		}
		if p, b := counts(t, id); p != 1 || b != 0 {
			t.Errorf("received by primary %d, backup %d times; want 1 and 0 (exactly once overall)", p, b)
		}
	})
	t.Run("ResetMidAnswer", func(t *testing.T) {
		primary.setMode(t, "reset")
		id, r, err := post(t)
		if err == nil && r.status == http.StatusOK && r.header.Get("X-Dsemu-Name") == "backup" {
			t.Errorf("the POST was answered by the backup: it was replayed")
		}
		if p, b := counts(t, id); p != 1 || b != 0 {
			t.Errorf("received by primary %d, backup %d times; want 1 and 0 (exactly once overall)", p, b)
		}
	})
	t.Run("GETIsRetried", func(t *testing.T) {
		primary.setMode(t, "reset-before")
		id := ids.next()
		r := s.get(t, "/index.html", map[string]string{"X-Request-ID": id})
		if r.status != http.StatusOK || r.header.Get("X-Dsemu-Name") != "backup" {
			t.Errorf("GET: %d from %q (%s), want 200 from backup", r.status, r.header.Get("X-Dsemu-Name"), r.header.Get("X-Healgate-Error"))
		}
		if p, b := counts(t, id); p != 1 || b != 1 {
			t.Errorf("received by primary %d, backup %d times; want 1 and 1", p, b)
		}
	})
}
