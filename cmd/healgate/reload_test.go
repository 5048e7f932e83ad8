package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReloadCommand runs "healgate reload" against a stand-in for the
// running healgate (a sleep process) and a datagram socket standing in for
// systemd's NOTIFY_SOCKET: a valid config gets RELOADING=1 with
// MONOTONIC_USEC sent, then SIGHUP to the process; an invalid one is
// refused with its file and line, and nothing is sent or signalled.
func TestReloadCommand(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)

	// target is a process standing in for healgate: SIGHUP ends it. done
	// is closed once it has ended, with its Wait error in *waitErr.
	target := func(t *testing.T) (cmd *exec.Cmd, done <-chan struct{}, waitErr *error) {
		t.Helper()
		cmd = exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ch, werr := make(chan struct{}), new(error)
		go func() { // owned by the test: the cleanup waits for it
			*werr = cmd.Wait()
			close(ch)
		}()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-ch
		})
		return cmd, ch, werr
	}
	writeConfig := func(t *testing.T, content string) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "healgate.yaml")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	reload := func(args ...string) (string, error) {
		var out strings.Builder
		err := run(context.Background(), append([]string{"reload"}, args...), &out, &out)
		return out.String(), err
	}

	t.Run("Valid", func(t *testing.T) {
		cmd, done, waitErr := target(t)
		path := writeConfig(t, "upstreams: [{name: a, url: \"http://127.0.0.1:1\"}]\n")
		if out, err := reload("-pid", strconv.Itoa(cmd.Process.Pid), "-config", path); err != nil {
			t.Fatalf("reload: %v\n%s", err, out)
		}
		buf := make([]byte, 4096)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no sd_notify message: %v", err)
		}
		if m := string(buf[:n]); !strings.HasPrefix(m, "RELOADING=1\n") || !strings.Contains(m, "\nMONOTONIC_USEC=") {
			t.Errorf("sd_notify message %q, want RELOADING=1 with MONOTONIC_USEC", m)
		}
		select {
		case <-done:
			err := *waitErr
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGHUP {
				t.Errorf("the target ended with %v, want SIGHUP", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the target got no SIGHUP")
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		cmd, done, waitErr := target(t)
		path := writeConfig(t, "upstreams: [{name: a, url: \"http://127.0.0.1:1\"}]\ntimeouts: {read: 30}\n")
		out, err := reload("-pid", strconv.Itoa(cmd.Process.Pid), "-config", path)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 1 {
			t.Fatalf("err = %v, want exit status 1", err)
		}
		if want := path + ":2: timeouts.read"; !strings.Contains(out, want) {
			t.Errorf("output %q does not name %s", out, want)
		}
		conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := conn.Read(make([]byte, 4096)); err == nil {
			t.Errorf("an sd_notify message was sent for an invalid config (%d bytes)", n)
		}
		select {
		case <-done:
			t.Errorf("the target was signalled: %v", *waitErr)
		default:
		}
	})

	t.Run("Usage", func(t *testing.T) {
		for _, args := range [][]string{{}, {"-pid", "1"}, {"-pid", "x"}, {"-pid", "5", "extra"}} {
			_, err := reload(args...)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 2 {
				t.Errorf("reload %s: %v, want exit status 2", strings.Join(args, " "), err)
			}
		}
	})

	t.Run("NoSuchProcess", func(t *testing.T) {
		cmd := exec.Command("true")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		_, err := reload("-pid", fmt.Sprint(cmd.Process.Pid))
		if !errors.Is(err, syscall.ESRCH) {
			t.Errorf("reload of a gone process: %v, want ESRCH", err)
		}
		conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := conn.Read(make([]byte, 4096)); err == nil {
			t.Errorf("RELOADING=1 was sent for a gone process (%d bytes)", n)
		}
	})
}
