package systemdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/healgate/healgate/internal/testproc"
)

// TestBootRunsUnitsAndLeavesTheHostAlone boots a system, runs a unit from a
// binary the test put in its temp dir, checks what the system can see and
// reach, and after Close checks that no process, cgroup or file is left and
// that the host's /tmp and /etc/polkit-1/rules.d were not touched.
func TestBootRunsUnitsAndLeavesTheHostAlone(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "marker") // under the host's /tmp
	if err := os.WriteFile(marker, []byte("still here"), 0o644); err != nil {
		t.Fatal(err)
	}
	rulesBefore := readDirNames(t, PolkitRulesDir)

	sys, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatalf("%v\n%s", err, bootHint)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = sys.Close()
		}
	})

	if state, err := sys.Systemctl("is-system-running"); err != nil && !strings.Contains(state, "degraded") {
		t.Fatalf("is-system-running: %q, %v", state, err)
	}
	if _, err := os.Stat(strings.TrimPrefix(sys.BusAddress(), "unix:path=")); err != nil {
		t.Fatalf("bus socket: %v", err)
	}

	// A binary from the host's /tmp, copied in; a unit listening on
	// loopback inside is reachable from the host.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	bin := filepath.Join(t.TempDir(), "serve")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexec socat TCP-LISTEN:\"$1\",bind=127.0.0.1,reuseaddr,fork EXEC:/bin/cat\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	inside, err := sys.InstallBinary(bin)
	if err != nil {
		t.Fatal(err)
	}
	unit := "systemdtest-http.service"
	err = sys.InstallUnit(unit, "[Service]\nExecStart="+inside+" "+strconv.Itoa(port)+"\n")
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.Start(unit); err != nil {
		t.Fatal(err)
	}
	pid, err := sys.MainPID(unit)
	if err != nil || pid <= 1 {
		t.Fatalf("MainPID = %d, %v", pid, err)
	}
	if !testproc.Poll(10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("unit %s never listened on 127.0.0.1:%d", unit, port)
	}

	// Private places: /tmp inside is empty of the host's files, and a
	// polkit rule written inside does not reach the host's /etc.
	if out, err := sys.Exec("test", "-e", marker); err == nil {
		t.Errorf("the host's %s is visible inside: %s", marker, out)
	}
	if err := sys.WriteFile(PolkitRulesDir+"/00-systemdtest.rules", []byte("// test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := readDirNames(t, PolkitRulesDir); !equal(got, rulesBefore) {
		t.Errorf("host %s changed: %v, was %v", PolkitRulesDir, got, rulesBefore)
	}
	// /proc/sys is read-only inside: systemd cannot change host sysctls.
	if out, err := sys.Exec("sh", "-c", "echo 100 > /proc/sys/kernel/pid_max"); err == nil {
		t.Errorf("/proc/sys is writable inside: %s", out)
	}

	host := sys.PID()
	cgroups := sys.cgroups
	if len(cgroups) == 0 {
		t.Fatal("no cgroup made for the system")
	}
	closed = true
	if err := sys.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := syscall.Kill(host, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("systemd pid %d still exists after Close (kill 0: %v)", host, err)
	}
	for _, c := range cgroups {
		if _, err := os.Stat(c); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left behind (%v)", c, err)
		}
	}
	if b, err := os.ReadFile(marker); err != nil || string(b) != "still here" {
		t.Errorf("host file %s: %q, %v", marker, b, err)
	}
	if got := readDirNames(t, PolkitRulesDir); !equal(got, rulesBefore) {
		t.Errorf("host %s changed: %v, was %v", PolkitRulesDir, got, rulesBefore)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second); err == nil {
		c.Close()
		t.Errorf("the unit's listener outlived the system")
	}
	if err := sys.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestBootFailsLoudly checks that a system that cannot boot fails the test
// with the reason, instead of skipping it.
func TestBootFailsLoudly(t *testing.T) {
	_, err := Start(context.Background(), Options{Systemd: "/nonexistent/systemd"})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/systemd") {
		t.Fatalf("Start with a missing systemd: %v", err)
	}
	_, err = Start(context.Background(), Options{Unshare: "no-such-unshare-binary"})
	if !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("Start with a missing unshare: %v", err)
	}

	// A systemd that exits at once: Start reports its exit and output.
	start := time.Now()
	_, err = Start(context.Background(), Options{Systemd: "/bin/false", BootTimeout: 20 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("Start with a systemd that exits: %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("a boot that died took %v to report", d)
	}

	// Boot fails the test (Fatal, not Skip) with the hint.
	rec := &recordingTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Boot(rec, Options{Systemd: "/nonexistent/systemd"})
	}()
	<-done
	if !rec.failed || rec.skipped || !strings.Contains(rec.msg, "fail rather than skip") {
		t.Fatalf("Boot: failed=%v skipped=%v msg=%q", rec.failed, rec.skipped, rec.msg)
	}
}

// recordingTB records a Fatal or Skip and ends the goroutine as testing does.
type recordingTB struct {
	testing.TB
	msg             string
	failed, skipped bool
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.failed = true
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recordingTB) Skipf(format string, args ...any) {
	r.skipped = true
	runtime.Goexit()
}
func (r *recordingTB) Cleanup(func()) {}

func readDirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func equal(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

// TestSharedReportsABootFailureToEveryTest checks that a Shared whose boot
// fails fails each test that asks for it, boots once, and closes cleanly.
func TestSharedReportsABootFailureToEveryTest(t *testing.T) {
	sh := Shared{Options: Options{Systemd: "/nonexistent/systemd"}}
	for i := range 2 {
		rec := &recordingTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			sh.Get(rec)
		}()
		<-done
		if !rec.failed || !strings.Contains(rec.msg, "/nonexistent/systemd") {
			t.Errorf("Get #%d: failed=%v msg=%q", i, rec.failed, rec.msg)
		}
	}
	if err := sh.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
