package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/healgate/healgate/internal/dsemu"
	"github.com/healgate/healgate/internal/testnginx"
	"github.com/healgate/healgate/internal/testproc"
)

// upstreamSpec is one entry of healgate's upstreams.
type upstreamSpec struct {
	name   string
	addr   string // host:port
	backup bool
}

// gateConfig is the part of healgate's configuration the tests vary. The
// zero value of a field means the scaled-down default of the tests (see
// withDefaults): the relationships of the shipped defaults are kept
// (connect < response_header < conversion route; nginx waits longest), the
// magnitudes are seconds instead of minutes.
type gateConfig struct {
	upstreams []upstreamSpec

	connect        time.Duration // timeouts.connect (test default 1s)
	responseHeader time.Duration // timeouts.response_header and read (test default 2s)
	conversion     time.Duration // conversion route response_header and read (test default 6s)

	tries       int           // next_upstream.tries (test default 2)
	nextTimeout time.Duration // next_upstream.timeout (test default 10s)

	breakerFailures uint32        // breaker.consecutive_failures (test default 3)
	openTimeout     time.Duration // breaker.open_timeout (test default 30s: stays open for the test)

	setXForwardedProto bool // set_x_forwarded_proto
}

func (c gateConfig) withDefaults() gateConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.connect, time.Second)
	def(&c.responseHeader, 2*time.Second)
	def(&c.conversion, 6*time.Second)
	def(&c.nextTimeout, 10*time.Second)
	def(&c.openTimeout, 30*time.Second)
	if c.tries == 0 {
		c.tries = 2
	}
	if c.breakerFailures == 0 {
		c.breakerFailures = 3
	}
	return c
}

// nginxReadTimeout is nginx's proxy_read_timeout for c: above every budget
// healgate may spend on one request (the README's timeout ordering).
func (c gateConfig) nginxReadTimeout() time.Duration {
	return c.conversion + c.nextTimeout + 30*time.Second
}

// yaml renders c as healgate's config file, listening on listen and admin.
// Health checks run every 500ms; the healer only observes (there is no
// systemd to restart here).
func (c gateConfig) yaml(listen, admin string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %s\n", listen)
	fmt.Fprintf(&b, "admin: {listen: %q}\n", admin)
	fmt.Fprintf(&b, "set_x_forwarded_proto: %t\n", c.setXForwardedProto)
	b.WriteString("server: {shutdown_timeout: 2s}\n")
	b.WriteString("upstreams:\n")
	for _, u := range c.upstreams {
		fmt.Fprintf(&b, "  - {name: %s, url: \"http://%s\", backup: %t}\n", u.name, u.addr, u.backup)
	}
	fmt.Fprintf(&b, "timeouts: {connect: %s, send: 10s, response_header: %s, read: %s, idle: 30s}\n",
		c.connect, c.responseHeader, c.responseHeader)
	b.WriteString("routes:\n")
	fmt.Fprintf(&b, "  - {name: conversion, path_prefix: [/ConvertService.ashx, /converter, /docbuilder], "+
		"timeouts: {response_header: %s, read: %s}, breaker: false}\n", c.conversion, c.conversion)
	b.WriteString("  - {name: websocket, upgrade: websocket, timeouts: {read: 1m}, breaker: false}\n")
	fmt.Fprintf(&b, "next_upstream: {tries: %d, timeout: %s}\n", c.tries, c.nextTimeout)
	fmt.Fprintf(&b, "breaker: {consecutive_failures: %d, open_timeout: %s, window: 1m}\n",
		c.breakerFailures, c.openTimeout)
	b.WriteString("health: {interval: 500ms, timeout: 400ms, rise: 1, fall: 2}\n")
	b.WriteString("healing: {action: none}\n")
	b.WriteString("log: {format: json, level: debug}\n")
	return b.String()
}

// gate is a healgate process owned by one test.
type gate struct {
	*testproc.Proc
	addr   string // proxy listener
	admin  string // admin listener
	cfg    gateConfig
	client *http.Client
}

