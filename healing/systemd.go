package healing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/healgate/healgate/config"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// D-Bus error names that decide how a failed call is classified.
const (
	dbusNoSuchUnit              = "org.freedesktop.systemd1.NoSuchUnit"
	dbusInteractiveAuthRequired = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
	dbusAccessDenied            = "org.freedesktop.DBus.Error.AccessDenied"
	dbusDisconnected            = "org.freedesktop.DBus.Error.Disconnected"
)

const (
	defaultRestartTimeout = 90 * time.Second // config's healing.restart_timeout default
	busCheckInterval      = time.Second      // how often a restart wait checks the connection
	restartMode           = "replace"        // RestartUnit job mode
)

// Errors of the systemd action. Each arrives wrapped in a *UnitError naming
// the operation and the unit; test with errors.Is.
var (
	// ErrUnitNotAllowed: the unit is not in the allow-list given to
	// NewSystemd. Restart refuses it before any D-Bus call.
	ErrUnitNotAllowed = errors.New("unit not in the configured allow-list")

	// ErrUnitDenied: the bus or polkit refused the call
	// (InteractiveAuthorizationRequired or AccessDenied). Usually a missing
	// or too narrow polkit rule for healgate's user. The dbus.Error is
	// wrapped too.
	ErrUnitDenied = errors.New("denied by polkit or the bus policy")

	// ErrNoSuchUnit: systemd knows no unit of that name (NoSuchUnit).
	ErrNoSuchUnit = errors.New("no such unit")

	// ErrJobTimeout: the restart job's result did not arrive within the
	// restart timeout. context.DeadlineExceeded is wrapped too.
	ErrJobTimeout = errors.New("no job result within the restart timeout")

	// ErrJobFailed: the job ended with a result other than "done"; the
	// result is in UnitError.Result.
	ErrJobFailed = errors.New("job did not complete")

	// ErrBusClosed: the bus connection was lost, or the Systemd was closed.
	// A later call reconnects (unless closed).
	ErrBusClosed = errors.New("system bus connection closed")
)

// UnitError is the error of one operation on one unit.
type UnitError struct {
	// Op is the operation: "restart", "read" or "watch".
	Op string

	// Unit is the unit's name.
	Unit string

	// Result is the job result for Op "restart" when the job ended, empty
	// otherwise.
	Result JobResult

	// Err is the cause: one of the Err* values of this file (often joined
	// with the dbus.Error or context error behind it), or another error
	// from the bus.
	Err error
}

// Error returns "systemd <op> <unit>: <cause>".
func (e *UnitError) Error() string {
	return "systemd " + e.Op + " " + e.Unit + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *UnitError) Unwrap() error { return e.Err }

// JobResult is the result systemd gives a finished job.
type JobResult string

// Job results (org.freedesktop.systemd1.Manager.JobRemoved).
const (
	JobDone       JobResult = "done"       // the job succeeded
	JobCanceled   JobResult = "canceled"   // canceled before it finished
	JobTimeout    JobResult = "timeout"    // systemd's own job timeout hit
	JobFailed     JobResult = "failed"     // the unit failed to restart
	JobDependency JobResult = "dependency" // a required dependency failed
	JobSkipped    JobResult = "skipped"    // not applicable to the unit
)

// SystemdOptions configures a Systemd.
type SystemdOptions struct {
	// Units is the allow-list: the only units Restart may touch. Build it
	// with AllowedUnits from the configuration. Empty means Restart refuses
	// every unit; Unit and Watch read any unit (as `doctor` needs).
	Units []string

	// RestartTimeout bounds the wait for a restart job's result
	// (healing.restart_timeout). Default 90s.
	RestartTimeout time.Duration

	// BusAddress is the D-Bus address of the system bus, for example
	// "unix:path=/run/dbus/system_bus_socket". Empty means the system bus
	// as go-systemd finds it: DBUS_SYSTEM_BUS_ADDRESS, else
	// /run/dbus/system_bus_socket. Tests point it at a private systemd.
	BusAddress string
}

