package proxy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Listen opens a listener for addr:
//
//   - "host:port": TCP.
//   - "unix:/path": a unix socket. A stale socket file (nothing accepts on
//     it) is removed first; a live one is an error, as is a path that is not
//     a socket.
//   - "systemd:NAME": the socket systemd passed with FileDescriptorName=NAME
//     (socket activation). Each name can be claimed once per process, so the
//     proxy and the admin listener may each claim their own.
//
// ctx bounds opening the listener, not its life.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	switch {
	case strings.HasPrefix(addr, "unix:"):
		return listenUnix(ctx, strings.TrimPrefix(addr, "unix:"))
	case strings.HasPrefix(addr, "systemd:"):
		return listenSystemd(strings.TrimPrefix(addr, "systemd:"))
	default:
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		return ln, nil
	}
}

func listenUnix(ctx context.Context, path string) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("listen unix: empty path")
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("listen unix:%s: %w", path, err)
	case fi.Mode()&fs.ModeSocket == 0:
		return nil, fmt.Errorf("listen unix:%s: exists and is not a socket", path)
	default:
		var d net.Dialer
		c, derr := d.DialContext(ctx, "unix", path)
		if derr == nil {
			_ = c.Close()
			return nil, fmt.Errorf("listen unix:%s: %w", path, syscall.EADDRINUSE)
		}
		if !errors.Is(derr, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("listen unix:%s: probe existing socket: %w", path, derr)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen unix:%s: remove stale socket: %w", path, err)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen unix:%s: %w", path, err)
	}
	return ln, nil
}

// listenFdsStart is the first file descriptor systemd passes (SD_LISTEN_FDS_START).
const listenFdsStart = 3

// listenSystemd returns the listener systemd passed under name, following
// sd_listen_fds(3): LISTEN_PID must be this process, LISTEN_FDS counts the
// descriptors from 3 and LISTEN_FDNAMES names them. It deliberately does not
// use go-systemd's activation.ListenersWithNames: that takes every
// descriptor and unsets the environment on its first call, so a second
// listener (the admin one) could not be found.
func listenSystemd(name string) (net.Listener, error) {
	if name == "" {
		return nil, errors.New("listen systemd: empty name")
	}
	if pid, err := strconv.Atoi(os.Getenv("LISTEN_PID")); err != nil || pid != os.Getpid() {
		return nil, fmt.Errorf("listen systemd:%s: no sockets passed to this process (LISTEN_PID)", name)
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n <= 0 {
		return nil, fmt.Errorf("listen systemd:%s: no sockets passed (LISTEN_FDS)", name)
	}
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	for i := 0; i < n && i < len(names); i++ {
		if names[i] != name {
			continue
		}
		fd := listenFdsStart + i
		syscall.CloseOnExec(fd)
		f := os.NewFile(uintptr(fd), name)
		ln, err := net.FileListener(f) // dups the descriptor
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("listen systemd:%s: fd %d: %w", name, fd, err)
		}
		return ln, nil
	}
	return nil, fmt.Errorf("listen systemd:%s: no socket with that FileDescriptorName among %d passed", name, n)
}
