// Package dsemutest runs the Document Server emulator (internal/dsemu) for
// a test, on a free loopback port, until the test ends.
package dsemutest

import (
	"context"
	"net"
	"testing"

	"github.com/healgate/healgate/internal/dsemu"
)

// Start serves an emulator built from opts on 127.0.0.1 with a port the
// kernel picks, and returns it with its "host:port". The emulator is
// stopped, and waited for, when t's test ends; an error from it fails t.
func Start(t testing.TB, opts dsemu.Options) (*dsemu.Server, string) {
	t.Helper()
	srv := dsemu.New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		t.Fatalf("emulator %s: %v", opts.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("emulator %s: %v", opts.Name, err)
		}
	})
	return srv, ln.Addr().String()
}
