// Command healgate is a self-healing reverse proxy sidecar for ONLYOFFICE
// Document Server: nginx passes requests to healgate, healgate passes them to
// Document Server with tunable timeouts, next-upstream failover and
// per-upstream circuit breakers, and heals Document Server (or the dependency
// at fault) when its health checks fail.
//
// Usage:
//
//	healgate run -config FILE          run the proxy and the healer (plain "healgate -config FILE" too)
//	healgate check -config FILE        validate a config and print the effective one (like nginx -t)
//	healgate demo [-duration 60s]      a self-contained tour on emulated Document Servers
//	healgate reload -pid PID [-config FILE]  validate FILE, then tell a running healgate to reload
//	                                   (healgate.service's ExecReload=)
//	healgate polkit-rule -config FILE  print the polkit rule allowing the units FILE heals
//	healgate reload -pid PID [-config FILE]  validate FILE, then make healgate PID reload (ExecReload=)
//	healgate version                   print the version
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
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries a process exit code through run's error return.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err == nil {
		return
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		if ee.err == nil {
			os.Exit(code)
		}
	}
	if !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "healgate:", err)
	}
	os.Exit(code)
}

const usage = `usage: healgate <command> [flags]

commands:
  run -config FILE      run the proxy (the main job); "healgate -config FILE" means run
  check -config FILE    validate FILE and print the effective config; exit 1 on problems
  demo [-duration 60s]  a self-contained tour on emulated Document Servers
  polkit-rule -config FILE  print the polkit rule allowing the units FILE heals
  reload -pid PID [-config FILE]  validate FILE, then make healgate PID reload (ExecReload=)
  version               print the version

Run "healgate <command> -h" for a command's flags.
`

// run is the whole program: it parses args, runs one subcommand, and returns
// its error. It calls os.Exit nowhere, so tests can drive it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "run"
	switch {
	case len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-':
		cmd, args = args[0], args[1:]
	case len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help"):
		// No command named: "healgate -h" asks for the commands.
		fmt.Fprint(stdout, usage)
		return nil
	}
	switch cmd {
	case "run":
		return runProxy(ctx, args, stdout, stderr)
	case "check":
		return runCheck(args, stdout, stderr)
	case "demo":
		return runDemo(ctx, args, stdout, stderr)
	case "polkit-rule":
		return runPolkitRule(args, stdout, stderr)
	case "reload":
		return runReload(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "healgate", version)
		return nil
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return &exitError{code: 2, err: fmt.Errorf("unknown command %q", cmd)}
}
