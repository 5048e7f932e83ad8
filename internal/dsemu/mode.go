package dsemu

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Kind names a fault mode of the emulator.
type Kind string

// The fault modes. Every mode applies to every endpoint except /_dsemu/*.
const (
	// KindOK serves normally.
	KindOK Kind = "ok"
	// KindFalse answers GET /healthcheck with 200 and body "false" (a
	// dependency is down); the liveness page /index.html still answers 200.
	KindFalse Kind = "false"
	// KindHang reads the request headers and never answers, until the mode
	// changes (the request is then served under the new mode) or the server
	// stops (the connection is then dropped without a response).
	KindHang Kind = "hang"
	// KindSlow delays the response headers by Mode.Delay (default 5s), then
	// serves normally.
	KindSlow Kind = "slow"
	// KindReset writes the response headers and part of the body, then
	// closes the connection with a TCP RST.
	KindReset Kind = "reset"
	// KindResetBefore closes the connection with a TCP RST before writing a
	// byte of the response.
	KindResetBefore Kind = "reset-before"
	// Kind5xx answers Mode.Status (default 502) to every request.
	Kind5xx Kind = "5xx"
	// KindCrashAfter serves normally, then "crashes" Mode.Delay after the
	// mode was set: Serve closes the listener and every connection and
	// returns ErrCrashed (cmd/dsemu then exits with status 1).
	KindCrashAfter Kind = "crash-after"
)

// Defaults of the parameterised modes.
const (
	DefaultSlowDelay = 5 * time.Second // "slow" without "=DURATION"
	DefaultStatus    = 502             // "5xx" without "=STATUS"
)

// ErrInvalidMode is returned (wrapped) by ParseMode for a mode it does not
// know or a malformed argument.
var ErrInvalidMode = errors.New("invalid mode (want ok, false, hang, slow[=DURATION], reset, reset-before, 5xx[=STATUS], crash-after=DURATION)")

// Mode is a fault mode with its argument. The zero Mode is "ok".
type Mode struct {
	// Kind is the fault; empty means KindOK.
	Kind Kind
	// Delay is the header delay of KindSlow and the time to the crash of
	// KindCrashAfter; unused by the other kinds.
	Delay time.Duration
	// Status is the status code answered by Kind5xx (500–599); unused by
	// the other kinds.
	Status int
}

// String returns the mode in the form ParseMode reads: "ok", "slow=5s",
// "5xx=502", "crash-after=1m0s".
func (m Mode) String() string {
	switch m.Kind {
	case "":
		return string(KindOK)
	case KindSlow, KindCrashAfter:
		return string(m.Kind) + "=" + m.Delay.String()
	case Kind5xx:
		return string(m.Kind) + "=" + strconv.Itoa(m.Status)
	}
	return string(m.Kind)
}

// ParseMode parses "KIND" or "KIND=ARG" (see the Kind constants):
// slow[=DURATION] (default 5s), 5xx[=STATUS] (default 502),
// crash-after=DURATION. Surrounding white space is ignored. The error wraps
// ErrInvalidMode. wait-for=HOST:PORT is a start-up option, not a mode: see
// Options.WaitFor.
func ParseMode(s string) (Mode, error) {
	s = strings.TrimSpace(s)
	name, arg, hasArg := strings.Cut(s, "=")
	m := Mode{Kind: Kind(name)}
	switch m.Kind {
	case KindOK, KindFalse, KindHang, KindReset, KindResetBefore:
		if hasArg {
			return Mode{}, fmt.Errorf("mode %q takes no argument: %w", s, ErrInvalidMode)
		}
	case KindSlow:
		m.Delay = DefaultSlowDelay
		if hasArg {
			d, err := time.ParseDuration(arg)
			if err != nil || d < 0 {
				return Mode{}, fmt.Errorf("mode %q: bad duration %q: %w", s, arg, ErrInvalidMode)
			}
			m.Delay = d
		}
	case KindCrashAfter:
		d, err := time.ParseDuration(arg)
		if !hasArg || err != nil || d < 0 {
			return Mode{}, fmt.Errorf("mode %q needs a duration, like crash-after=30s: %w", s, ErrInvalidMode)
		}
		m.Delay = d
	case Kind5xx:
		m.Status = DefaultStatus
		if hasArg {
			code, err := strconv.Atoi(arg)
			if err != nil || code < 500 || code > 599 {
				return Mode{}, fmt.Errorf("mode %q: status must be 500-599: %w", s, ErrInvalidMode)
			}
			m.Status = code
		}
	case "wait-for":
		return Mode{}, fmt.Errorf("wait-for is a start-up option (-wait-for, Options.WaitFor), not a runtime mode: %w", ErrInvalidMode)
	default:
		return Mode{}, fmt.Errorf("unknown mode %q: %w", s, ErrInvalidMode)
	}
	return m, nil
}
