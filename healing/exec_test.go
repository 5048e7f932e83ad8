package healing_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/healgate/healgate/config"
	"github.com/healgate/healgate/healing"
	"github.com/healgate/healgate/internal/testproc"
)

func TestExecActionSucceedsAndKeepsOutput(t *testing.T) {
	a := healing.NewExecAction(config.Exec{Command: []string{"/bin/sh", "-c", "echo out; echo err >&2", "ignored-$0"}}, 0)
	res, err := a.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.ExitCode != 0 || !bytes.Contains(res.Output, []byte("out\n")) || !bytes.Contains(res.Output, []byte("err\n")) || res.Truncated {
		t.Errorf("result = %+v (output %q)", res, res.Output)
	}
}

func TestExecActionPassesArgumentsWithoutAShell(t *testing.T) {
	// Each element is one argument, spaces and shell syntax included.
	a := healing.NewExecAction(config.Exec{Command: []string{"/bin/echo", "a b", "$HOME", ";", "ds:docservice"}}, 0)
	res, err := a.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Output); got != "a b $HOME ; ds:docservice\n" {
		t.Errorf("output = %q", got)
	}
}

func TestExecActionExitStatus(t *testing.T) {
	a := healing.NewExecAction(config.Exec{Command: []string{"/bin/sh", "-c", "echo 'ds:docservice: ERROR (no such process)'; exit 7"}}, 0)
	res, err := a.Run(context.Background())
	if !errors.Is(err, healing.ErrExecStatus) {
		t.Fatalf("Run = %v, want ErrExecStatus", err)
	}
	var ee *healing.ExecError
	if !errors.As(err, &ee) || ee.ExitCode != 7 || res.ExitCode != 7 || ee.Command != "/bin/sh" {
		t.Fatalf("error = %#v, result = %+v; want exit code 7", err, res)
	}
	if !strings.Contains(string(ee.Output), "no such process") {
		t.Errorf("output = %q", ee.Output)
	}
	if errors.Is(err, healing.ErrExecTimeout) || errors.Is(err, healing.ErrExecNotFound) {
		t.Errorf("exit status misclassified: %v", err)
	}
}

func TestExecActionNotFound(t *testing.T) {
	notExec := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{
		{"/nonexistent/supervisorctl", "restart"},
		{"healgate-no-such-program-on-path"},
		{notExec},
		{},
	} {
		_, err := healing.NewExecAction(config.Exec{Command: cmd}, 0).Run(context.Background())
		if !errors.Is(err, healing.ErrExecNotFound) {
			t.Errorf("Run %q = %v, want ErrExecNotFound", cmd, err)
		}
	}
}

func TestExecActionTimeoutKillsTheProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	// The shell starts a child that would outlive a plain kill of the shell.
	a := healing.NewExecAction(config.Exec{
		Command: []string{"/bin/sh", "-c", `sleep 60 & echo $! > "$1"; echo started; wait`, "sh", pidFile},
		Timeout: 300 * time.Millisecond,
	}, 0)
	start := time.Now()
	res, err := a.Run(context.Background())
	if !errors.Is(err, healing.ErrExecTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want ErrExecTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %v with a 300ms timeout", d)
	}
	if !strings.Contains(string(res.Output), "started") || res.ExitCode != -1 {
		t.Errorf("result = %+v (output %q)", res, res.Output)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if !testproc.Poll(5*time.Second, func() bool { return !alive(child) }) {
		t.Errorf("child %d of the timed-out command is still running", child)
	}
}

func TestExecActionCallerCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	a := healing.NewExecAction(config.Exec{Command: []string{"/bin/sleep", "60"}, Timeout: time.Minute}, 0)
	done := make(chan error, 1)
	go func() {
		_, err := a.Run(ctx)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || errors.Is(err, healing.ErrExecTimeout) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestExecActionBoundsOutput(t *testing.T) {
	a := healing.NewExecAction(config.Exec{Command: []string{"/bin/sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a; echo; echo END"}}, 64)
	res, err := a.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Output) > 64 || !res.Truncated || !bytes.HasSuffix(res.Output, []byte("aaa\nEND\n")) {
		t.Errorf("output (%d bytes, truncated %v) = %q", len(res.Output), res.Truncated, res.Output)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return syscall.Kill(pid, 0) == nil
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}
