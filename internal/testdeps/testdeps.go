// Package testdeps starts private, throw-away instances of Document Server's
// dependencies — PostgreSQL, Redis, RabbitMQ — for tests, on free loopback
// ports, and stops them when the test ends.
//
// The servers are the real Debian packages. A missing binary fails the test
// loudly with the apt-get command that installs it; it never skips. Each
// server runs in its own process group, so Freeze (SIGSTOP) and Thaw
// (SIGCONT) reach every process of it: a frozen server still has its
// listening socket, so the kernel keeps completing TCP handshakes while
// nothing answers — the failure that only protocol-level probes see.
package testdeps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is one running dependency started by StartPostgres, StartRedis or
// StartRabbitMQ. Its methods are safe for concurrent use. The test's cleanup
// stops it; Stop may also be called earlier.
type Server struct {
	// Addr is the loopback host:port the server listens on.
	Addr string
	// Name is the kind of server: "postgres", "redis" or "rabbitmq".
	Name string

	t       testing.TB
	cmd     *exec.Cmd
	waited  chan struct{} // closed when cmd.Wait returned
	log     *bytes.Buffer // combined output; read only after waited is closed
	logMu   sync.Mutex
	stopSig syscall.Signal
	after   func() // extra cleanup after the process exited (epmd)

	mu      sync.Mutex
	frozen  bool
	stopped bool
}

// Freeze stops every process of the server with SIGSTOP. The port still
// accepts TCP connections; nothing answers them.
func (s *Server) Freeze() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.frozen {
		return
	}
	if err := syscall.Kill(-s.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		s.t.Fatalf("testdeps: freeze %s: %v", s.Name, err)
	}
	s.frozen = true
}

// Thaw resumes a frozen server with SIGCONT.
func (s *Server) Thaw() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.thawLocked()
}

func (s *Server) thawLocked() {
	if s.stopped || !s.frozen {
		return
	}
	if err := syscall.Kill(-s.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		s.t.Errorf("testdeps: thaw %s: %v", s.Name, err)
	}
	s.frozen = false
}

// Stop stops the server and waits for it to exit: its stop signal first,
// then, after 30 s, SIGKILL to the whole process group. It is idempotent.
func (s *Server) Stop() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.thawLocked()
	s.stopped = true
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, s.stopSig)
	select {
	case <-s.waited:
	case <-time.After(30 * time.Second):
		s.t.Errorf("testdeps: %s did not stop within 30s; killing it", s.Name)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-s.waited
	}
	// Children that outlived the leader (none expected) go too.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	if s.after != nil {
		s.after()
	}
}

// Exited reports whether the server process has exited.
func (s *Server) Exited() bool {
	select {
	case <-s.waited:
		return true
	default:
		return false
	}
}

// output returns what the server wrote so far, for failure messages.
func (s *Server) output() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	out := s.log.String()
	const max = 4000
	if len(out) > max {
		out = "..." + out[len(out)-max:]
	}
	return out
}

// lockedWriter serializes writes to the log buffer from exec's copy goroutines.
type lockedWriter struct{ s *Server }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.s.logMu.Lock()
	defer w.s.logMu.Unlock()
	return w.s.log.Write(p)
}

// start runs cmd in its own process group and registers its Stop as cleanup.
func start(t testing.TB, name, addr string, cmd *exec.Cmd, stopSig syscall.Signal) *Server {
	t.Helper()
	s := &Server{Addr: addr, Name: name, t: t, cmd: cmd, waited: make(chan struct{}), log: new(bytes.Buffer), stopSig: stopSig}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.Stdout = lockedWriter{s}
	cmd.Stderr = lockedWriter{s}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testdeps: start %s: %v", name, err)
	}
	go func() {
		_ = cmd.Wait()
		close(s.waited)
	}()
	t.Cleanup(s.Stop)
	return s
}

// waitReady polls ready until it reports nil, the server exits, or timeout
// passes; the last two fail the test with the server's output.
func (s *Server) waitReady(timeout time.Duration, ready func(ctx context.Context) error) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 20 * time.Millisecond
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = ready(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-s.waited:
			s.t.Fatalf("testdeps: %s exited before it was ready (%v); output:\n%s", s.Name, err, s.output())
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
	s.t.Fatalf("testdeps: %s not ready within %v: %v; output:\n%s", s.Name, timeout, err, s.output())
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testdeps: free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// lookBin finds a server binary on PATH or in extra glob patterns, failing
// the test with the install command when it is missing.
func lookBin(t testing.TB, name, pkg string, globs ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, g := range globs {
		if m, _ := filepath.Glob(g); len(m) > 0 {
			return m[len(m)-1]
		}
	}
	t.Fatalf("testdeps: %s not found; install it: apt-get update && apt-get install -y %s", name, pkg)
	return ""
}

// tempDir makes a private directory that outlives t.TempDir's 0700 parents
// (so another user can use it), owned by uid/gid, removed at cleanup.
func tempDir(t testing.TB, prefix string, uid, gid int) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("testdeps: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if uid >= 0 {
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("testdeps: %v", err)
		}
	}
	return dir
}

