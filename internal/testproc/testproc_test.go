package testproc

import (
	"errors"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// sh starts /bin/sh -c script as a child of the test.
func sh(t *testing.T, opts Options, script string) *Proc {
	t.Helper()
	return Start(t, "sh", opts, "/bin/sh", "-c", script)
}

func TestWaitLineThenStop(t *testing.T) {
	p := sh(t, Options{Env: []string{"TESTPROC_WORD=ready"}}, `echo "port=42 $TESTPROC_WORD"; exec sleep 60`)
	m := p.WaitLine(t, regexp.MustCompile(`port=(\d+) ready`), 10*time.Second)
	if m[1] != "42" {
		t.Errorf("submatch %q, want 42", m[1])
	}
	if p.Exited() || p.Err() != nil {
		t.Fatalf("exited early: %v", p.Err())
	}
	p.Stop(5 * time.Second)
	if !p.Exited() {
		t.Fatal("not exited after Stop")
	}
	// sleep dies of the SIGTERM.
	if err := p.Err(); err == nil || !strings.Contains(err.Error(), "terminated") {
		t.Errorf("Err() = %v, want death by SIGTERM", err)
	}
}

func TestStopSignalAndDir(t *testing.T) {
	dir := t.TempDir()
	p := sh(t, Options{Dir: dir, StopSignal: syscall.SIGQUIT},
		`trap 'echo "got QUIT in $PWD"; exit 0' QUIT; echo ready; while :; do sleep 0.05; done`)
	p.WaitLine(t, regexp.MustCompile(`ready`), 10*time.Second)
	p.Stop(5 * time.Second)
	if want := "got QUIT in " + dir; !strings.Contains(p.Output(), want) {
		t.Errorf("output %q lacks %q", p.Output(), want)
	}
	if err := p.Err(); err != nil {
		t.Errorf("Err() = %v after a graceful stop, want nil", err)
	}
}

func TestSignalOption(t *testing.T) {
	var mu sync.Mutex
	var got []syscall.Signal
	signal := func(p *Proc, sig syscall.Signal) error {
		mu.Lock()
		got = append(got, sig)
		mu.Unlock()
		return syscall.Kill(p.Pid(), sig)
	}
	p := sh(t, Options{Signal: signal}, `trap 'echo HUP' HUP; echo ready; while :; do sleep 0.05; done`)
	p.WaitLine(t, regexp.MustCompile(`ready`), 10*time.Second)
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.WaitLine(t, regexp.MustCompile(`HUP`), 10*time.Second)
	p.Stop(5 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	if want := []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM}; !slices.Equal(got, want) {
		t.Errorf("Options.Signal saw %v, want %v", got, want)
	}
}

// TestKillReachesGroup: Kill ends the grandchildren too, and a Stop whose
// grace passes falls back to it.
func TestKillReachesGroup(t *testing.T) {
	for _, viaStop := range []bool{false, true} {
		t.Run("viaStop="+strconv.FormatBool(viaStop), func(t *testing.T) {
			p := sh(t, Options{}, `trap '' TERM; sleep 60 & echo "child $!"; wait`)
			m := p.WaitLine(t, regexp.MustCompile(`child (\d+)`), 10*time.Second)
			child, _ := strconv.Atoi(m[1])
			if viaStop {
				p.Stop(200 * time.Millisecond) // sh ignores SIGTERM
			} else {
				p.Kill()
			}
			if !p.Exited() {
				t.Fatal("not exited")
			}
			deadline := time.Now().Add(10 * time.Second)
			for alive(child) {
				if time.Now().After(deadline) {
					t.Fatalf("grandchild %d still runs", child)
				}
				time.Sleep(10 * time.Millisecond) // polling interval, bounded by the deadline
			}
		})
	}
}

// alive reports whether pid runs (exists and is no zombie).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestWaitListening(t *testing.T) {
	t.Run("Exited", func(t *testing.T) {
		p := sh(t, Options{}, `exit 3`)
		err := p.WaitListening(FreeAddr(t), 10*time.Second)
		if err == nil || errors.Is(err, ErrNotListening) || !strings.Contains(err.Error(), "exit status 3") {
			t.Errorf("WaitListening = %v, want the exit status", err)
		}
	})
	t.Run("Timeout", func(t *testing.T) {
		p := sh(t, Options{}, `exec sleep 60`)
		if err := p.WaitListening(FreeAddr(t), 100*time.Millisecond); !errors.Is(err, ErrNotListening) {
			t.Errorf("WaitListening = %v, want ErrNotListening", err)
		}
	})
}

func TestTail(t *testing.T) {
	if got := Tail("short"); got != "short" {
		t.Errorf("Tail(short) = %q", got)
	}
	long := strings.Repeat("a", OutputTail) + "end"
	got := Tail(long)
	if !strings.HasPrefix(got, "…") || !strings.HasSuffix(got, "end") || len(got) != len("…")+OutputTail {
		t.Errorf("Tail(long) has %d bytes, starts %q", len(got), got[:8])
	}
}

func TestLookPath(t *testing.T) {
	if p, err := LookPath("sh", "/nonexistent"); err != nil || p == "" {
		t.Errorf("LookPath(sh) = %q, %v", p, err)
	}
	if p, err := LookPath("testproc-no-such-command", "/bin/sh"); err != nil || p != "/bin/sh" {
		t.Errorf("LookPath with fallback = %q, %v, want /bin/sh", p, err)
	}
	if _, err := LookPath("testproc-no-such-command", "/nonexistent"); err == nil {
		t.Error("LookPath of nothing succeeded")
	}
}
