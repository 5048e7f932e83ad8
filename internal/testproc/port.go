package testproc

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ErrNotListening is wrapped by WaitListening's error when its timeout
// passes before the address accepts a connection.
var ErrNotListening = errors.New("not accepting connections")

// startAttempts bounds how often StartOnFreePort picks a new port.
const startAttempts = 3

// FreeAddr returns a loopback address (127.0.0.1:port) with a port the
// kernel just handed out and released. Another process may take it before
// the caller binds it; StartOnFreePort retries when that happens.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// StartOnFreePort starts a server with start(addr) on a free loopback
// address (FreeAddr) and waits up to 15s until the address accepts. If the
// process fails because its port was taken meanwhile (its output says
// "address already in use"), it stops it and tries again with a new address,
// at most 3 times. It returns the process and its address; when no attempt
// succeeds it fails t with every attempt's error, what naming the server.
func StartOnFreePort(t testing.TB, what string, start func(addr string) *Proc) (*Proc, string) {
	t.Helper()
	var errs []error
	for range startAttempts {
		addr := FreeAddr(t)
		p := start(addr)
		err := p.WaitListening(addr, 15*time.Second)
		if err == nil {
			return p, addr
		}
		errs = append(errs, err)
		p.Stop(5 * time.Second)
		// Only a port taken meanwhile is worth another port; the child's
		// own words are the only account of why it exited.
		if !strings.Contains(p.Output(), "address already in use") {
			break
		}
	}
	t.Fatalf("start %s: %v", what, errors.Join(errs...))
	return nil, ""
}

// FreePort is FreeAddr's port, as a number.
func FreePort(t testing.TB) int {
	t.Helper()
	_, port, err := net.SplitHostPort(FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
