package heal

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// outputTail bounds how much of a process's output a failing test prints.
const outputTail = 48 << 10

// syncBuffer is an io.Writer safe for a child's concurrent stdout and
// stderr writes and the test's reads.
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

// proc is a child process owned by one test: stopped and waited for in
// t.Cleanup, its output printed when the test fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{}
	err  error // cmd.Wait's result, set before done is closed

	// signal delivers a stop signal; nil signals the child itself.
	signal func(syscall.Signal) error
}

// startProc starts bin with args, env added to the test's environment, as
// the leader of a new process group (so a forced stop reaches its children).
func startProc(t *testing.T, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	if raceEnabled {
		// The race runtime sleeps 1 s at exit by default.
		p.cmd.Env = append(p.cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p.cmd.WaitDelay = 2 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { // owned by p: stop waits for done
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(10 * time.Second)
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

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to grace, then kills the process group
// and waits. It is a no-op once the process has exited.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	if p.signal != nil {
		_ = p.signal(syscall.SIGTERM)
	} else {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return
	case <-t.C:
	}
	if p.signal != nil {
		_ = p.signal(syscall.SIGKILL)
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

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

// childPID returns the pid (host view) of the process's only child, for
// nsenter, which forks the command it runs into the new PID namespace.
func (p *proc) childPID() (int, error) {
	pid := p.cmd.Process.Pid
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 1 {
		return 0, fmt.Errorf("%s (pid %d) has children %q, want one", p.name, pid, f)
	}
	return strconv.Atoi(f[0])
}

// freePort returns a loopback port the kernel just handed out and released.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// pollUntil calls cond every 20ms until it reports true, and fails the test
// with what if timeout passes first.
func pollUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !pollFor(timeout, cond) {
		t.Fatalf("timed out after %v waiting until %s", timeout, what)
	}
}

// pollFor calls cond every 20ms until it reports true (true) or timeout
// passes (false).
func pollFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond) // polling interval, bounded by the deadline
	}
	return true
}

// accepts reports whether addr accepts a TCP connection now.
func accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
