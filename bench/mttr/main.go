// Command mttr measures how fast healgate brings ONLYOFFICE Document Server
// back on real systemd: it runs test/heal's TestMTTR (a real systemd booted
// in a PID namespace, dsemu as ds-docservice.service with RestartSec=30,
// healgate on the host) and prints its figures: for a crash (kill -9) and a
// hang (SIGSTOP), the time to the first 200 of DocService and of a client
// through healgate, per run and as min/median/max.
//
//	go run ./bench/mttr [-runs 5] [-race]
//
// It needs what test/heal needs: root, systemd, dbus, util-linux and nginx.
// It exits 1 if the measurement failed, printing go test's output.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "mttr:", err)
		os.Exit(1)
	}
}

// prefix marks TestMTTR's figure lines on go test's standard output.
const prefix = "mttr: "

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mttr", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runs := fs.Int("runs", 5, "runs of each fault")
	race := fs.Bool("race", false, "build healgate with the race detector (slower; not for figures)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *runs < 1 {
		return fmt.Errorf("-runs %d: want at least 1", *runs)
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	goArgs := []string{"test", "-count=1", "-v", "-timeout=30m", "-run=^TestMTTR$"}
	if *race {
		goArgs = append(goArgs, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(goArgs, "./test/heal/")...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "HEALGATE_MTTR_RUNS="+strconv.Itoa(*runs))
	var all bytes.Buffer
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = &all
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		all.WriteString(line + "\n")
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			fmt.Fprintln(stdout, rest)
		}
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("go test: %w\n%s", err, all.Bytes())
	}
	return nil
}

// moduleRoot returns the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	b, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(b))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run mttr inside the healgate module")
	}
	return filepath.Dir(mod), nil
}
