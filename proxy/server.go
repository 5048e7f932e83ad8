package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/healgate/healgate/config"
)

// upgradeDrainTimeout bounds the wait, after upgraded connections were
// closed at shutdown, for their handlers to return.
const upgradeDrainTimeout = 5 * time.Second

// Serve serves the proxy on ln until ctx is done, then shuts down
// gracefully; see the package-level Serve, which it calls with the proxy as
// the handler and cfg.Server's settings. It closes idle upstream connections
// when it returns.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	defer p.CloseIdleConnections()
	return Serve(ctx, ln, p, p.cfg.Server, p.log)
}

// CloseIdleConnections closes the idle keep-alive connections to every
// upstream. A Proxy replaced by a reload calls it once its requests are done.
func (p *Proxy) CloseIdleConnections() { p.pool.closeIdle() }

// Serve serves h, normally a *Proxy or a handler that delegates to the
// current one (a reload swaps proxies under one listener), on ln until ctx
// is done, then shuts down gracefully: it stops accepting, lets in-flight
// requests finish for at most cfg.ShutdownTimeout, cuts what is left, and
// closes upgraded (WebSocket) connections, which http.Server.Shutdown
// neither closes nor waits for. It closes ln. It returns nil after a clean
// stop, an error wrapping context.DeadlineExceeded when requests had to be
// cut, or the listener's error if serving failed. log receives the server's
// own errors at debug level; nil discards them.
//
// The server is hardened: ReadHeaderTimeout (cfg.HeaderTimeout),
// IdleTimeout (cfg.KeepaliveTimeout) and MaxHeaderBytes are set, but no
// ReadTimeout or WriteTimeout, which would cut WebSockets and long
// downloads. HTTP/1.0 (nginx's default for proxy_pass) and HTTP/1.1 are
// accepted. Upgraded connections are tracked only for requests a *Proxy
// serves.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, cfg config.Server, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ct := newConnTracker()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.HeaderTimeout,
		IdleTimeout:       cfg.KeepaliveTimeout,
		MaxHeaderBytes:    int(cfg.MaxHeaderBytes),
		ConnState:         ct.connState,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		// Requests must outlive ctx during the graceful shutdown.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ConnContext: func(c context.Context, conn net.Conn) context.Context {
			return context.WithValue(c, connInfoKey{}, &connInfo{c: conn, t: ct})
		},
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		ct.closeAll()
		ct.wait(upgradeDrainTimeout)
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		_ = srv.Close()
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if n := ct.closeAll(); n > 0 {
		log.Info("closed upgraded connections at shutdown", "count", n)
	}
	ct.wait(upgradeDrainTimeout)
	if err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	return nil
}

// connInfoKey is the context key of a connection's *connInfo.
type connInfoKey struct{}

// connInfo ties a request to its client connection and that connection's
// tracker.
type connInfo struct {
	c net.Conn
	t *connTracker
}

func connInfoFrom(ctx context.Context) *connInfo {
	ci, _ := ctx.Value(connInfoKey{}).(*connInfo)
	return ci
}

// connTracker tracks one server's hijacked (upgraded) client connections and
// the handlers still tunnelling them, so Serve can close and await them.
type connTracker struct {
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
	handlers int
	idle     chan struct{} // closed when handlers drops to zero
}

func newConnTracker() *connTracker {
	return &connTracker{conns: make(map[net.Conn]struct{})}
}

// connState is the http.Server's ConnState hook: it records hijacked conns.
func (t *connTracker) connState(c net.Conn, s http.ConnState) {
	if s != http.StateHijacked {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		_ = c.Close()
		return
	}
	t.conns[c] = struct{}{}
}

// upgradeStarted counts a handler that is about to tunnel an upgrade.
func (t *connTracker) upgradeStarted() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.handlers == 0 {
		t.idle = make(chan struct{})
	}
	t.handlers++
}

// upgradeEnded forgets c (its handler closed it) and the handler.
func (t *connTracker) upgradeEnded(c net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c)
	t.handlers--
	if t.handlers == 0 {
		close(t.idle)
	}
}

// closeAll closes every tracked connection, and any hijacked later, and
// returns how many it closed.
func (t *connTracker) closeAll() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	n := len(t.conns)
	for c := range t.conns {
		_ = c.Close()
	}
	return n
}

// wait waits, at most d, for the tunnelling handlers to return.
func (t *connTracker) wait(d time.Duration) {
	t.mu.Lock()
	if t.handlers == 0 {
		t.mu.Unlock()
		return
	}
	idle := t.idle
	t.mu.Unlock()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-idle:
	case <-timer.C:
	}
}
