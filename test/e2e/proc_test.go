package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// outputTail bounds how much of a process's output a failing test prints.
const outputTail = 32 << 10

// syncBuffer is an io.Writer safe for the concurrent writes of a child's
// stdout and stderr and the reads of the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a child process owned by one test. It is stopped (stopSignal, then
// SIGKILL to its process group after a grace period) and waited for in
// t.Cleanup; its output is printed when the test fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  syncBuffer // stdout and stderr, interleaved
	done chan struct{}
	err  error // cmd.Wait's result, set before done is closed
}

// procOptions configures startProc.
type procOptions struct {
	dir        string    // working directory; "" is the test's
	stopSignal os.Signal // graceful stop; nil means SIGTERM
	env        []string  // added to the test's environment
}

// startProc starts bin with args as a child of the test. Its process is the
// leader of a new process group, so that a forced stop also reaches the
// children it forked (nginx workers).
func startProc(t *testing.T, name string, opts procOptions, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = opts.dir
	p.cmd.Env = append(os.Environ(), opts.env...)
	if raceEnabled {
		// The race runtime sleeps 1 s at exit by default; every test stops
		// several processes.
		p.cmd.Env = append(p.cmd.Env, "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	}
	p.cmd.Stdout = &p.out
	p.cmd.Stderr = &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A grandchild that keeps the pipes open must not block Wait forever.
	p.cmd.WaitDelay = 2 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	stop := opts.stopSignal
	if stop == nil {
		stop = syscall.SIGTERM
	}
	t.Cleanup(func() {
		p.stop(stop, 10*time.Second)
		if t.Failed() {
			p.dump(t)
		}
		if raceEnabled && strings.Contains(p.out.String(), "WARNING: DATA RACE") {
			p.dump(t)
			t.Errorf("%s reported a data race", name)
		}
	})
	return p
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits up to grace for the process to exit, then kills its
// process group and waits for it. It is a no-op once the process has exited.
func (p *proc) stop(sig os.Signal, grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	p.kill()
}

// kill kills the process and its process group at once (SIGKILL, no chance
// to clean up: a crash) and waits for it.
func (p *proc) kill() {
	if !p.exited() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-p.done
}

// dump prints the tail of the process's output.
func (p *proc) dump(t *testing.T) {
	t.Helper()
	out := p.out.String()
	if len(out) > outputTail {
		out = "…" + out[len(out)-outputTail:]
	}
	state := "running"
	if p.exited() {
		state = fmt.Sprintf("exited: %v", p.err)
	}
	t.Logf("---- %s (%s) output ----\n%s\n---- end of %s ----", p.name, state, out, p.name)
}

// waitLine polls the output until a line matches re, and returns its
// submatches. It fails the test if the process exits first or timeout passes.
func (p *proc) waitLine(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(p.out.String()); m != nil {
			return m
		}
		if p.exited() {
			t.Fatalf("%s exited (%v) before printing a line matching %q", p.name, p.err, re)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s printed no line matching %q within %v", p.name, re, timeout)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, bounded by the deadline
	}
}

// errNotListening is waitListening's error when the deadline passes.
var errNotListening = errors.New("not accepting connections")

// waitListening polls until addr accepts a TCP connection. It returns an
// error if the process exits first or timeout passes.
func (p *proc) waitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited (%v) before %s accepted", p.name, p.err, addr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s on %s after %v: %w", p.name, addr, timeout, errNotListening)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, bounded by the deadline
	}
}

// freeAddr returns a loopback address with a port the kernel just handed out
// and released. Another process may take it before the caller binds it;
// callers that start a server on it retry with a new address when the
// server does not come up (see startWithPort).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// closedAddr returns a loopback address where nothing listens: a port just
// released by the kernel.
func closedAddr(t *testing.T) string { return freeAddr(t) }

// portOf returns addr's port.
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// startAttempts bounds how often startWithPort picks a new port.
const startAttempts = 3

// startWithPort starts a server with start(addr) on a free loopback address
// and waits until the address accepts; if the process fails because its
// port was taken meanwhile ("address already in use"), it tries again with
// a new address, at most startAttempts times.
func startWithPort(t *testing.T, what string, start func(addr string) *proc) (*proc, string) {
	t.Helper()
	var errs []error
	for range startAttempts {
		addr := freeAddr(t)
		p := start(addr)
		err := p.waitListening(addr, 15*time.Second)
		if err == nil {
			return p, addr
		}
		errs = append(errs, err)
		p.stop(syscall.SIGTERM, 5*time.Second)
		// Only a port taken meanwhile is worth another port; the child's
		// own words are the only account of why it exited.
		if !strings.Contains(p.out.String(), "address already in use") {
			break
		}
	}
	t.Fatalf("start %s: %v", what, errors.Join(errs...))
	return nil, ""
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
