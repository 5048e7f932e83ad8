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

// newConnGrace is how long a graceful shutdown waits for a connection
// accepted before it to send its first request (net/http's Shutdown takes
// a connection silent for 5 s as idle, and so do we).
const newConnGrace = 5 * time.Second

// Serve serves the proxy on ln until ctx is done, then shuts down
// gracefully; see the package-level Serve, which it calls with the proxy as
// the handler and cfg.Server's settings. It closes idle upstream connections
// when it returns.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	defer p.CloseIdleConnections()
	return Serve(ctx, ln, p, p.cfg.Server, p.log)
}

// CloseIdleConnections closes the idle keep-alive connections to every
// upstream. healgate calls it on a Proxy replaced by a reload; connections
// busy at that moment close once idle for timeouts.idle.
func (p *Proxy) CloseIdleConnections() { p.pool.closeIdle() }

// Serve serves h, normally a *Proxy or a handler that delegates to the
// current one (a reload swaps proxies under one listener), on ln until ctx
// is done, then shuts down gracefully: it stops accepting, turns
// keep-alives off, serves the first request of every connection already
// accepted (one silent for 5 s is closed), lets in-flight requests finish,
// all for at most cfg.ShutdownTimeout, cuts what is left, and
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
	// http.Server.Shutdown drops, unanswered, a request it finishes reading
	// after the shutdown began (conn.serve returns when shuttingDown() right
	// after readRequest). nginx opens a connection per request and writes
	// the request at once, so a connection accepted just before the stop
	// would be closed unanswered: nginx's "upstream prematurely closed
	// connection", a 502, in every restart under load. So first stop
	// accepting (with socket activation new connections wait in systemd's
	// socket), turn keep-alives off (every connection closes after its
	// response), and let the accepted connections send their first request
	// and be served; one silent for newConnGrace is left to Shutdown, which
	// then closes it, as net/http treats it: idle.
	srv.SetKeepAlivesEnabled(false)
	_ = ln.Close()
	serr := <-errc // Serve returns once Accept fails on the closed listener
	ct.waitFresh(sctx, newConnGrace)
	err := srv.Shutdown(sctx)
	if err != nil {
		_ = srv.Close()
	}
	if !errors.Is(serr, net.ErrClosed) && !errors.Is(serr, http.ErrServerClosed) && err == nil {
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
	fresh    map[net.Conn]time.Time // StateNew conns: when they were accepted
	closed   bool
	handlers int
	idle     chan struct{} // closed when handlers drops to zero
}

func newConnTracker() *connTracker {
	return &connTracker{conns: make(map[net.Conn]struct{}), fresh: make(map[net.Conn]time.Time)}
}

// waitFresh waits until every connection still waiting for its first
// request has waited grace, or ctx ends. It polls, as http.Server.Shutdown
// does: connections in StateNew usually leave it within microseconds.
func (t *connTracker) waitFresh(ctx context.Context, grace time.Duration) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		t.mu.Lock()
		waiting := false
		for _, at := range t.fresh {
			if time.Since(at) < grace {
				waiting = true
				break
			}
		}
		t.mu.Unlock()
		if !waiting {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// connState is the http.Server's ConnState hook: it records hijacked conns,
// and the accepted ones that have not sent their first request yet.
func (t *connTracker) connState(c net.Conn, s http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s == http.StateNew {
		t.fresh[c] = time.Now()
		return
	}
	delete(t.fresh, c)
	if s != http.StateHijacked {
		return
	}
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
