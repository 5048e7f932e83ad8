package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/healgate/healgate/internal/dsemu"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitLimit = 5 * time.Second

// startRun runs run with args in a goroutine and returns the address it
// announced and a function that waits (up to waitLimit) for run's result.
func startRun(t *testing.T, ctx context.Context, args ...string) (string, func() error) {
	t.Helper()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, args, pw, io.Discard)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	wait := sync.OnceValue(func() error {
		select {
		case err := <-done:
			return err
		case <-time.After(waitLimit):
			t.Error("run did not return")
			return nil
		}
	})
	t.Cleanup(func() {
		pr.Close() // unblock a run still writing its banner
		wait()
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no banner: %v", err)
	}
	f := strings.Fields(line) // dsemu NAME listening on ADDR mode MODE
	if len(f) != 7 || f[2] != "listening" {
		t.Fatalf("banner %q", line)
	}
	return f[4], wait
}

func TestRunServesUntilCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	addr, done := startRun(t, ctx, "-listen", "127.0.0.1:0", "-name", "ds-a", "-mode", "false")

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + addr + "/healthcheck")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(body)) != "false" || resp.Header.Get("X-Dsemu-Name") != "ds-a" {
		t.Errorf("healthcheck = %q from %q, want false from ds-a", body, resp.Header.Get("X-Dsemu-Name"))
	}
	client.CloseIdleConnections()

	cancel()
	if err := done(); err != nil {
		t.Errorf("run = %v, want nil after the context ended", err)
	}
}

func TestRunCrashes(t *testing.T) {
	_, done := startRun(t, t.Context(), "-listen", "127.0.0.1:0", "-mode", "crash-after=30ms")
	if err := done(); !errors.Is(err, dsemu.ErrCrashed) {
		t.Errorf("run = %v, want ErrCrashed (exit status 1)", err)
	}
}

func TestRunWaitsFor(t *testing.T) {
	dep, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dep.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// The dependency accepts, so the banner comes.
	addr, _ := startRun(t, ctx, "-listen", "127.0.0.1:0", "-mode", "wait-for="+dep.Addr().String(), "-wait-interval", "10ms")
	if addr == "" {
		t.Fatal("no address")
	}

	// Nothing accepts on port 1: run waits, and returns nil when stopped.
	ctx2, cancel2 := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel2()
	err = run(ctx2, []string{"-listen", "127.0.0.1:0", "-wait-for", "127.0.0.1:1", "-wait-interval", "10ms"}, io.Discard, io.Discard)
	if err != nil {
		t.Errorf("run stopped while waiting = %v, want nil", err)
	}
}

func TestRunUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-mode", "sideways"},
		{"-mode", "wait-for=127.0.0.1:5672", "-wait-for", "127.0.0.1:5672"},
		{"-log-level", "loud"},
		{"-no-such-flag"},
		{"extra"},
	} {
		if err := run(t.Context(), args, io.Discard, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("run %q = %v, want a usage error", args, err)
		}
	}
}
