// Package systemdtest boots a real systemd (Debian 12: systemd 252, dbus-daemon,
// polkitd) as PID 1 of a new PID, mount, UTS and IPC namespace, so that tests
// can drive real units over the real system bus: real RestartUnit jobs, real
// unit states, real polkit decisions. No VM and no container engine is
// needed; root is.
//
// The network namespace is shared with the host: a unit listening on
// 127.0.0.1 inside is reachable from the test, and the bus socket is reached
// from the host through /proc/<pid>/root (see [System.BusAddress]).
//
// What the test system cannot touch on the host: /run, /tmp, /var/tmp and
// /var/lib/systemd are private tmpfs inside (a default boot empties the
// host's /tmp); /sys/fs/cgroup is a private tmpfs with the host's
// hierarchies mounted again and the system nested in a cgroup of its own;
// /proc/sys and /sys are read-only; /etc/polkit-1/rules.d is a private
// directory; and the early-boot units that change the host (tmpfiles,
// sysctl, sysusers, modprobe, timers, ...) are masked. /etc, /usr and /var
// are otherwise the host's: never write there from a test. See
// docs/real-systemd.md.
//
// Files the test builds on the host (for example a dsemu binary in
// t.TempDir(), which lives under /tmp) are not visible inside, where /tmp is
// another file system. Copy them in with [System.InstallBinary] or
// [System.WriteFile]: both write through /proc/<pid>/root into the
// namespace's private /run, which vanishes with the system.
//
// Boot takes about 2 s. Tests that each need their own system call [Boot];
// a package whose tests can share one uses a [Shared] in its test files and
// closes it from TestMain.
package systemdtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options configures a test system. The zero value boots the host's systemd.
type Options struct {
	// Systemd is the systemd binary run as PID 1. Default /lib/systemd/systemd.
	Systemd string

	// Unshare is the unshare(1) binary, looked up in PATH. Default "unshare".
	Unshare string

	// BootTimeout bounds the boot, from starting unshare until
	// "systemctl is-system-running" says running or degraded. Default 60s.
	BootTimeout time.Duration

	// StopTimeout bounds each step of Close: the poweroff, then the
	// SIGRTMIN+4 fallback, then SIGKILL. Default 30s.
	StopTimeout time.Duration

	// CommandTimeout bounds each command run inside (Systemctl, Exec).
	// Default 60s.
	CommandTimeout time.Duration

	// Mask names further units to mask, in addition to the built-in list of
	// units that would touch the host.
	Mask []string
}

func (o Options) withDefaults() Options {
	if o.Systemd == "" {
		o.Systemd = "/lib/systemd/systemd"
	}
	if o.Unshare == "" {
		o.Unshare = "unshare"
	}
	if o.BootTimeout <= 0 {
		o.BootTimeout = 60 * time.Second
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 30 * time.Second
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 60 * time.Second
	}
	return o
}

// System is a running test systemd. Its methods are safe for concurrent use.
type System struct {
	opts    Options
	cmd     *exec.Cmd     // unshare
	pid     int           // systemd, as seen from the host
	cgroups []string      // cgroup trees created for the system, removed by Close
	out     *tailBuffer   // unshare's and systemd's stdout and stderr
	done    chan struct{} // closed when unshare has exited
	waitErr error         // unshare's exit, valid after done

	closeOnce sync.Once
	closeErr  error
}

// Boot boots a test system for t and registers its Close with t.Cleanup.
// If the system cannot boot, Boot fails the test at once with the reason (a
// missing unshare or systemd, not root, a boot that timed out and systemd's
// output): the heal path is the product, so its tests never skip.
func Boot(t testing.TB, opts Options) *System {
	t.Helper()
	opts = opts.withDefaults()
	ctx, cancel := context.WithTimeout(context.Background(), opts.BootTimeout)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("%v\n%s", err, bootHint)
		return nil
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("systemdtest: stop: %v", err)
		}
	})
	return s
}

const bootHint = "systemdtest needs root, unshare(1) and systemd 252 (Debian 12); " +
	"the healer's tests drive a real systemd and fail rather than skip (see docs/real-systemd.md)"

