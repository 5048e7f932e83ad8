package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/healgate/healgate/internal/dsemu"
	"github.com/healgate/healgate/internal/testproc"
)

// Adversarial regression tests: an operator's bad day, driven against the
// real binaries on loopback. Each test states the attack and what held.

// procFDs returns the number of open file descriptors of pid.
func procFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("fds of %d: %v", pid, err)
	}
	return len(ents)
}

// procRSSKiB returns the resident set size of pid in KiB.
func procRSSKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("status of %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatalf("VmRSS %q: %v", rest, err)
			}
			return n
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}

// goroutines returns go_goroutines from healgate's /metrics.
func (g *gate) goroutines(t *testing.T) int {
	t.Helper()
	_, body := g.adminGet(t, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("go_goroutines %q: %v", rest, err)
			}
			return int(n)
		}
	}
	t.Fatal("healgate /metrics has no go_goroutines")
	return 0
}

// TestAdversarialChunkedUploadFailoverBoundedMemory: a 100 MiB chunked
// upload (no Content-Length, so healgate can buffer at most
// max_replay_body of it) is sent straight to healgate while the primary's
// port refuses. The dial fails before a body byte is consumed, so the whole
// body goes to the backup exactly once, intact, and healgate's resident
// memory stays far below the body's size. Held: 100 MiB arrived with the
// sender's SHA-256; RSS grew by a few MiB.
func TestAdversarialChunkedUploadFailoverBoundedMemory(t *testing.T) {
	const size = 100 << 20
	backup := startDsemu(t, "backup", "ok")
	g := startHealgate(t, gateConfig{upstreams: primaryAndBackup(testproc.FreeAddr(t), backup.addr)})
	pid := g.Pid()

	var seed [32]byte
	copy(seed[:], "healgate adversarial chunked")
	generate := func() io.Reader { return io.LimitReader(rand.NewChaCha8(seed), size) }

	rssBefore := procRSSKiB(t, pid)
	var (
		peak    int
		stopRSS = make(chan struct{})
		wg      sync.WaitGroup
	)
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := procRSSKiB(t, pid); v > peak {
				peak = v
			}
			select {
			case <-stopRSS:
				return
			case <-tick.C:
			}
		}
	})
	ids := newRequestIDs(t)
	id := ids.next()
	// length 0: the client sends the body chunked.
	r := do(t, g.client, http.MethodPost, g.url("/upload/adversarial"), reqOpts{
		body:   generate(),
		header: map[string]string{"Content-Type": "application/octet-stream", "X-Request-ID": id},
		limit:  2 * time.Minute,
	})
	close(stopRSS)
	wg.Wait()

	if r.status != http.StatusOK || r.header.Get("X-Dsemu-Name") != "backup" {
		t.Fatalf("upload: %d from %q (%s) %q, want 200 from backup", r.status, r.header.Get("X-Dsemu-Name"), r.header.Get("X-Healgate-Error"), r.body)
	}
	var got dsemu.UploadResult
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatalf("upload answer %q: %v", r.body, err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, generate()); err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(h.Sum(nil)); got.Bytes != size || got.SHA256 != want {
		t.Errorf("backup read %d bytes with SHA-256 %s; sent %d bytes with %s", got.Bytes, got.SHA256, size, want)
	}
	if n := backup.stats(t).RequestIDs[id]; n != 1 {
		t.Errorf("backup received the upload %d times, want 1", n)
	}
	// Generous: the replay buffer (1 MiB), copy buffers and the race
	// detector's shadow memory, never the 100 MiB body.
	if grew := peak - rssBefore; grew > 40<<10 {
		t.Errorf("healgate RSS grew by %d KiB (from %d to a peak of %d) for a %d MiB upload: the body is being held in memory",
			grew, rssBefore, peak, size>>20)
	}
	t.Logf("RSS %d KiB before, peak %d KiB; upload took %v", rssBefore, peak, r.elapsed)
}

// TestAdversarialWebSocketStormNoLeak: 300 WebSocket upgrades at once
// straight to healgate (the browser form "Connection: keep-alive,
// Upgrade"), every one tunnelled as 101 and counted in
// healgate_upgraded_connections; after the clients close them, healgate's
// goroutines, open files and upgraded gauge return to where they were.
func TestAdversarialWebSocketStormNoLeak(t *testing.T) {
	const n = 300
	up := startDsemu(t, "primary", "ok")
	g := startHealgate(t, gateConfig{upstreams: one(up)})
	pid := g.Pid()
	fdsBefore, gorBefore := procFDs(t, pid), g.goroutines(t)

	conns := make([]net.Conn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", g.addr, 5*time.Second)
			if err != nil {
				errs[i] = err
				return
			}
			conns[i] = c
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			fmt.Fprintf(c, "GET /doc/key%d/c/?EIO=4&transport=websocket HTTP/1.1\r\nHost: docs.example\r\n"+
				"Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", i)
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				errs[i] = err
				return
			}
			if res.StatusCode != http.StatusSwitchingProtocols {
				errs[i] = fmt.Errorf("status %d (%s)", res.StatusCode, res.Header.Get("X-Healgate-Error"))
			}
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	failed := 0
	for i, err := range errs {
		if err != nil {
			failed++
			if failed <= 5 {
				t.Errorf("upgrade %d: %v", i, err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d upgrades failed", failed, n)
	}
	testproc.PollUntil(t, 10*time.Second, fmt.Sprintf("healgate_upgraded_connections %d", n), func() bool {
		_, body := g.adminGet(t, "/metrics")
		return strings.Contains(body, "\nhealgate_upgraded_connections "+strconv.Itoa(n)+"\n")
	})
	for i, c := range conns {
		c.Close()
		conns[i] = nil
	}
	// Keep-alive connections to the upstream may stay idle; the tunnels'
	// goroutines and both sides' sockets must go.
	testproc.PollUntil(t, 15*time.Second, "goroutines, fds and the upgraded gauge back to their levels before the storm", func() bool {
		_, body := g.adminGet(t, "/metrics")
		return strings.Contains(body, "\nhealgate_upgraded_connections 0\n") &&
			g.goroutines(t) <= gorBefore+4 && procFDs(t, pid) <= fdsBefore+4
	})
}
