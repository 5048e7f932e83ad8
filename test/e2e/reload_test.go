package e2e

import (
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/healgate/healgate/internal/testproc"
)

// TestAdversarialReloadKeepsKnownDownUpstream (found by the adversarial
// pass): a reload (SIGHUP) used to build a new generation whose upstreams all
// started ready, so an upstream the health checks had found hung was tried
// again at once: a conversion POST that went to the backup before the reload
// went to the hung primary right after it and waited out the whole
// conversion budget (1800 s in production) for a 504, although the backup
// was healthy. The reload now hands what the old healer knew to the new one
// (healing.Healer.Inherit).
func TestAdversarialReloadKeepsKnownDownUpstream(t *testing.T) {
	primary := startDsemu(t, "primary", "hang")
	backup := startDsemu(t, "backup", "ok")
	s := startStack(t, gateConfig{upstreams: primaryAndBackup(primary.addr, backup.addr), conversion: 4 * time.Second})
	testproc.PollUntil(t, 10*time.Second, "/status reports the hung primary not ready", func() bool {
		for _, u := range s.gate.status(t).Upstreams {
			if u.Name == "primary" {
				return !u.Ready
			}
		}
		return false
	})
	ids := newRequestIDs(t)
	convert := func(id string) result {
		body := conversionBody("doc-reload")
		return do(t, s.client, http.MethodPost, s.nginx.URL("/ConvertService.ashx"), reqOpts{
			body: strings.NewReader(body), length: int64(len(body)),
			header: map[string]string{"Content-Type": "application/json", "X-Request-ID": id},
			limit:  s.gate.cfg.conversion + 10*time.Second,
		})
	}
	if r := convert(ids.next()); r.status != http.StatusOK || r.header.Get("X-Dsemu-Name") != "backup" {
		t.Fatalf("before the reload: %d from %q (%s), want 200 from backup", r.status, r.header.Get("X-Dsemu-Name"), r.header.Get("X-Healgate-Error"))
	}

	if err := s.gate.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.gate.WaitLine(t, regexp.MustCompile(`reload: new config applied`), 10*time.Second)

	id := ids.next()
	r := convert(id)
	if r.status != http.StatusOK || r.header.Get("X-Dsemu-Name") != "backup" {
		t.Errorf("right after the reload: %d from %q (%s) after %v, want 200 from backup at once",
			r.status, r.header.Get("X-Dsemu-Name"), r.header.Get("X-Healgate-Error"), r.elapsed)
	}
	if n := primary.stats(t).RequestIDs[id]; n != 0 {
		t.Errorf("the conversion was sent to the primary the checks had found hung (%d times)", n)
	}
}
