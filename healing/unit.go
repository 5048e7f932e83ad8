package healing

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
)

// UnitState is what systemd says about one unit at one moment.
type UnitState struct {
	// Name is the unit's name, e.g. "ds-docservice.service".
	Name string

	// LoadState is "loaded", "not-found", "masked", "error", ... A unit
	// systemd does not know reads "not-found".
	LoadState string

	// ActiveState is "active", "activating", "deactivating", "inactive",
	// "failed" or "reloading".
	ActiveState string

	// SubState refines ActiveState by unit type; for services e.g.
	// "running", "start", "auto-restart", "dead", "failed".
	SubState string

	// StateChangeTimestamp is when ActiveState last changed; zero if never.
	StateChangeTimestamp time.Time

	// The fields below are a service's (zero for other unit types).

	// MainPID is the main process id in systemd's PID namespace; 0 if none.
	MainPID uint32

	// NRestarts counts systemd's own automatic restarts (Restart=) since
	// the unit was last started by hand; a manual restart resets it.
	NRestarts uint32

	// Result says how the service last ended: "success", "exit-code",
	// "signal", "core-dump", "oom-kill", "watchdog", "timeout", ...
	Result string

	// ExecMainStatus is the main process's exit status, or the signal
	// number that killed it.
	ExecMainStatus int32
}

// NotFound reports whether systemd knows no unit of this name.
func (u UnitState) NotFound() bool { return u.LoadState == "not-found" }

// Failed reports whether the unit is in the failed state (it will not
// come back by itself).
func (u UnitState) Failed() bool { return u.ActiveState == "failed" }

// AutoRestarting reports whether the unit is dead and waiting out
// RestartSec before systemd restarts it (SubState "auto-restart"):
// restarting it now only shortens the outage.
func (u UnitState) AutoRestarting() bool { return u.SubState == "auto-restart" }

// Starting reports whether the unit is booting (activating, in a start
// substate rather than auto-restart): leave it alone.
func (u UnitState) Starting() bool {
	return u.ActiveState == "activating" && !u.AutoRestarting()
}

// readUnit reads unit's state over conn: the Unit interface, and the
// Service interface for a service systemd knows.
func readUnit(ctx context.Context, conn *sdbus.Conn, unit string) (UnitState, error) {
	props, err := conn.GetUnitPropertiesContext(ctx, unit)
	if err != nil {
		return UnitState{}, err
	}
	st := UnitState{
		Name:                 unit,
		LoadState:            propString(props, "LoadState"),
		ActiveState:          propString(props, "ActiveState"),
		SubState:             propString(props, "SubState"),
		StateChangeTimestamp: propMicros(props, "StateChangeTimestamp"),
	}
	if st.NotFound() || !strings.HasSuffix(unit, ".service") {
		return st, nil
	}
	svc, err := conn.GetUnitTypePropertiesContext(ctx, unit, "Service")
	if err != nil {
		return UnitState{}, err
	}
	st.MainPID, _ = svc["MainPID"].(uint32)
	st.NRestarts, _ = svc["NRestarts"].(uint32)
	st.Result, _ = svc["Result"].(string)
	st.ExecMainStatus, _ = svc["ExecMainStatus"].(int32)
	return st, nil
}

func propString(props map[string]any, name string) string {
	s, _ := props[name].(string)
	return s
}

// propMicros turns a systemd timestamp (µs since the epoch, 0 for never)
// into a time.Time.
func propMicros(props map[string]any, name string) time.Time {
	us, _ := props[name].(uint64)
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(int64(us))
}

// UnitEvent reports a watched unit's state: its first reading, then each
// change of ActiveState or SubState.
type UnitEvent struct {
	// Unit is the unit's name.
	Unit string

	// ActiveState and SubState are the unit's new states.
	ActiveState, SubState string

	// Result is the service's Result at the time of the event (why it last
	// ended, e.g. "signal"); empty for other unit types.
	Result string

	// At is when systemd says the state changed (StateChangeTimestamp), or
	// when healgate saw it if systemd gave no time.
	At time.Time

	// State is the full state read when the event was made.
	State UnitState
}

// UnitWatcher delivers UnitEvents for a set of units as soon as systemd
// announces a change (PropertiesChanged signals), and polls every watch
// interval as a fallback for missed signals and dropped connections. It has
// a bus connection of its own. Create it with Systemd.Watch; run it with Run.
type UnitWatcher struct {
	s        *Systemd
	units    []string
	interval time.Duration
	events   chan UnitEvent
}

