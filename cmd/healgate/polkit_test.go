package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeConfig writes a config file into a temp dir and returns its path.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "healgate.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPolkitRuleMatchesThePackagedRule: the packaged rule is what the
// subcommand prints for the Document Server units, so the two cannot drift.
func TestPolkitRuleMatchesThePackagedRule(t *testing.T) {
	path := writeConfig(t, "healing:\n  units: [ds-docservice.service, ds-converter.service]\n")
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"polkit-rule", "-config", path}, &stdout, &stderr); err != nil {
		t.Fatalf("polkit-rule: %v\n%s", err, stderr.String())
	}
	want, err := os.ReadFile("../../packaging/polkit/50-healgate.rules")
	if err != nil {
		t.Fatal(err)
	}
	if stdout.String() != string(want) {
		t.Errorf("polkit-rule printed:\n%s\nthe packaged rule is:\n%s", stdout.String(), want)
	}
}

func TestPolkitRuleListsHealedAndDependencyUnits(t *testing.T) {
	path := writeConfig(t, `
healing:
  units: [ds-docservice.service, ds-converter.service]
  dependencies:
    - {name: rabbitmq, probe: "amqp://127.0.0.1:5672", unit: rabbitmq-server.service}
    - {name: postgresql, probe: "postgres://127.0.0.1:5432", unit: postgresql@15-main.service}
    - {name: redis, probe: "redis://127.0.0.1:6379"}
    - {name: again, probe: "tcp://127.0.0.1:1", unit: ds-docservice.service}
`)
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"polkit-rule", "-config", path, "-user", "dsproxy"}, &stdout, &stderr); err != nil {
		t.Fatalf("polkit-rule: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		`var units = ["ds-docservice.service", "ds-converter.service", "rabbitmq-server.service", "postgresql@15-main.service"];`,
		`var verbs = ["restart", "try-restart"];`,
		`action.id !== "org.freedesktop.systemd1.manage-units" || subject.user !== "dsproxy"`,
		`action.lookup("unit")`,
		`action.lookup("verb")`,
		"return polkit.Result.YES;",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rule lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Result.NO;") {
		t.Errorf("rule denies outright instead of falling through:\n%s", out)
	}
	if n := strings.Count(out, "polkit.addRule("); n != 1 {
		t.Errorf("rule has %d addRule calls, want 1", n)
	}
	if strings.Count(out, "{") != strings.Count(out, "}") || strings.Count(out, "(") != strings.Count(out, ")") {
		t.Errorf("unbalanced braces or parentheses:\n%s", out)
	}
}

func TestPolkitRuleWithExecActionAllowsOnlyDependencies(t *testing.T) {
	path := writeConfig(t, `
healing:
  action: exec
  exec: {command: [supervisorctl, restart, "ds:docservice"]}
  dependencies:
    - {name: rabbitmq, probe: "amqp://127.0.0.1:5672", unit: rabbitmq-server.service}
`)
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"polkit-rule", "-config", path}, &stdout, &stderr); err != nil {
		t.Fatalf("polkit-rule: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), `var units = ["rabbitmq-server.service"];`) {
		t.Errorf("exec action: rule should allow only the dependency's unit:\n%s", stdout.String())
	}
	if strings.Contains(stdout.String(), `"ds-docservice.service"`) {
		t.Errorf("exec action: rule allows a unit healgate never restarts:\n%s", stdout.String())
	}
}

func TestPolkitRuleErrors(t *testing.T) {
	none := writeConfig(t, "healing: {action: none, units: []}\n")
	invalid := writeConfig(t, "healing: {units: [not-a-unit]}\n")
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string // in the error or on stderr
	}{
		{"NoUnits", []string{"-config", none}, 1, "no unit to allow"},
		{"InvalidConfig", []string{"-config", invalid}, 1, "healing.units[0]"},
		{"MissingFile", []string{"-config", filepath.Join(t.TempDir(), "absent.yaml")}, 1, "absent.yaml"},
		{"BadUser", []string{"-config", none, "-user", "Robert'); drop"}, 2, "not a user name"},
		{"StrayArgument", []string{"-config", none, "extra"}, 2, "unexpected argument"},
		{"UnknownFlag", []string{"-units", "x"}, 2, "-units"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append([]string{"polkit-rule"}, tc.args...), &stdout, &stderr)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != tc.code {
				t.Fatalf("err = %v, want exit code %d", err, tc.code)
			}
			if got := err.Error() + stderr.String(); !strings.Contains(got, tc.msg) {
				t.Errorf("output %q lacks %q", got, tc.msg)
			}
			if stdout.Len() != 0 {
				t.Errorf("printed a rule on error:\n%s", stdout.String())
			}
		})
	}
}
