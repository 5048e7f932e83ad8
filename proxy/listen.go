package proxy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"
)

// Listen opens a listener for addr:
//
//   - "host:port": TCP.
//   - "unix:/path": a unix socket. A stale socket file (nothing accepts on
//     it) is removed first; a live one is an error, as is a path that is not
//     a socket.
//   - "systemd:NAME": the one socket in passed under NAME: the sockets systemd
//     passed by socket activation, keyed by FileDescriptorName, as go-systemd's
//     activation.ListenersWithNames returns them (call it once per process:
//     it takes every descriptor). It is an error if there is none, or more
//     than one, of that name.
//
// ctx bounds opening the listener, not its life.
func Listen(ctx context.Context, addr string, passed map[string][]net.Listener) (net.Listener, error) {
	switch {
	case strings.HasPrefix(addr, "unix:"):
		return listenUnix(ctx, strings.TrimPrefix(addr, "unix:"))
	case strings.HasPrefix(addr, "systemd:"):
		name := strings.TrimPrefix(addr, "systemd:")
		switch lns := passed[name]; len(lns) {
		case 1:
			return lns[0], nil
		case 0:
			return nil, fmt.Errorf("listen %s: systemd passed no socket named %q (FileDescriptorName= in the .socket unit; %d names passed)", addr, name, len(passed))
		default:
			return nil, fmt.Errorf("listen %s: systemd passed %d sockets named %q, want one", addr, len(lns), name)
		}
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
