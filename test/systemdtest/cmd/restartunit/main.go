// Command restartunit restarts one systemd unit with healing.Systemd, the
// production code path, so that tests can run it as an unprivileged user
// inside a systemdtest system and check what polkit decides.
//
//	restartunit [-timeout 30s] UNIT
//
// It connects to the system bus (DBUS_SYSTEM_BUS_ADDRESS, else
// /run/dbus/system_bus_socket), allows only UNIT, and prints one line:
// "done" on success, else "<class>: <error>" where class is denied,
// not-allowed, no-such-unit, job-failed, timeout or error. Its exit status
// is 0 on success, 3 denied, 4 not allowed, 5 no such unit, 1 otherwise,
// and 2 for bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/healgate/healgate/healing"
)

// exitError carries the exit status chosen by run.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("restartunit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 30*time.Second, "restart timeout")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2, err: err}
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: restartunit [-timeout 30s] UNIT")
		return &exitError{code: 2, err: errors.New("usage")}
	}
	unit := fs.Arg(0)
	sd := healing.NewSystemd(healing.SystemdOptions{Units: []string{unit}, RestartTimeout: *timeout})
	defer sd.Close()

	res, err := sd.Restart(ctx, unit)
	if err == nil {
		fmt.Fprintln(stdout, res)
		return nil
	}
	class, code := "error", 1
	switch {
	case errors.Is(err, healing.ErrUnitDenied):
		class, code = "denied", 3
	case errors.Is(err, healing.ErrUnitNotAllowed):
		class, code = "not-allowed", 4
	case errors.Is(err, healing.ErrNoSuchUnit):
		class, code = "no-such-unit", 5
	case errors.Is(err, healing.ErrJobFailed):
		class = "job-failed"
	case errors.Is(err, healing.ErrJobTimeout):
		class = "timeout"
	}
	fmt.Fprintf(stdout, "%s: %v\n", class, err)
	return &exitError{code: code, err: err}
}
