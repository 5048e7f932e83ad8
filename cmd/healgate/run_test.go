package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/healgate/healgate/config"
	"github.com/healgate/healgate/internal/dsemu"
	"github.com/healgate/healgate/internal/dsemu/dsemutest"
)

// startEmu starts an in-process emulated Document Server named name and
// returns its base URL.
func startEmu(t *testing.T, name string) string {
	t.Helper()
	_, addr := dsemutest.Start(t, dsemu.Options{Name: name})
	return "http://" + addr
}

// testConfig is a config for one upstream with quick health checks and
// healing off (action none).
func testConfig(url string) *config.Config {
	cfg := config.Default()
	cfg.Upstreams = []config.Upstream{{Name: "docservice", URL: url}}
	cfg.Health.Interval = 100 * time.Millisecond
	cfg.Health.Timeout = 80 * time.Millisecond
	cfg.Healing.Action = config.ActionNone
	cfg.Healing.Units = nil
	cfg.Server.ShutdownTimeout = 2 * time.Second
	cfg.Normalize()
	return cfg
}

// recordNotifier records what serve tells the service manager.
type recordNotifier struct {
	mu   sync.Mutex
	msgs []string
	seen chan string
}

func newRecordNotifier() *recordNotifier { return &recordNotifier{seen: make(chan string, 64)} }

func (r *recordNotifier) add(s string) {
	r.mu.Lock()
	r.msgs = append(r.msgs, s)
	r.mu.Unlock()
	select {
	case r.seen <- s:
	default:
	}
}
func (r *recordNotifier) ready(string)  { r.add("READY") }
func (r *recordNotifier) reloading()    { r.add("RELOADING") }
func (r *recordNotifier) stopping()     { r.add("STOPPING") }
func (r *recordNotifier) status(string) {}
func (r *recordNotifier) watchdog()     {}

// waitMsg waits for the notifier to see want.
func (r *recordNotifier) waitMsg(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-r.seen:
			if got == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %s from serve", want)
		}
	}
}

type running struct {
	url    string
	cancel context.CancelFunc
	done   chan error
}

func startServe(t *testing.T, cfg *config.Config, opts serveOptions) *running {
	t.Helper()
	var ls listeners
	var err error
	if ls.proxy, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if ls.admin, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	opts.listeners = &ls
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{url: "http://" + ls.proxy.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- serve(ctx, cfg, slog.New(slog.DiscardHandler), opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return r
}

// TestReloadUnderLoad swaps the upstream by reloading, several times, while
// clients send requests: no request fails, every reload is announced
// RELOADING then READY, and the last config is the one in service. An
// invalid config keeps the previous one.
func TestReloadUnderLoad(t *testing.T) {
	a, b := startEmu(t, "a"), startEmu(t, "b")
	urls := map[bool]string{false: a, true: b}
	var useB atomic.Bool
	var invalid atomic.Bool
	reload := make(chan os.Signal)
	n := newRecordNotifier()
	r := startServe(t, testConfig(a), serveOptions{
		reload: reload,
		notify: n,
		load: func() (*config.Config, error) {
			if invalid.Load() {
				return nil, errors.New("healgate.yaml:3: upstreams[0].url: want http or https")
			}
			return testConfig(urls[useB.Load()]), nil
		},
	})
	n.waitMsg(t, "READY")

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	get := func() (string, error) {
		resp, err := client.Get(r.url + "/healthcheck")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return "", errors.New(resp.Status + " " + resp.Header.Get("X-Healgate-Error"))
		}
		return resp.Header.Get("X-Dsemu-Name"), nil
	}

	var (
		failed, sent atomic.Int64
		wg           sync.WaitGroup
		stop         = make(chan struct{})
	)
	for range 4 {
		wg.Go(func() {
			for i := 0; i < 100000; i++ { // bounded; stop ends it first
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				if _, err := get(); err != nil {
					failed.Add(1)
					t.Errorf("request during reloads: %v", err)
				}
			}
		})
	}
	// waitSent waits until the clients have sent n more requests, so every
	// reload happens under load.
	waitSent := func(n int64) {
		want := sent.Load() + n
		deadline := time.Now().Add(10 * time.Second)
		for sent.Load() < want {
			if time.Now().After(deadline) {
				t.Fatalf("clients sent %d requests, want %d", sent.Load(), want)
			}
			time.Sleep(time.Millisecond) // polling interval, bounded by the deadline
		}
	}
	for i := range 6 {
		waitSent(50)
		useB.Store(i%2 == 0)
		reload <- syscall.SIGHUP
		n.waitMsg(t, "READY")
	}
	waitSent(50)
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || sent.Load() == 0 {
		t.Fatalf("%d of %d requests failed during 6 reloads", failed.Load(), sent.Load())
	}
	// 6 reloads alternate b, a, b, a, b, a: a serves now.
	if from, err := get(); err != nil || from != "a" {
		t.Fatalf("after the reloads: from %q, %v; want a", from, err)
	}

	// An invalid config is refused and the running one stays.
	invalid.Store(true)
	reload <- syscall.SIGHUP
	n.waitMsg(t, "READY")
	if from, err := get(); err != nil || from != "a" {
		t.Fatalf("after an invalid reload: from %q, %v; want a, still", from, err)
	}
	n.mu.Lock()
	msgs := strings.Join(n.msgs, " ")
	n.mu.Unlock()
	if want := "READY" + strings.Repeat(" RELOADING READY", 7); msgs != want {
		t.Errorf("notifications %q, want %q", msgs, want)
	}
	t.Logf("%d requests, 0 failed, across 6 reloads and 1 refused reload", sent.Load())
}

// TestSdNotifyProtocol runs serve with the real sd_notify client against a
// datagram socket standing in for systemd's NOTIFY_SOCKET, and checks the
// messages: READY=1 with a STATUS, RELOADING=1 with MONOTONIC_USEC, READY=1,
// then STOPPING=1.
func TestSdNotifyProtocol(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)

	cfg := testConfig(startEmu(t, "a"))
	reload := make(chan os.Signal, 1)
	r := startServe(t, cfg, serveOptions{reload: reload, notify: systemdNotifier{}, load: func() (*config.Config, error) {
		return testConfig(cfg.Upstreams[0].URL), nil
	}})

	read := func() string {
		t.Helper()
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read sd_notify: %v", err)
		}
		return string(buf[:n])
	}
	next := func(prefix string) string {
		t.Helper()
		for range 20 { // STATUS= updates may come in between
			if m := read(); strings.HasPrefix(m, prefix) {
				return m
			}
		}
		t.Fatalf("no %s message", prefix)
		return ""
	}
	if m := next("READY=1"); !strings.Contains(m, "\nSTATUS=1/1 upstreams usable") {
		t.Errorf("READY message %q lacks the status line", m)
	}
	reload <- syscall.SIGHUP
	if m := next("RELOADING=1"); !strings.Contains(m, "\nMONOTONIC_USEC=") {
		t.Errorf("RELOADING message %q lacks MONOTONIC_USEC", m)
	}
	next("READY=1")
	r.cancel()
	next("STOPPING=1")
}

// TestRunRefusesBadConfig: healgate run with an invalid config exits 1 and
// names the file, line and key.
func TestRunRefusesBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("upstreams:\n  - url: ftp://x:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	err := run(context.Background(), []string{"run", "-config", path}, &out, &out)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("err = %v, want exit 1", err)
	}
	if !strings.Contains(out.String(), path+":2: upstreams[0].url:") {
		t.Errorf("output %q does not name file:line: key", out.String())
	}
}
