package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "healgate ") {
		t.Errorf("version printed %q", out.String())
	}
}

func TestUnknownCommandExits2(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"frobnicate"}, &out, &out)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("err = %v, want exit code 2", err)
	}
}

func TestCheckPrintsEffectiveConfig(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"check", "-config", "../../packaging/healgate.yaml"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("check: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{"listen:", "upstreams:", "next_upstream:", "max_replay_body:"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("effective config lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestCheckReportsEveryProblemWithFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	bad := "listen: 127.0.0.1:8080\ntimeouts:\n  connect: 5\nupstreams:\n  - url: ftp://x\nbogus: 1\n"
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"check", "-config", path}, &stdout, &stderr)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("err = %v, want exit code 1", err)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("want one line per problem, got:\n%s", stderr.String())
	}
	for _, want := range []string{path + ":3: timeouts.connect:", path + ":6: bogus:"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if stdout.Len() != 0 {
		t.Errorf("a bad config printed a config:\n%s", stdout.String())
	}
}

// TestDemo runs the whole tour: it fails if any phase sees something other
// than what it narrates (the tour returns an error when recovery fails).
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the tour takes about 10 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"demo", "-duration", "90s"}, &out, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		"10 × GET /healthcheck → 10 answered by the backup, 0 failed",
		"The backup counted it\n   once: the POST was not duplicated.",
		"504, X-Healgate-Error: upstream_timeout",
		"GET /healthz/upstream now answers\n   503",
		"heal_started",
		"heal_succeeded",
		"The tour is over",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("tour output lacks %q:\n%s", want, s)
		}
	}
}

func TestCheckWarnsAboutRiskySettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "risky.yaml")
	if err := os.WriteFile(path, []byte("listen: 0.0.0.0:8080\nupstreams: [{name: ds, url: \"http://localhost:8000\"}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"check", "-config", path}, &stdout, &stderr); err != nil {
		t.Fatalf("check: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{path + ": warning: listen: ", path + ": warning: upstreams[0].url: "} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestHelpListsCommands(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"run -config FILE", "check -config FILE", "demo", "reload", "polkit-rule"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("healgate -h lacks %q:\n%s", want, out.String())
		}
	}
}
