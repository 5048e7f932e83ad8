package systemdtest

import (
	"bytes"
	"context"
	"os/exec"
	"path"
	"path/filepath"
	"testing"
	"time"
)

// GoBuild builds the main package pkg (an import path such as
// "github.com/healgate/healgate/cmd/dsemu") with the go command on PATH into
// t.TempDir() and returns the binary's host path; copy it into a system with
// InstallBinary. It builds with CGO_ENABLED=0, so the binary depends on
// nothing inside. A failed build fails t.
func GoBuild(t testing.TB, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), path.Base(pkg))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	var msg bytes.Buffer
	cmd.Stdout, cmd.Stderr = &msg, &msg
	if err := cmd.Run(); err != nil {
		t.Fatalf("systemdtest: go build %s: %v\n%s", pkg, err, msg.Bytes())
	}
	return out
}
