package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestSocketActivation runs the real binary under systemd-socket-activate,
// which passes two named sockets the way a .socket unit with
// FileDescriptorName= does: healgate serves the proxy on "proxy" and the
// admin on "admin", and binds nothing itself.
func TestSocketActivation(t *testing.T) {
	activate, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatalf("systemd-socket-activate not found (Debian package systemd): %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "healgate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	up := startEmu(t, "a")
	cfgPath := filepath.Join(dir, "healgate.yaml")
	cfg := "listen: systemd:proxy\nadmin: {listen: \"systemd:admin\"}\n" +
		"upstreams: [{name: docservice, url: \"" + up + "\"}]\n" +
		"health: {interval: 100ms, timeout: 80ms}\nhealing: {action: none, units: []}\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	proxyAddr, adminAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, activate, "-l", proxyAddr, "-l", adminAddr, "--fdname=proxy:admin",
		bin, "run", "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("healgate output:\n%s", out.String())
		}
	}()

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	get := func(url string) (int, string, http.Header) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	// systemd-socket-activate binds both sockets, then starts healgate on the
	// first connection; from then on requests queue in the kernel even while
	// healgate starts.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", adminAddr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd-socket-activate never listened on %s: %v", adminAddr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, bounded by the deadline
	}
	if code, body, hdr := get("http://" + proxyAddr + "/healthcheck"); code != 200 || strings.TrimSpace(body) != "true" || hdr.Get("X-Dsemu-Name") != "a" {
		t.Errorf("proxy via the passed socket: %d %q from %q", code, body, hdr.Get("X-Dsemu-Name"))
	}
	if code, body, _ := get("http://" + adminAddr + "/healthz"); code != 200 {
		t.Errorf("admin via the passed socket: %d %q", code, body)
	}
}
