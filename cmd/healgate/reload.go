package main

import (
	"flag"
	"fmt"
	"io"
	"syscall"
)

// runReload is "healgate reload -pid PID [-config FILE]", healgate.service's
// ExecReload=. It makes "systemctl reload healgate" return only once the
// running healgate has applied the new config (or refused it).
//
// systemd before 253 has no Type=notify-reload: a Type=notify service's
// reload job ends when the ExecReload= process exits, unless systemd has
// received RELOADING=1 from the service by then, in which case it ends at
// the service's READY=1. With "ExecReload=/bin/kill -HUP $MAINPID", kill
// exits at once and healgate's own RELOADING=1 races with its exit: on
// systemd 252, about one "systemctl reload" in a hundred under load returned
// before the new config was in force (packaging/service_test.go,
// TestReloadUnderLoadZeroFailures). runReload sends RELOADING=1 itself, as
// one of the service's Exec processes (the unit says NotifyAccess=exec),
// before it sends SIGHUP, so the job always lasts until healgate's READY=1.
// systemd handles sd_notify messages before SIGCHLD, so the message counts
// even though runReload exits right after sending it.
//
// With -config, it first validates FILE as "healgate check" does; an
// invalid config is refused there (exit status 1, every problem with its
// file and line on stderr, which is the journal) and healgate is not
// signalled, so "systemctl reload" fails and says so, and healgate keeps
// running on its config. Without NOTIFY_SOCKET (not run by systemd) it
// only validates and signals.
func runReload(args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pid := fs.Int("pid", 0, "`PID` of the running healgate (in a unit: $MAINPID)")
	path := fs.String("config", "", "config `file` to validate before signalling (default: none)")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2, err: err}
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("reload: unexpected arguments %q", fs.Args())}
	}
	if *pid <= 1 {
		return &exitError{code: 2, err: fmt.Errorf("reload: -pid %d: give the running healgate's process id", *pid)}
	}
	if *path != "" {
		if _, err := loadConfig(*path); err != nil {
			fmt.Fprintf(stderr, "healgate reload: the new config is invalid; healgate keeps running on the previous one\n%v\n", err)
			return &exitError{code: 1}
		}
	}
	// Signal 0 first: a RELOADING=1 for a process that is gone would leave
	// the unit "reloading" until its timeout.
	if err := syscall.Kill(*pid, 0); err != nil {
		return fmt.Errorf("reload: healgate (pid %d): %w", *pid, err)
	}
	systemdNotifier{}.reloading()
	if err := syscall.Kill(*pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("reload: signal healgate (pid %d): %w", *pid, err)
	}
	return nil
}