// AllowedUnits returns the units the healer may restart for h: h.Units and
// each dependency's unit, without duplicates, in configuration order.
func AllowedUnits(h *config.Healing) []string {
	var units []string
	add := func(u string) {
		if u != "" && !slices.Contains(units, u) {
			units = append(units, u)
		}
	}
	for _, u := range h.Units {
		add(u)
	}
	for _, d := range h.Dependencies {
		add(d.Unit)
	}
	return units
}

// Systemd restarts and reads systemd units over the system bus
// (go-systemd's dbus package), as an unprivileged service that polkit
// allows to restart its units. It connects lazily, on the first call, and
// reconnects when the bus connection drops. Its methods are safe for
// concurrent use.
type Systemd struct {
	units          []string
	restartTimeout time.Duration
	busAddress     string

	mu      sync.Mutex
	conn    *sdbus.Conn
	cancel  context.CancelFunc // ends conn's context, which closes it
	closed  bool
	closeCh chan struct{} // closed by Close
}

// NewSystemd returns a Systemd for opts. It does not connect yet.
func NewSystemd(opts SystemdOptions) *Systemd {
	if opts.RestartTimeout <= 0 {
		opts.RestartTimeout = defaultRestartTimeout
	}
	return &Systemd{
		units:          slices.Clone(opts.Units),
		restartTimeout: opts.RestartTimeout,
		busAddress:     opts.BusAddress,
		closeCh:        make(chan struct{}),
	}
}

// Close closes the bus connection. Calls after Close fail with
// ErrBusClosed; a running watcher's Run returns.
func (s *Systemd) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	close(s.closeCh)
	s.dropLocked()
}

// Allowed reports whether unit is in the allow-list.
func (s *Systemd) Allowed(unit string) bool { return slices.Contains(s.units, unit) }

// Restart restarts unit (RestartUnit, mode "replace") and waits for the
// job's result, at most RestartTimeout. It returns JobDone and nil when the
// unit restarted. Otherwise the error is a *UnitError whose cause is:
// ErrUnitNotAllowed (refused before any D-Bus call), ErrUnitDenied (polkit
// said no), ErrNoSuchUnit, ErrJobFailed (with the JobResult also returned),
// ErrJobTimeout, ErrBusClosed, or ctx's error.
func (s *Systemd) Restart(ctx context.Context, unit string) (JobResult, error) {
	if !s.Allowed(unit) {
		return "", &UnitError{Op: "restart", Unit: unit, Err: ErrUnitNotAllowed}
	}
	conn, err := s.connect(ctx)
	if err != nil {
		return "", &UnitError{Op: "restart", Unit: unit, Err: err}
	}
	// Buffered: go-systemd sends the result from its one signal goroutine
	// and would block there on an unread channel.
	ch := make(chan string, 1)
	if _, err := conn.RestartUnitContext(ctx, unit, restartMode, ch); err != nil {
		return "", &UnitError{Op: "restart", Unit: unit, Err: s.classify(conn, err)}
	}

	// A job whose result never arrives (a dropped bus) fires nothing: wait
	// with a deadline of our own, and notice a dropped connection.
	timer := time.NewTimer(s.restartTimeout)
	defer timer.Stop()
	tick := time.NewTicker(busCheckInterval)
	defer tick.Stop()
	for {
		select {
		case r := <-ch:
			res := JobResult(r)
			if res != JobDone {
				return res, &UnitError{Op: "restart", Unit: unit, Result: res, Err: fmt.Errorf("%w: result %q", ErrJobFailed, r)}
			}
			return res, nil
		case <-timer.C:
			return "", &UnitError{Op: "restart", Unit: unit, Err: fmt.Errorf("%w (%v): %w", ErrJobTimeout, s.restartTimeout, context.DeadlineExceeded)}
		case <-ctx.Done():
			return "", &UnitError{Op: "restart", Unit: unit, Err: ctx.Err()}
		case <-tick.C:
			if !conn.Connected() {
				s.drop(conn)
				return "", &UnitError{Op: "restart", Unit: unit, Err: fmt.Errorf("%w while waiting for the job result", ErrBusClosed)}
			}
		}
	}
}

