package testproc

import (
	"context"
	"fmt"
	"os"
	"os/exec"
)

// GoBuild builds the main package pkg (an import path such as
// "github.com/healgate/healgate/cmd/healgate") into out with the go command
// on PATH. With race set it builds with the race detector (pass RaceEnabled
// to build like the tests run); without it, with CGO_ENABLED=0, a static
// binary that also runs inside a test system. A failed build returns an
// error with the go command's output; ctx bounds the build.
func GoBuild(ctx context.Context, out, pkg string, race bool) error {
	args := []string{"build", "-o", out}
	cmd := exec.CommandContext(ctx, "go")
	cmd.Env = os.Environ()
	if race {
		args = append(args, "-race")
	} else {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	}
	cmd.Args = append(cmd.Args, append(args, pkg)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// LookPath finds the command name on PATH, or at fallback when that file
// exists (sbin is often not on a non-root PATH). It returns exec.LookPath's
// error when neither has it.
func LookPath(name, fallback string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback, nil
	}
	return exec.LookPath(name)
}