// Start boots a test system. It returns once systemd reports the system
// running or degraded, or an error naming what went wrong, with systemd's
// output. The caller must call Close. ctx bounds the boot only, as does
// opts.BootTimeout.
func Start(ctx context.Context, opts Options) (*System, error) {
	opts = opts.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, opts.BootTimeout)
	defer cancel()

	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("systemdtest: boot: running as uid %d, not root", os.Geteuid())
	}
	unshare, err := exec.LookPath(opts.Unshare)
	if err != nil {
		return nil, fmt.Errorf("systemdtest: boot: %w", err)
	}
	if fi, err := os.Stat(opts.Systemd); err != nil {
		return nil, fmt.Errorf("systemdtest: boot: systemd binary: %w", err)
	} else if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return nil, fmt.Errorf("systemdtest: boot: systemd binary %s is not executable", opts.Systemd)
	}
	masks := maskedUnits()
	for _, m := range opts.Mask {
		if err := checkUnitName(m); err != nil {
			return nil, err
		}
		masks = append(masks, m)
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	cgroups, err := cgroupMounts("healgate-systemdtest-" + hex.EncodeToString(id[:]))
	if err != nil {
		return nil, err
	}

	s := &System{opts: opts, out: &tailBuffer{max: 32 << 10}, done: make(chan struct{})}
	for _, c := range cgroups {
		if c.nested != "" {
			s.cgroups = append(s.cgroups, c.nested)
		}
	}
	s.cmd = exec.Command(unshare,
		"--pid", "--fork", "--kill-child=SIGKILL", "--mount", "--uts", "--ipc",
		"--mount-proc", "--propagation", "private",
		"/bin/sh", "-c", bootScript(opts.Systemd, cgroups, masks), "healgate-systemdtest")
	s.cmd.Dir = "/"
	s.cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	// If the test binary dies, unshare gets SIGKILL, and --kill-child
	// passes it on to the namespace's PID 1: nothing outlives the test.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	s.cmd.WaitDelay = 5 * time.Second
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("systemdtest: boot: %w", err)
	}
	go func() { // owned by s: Close waits for done
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()

	if err := s.boot(ctx); err != nil {
		stopErr := s.Close()
		return nil, fmt.Errorf("systemdtest: boot: %w%s\n--- output of unshare and systemd ---\n%s",
			err, joinedSuffix(stopErr), s.out.String())
	}
	return s, nil
}

func joinedSuffix(err error) string {
	if err == nil {
		return ""
	}
	return " (and stopping it: " + err.Error() + ")"
}

// boot waits for the namespace's PID 1, its bus and the end of its boot.
func (s *System) boot(ctx context.Context) error {
	children := fmt.Sprintf("/proc/%d/task/%d/children", s.cmd.Process.Pid, s.cmd.Process.Pid)
	err := s.poll(ctx, "the namespace's first process", func() (bool, error) {
		b, err := os.ReadFile(children)
		if err != nil {
			return false, nil // unshare is gone; poll reports its exit
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return false, nil
		}
		s.pid, err = strconv.Atoi(f[0])
		return err == nil, err
	})
	if err != nil {
		return err
	}
	sock := s.HostPath("/run/dbus/system_bus_socket")
	err = s.poll(ctx, "the system bus socket "+sock, func() (bool, error) {
		fi, err := os.Stat(sock)
		return err == nil && fi.Mode().Type() == fs.ModeSocket, nil
	})
	if err != nil {
		return err
	}
	var state string
	err = s.poll(ctx, "systemctl is-system-running", func() (bool, error) {
		out, _ := s.run(ctx, "systemctl", "is-system-running")
		state = strings.TrimSpace(out)
		return state == "running" || state == "degraded", nil
	})
	if err != nil {
		return fmt.Errorf("%w (last state %q)", err, state)
	}
	return nil
}

