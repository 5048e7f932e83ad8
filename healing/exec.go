package healing

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/healgate/healgate/config"
)

// Errors of the exec action, wrapped in an *ExecError; test with errors.Is.
var (
	// ErrExecTimeout: the command did not finish within its timeout and
	// was killed (with its process group).
	ErrExecTimeout = errors.New("command timed out")

	// ErrExecNotFound: the program does not exist or is not executable.
	ErrExecNotFound = errors.New("command not found")

	// ErrExecStatus: the command ran and exited unsuccessfully (a non-zero
	// status or a signal); see ExecError.ExitCode.
	ErrExecStatus = errors.New("command failed")
)

const (
	defaultExecTimeout   = 60 * time.Second // config's healing.exec.timeout default
	defaultExecMaxOutput = 4 << 10
	execWaitDelay        = 2 * time.Second // after the kill, how long Wait waits for the output pipes
)

// ExecAction runs one configured command, without a shell, to heal an
// upstream that systemd does not manage (supervisorctl restart ds:docservice,
// docker restart, a script). It is safe for concurrent use; each Run starts
// its own process.
type ExecAction struct {
	command   []string
	timeout   time.Duration
	maxOutput int
}

// NewExecAction returns the action for c (healing.exec). c.Command must not
// be empty (config validation ensures it with action exec); c.Timeout zero
// means 60s. At most maxOutput bytes of the command's combined stdout and
// stderr are kept for the event (the last ones, where the error usually
// is); zero means 4 KiB.
func NewExecAction(c config.Exec, maxOutput int) *ExecAction {
	if c.Timeout <= 0 {
		c.Timeout = defaultExecTimeout
	}
	if maxOutput <= 0 {
		maxOutput = defaultExecMaxOutput
	}
	return &ExecAction{command: append([]string(nil), c.Command...), timeout: c.Timeout, maxOutput: maxOutput}
}

// ExecResult describes one run of the command.
type ExecResult struct {
	// Output is the end of the command's combined stdout and stderr, at
	// most the action's maxOutput bytes.
	Output []byte

	// Truncated reports that earlier output was dropped.
	Truncated bool

	// ExitCode is the exit status; -1 if the command was killed by a
	// signal or did not start.
	ExitCode int

	// Duration is how long the command ran.
	Duration time.Duration
}

// ExecError is the error of one run of the command.
type ExecError struct {
	// Command is the program that was run.
	Command string

	// ExitCode is its exit status, -1 if killed or never started.
	ExitCode int

	// Output is the end of its output, as in ExecResult.
	Output []byte

	// Err is the cause: ErrExecTimeout, ErrExecNotFound or ErrExecStatus
	// (joined with the os/exec error), or the caller's context error.
	Err error
}

// Error returns "exec <program>: <cause>".
func (e *ExecError) Error() string { return "exec " + e.Command + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *ExecError) Unwrap() error { return e.Err }

// Run runs the command and waits for it, at most the configured timeout
// (and no longer than ctx allows). On timeout or cancellation the whole
// process group is killed. A command that exits 0 returns a nil error;
// otherwise the error is an *ExecError whose cause says why.
func (a *ExecAction) Run(ctx context.Context) (ExecResult, error) {
	if len(a.command) == 0 {
		return ExecResult{ExitCode: -1}, &ExecError{ExitCode: -1, Err: fmt.Errorf("%w: empty command", ErrExecNotFound)}
	}
	runCtx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()

	out := &tailWriter{max: a.maxOutput}
	cmd := exec.CommandContext(runCtx, a.command[0], a.command[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that a timeout kills what it started too
	// (a script's children would otherwise keep the pipes open).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = execWaitDelay

	start := time.Now()
	err := cmd.Run()
	res := ExecResult{Duration: time.Since(start), ExitCode: -1}
	res.Output, res.Truncated = out.bytes()
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	if err == nil {
		return res, nil
	}

	e := &ExecError{Command: a.command[0], ExitCode: res.ExitCode, Output: res.Output}
	switch {
	case ctx.Err() != nil:
		e.Err = ctx.Err()
	case runCtx.Err() != nil:
		e.Err = fmt.Errorf("%w after %v: %w", ErrExecTimeout, a.timeout, context.DeadlineExceeded)
	case errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission):
		e.Err = fmt.Errorf("%w: %w", ErrExecNotFound, err)
	default:
		var xe *exec.ExitError
		if errors.As(err, &xe) {
			e.Err = fmt.Errorf("%w: %w", ErrExecStatus, err)
		} else {
			e.Err = err
		}
	}
	return res, e
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	dropped bool
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	if len(p) >= w.max {
		w.dropped = w.dropped || len(w.buf) > 0 || len(p) > w.max
		w.buf = append(w.buf[:0], p[len(p)-w.max:]...)
		return n, nil
	}
	if over := len(w.buf) + len(p) - w.max; over > 0 {
		w.dropped = true
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	w.buf = append(w.buf, p...)
	return n, nil
}

func (w *tailWriter) bytes() ([]byte, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]byte(nil), w.buf...), w.dropped
}