// Unit reads unit's state. A unit systemd does not know reads LoadState
// "not-found" with a nil error. Errors are *UnitError values (Op "read")
// with causes as for Restart. A read that finds the connection dropped
// reconnects and tries once more.
func (s *Systemd) Unit(ctx context.Context, unit string) (UnitState, error) {
	for attempt := 0; ; attempt++ {
		conn, err := s.connect(ctx)
		if err != nil {
			return UnitState{}, &UnitError{Op: "read", Unit: unit, Err: err}
		}
		st, err := readUnit(ctx, conn, unit)
		if err == nil {
			return st, nil
		}
		err = s.classify(conn, err)
		if attempt == 0 && errors.Is(err, ErrBusClosed) && ctx.Err() == nil {
			continue
		}
		return UnitState{}, &UnitError{Op: "read", Unit: unit, Err: err}
	}
}

// connect returns the current connection, dialling a new one if there is
// none or it dropped. The dial is bounded by ctx; the connection outlives it
// (it lives until Close or until it drops).
func (s *Systemd) connect(ctx context.Context) (*sdbus.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrBusClosed
	}
	if s.conn != nil {
		if s.conn.Connected() {
			return s.conn, nil
		}
		s.dropLocked()
	}
	conn, cancel, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	s.conn, s.cancel = conn, cancel
	return conn, nil
}

// dial opens a connection whose lifetime is a context of its own, ended by
// the returned cancel (godbus closes a connection when its context ends).
// While dialling, the end of ctx ends that context too, so a hung bus cannot
// hold the caller.
func (s *Systemd) dial(ctx context.Context) (*sdbus.Conn, context.CancelFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	connCtx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	var (
		conn *sdbus.Conn
		err  error
	)
	if s.busAddress == "" {
		conn, err = sdbus.NewSystemConnectionContext(connCtx)
	} else {
		conn, err = sdbus.NewConnection(func() (*dbus.Conn, error) {
			return dialBus(connCtx, s.busAddress)
		})
	}
	if !stop() { // ctx ended during the dial: connCtx is canceled
		if err == nil {
			conn.Close()
		}
		cancel()
		return nil, nil, fmt.Errorf("connect to the system bus: %w", ctx.Err())
	}
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("connect to the system bus: %w", err)
	}
	return conn, cancel, nil
}

// dialBus opens, authenticates (EXTERNAL, by uid) and registers (Hello) one
// connection to address, as go-systemd does for the system bus.
func dialBus(ctx context.Context, address string) (*dbus.Conn, error) {
	conn, err := dbus.Dial(address, dbus.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
		conn.Close()
		return nil, err
	}
	if err := conn.Hello(); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// drop forgets conn if it is still the current connection, so that the
// next call reconnects.
func (s *Systemd) drop(conn *sdbus.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == conn {
		s.dropLocked()
	}
}

func (s *Systemd) dropLocked() {
	if s.conn != nil {
		s.conn.Close()
		s.cancel()
		s.conn, s.cancel = nil, nil
	}
}

// classify maps a D-Bus call's error to the errors of this file, keeping
// the original in the chain. A lost connection is dropped.
func (s *Systemd) classify(conn *sdbus.Conn, err error) error {
	var de dbus.Error
	var dep *dbus.Error
	name := ""
	if errors.As(err, &de) {
		name = de.Name
	} else if errors.As(err, &dep) {
		name = dep.Name
	}
	switch {
	case name == dbusInteractiveAuthRequired || name == dbusAccessDenied:
		return fmt.Errorf("%w: %w", ErrUnitDenied, err)
	case name == dbusNoSuchUnit:
		return fmt.Errorf("%w: %w", ErrNoSuchUnit, err)
	case name == dbusDisconnected || errors.Is(err, dbus.ErrClosed) || !conn.Connected():
		s.drop(conn)
		return fmt.Errorf("%w: %w", ErrBusClosed, err)
	}
	return err
}