// poll calls cond every 20 ms until it reports true, returns an error, the
// system exits or ctx ends.
func (s *System) poll(ctx context.Context, what string, cond func() (bool, error)) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("waiting for %s: the system exited: %v", what, s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// PID is the process id of the test system's systemd as seen from the host.
func (s *System) PID() int { return s.pid }

// BusAddress is the D-Bus address of the test system's system bus, usable
// from the host by root: unix:path=/proc/<pid>/root/run/dbus/system_bus_socket.
// Pass it to the code under test, or set DBUS_SYSTEM_BUS_ADDRESS to it (with
// t.Setenv) for code that opens the system bus by itself. Processes run
// inside with Exec find the bus at its usual place.
func (s *System) BusAddress() string {
	return "unix:path=" + s.HostPath("/run/dbus/system_bus_socket")
}

// HostPath turns a path inside the test system into one the host can open
// (as root): /proc/<pid>/root followed by inside.
func (s *System) HostPath(inside string) string {
	return fmt.Sprintf("/proc/%d/root%s", s.pid, path.Clean("/"+inside))
}

// Exec runs a command inside the test system's PID and mount namespaces
// (nsenter), as root unless the command changes that itself (setpriv), with
// / as its working directory, and returns its combined output. An error
// carries the output.
func (s *System) Exec(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.CommandTimeout)
	defer cancel()
	return s.run(ctx, args...)
}

func (s *System) run(ctx context.Context, args ...string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("systemdtest: exec: no command")
	}
	nsargs := append([]string{"-t", strconv.Itoa(s.pid), "-p", "-m", "-u", "-i", "--wd=/", "--"}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", nsargs...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"}
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("systemdtest: %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return out.String(), nil
}

// Systemctl runs systemctl inside the test system with args and returns its
// output.
func (s *System) Systemctl(args ...string) (string, error) {
	return s.Exec(append([]string{"systemctl", "--no-pager"}, args...)...)
}

// WriteFile writes data to the absolute path inside the test system,
// creating its parent directories. Write only to the private places: /run,
// /tmp, /var/tmp, PolkitRulesDir; anything else is the host's.
func (s *System) WriteFile(inside string, data []byte, perm fs.FileMode) error {
	if !path.IsAbs(inside) {
		return fmt.Errorf("systemdtest: write %s: not an absolute path", inside)
	}
	p := s.HostPath(inside)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("systemdtest: %w", err)
	}
	if err := os.WriteFile(p, data, perm); err != nil {
		return fmt.Errorf("systemdtest: %w", err)
	}
	return nil
}

// InstallBinary copies the host file hostPath into the test system's BinDir
// under its base name, executable, and returns its path inside (for
// ExecStart= or Exec).
func (s *System) InstallBinary(hostPath string) (string, error) {
	in, err := os.Open(hostPath)
	if err != nil {
		return "", fmt.Errorf("systemdtest: install binary: %w", err)
	}
	defer in.Close()
	inside := path.Join(BinDir, filepath.Base(hostPath))
	out, err := os.OpenFile(s.HostPath(inside), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return "", fmt.Errorf("systemdtest: install binary: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return "", fmt.Errorf("systemdtest: install binary: %w", err)
	}
	if err := out.Close(); err != nil {
		return "", fmt.Errorf("systemdtest: install binary: %w", err)
	}
	return inside, nil
}

// InstallUnit writes a unit file named name to UnitDir inside the test
// system and reloads systemd.
func (s *System) InstallUnit(name, content string) error {
	if err := checkUnitName(name); err != nil {
		return err
	}
	if err := s.WriteFile(path.Join(UnitDir, name), []byte(content), 0o644); err != nil {
		return err
	}
	_, err := s.Systemctl("daemon-reload")
	return err
}

// RemoveUnit stops the unit, removes its file from UnitDir, reloads systemd
// and forgets the unit's failed state, so that a shared system is clean for
// the next test.
func (s *System) RemoveUnit(name string) error {
	if err := checkUnitName(name); err != nil {
		return err
	}
	_, stopErr := s.Systemctl("stop", name)
	err := os.Remove(s.HostPath(path.Join(UnitDir, name)))
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	_, reloadErr := s.Systemctl("daemon-reload")
	_, _ = s.Systemctl("reset-failed", name) // fails when the unit was not failed
	return errors.Join(stopErr, err, reloadErr)
}

// Start starts unit and waits for the job (systemctl start).
func (s *System) Start(unit string) error {
	_, err := s.Systemctl("start", unit)
	return err
}

// Stop stops unit and waits for the job (systemctl stop).
func (s *System) Stop(unit string) error {
	_, err := s.Systemctl("stop", unit)
	return err
}

// Kill sends signal (a name such as "SIGKILL" or a number) to the unit's
// main process, as systemctl kill --kill-whom=main does.
func (s *System) Kill(unit, signal string) error {
	_, err := s.Systemctl("kill", "--kill-whom=main", "--signal="+signal, unit)
	return err
}

// Show returns the value of one property of unit (systemctl show -P).
func (s *System) Show(unit, property string) (string, error) {
	out, err := s.Systemctl("show", "--value", "--property="+property, unit)
	return strings.TrimSpace(out), err
}

// MainPID returns the unit's main process id inside the test system's PID
// namespace (what systemd and D-Bus report), 0 if it has none.
func (s *System) MainPID(unit string) (int, error) {
	v, err := s.Show(unit, "MainPID")
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("systemdtest: MainPID of %s: %w", unit, err)
	}
	return pid, nil
}

