// Command dsemu is an emulated ONLYOFFICE Document Server, test equipment
// for healgate: it serves Document Server's endpoints and reproduces its
// failure modes on demand (see package internal/dsemu).
//
// Usage:
//
//	dsemu -listen 127.0.0.1:8000 [-mode MODE] [-name NAME] [-wait-for HOST:PORT]
//	      [-convert-delay D] [-convert-error N] [-poll-hold D] [-history N]
//
// MODE is ok, false, hang, slow[=DURATION], reset, reset-before,
// 5xx[=STATUS], crash-after=DURATION, or wait-for=HOST:PORT (short for
// "-mode ok -wait-for HOST:PORT"; combine waiting with another mode by
// giving -wait-for separately). The mode changes at run time with
// "POST /_dsemu/mode" (body MODE, or JSON {"mode": ..., "convert_delay":
// ..., "convert_error": ..., "poll_hold": ...}); "GET /_dsemu/stats"
// reports what was received.
//
// Once listening, dsemu prints "dsemu NAME listening on ADDR" on standard
// output. It exits 0 on SIGINT or SIGTERM, 1 when crash-after fires or on
// an error, and 2 on a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/healgate/healgate/internal/dsemu"
)

// errUsage marks command-line errors (exit status 2).
var errUsage = errors.New("usage error")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "dsemu:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "dsemu:", err)
		os.Exit(1)
	}
}

// run parses args, then serves until ctx ends (nil), the crash-after mode
// fires (dsemu.ErrCrashed) or listening fails.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dsemu", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		opts     dsemu.Options
		listen   = fs.String("listen", "127.0.0.1:8000", "`host:port` to listen on (port 0 picks one)")
		mode     = fs.String("mode", "ok", "initial fault `mode`: ok, false, hang, slow[=D], reset, reset-before, 5xx[=STATUS], crash-after=D, wait-for=HOST:PORT")
		logLevel = fs.String("log-level", "info", "log `level` on standard error: debug, info, warn, error")
	)
	fs.StringVar(&opts.Name, "name", "", "`name` in stats and the X-Dsemu-Name header (default: the -listen address)")
	fs.StringVar(&opts.WaitFor, "wait-for", "", "do not listen until `host:port` accepts TCP connections (like DocService waiting for RabbitMQ)")
	fs.DurationVar(&opts.WaitInterval, "wait-interval", dsemu.DefaultWaitInterval, "pause between -wait-for attempts")
	fs.DurationVar(&opts.ConvertDelay, "convert-delay", 0, "`delay` before answering a conversion")
	fs.IntVar(&opts.ConvertError, "convert-error", 0, "answer conversions 200 {\"error\":`N`} (0: succeed)")
	fs.DurationVar(&opts.PollHold, "poll-hold", dsemu.DefaultPollHold, "how long a socket.io polling GET with a sid is held")
	fs.IntVar(&opts.History, "history", dsemu.DefaultHistory, "recent requests kept in stats (negative: none)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%v: %w", err, errUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: %w", fs.Args(), errUsage)
	}

	if addr, ok := strings.CutPrefix(*mode, "wait-for="); ok {
		if opts.WaitFor != "" {
			return fmt.Errorf("-mode wait-for=%s and -wait-for %s: give one: %w", addr, opts.WaitFor, errUsage)
		}
		opts.WaitFor, *mode = addr, "ok"
	}
	m, err := dsemu.ParseMode(*mode)
	if err != nil {
		return fmt.Errorf("-mode: %v: %w", err, errUsage)
	}
	opts.Mode = m
	if opts.Name == "" {
		opts.Name = *listen
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %v: %w", err, errUsage)
	}
	opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	s := dsemu.New(opts)
	ln, err := s.Listen(ctx, *listen)
	if err != nil {
		s.Close()
		if ctx.Err() != nil {
			return nil // stopped while waiting for -wait-for
		}
		return err
	}
	fmt.Fprintf(stdout, "dsemu %s listening on %s mode %s\n", opts.Name, ln.Addr(), s.Mode())
	return s.Serve(ctx, ln)
}
