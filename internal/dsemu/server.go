// Package dsemu emulates ONLYOFFICE Document Server (DocService) for tests and
// demos: its endpoints (health checks, /baseurl, socket.io, conversions,
// uploads, the drain endpoint) and its failure modes (a false health check,
// a hung event loop, slow headers, reset connections, 5xx answers, a crash,
// waiting for RabbitMQ before listening).
//
// A Server is an http.Handler. Mount it on any server (httptest.NewServer
// works for every mode but crash-after), or let it own its listener with
// Listen and Serve. Faults are switched at run time with SetMode or
// "POST /_dsemu/mode"; what arrived is counted (Stats, "GET /_dsemu/stats"),
// so a test can assert that a request reached the upstream exactly once.
//
// Endpoints (every fault mode applies to all of them, except /_dsemu/*):
//
//	GET  /healthcheck                 200 "true" ("false" in mode false)
//	GET  /index.html                  200 small HTML (liveness)
//	GET  /baseurl                     the base URL DocService would build
//	*    [/VERSION]/doc/KEY/c/?EIO=4  socket.io: Engine.IO polling or a WebSocket echo
//	*    /ConvertService.ashx, /converter, /docbuilder   conversions
//	POST|PUT /downloadas/..., /upload/...                 streamed uploads
//	PUT|DELETE /internal/cluster/inactive                 drain on/off
//	GET  /_dsemu/stats, POST /_dsemu/stats/reset, GET|POST /_dsemu/mode
//
// Every answer carries "X-Dsemu-Name: NAME", so a test can tell which
// emulator served it.
package dsemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// ErrCrashed is returned by Serve when a crash-after mode fired.
var ErrCrashed = errors.New("crashed (mode crash-after)")

// Defaults of Options.
const (
	DefaultPollHold     = 25 * time.Second // socket.io's pingInterval
	DefaultWaitInterval = 500 * time.Millisecond
)

// Options configure a Server. The zero value is a working "ok" emulator.
type Options struct {
	// Name identifies the emulator in Stats and in the X-Dsemu-Name header.
	// Default "dsemu".
	Name string

	// Mode is the initial fault mode. Default ok.
	Mode Mode

	// ConvertDelay is how long a conversion request waits, after its body
	// was read, before it is answered. Default 0. A request's "delay" query
	// parameter (Go duration, "?delay=90ms") overrides it.
	ConvertDelay time.Duration

	// ConvertError, when not zero, makes every conversion answer 200
	// {"error":ConvertError} (Document Server's failed conversion, e.g. -4
	// "download error"). Default 0: conversions succeed. A request's "error"
	// query parameter overrides it.
	ConvertError int

	// PollHold is how long a socket.io polling GET with a "sid" is held
	// before it is answered with a ping packet "2". Default 25s; a negative
	// value answers at once.
	PollHold time.Duration

	// History is how many recent requests Stats keeps. Default 64; a
	// negative value keeps none.
	History int

	// WaitFor, when set ("host:port"), makes Listen wait until a TCP
	// connection to it succeeds before listening, as DocService waits for
	// RabbitMQ. Default "": listen at once.
	WaitFor string

	// WaitInterval is the pause between two WaitFor attempts, and the
	// timeout of each. Default 500ms.
	WaitInterval time.Duration

	// Logger receives mode changes, crashes and server errors. Default: none.
	Logger *slog.Logger
}

// Server is an emulated Document Server. Create it with New; it is safe for
// concurrent use. A Server serves once: after Close (or after Serve
// returned) it drops every request.
type Server struct {
	opts Options
	log  *slog.Logger

	stopCtx context.Context    // done when the server stops or crashes
	stop    context.CancelFunc // ends hangs, delays and WebSockets
	crashed chan struct{}      // closed when a crash-after fired
	crashMu sync.Once

	mu           sync.Mutex
	mode         Mode
	modeChanged  chan struct{} // closed and replaced by every SetMode
	crashTimer   *time.Timer   // pending crash-after, if any
	convertDelay time.Duration
	convertError int
	pollHold     time.Duration
	count        counter
	sids         int64
	active       int           // handlers running
	closed       bool          // no new handlers
	idle         chan struct{} // closed when closed and active reaches 0
}

var _ http.Handler = (*Server)(nil)

// New returns a Server configured by opts (see Options for defaults).
func New(opts Options) *Server {
	if opts.Name == "" {
		opts.Name = "dsemu"
	}
	if opts.PollHold == 0 {
		opts.PollHold = DefaultPollHold
	}
	if opts.History == 0 {
		opts.History = DefaultHistory
	}
	if opts.WaitInterval <= 0 {
		opts.WaitInterval = DefaultWaitInterval
	}
	if opts.Mode.Kind == "" {
		opts.Mode.Kind = KindOK
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:         opts,
		log:          log.With("name", opts.Name),
		crashed:      make(chan struct{}),
		modeChanged:  make(chan struct{}),
		convertDelay: opts.ConvertDelay,
		convertError: opts.ConvertError,
		pollHold:     opts.PollHold,
		count:        newCounter(opts.History),
		idle:         make(chan struct{}),
	}
	s.stopCtx, s.stop = context.WithCancel(context.Background())
	s.SetMode(opts.Mode)
	return s
}

// Name returns the emulator's name (Options.Name).
func (s *Server) Name() string { return s.opts.Name }