// StartPolkit starts polkit.service inside the test system. Write rules to
// PolkitRulesDir first: polkitd reloads them on change, but asynchronously.
func (s *System) StartPolkit() error {
	return s.Start("polkit.service")
}

// Close powers the test system off and waits until every process of it has
// exited: "systemctl poweroff", then, if the system is still up after
// StopTimeout, SIGRTMIN+4 to its PID 1 (systemd's "poweroff" signal), then
// SIGKILL, which ends the whole PID namespace. It then removes the cgroups
// made for it. Processes are signalled by pid only, never by name. Close
// may be called more than once; later calls return the first result.
func (s *System) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.stop() })
	return s.closeErr
}

func (s *System) stop() error {
	var errs []error
	// Without a PID 1 yet (a boot that failed early) there is nothing to
	// power off: go straight to SIGKILL.
	if s.pid > 0 && !s.exited() {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.StopTimeout)
		// The command may fail when the bus goes away under it; the wait
		// below decides.
		_, _ = s.run(ctx, "systemctl", "poweroff")
		cancel()
		if !s.waitExit(s.opts.StopTimeout) {
			errs = append(errs, errors.New("systemctl poweroff did not stop the system"))
			_ = syscall.Kill(s.pid, sigRTMIN+4)
		}
	}
	if s.pid == 0 || !s.waitExit(s.opts.StopTimeout) {
		if s.pid > 0 {
			_ = syscall.Kill(s.pid, syscall.SIGKILL)
		}
		_ = s.cmd.Process.Kill()
		if !s.waitExit(s.opts.StopTimeout) {
			return errors.Join(append(errs, fmt.Errorf("the system (pid %d) did not exit after SIGKILL", s.pid))...)
		}
	}
	for _, c := range s.cgroups {
		if err := removeCgroupTree(c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sigRTMIN is the first real-time signal as glibc and systemd number them
// (the kernel's 32 and 33 are taken by glibc).
const sigRTMIN = syscall.Signal(34)

func (s *System) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *System) waitExit(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.done:
		return true
	case <-t.C:
		return false
	}
}

// Shared is one test system shared by the tests of a package: the first Get
// boots it, later ones reuse it, and the package's TestMain closes it after
// m.Run. It is meant to be a package-level variable of a test package (the
// one place such state is acceptable, as testing's own flags are):
//
//	var sys systemdtest.Shared
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		if err := sys.Close(); err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			code = 1
//		}
//		os.Exit(code)
//	}
//
// Tests sharing a system must not disturb each other: give units names of
// their own and remove them (RemoveUnit) in t.Cleanup.
type Shared struct {
	// Options configure the boot; set them before the first Get.
	Options Options

	mu     sync.Mutex
	sys    *System
	err    error
	booted bool
}

// Get returns the shared system, booting it on the first call. If the boot
// failed, Get fails t with the reason (every later Get does too).
func (sh *Shared) Get(t testing.TB) *System {
	t.Helper()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if !sh.booted {
		sh.booted = true
		opts := sh.Options.withDefaults()
		ctx, cancel := context.WithTimeout(context.Background(), opts.BootTimeout)
		sh.sys, sh.err = Start(ctx, opts)
		cancel()
	}
	if sh.err != nil {
		t.Fatalf("%v\n%s", sh.err, bootHint)
	}
	return sh.sys
}

// Close stops the shared system if one was booted.
func (sh *Shared) Close() error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.sys == nil {
		return nil
	}
	return sh.sys.Close()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