// Watch returns a watcher of units. Nothing happens until its Run is
// called. interval is the fallback poll period; zero or less means 5s.
func (s *Systemd) Watch(interval time.Duration, units ...string) *UnitWatcher {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	return &UnitWatcher{s: s, units: slices.Clone(units), interval: interval, events: make(chan UnitEvent, 16)}
}

// Events returns the channel events arrive on. It is closed when Run
// returns. Run waits while the channel is full: the owner keeps reading it.
func (w *UnitWatcher) Events() <-chan UnitEvent { return w.events }

// Run watches until ctx ends (it returns nil then) or the Systemd is closed
// (ErrBusClosed). It reconnects by itself when the bus drops. Call it once,
// from the goroutine that owns the watcher; it returns only after its
// connection is closed and its last event is sent.
func (w *UnitWatcher) Run(ctx context.Context) error {
	defer close(w.events)
	last := make(map[string]UnitEvent, len(w.units))
	var (
		conn    *sdbus.Conn
		cancel  context.CancelFunc
		updates chan *sdbus.PropertiesUpdate
		overrun chan error
	)
	closeConn := func() {
		if conn != nil {
			conn.Close()
			cancel()
			conn, cancel, updates, overrun = nil, nil, nil, nil
		}
	}
	defer closeConn()

	// emit sends ev if it differs from the last event of its unit.
	emit := func(ev UnitEvent) error {
		if prev, ok := last[ev.Unit]; ok && prev.ActiveState == ev.ActiveState && prev.SubState == ev.SubState {
			return nil
		}
		last[ev.Unit] = ev
		select {
		case w.events <- ev:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-w.s.closeCh:
			return ErrBusClosed
		}
	}
	// pollAll reads every unit and emits what changed. Read errors are
	// left to the next poll.
	pollAll := func() error {
		for _, u := range w.units {
			st, err := readUnit(ctx, conn, u)
			if err != nil {
				continue
			}
			if err := emit(eventOf(st, "", "")); err != nil {
				return err
			}
		}
		return nil
	}

	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	for {
		if conn == nil || !conn.Connected() {
			closeConn()
			c, cn, err := w.s.dial(ctx)
			if err == nil {
				// Subscribe first, then read: a change between the two
				// is seen by the read or by a signal.
				up := make(chan *sdbus.PropertiesUpdate, 256)
				ov := make(chan error, 1)
				c.SetPropertiesSubscriber(up, ov)
				if err = c.Subscribe(); err != nil {
					c.Close()
					cn()
				} else {
					conn, cancel, updates, overrun = c, cn, up, ov
				}
			}
			if conn != nil {
				if err := pollAll(); err != nil {
					return quietCancel(err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.s.closeCh:
			return ErrBusClosed
		case u := <-updates:
			if !slices.Contains(w.units, u.UnitName) {
				continue
			}
			active, _ := u.Changed["ActiveState"].Value().(string)
			sub, _ := u.Changed["SubState"].Value().(string)
			if active == "" && sub == "" {
				continue
			}
			st, err := readUnit(ctx, conn, u.UnitName)
			if err != nil {
				st = UnitState{Name: u.UnitName}
			}
			if err := emit(eventOf(st, active, sub)); err != nil {
				return quietCancel(err)
			}
		case <-overrun:
			// The update channel overflowed and go-systemd dropped
			// signals: read everything again.
			if err := pollAll(); err != nil {
				return quietCancel(err)
			}
		case <-tick.C:
			if conn != nil && conn.Connected() {
				if err := pollAll(); err != nil {
					return quietCancel(err)
				}
			}
		}
	}
}

// eventOf makes the event for st; active and sub, when set, come from the
// signal that announced the change and win over the read (which may already
// show a later state).
func eventOf(st UnitState, active, sub string) UnitEvent {
	ev := UnitEvent{Unit: st.Name, ActiveState: st.ActiveState, SubState: st.SubState, Result: st.Result, At: st.StateChangeTimestamp, State: st}
	if active != "" {
		ev.ActiveState = active
	}
	if sub != "" {
		ev.SubState = sub
	}
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	return ev
}

// quietCancel turns the end of Run's context into a nil error.
func quietCancel(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	if errors.Is(err, ErrBusClosed) {
		return err
	}
	return fmt.Errorf("watch: %w", err)
}
