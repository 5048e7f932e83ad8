package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/healgate/healgate/config"
)

// runPolkitRule is "healgate polkit-rule": it prints the polkit rule that
// lets the service user restart exactly the units the config heals over
// D-Bus, in the shape of packaging/polkit/50-healgate.rules. It exits 1 when
// the config does not load or names no unit to restart, 2 on bad flags.
func runPolkitRule(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("polkit-rule", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfigPath, "config `file` whose units the rule allows")
	user := fs.String("user", "healgate", "the `user` healgate.service runs as (User=)")
	if err := fs.Parse(args); err != nil {
		return &exitError{code: 2, err: err}
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return &exitError{code: 2, err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if !userRE.MatchString(*user) {
		return &exitError{code: 2, err: fmt.Errorf("-user: %q is not a user name", *user)}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return &exitError{code: 1}
	}
	units := restartedUnits(&cfg.Healing)
	if len(units) == 0 {
		return &exitError{code: 1, err: fmt.Errorf("%s: no unit to allow: healing.action is %q and no healing.dependencies[].unit is set", *path, cfg.Healing.Action)}
	}
	return writePolkitRule(stdout, *user, units)
}

// userRE accepts the user names useradd and systemd-sysusers accept.
var userRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,30}$`)

// restartedUnits returns the units healgate may restart over D-Bus with h,
// in config order without repeats: healing.units when the action is
// systemd, and every dependency's unit (healed over D-Bus whatever the
// action).
func restartedUnits(h *config.Healing) []string {
	var units []string
	add := func(u string) {
		if u != "" && !slices.Contains(units, u) {
			units = append(units, u)
		}
	}
	if h.Action == config.ActionSystemd {
		for _, u := range h.Units {
			add(u)
		}
	}
	for _, d := range h.Dependencies {
		add(d.Unit)
	}
	return units
}

// polkitRuleHead is the rule file's fixed comment.
const polkitRuleHead = `// 50-healgate.rules — lets the healgate service restart the units it heals,
// and nothing else.
//
// systemd asks polkit for org.freedesktop.systemd1.manage-units with the
// unit and the verb ("start", "stop", "restart", "try-restart", ...). The
// service's user gets "restart" and "try-restart" of the units listed below;
// every other request, by that user or anyone else, falls through to the
// rules that follow and to the action's defaults (no polkit.Result.NO here).
//
// healgate restarts only the units named in its config (healing.units with
// action systemd, and healing.dependencies[].unit). If you change those,
// print the matching rule with
//     healgate polkit-rule -config /etc/healgate/healgate.yaml
// and save it as /etc/polkit-1/rules.d/50-healgate.rules (a file there
// overrides the packaged one of the same name).
`

// writePolkitRule writes the rule granting user restart and try-restart of
// units. Names are written as JSON strings, which are JavaScript string
// literals.
func writePolkitRule(w io.Writer, user string, units []string) error {
	u, err := json.Marshal(user)
	if err != nil {
		return err
	}
	list, err := json.Marshal(units)
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString(polkitRuleHead)
	b.WriteString("polkit.addRule(function(action, subject) {\n")
	fmt.Fprintf(&b, "\tif (action.id !== \"org.freedesktop.systemd1.manage-units\" || subject.user !== %s) {\n", u)
	b.WriteString("\t\treturn polkit.Result.NOT_HANDLED;\n\t}\n")
	fmt.Fprintf(&b, "\tvar units = %s;\n", strings.ReplaceAll(string(list), `","`, `", "`))
	b.WriteString("\tvar verbs = [\"restart\", \"try-restart\"];\n")
	b.WriteString("\tif (units.indexOf(action.lookup(\"unit\")) >= 0 && verbs.indexOf(action.lookup(\"verb\")) >= 0) {\n")
	b.WriteString("\t\treturn polkit.Result.YES;\n\t}\n")
	b.WriteString("\treturn polkit.Result.NOT_HANDLED;\n});\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write rule: %w", err)
	}
	return nil
}
