package config_test

import (
	"bytes"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/healgate/healgate/config"
	"go.yaml.in/yaml/v3"
)

// keyPaths lists every key of a configuration of type t as a full dotted
// path, parents before children: "timeouts", "timeouts.read", "routes",
// "routes[].timeouts.read". Elements of a list of mappings are written "[]".
func keyPaths(t reflect.Type) []string {
	var out []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			p := name
			if prefix != "" {
				p = prefix + "." + name
			}
			out = append(out, p)
			ft := f.Type
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && ft.Elem() != reflect.TypeFor[netip.Prefix]() {
				walk(p+"[]", ft.Elem())
			} else if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[netip.Prefix]() {
				walk(p, ft)
			}
		}
	}
	walk("", t)
	return out
}

// docRows returns, for each table row of docs/config.md whose first cell is
// a backquoted key, the key and the row's cells.
func docRows(doc string) map[string][]string {
	rows := map[string][]string{}
	for line := range strings.SplitSeq(doc, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows[strings.Trim(cells[0], "`")] = cells
	}
	return rows
}

// renderDefaults maps each key outside a list to its default as written in
// YAML by WriteYAML: scalars as they are ("5s", quoted when YAML quotes
// them) and lists of scalars as "[a, b]". Mappings and lists of mappings
// are left out.
func renderDefaults(t *testing.T) map[string]string {
	t.Helper()
	var buf bytes.Buffer
	if err := normalDefault().WriteYAML(&buf); err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	scalar := func(n *yaml.Node) string {
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			return `"` + n.Value + `"`
		}
		return n.Value
	}
	out := map[string]string{}
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			p, v := n.Content[i].Value, n.Content[i+1]
			if prefix != "" {
				p = prefix + "." + p
			}
			switch v.Kind {
			case yaml.MappingNode:
				walk(p, v)
			case yaml.ScalarNode:
				out[p] = scalar(v)
			case yaml.SequenceNode:
				vals := make([]string, 0, len(v.Content))
				for _, el := range v.Content {
					if el.Kind != yaml.ScalarNode {
						vals = nil
						break
					}
					vals = append(vals, el.Value)
				}
				if vals != nil {
					out[p] = "[" + strings.Join(vals, ", ") + "]"
				}
			}
		}
	}
	walk("", doc.Content[0])
	return out
}

// TestConfigReferenceDocumentsEveryKey keeps docs/config.md in step with the
// Config struct. Convention: every key has a table row whose first cell is
// its full path in backquotes (`next_upstream.tries`,
// `routes[].timeouts.read`), and, for a key outside a list whose default is
// a scalar or a list of scalars, whose third cell holds that default as
// WriteYAML prints it (`5s`, `[error, timeout]`, `""`). A row for a key
// that does not exist fails too.
func TestConfigReferenceDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := docRows(string(data))
	keys := keyPaths(reflect.TypeFor[config.Config]())
	if len(keys) < 80 {
		t.Fatalf("found only %d keys; keyPaths is broken", len(keys))
	}
	known := map[string]bool{}
	for _, k := range keys {
		known[k] = true
		if _, ok := rows[k]; !ok {
			t.Errorf("docs/config.md has no table row for `%s`", k)
		}
	}
	for k := range rows {
		if !known[k] && !strings.HasPrefix(k, "HEALGATE_") {
			t.Errorf("docs/config.md documents `%s`, which is not a configuration key", k)
		}
	}
	for k, want := range renderDefaults(t) {
		row, ok := rows[k]
		if !ok {
			continue // reported above
		}
		if len(row) < 5 {
			t.Errorf("row for `%s` has %d cells, want 5 (key, type, default, zero, nginx)", k, len(row))
			continue
		}
		if row[2] != "`"+want+"`" {
			t.Errorf("docs/config.md gives `%s` the default %s; the default is `%s`", k, row[2], want)
		}
	}
}