// Mode returns the current fault mode.
func (s *Server) Mode() Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// SetMode switches the fault mode. Requests hanging in mode hang are then
// served under the new mode. A crash-after mode arms a timer from now; any
// later SetMode disarms it.
func (s *Server) SetMode(m Mode) {
	if m.Kind == "" {
		m.Kind = KindOK
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = m
	close(s.modeChanged)
	s.modeChanged = make(chan struct{})
	if s.crashTimer != nil {
		s.crashTimer.Stop()
		s.crashTimer = nil
	}
	if m.Kind == KindCrashAfter && !s.closed {
		s.crashTimer = time.AfterFunc(m.Delay, s.crash)
	}
	s.log.Info("mode set", "mode", m.String())
}

// crash marks the server crashed: Serve sees it and exits, and ServeHTTP
// drops every request from now on.
func (s *Server) crash() {
	s.crashMu.Do(func() {
		s.log.Warn("crashing (mode crash-after)")
		s.stop() // first: whoever sees crashed closed must find requests dropped
		close(s.crashed)
	})
}

// Crashed returns a channel closed when a crash-after mode fires. It is how
// a caller that mounts the Server on its own http.Server learns of the crash.
func (s *Server) Crashed() <-chan struct{} { return s.crashed }

// Stats returns a copy of what the server received (see Stats for when a
// request is counted).
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.count.snapshot()
	st.Name = s.opts.Name
	st.Mode = s.mode.String()
	return st
}

// ResetStats clears the counts and the recent requests; the drain state
// (Stats.Inactive) is kept.
func (s *Server) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	inactive := s.count.inactive
	s.count = newCounter(s.opts.History)
	s.count.inactive = inactive
}

// Close stops the server's handlers: hanging and delayed requests are
// dropped, WebSockets are closed, blocked body reads and writes are cut,
// and new requests are dropped. It waits until every handler has returned.
// Call it before closing the http.Server it is mounted on (httptest.Server
// waits for its handlers). Close does not close listeners: Serve does.
// It is safe to call more than once.
func (s *Server) Close() {
	s.shutdown()
	<-s.idle
}

// shutdown stops handlers without waiting for them.
func (s *Server) shutdown() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		if s.crashTimer != nil {
			s.crashTimer.Stop()
			s.crashTimer = nil
		}
		if s.active == 0 {
			close(s.idle)
		}
	}
	s.mu.Unlock()
	s.stop()
}

// enter registers a running handler; it reports false once the server is
// closed or crashed.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.stopCtx.Err() != nil {
		return false
	}
	s.active++
	return true
}

// leave unregisters a handler registered by enter.
func (s *Server) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active--
	if s.closed && s.active == 0 {
		close(s.idle)
	}
}

// Listen waits for Options.WaitFor to accept TCP connections (if set),
// polling every Options.WaitInterval, then listens on addr ("host:port";
// port 0 picks one). It returns ctx's error if ctx ends first.
func (s *Server) Listen(ctx context.Context, addr string) (net.Listener, error) {
	if s.opts.WaitFor != "" {
		if err := waitFor(ctx, s.opts.WaitFor, s.opts.WaitInterval, s.log); err != nil {
			return nil, err
		}
	}
	var lc net.ListenConfig
	return lc.Listen(ctx, "tcp", addr)
}

// waitFor returns once a TCP connection to addr succeeds, or ctx's error.
func waitFor(ctx context.Context, addr string, interval time.Duration, log *slog.Logger) error {
	d := net.Dialer{Timeout: interval}
	t := time.NewTicker(interval)
	defer t.Stop()
	for attempt := 1; ; attempt++ {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			log.Info("wait-for: dependency accepts", "addr", addr, "attempts", attempt)
			return nil
		}
		if attempt == 1 {
			log.Info("wait-for: waiting before listening", "addr", addr, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", addr, ctx.Err())
		case <-t.C:
		}
	}
}

// Serve serves ln until ctx ends (it then returns nil), the crash-after
// mode fires (ErrCrashed), or ln fails (that error). In every case it
// closes ln, drops every connection, and returns only after every handler
// has returned. Serve closes the Server: it serves once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()

	var err error
	select {
	case <-ctx.Done():
	case <-s.crashed:
		err = ErrCrashed
	case err = <-errc:
		errc <- err
	}
	s.shutdown()
	hs.Close() // closes ln and every non-hijacked connection
	<-s.idle
	if serr := <-errc; err == nil && !errors.Is(serr, http.ErrServerClosed) {
		err = serr
	}
	return err
}

// ServeHTTP counts the request, applies the fault mode and answers as
// Document Server would.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		abort(w)
	}
	defer s.leave()

	// Unblock this handler's reads and writes when the server stops.
	rc := http.NewResponseController(w)
	defer context.AfterFunc(s.stopCtx, func() {
		past := time.Unix(1, 0)
		rc.SetReadDeadline(past)
		rc.SetWriteDeadline(past)
	})()

	w.Header().Set("X-Dsemu-Name", s.opts.Name)
	if isControl(r.URL.Path) {
		s.control(w, r)
		return
	}
	s.mu.Lock()
	s.count.add(r, time.Now())
	s.mu.Unlock()

	if !s.fault(w, r) {
		return
	}
	s.serveDS(w, r)
}

// abort drops the connection without a response (net/http recovers the
// panic quietly).
func abort(http.ResponseWriter) {
	panic(http.ErrAbortHandler)
}

// sleep waits d; it reports false if r's client went away first, and drops
// the connection if the server stopped.
func (s *Server) sleep(w http.ResponseWriter, r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.stopCtx.Done():
		abort(w)
		return false
	}
}

// drain reads and discards a request body, returning its length.
func drain(r *http.Request) (int64, error) {
	return io.Copy(io.Discard, r.Body)
}
