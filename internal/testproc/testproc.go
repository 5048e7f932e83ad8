// Package testproc runs child processes owned by one test, for the
// end-to-end tests that drive real binaries (healgate, dsemu, nginx, node).
//
// Start makes the child the leader of a new process group and registers a
// cleanup that stops it (a graceful signal, then SIGKILL to the whole group
// after a grace period), waits for it, and prints the tail of its output
// when the test failed. With the race detector on (RaceEnabled), a child's
// "WARNING: DATA RACE" fails the test. GoBuild builds the binaries once, with
// -race when asked, and LookPath finds the tools they run beside.
//
// The package is for tests only: its functions take a testing.TB and fail
// it; nothing is skipped.
package testproc

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// OutputTail bounds how much of a process's output (or of a log file, see
// Tail) a failing test prints, in bytes.
const OutputTail = 48 << 10

// cleanupGrace is how long the test's cleanup waits for the graceful stop
// before it kills the process group.
const cleanupGrace = 10 * time.Second

// Options configures Start. The zero value starts the child in the test's
// working directory with the test's environment and stops it with SIGTERM.
type Options struct {
	// Dir is the child's working directory; "" is the test's.
	Dir string

	// Env is added to the test's environment.
	Env []string

	// StopSignal is the graceful stop that Stop (and the cleanup) sends
	// first, such as SIGQUIT for nginx. Zero means SIGTERM.
	StopSignal syscall.Signal

	// Signal, if set, delivers the signals of Signal and Stop instead of
	// sending them to the child itself: for a child that runs the real
	// process as its own child (nsenter). A forced stop also kills the
	// child's process group either way. p is the process being signalled.
	Signal func(p *Proc, sig syscall.Signal) error
}

// Proc is a child process owned by one test, started by Start. Its methods
// are safe for concurrent use.
type Proc struct {
	name string
	opts Options
	cmd  *exec.Cmd
	out  syncBuffer    // stdout and stderr, interleaved
	done chan struct{} // closed when cmd.Wait returned
	err  error         // cmd.Wait's result, set before done is closed
}

// Start starts bin with args as a child of the test, named name in failure
// messages. The child is the leader of a new process group, so that a forced
// stop also reaches the children it forked (nginx workers), and it is
// SIGKILLed if the test binary dies. The test's cleanup stops it (StopSignal,
// then SIGKILL to the group after 10s) and waits for it; when the test
// failed, or the child reported a data race, the tail of its output is
// printed. A failed start fails t.
func Start(t testing.TB, name string, opts Options, bin string, args ...string) *Proc {
	t.Helper()
	if opts.StopSignal == 0 {
		opts.StopSignal = syscall.SIGTERM
	}
	p := &Proc{name: name, opts: opts, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = opts.Dir
	p.cmd.Env = append(os.Environ(), opts.Env...)
	if RaceEnabled {
		// The race runtime sleeps 1 s at exit by default; every test stops
		// several processes.
		p.cmd.Env = append(p.cmd.Env, "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A grandchild that keeps the pipes open must not block Wait forever.
	p.cmd.WaitDelay = 2 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { // owned by p: Stop and Kill wait for done
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop(cleanupGrace)
		if t.Failed() {
			p.dump(t)
		}
		if RaceEnabled && strings.Contains(p.Output(), "WARNING: DATA RACE") {
			p.dump(t)
			t.Errorf("%s reported a data race", name)
		}
	})
	return p
}

// Name returns the name the process was started with.
func (p *Proc) Name() string { return p.name }

// Pid returns the process id of the child Start started (with Options.Signal,
// not the process it runs).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output returns everything the process wrote to stdout and stderr so far,
// interleaved.
func (p *Proc) Output() string { return p.out.String() }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err returns the process's exit status as exec.Cmd.Wait reports it; nil
// while it runs and after a clean exit.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Signal sends sig to the process (through Options.Signal, if set).
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.opts.Signal != nil {
		return p.opts.Signal(p, sig)
	}
	return p.cmd.Process.Signal(sig)
}

// Stop sends the stop signal (Options.StopSignal) and waits up to grace for
// the process to exit, then kills it and its process group and waits for
// it. It is a no-op once the process has exited.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.Signal(p.opts.StopSignal)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return
	case <-timer.C:
	}
	p.Kill()
}

// Kill kills the process and its process group at once (SIGKILL, no chance
// to clean up: a crash) and waits for it.
func (p *Proc) Kill() {
	if !p.Exited() {
		if p.opts.Signal != nil {
			_ = p.opts.Signal(p, syscall.SIGKILL)
		}
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-p.done
}

// dump prints the tail of the process's output.
func (p *Proc) dump(t testing.TB) {
	t.Helper()
	state := "running"
	if p.Exited() {
		state = fmt.Sprintf("exited: %v", p.err)
	}
	t.Logf("---- %s (%s) output ----\n%s\n---- end of %s ----", p.name, state, Tail(p.Output()), p.name)
}

// WaitLine polls the output until it matches re, and returns the submatches.
// It fails t if the process exits first or timeout passes.
func (p *Proc) WaitLine(t testing.TB, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(p.Output()); m != nil {
			return m
		}
		if p.Exited() {
			t.Fatalf("%s exited (%v) before printing a line matching %q", p.name, p.err, re)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s printed no line matching %q within %v", p.name, re, timeout)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, bounded by the deadline
	}
}

// WaitListening polls until addr accepts a TCP connection. It returns an
// error if the process exits first, or one that wraps ErrNotListening when
// timeout passes.
func (p *Proc) WaitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited (%v) before %s accepted", p.name, p.err, addr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s on %s after %v: %w", p.name, addr, timeout, ErrNotListening)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, bounded by the deadline
	}
}

// Tail returns the last OutputTail bytes of s, marked with a leading "…"
// when it cut.
func Tail(s string) string {
	if len(s) > OutputTail {
		return "…" + s[len(s)-OutputTail:]
	}
	return s
}

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