// startHealgate runs "healgate run -config FILE" with cfg on free loopback
// ports and waits until its admin /healthz answers 200 and its proxy port
// accepts.
func startHealgate(t *testing.T, cfg gateConfig) *gate {
	t.Helper()
	cfg = cfg.withDefaults()
	g := &gate{cfg: cfg, client: newClient(t)}
	dir := t.TempDir()
	var adminAddr string
	p, addr := testproc.StartOnFreePort(t, "healgate", func(addr string) *testproc.Proc {
		adminAddr = testproc.FreeAddr(t)
		file := filepath.Join(dir, "healgate.yaml")
		if err := os.WriteFile(file, []byte(cfg.yaml(addr, adminAddr)), 0o644); err != nil {
			t.Fatal(err)
		}
		return testproc.Start(t, "healgate", testproc.Options{}, bin.healgate, "run", "-config", file)
	})
	g.Proc, g.addr, g.admin = p, addr, adminAddr
	if err := p.WaitListening(adminAddr, 10*time.Second); err != nil {
		t.Fatalf("healgate admin: %v", err)
	}
	testproc.PollUntil(t, 10*time.Second, "healgate /healthz answers 200", func() bool {
		resp, err := g.client.Get("http://" + adminAddr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return g
}

// adminGet fetches an admin endpoint and returns its status and body.
func (g *gate) adminGet(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := g.client.Get("http://" + g.admin + path)
	if err != nil {
		t.Fatalf("healgate admin GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("healgate admin GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// emu is a dsemu process owned by one test.
type emu struct {
	*testproc.Proc
	name   string
	addr   string
	client *http.Client
}

// startDsemu runs "dsemu -listen 127.0.0.1:0 -name NAME -mode MODE
// [extra...]" and waits for the line where it names its address.
func startDsemu(t *testing.T, name, mode string, extra ...string) *emu {
	t.Helper()
	args := append([]string{"-listen", "127.0.0.1:0", "-name", name, "-mode", mode}, extra...)
	p := testproc.Start(t, "dsemu "+name, testproc.Options{}, bin.dsemu, args...)
	re := regexp.MustCompile(`dsemu ` + regexp.QuoteMeta(name) + ` listening on (\S+)`)
	m := p.WaitLine(t, re, 10*time.Second)
	return &emu{Proc: p, name: name, addr: m[1], client: newClient(t)}
}

// setMode switches the emulator's fault mode (POST /_dsemu/mode).
func (e *emu) setMode(t *testing.T, mode string) {
	t.Helper()
	resp, err := e.client.Post("http://"+e.addr+"/_dsemu/mode", "text/plain", strings.NewReader(mode))
	if err != nil {
		t.Fatalf("dsemu %s: set mode %s: %v", e.name, mode, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("dsemu %s: set mode %s: %s %s", e.name, mode, resp.Status, b)
	}
}

// stats returns what the emulator received (GET /_dsemu/stats).
func (e *emu) stats(t *testing.T) dsemu.Stats {
	t.Helper()
	resp, err := e.client.Get("http://" + e.addr + "/_dsemu/stats")
	if err != nil {
		t.Fatalf("dsemu %s: stats: %v", e.name, err)
	}
	defer resp.Body.Close()
	var st dsemu.Stats
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err == nil {
		err = json.NewDecoder(bytes.NewReader(b)).Decode(&st)
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("dsemu %s: stats: %s %v\n%s", e.name, resp.Status, err, b)
	}
	return st
}

// lastRequest returns the most recent request the emulator recorded whose
// decoded path is path.
func (e *emu) lastRequest(t *testing.T, path string) dsemu.Request {
	t.Helper()
	st := e.stats(t)
	for i := len(st.Recent) - 1; i >= 0; i-- {
		if st.Recent[i].Path == path {
			return st.Recent[i]
		}
	}
	t.Fatalf("dsemu %s recorded no request for %s; recent: %+v", e.name, path, st.Recent)
	return dsemu.Request{}
}

// stack is nginx → healgate → upstreams, as deployed.
type stack struct {
	nginx  *testnginx.Server
	gate   *gate
	client *http.Client // for requests through nginx
}

// startStack starts healgate with cfg (whose upstreams the caller started)
// and a private nginx in front of it.
func startStack(t *testing.T, cfg gateConfig) *stack {
	t.Helper()
	g := startHealgate(t, cfg)
	n := testnginx.Start(t, bin.nginx, g.addr, g.cfg.nginxReadTimeout())
	return &stack{nginx: n, gate: g, client: newClient(t)}
}

// newClient returns an HTTP client for one test: no proxy from the
// environment, no redirects followed, an overall bound on every request. Its
// idle connections are closed when the test ends.
func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport: tr,
		Timeout:   60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// contextFor returns a context that ends when the test ends, at the test
// binary's deadline (less a margin for cleanup), or after limit, whichever is
// first.
func contextFor(t *testing.T, limit time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	t.Cleanup(cancel)
	if d, ok := t.Deadline(); ok {
		var cancelD context.CancelFunc
		ctx, cancelD = context.WithDeadline(ctx, d.Add(-5*time.Second))
		t.Cleanup(cancelD)
	}
	return ctx
}