// StartPostgres starts a private PostgreSQL (initdb into a temporary
// directory, trust authentication, fsync off) on a free loopback port and
// waits until it answers an SSLRequest. Run as root, the server runs as the
// "postgres" user, since PostgreSQL refuses root.
func StartPostgres(t testing.TB) *Server {
	t.Helper()
	initdb := lookBin(t, "initdb", "postgresql", "/usr/lib/postgresql/*/bin/initdb")
	postgres := lookBin(t, "postgres", "postgresql", "/usr/lib/postgresql/*/bin/postgres")
	uid, gid := -1, -1
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("testdeps: running as root needs the postgres user (apt-get install -y postgresql): %v", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	dir := tempDir(t, "testdeps-pg-", uid, gid)
	data := filepath.Join(dir, "data")
	init := exec.Command(initdb, "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "--no-instructions")
	init.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	init.Dir = dir
	if out, err := init.CombinedOutput(); err != nil {
		t.Fatalf("testdeps: initdb: %v\n%s", err, out)
	}
	port := FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(postgres, "-D", data, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "logging_collector=off")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Dir = dir
	// SIGINT is PostgreSQL's fast shutdown (SIGTERM waits for clients).
	s := start(t, "postgres", addr, cmd, syscall.SIGINT)
	s.waitReady(30*time.Second, func(ctx context.Context) error {
		return exchange(ctx, addr, []byte{0, 0, 0, 8, 4, 210, 22, 47}, "S", "N")
	})
	return s
}

// StartRedis starts a private redis-server on a free loopback port without
// persistence, with extraArgs appended (for example "--requirepass", "x"),
// and waits until it answers PING (+PONG or -NOAUTH).
func StartRedis(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	bin := lookBin(t, "redis-server", "redis-server")
	dir := tempDir(t, "testdeps-redis-", -1, -1)
	port := FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, "--daemonize", "no", "--logfile", ""}, extraArgs...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	s := start(t, "redis", addr, cmd, syscall.SIGTERM)
	s.waitReady(20*time.Second, func(ctx context.Context) error {
		return exchange(ctx, addr, []byte("PING\r\n"), "+PONG", "-NOAUTH")
	})
	return s
}

// StartRabbitMQ starts a private RabbitMQ node (no plugins, its own node
// name, Erlang cookie, mnesia and log directories, distribution port and
// epmd port, all on loopback) and waits until it answers the AMQP protocol
// header. Booting takes several seconds. At cleanup the node and its private
// epmd are stopped.
func StartRabbitMQ(t testing.TB) *Server {
	t.Helper()
	bin := lookBin(t, "rabbitmq-server", "rabbitmq-server", "/usr/lib/rabbitmq/bin/rabbitmq-server")
	if p, err := filepath.EvalSymlinks(bin); err == nil && filepath.Base(p) == "rabbitmq-script-wrapper" {
		// Debian's wrapper switches to the rabbitmq user and fixed paths.
		bin = "/usr/lib/rabbitmq/bin/rabbitmq-server"
	}
	epmdBin := lookBin(t, "epmd", "erlang-base")
	dir := tempDir(t, "testdeps-rabbit-", -1, -1)
	port, distPort, epmdPort := FreePort(t), FreePort(t), FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := os.WriteFile(filepath.Join(dir, "enabled_plugins"), []byte("[].\n"), 0o644); err != nil {
		t.Fatalf("testdeps: %v", err)
	}
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"HOME="+dir, // the Erlang cookie lives here
		"RABBITMQ_NODENAME=testdeps"+strconv.Itoa(port)+"@localhost",
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(port),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(distPort),
		"ERL_EPMD_PORT="+strconv.Itoa(epmdPort),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_LOGS=-",
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "pid"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
	)
	s := start(t, "rabbitmq", addr, cmd, syscall.SIGTERM)
	s.after = func() {
		// The node started a private epmd (daemonized, outside our group).
		kill := exec.Command(epmdBin, "-port", strconv.Itoa(epmdPort), "-kill")
		kill.Env = append(os.Environ(), "ERL_EPMD_ADDRESS=127.0.0.1")
		_ = kill.Run()
	}
	s.waitReady(90*time.Second, func(ctx context.Context) error {
		return exchange(ctx, addr, []byte("AMQP\x00\x00\x09\x01"), "\x01\x00\x00")
	})
	return s
}

// errNotReady is returned by exchange for an answer with the wrong prefix.
var errNotReady = errors.New("unexpected answer")

// exchange writes send to addr and checks the answer starts with one of
// prefixes. It is a readiness check independent of the code under test.
func exchange(ctx context.Context, addr string, send []byte, prefixes ...string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write(send); err != nil {
		return err
	}
	buf := make([]byte, 16)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	for _, p := range prefixes {
		if bytes.HasPrefix(buf[:n], []byte(p)) {
			return nil
		}
	}
	return fmt.Errorf("%w %q", errNotReady, buf[:n])
}
