package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load reads the YAML file at path and returns its configuration; see Parse.
// A file that cannot be read returns the *fs.PathError from os.ReadFile
// (errors.Is(err, fs.ErrNotExist) holds for a missing file).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse decodes one YAML document on top of Default(), normalises the result
// (see Normalize) and validates it. file names the source in error messages
// only. It returns either a valid *Config and nil, or nil and an Errors
// holding every problem found, in file order, each with its line: YAML
// syntax, unknown keys (at any depth), values of the wrong type, and
// everything Validate rejects.
//
// Decoding rules:
//   - A key that is absent, or present with no value or null ("key:",
//     "key: ~"), keeps its default. An explicit empty string ("") or empty
//     list ([]) sets the value empty: "routes: []" means no routes.
//   - A mapping merges into the defaults key by key; a list replaces the
//     default list as a whole, and its elements start from their zero value
//     (see each field's documentation). An empty list is stored as nil.
//   - Durations are strings for time.ParseDuration ("5s", "1m30s"); a bare
//     number is an error, since "5" could mean seconds or milliseconds.
//   - Sizes are ByteSize values ("1MiB", "512k", 1048576).
//   - trusted_proxies entries are CIDR prefixes ("10.0.0.0/8"); a bare IP
//     address means that address alone (/32 or /128). Host bits are masked.
//   - A key given twice in one mapping is an error; anchors, aliases and
//     merge keys (<<) work as in YAML. Top-level keys that start with "x-"
//     are ignored, so that they can hold anchors.
func Parse(file string, data []byte) (*Config, error) {
	d := &decoder{lines: map[string]int{}}
	cfg := Default()
	root, err := parseDocument(data)
	if err != nil {
		d.errs = append(d.errs, err)
	} else if root != nil {
		d.decode(root, reflect.ValueOf(cfg).Elem(), "")
	}
	cfg.Normalize()
	if verr := cfg.Validate(); verr != nil {
		for _, e := range verr.(Errors) {
			if !d.covered(e.Path) {
				e.Line = d.lineOf(e.Path)
				d.errs = append(d.errs, e)
			}
		}
	}
	if len(d.errs) == 0 {
		return cfg, nil
	}
	for _, e := range d.errs {
		e.File = file
	}
	// File order; problems without a line (defaults that fail a check with
	// a value from elsewhere) last.
	slices.SortStableFunc(d.errs, func(a, b *Error) int {
		return cmp.Compare(lineKey(a.Line), lineKey(b.Line))
	})
	return nil, d.errs
}

func lineKey(line int) int {
	if line <= 0 {
		return math.MaxInt
	}
	return line
}

// parseDocument returns the root mapping of the single document in data, or
// nil for a document with no content (empty, or only comments).
func parseDocument(data []byte) (*yaml.Node, *Error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxError(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(err)
	default:
		return nil, &Error{Line: next.Line, Msg: "only one YAML document is allowed (found a second after ---)"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, &Error{Line: root.Line, Msg: "want a mapping of keys at the top level, such as \"listen: 127.0.0.1:8080\""}
	}
	return root, nil
}

// syntaxError turns a yaml.v3 syntax error ("yaml: line 3: did not find
// expected key"), which has no type of its own, into an Error. It only moves
// the line number into Error.Line; an error in another form is kept whole.
func syntaxError(err error) *Error {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "yaml: line "); ok {
		num, text, ok := strings.Cut(rest, ": ")
		if line, err := strconv.Atoi(num); ok && err == nil && line > 0 {
			return &Error{Line: line, Msg: "yaml: " + text}
		}
	}
	return &Error{Msg: msg}
}

// maxNodes bounds the nodes one Parse visits, so that aliases cannot make a
// small document expand without end.
const maxNodes = 100_000

// decoder walks a YAML node tree alongside a Go value, using the yaml struct
// tags, and records every problem with its line.
type decoder struct {
	errs    Errors
	typed   []string       // paths whose value had the wrong type
	lines   map[string]int // key path → line where it was given
	visited int
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, &Error{Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// typeError records a value of the wrong type; validation problems under the
// same path are then not reported again.
func (d *decoder) typeError(n *yaml.Node, path, format string, args ...any) {
	d.fail(n, path, format, args...)
	d.typed = append(d.typed, path)
}

// covered reports whether path lies at or under a value that had the wrong
// type (and so kept its default).
func (d *decoder) covered(path string) bool {
	for _, p := range d.typed {
		if path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[") {
			return true
		}
	}
	return false
}

// lineOf returns the line where path, or the closest enclosing key, was given.
func (d *decoder) lineOf(path string) int {
	for path != "" {
		if line, ok := d.lines[path]; ok {
			return line
		}
		path = path[:max(strings.LastIndexByte(path, '.'), strings.LastIndexByte(path, '['), 0)]
	}
	return 0
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if d.visited >= maxNodes {
		return
	}
	if d.visited++; d.visited == maxNodes {
		d.typeError(n, path, "the document is too large (more than %d values, counting aliases)", maxNodes)
		return
	}
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // keep the default
	}
	t := v.Type()
	switch t {
	case reflect.TypeFor[time.Duration]():
		d.decodeDuration(n, v, path)
		return
	case reflect.TypeFor[ByteSize]():
		if n.Kind != yaml.ScalarNode {
			d.typeError(n, path, "want a size such as 1MiB, got %s", describe(n))
			return
		}
		size, err := ParseByteSize(n.Value)
		if err != nil {
			d.typeError(n, path, "%v", err)
			return
		}
		v.SetInt(int64(size))
		return
	case reflect.TypeFor[netip.Prefix]():
		d.decodePrefix(n, v, path)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
		return
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.typeError(n, path, "want a list such as [a, b], got %s", describe(n))
			return
		}
		if len(n.Content) == 0 {
			v.Set(reflect.Zero(t))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, el := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			d.lines[p] = el.Line
			d.decode(el, s.Index(i), p)
		}
		v.Set(s)
		return
	case reflect.Pointer:
		e := reflect.New(t.Elem())
		if !v.IsNil() {
			e.Elem().Set(v.Elem())
		}
		d.decode(n, e.Elem(), path)
		v.Set(e)
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.typeError(n, path, "want a single value, got %s", describe(n))
		return
	}
	switch t.Kind() {
	case reflect.String:
		// Any scalar: "expect_body: true" means the text true.
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.typeError(n, path, "want true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if n.ShortTag() != "!!int" || n.Decode(&i) != nil || v.OverflowInt(i) {
			d.typeError(n, path, "want a whole number, got %s", describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var i int64
		if n.ShortTag() != "!!int" || n.Decode(&i) != nil || i < 0 || v.OverflowUint(uint64(i)) {
			d.typeError(n, path, "want a whole number from 0 to %d, got %s", uint64(1)<<(t.Bits())-1, describe(n))
			return
		}
		v.SetUint(uint64(i))
	case reflect.Float32, reflect.Float64:
		var f float64
		if tag := n.ShortTag(); tag != "!!int" && tag != "!!float" || n.Decode(&f) != nil {
			d.typeError(n, path, "want a number such as 0.5, got %s", describe(n))
			return
		}
		v.SetFloat(f)
	default:
		// A field type this decoder does not know: a bug, not a user error.
		d.typeError(n, path, "internal error: cannot decode into %s", t)
	}
}

func (d *decoder) decodeDuration(n *yaml.Node, v reflect.Value, path string) {
	const want = "want a duration such as 5s, 1m30s or 1h"
	if n.Kind != yaml.ScalarNode {
		d.typeError(n, path, "%s, got %s", want, describe(n))
		return
	}
	if tag := n.ShortTag(); tag == "!!int" || tag == "!!float" {
		d.typeError(n, path, "%s, got %s: a bare number is ambiguous, give a unit", want, n.Value)
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		d.typeError(n, path, "%s, got %q", want, n.Value)
		return
	}
	v.SetInt(int64(dur))
}

func (d *decoder) decodePrefix(n *yaml.Node, v reflect.Value, path string) {
	const want = "want an address or prefix such as 127.0.0.1/32 or ::1/128"
	if n.Kind != yaml.ScalarNode {
		d.typeError(n, path, "%s, got %s", want, describe(n))
		return
	}
	p, err := netip.ParsePrefix(n.Value)
	if err != nil {
		addr, aerr := netip.ParseAddr(n.Value)
		if aerr != nil || addr.Zone() != "" {
			d.typeError(n, path, "%s, got %q", want, n.Value)
			return
		}
		p = netip.PrefixFrom(addr, addr.BitLen())
	}
	v.Set(reflect.ValueOf(p.Masked()))
}

// field is one yaml-tagged struct field.
type field struct {
	name  string
	index int
}

// fieldsOf lists the yaml-tagged fields of struct type t, in order.
func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		out = append(out, field{name, i})
	}
	return out
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "want a mapping of keys, got %s", describe(n))
		return
	}
	fields := fieldsOf(v.Type())
	// Merge keys first, so that the mapping's own keys override them.
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!merge" {
			continue
		}
		for val.Kind == yaml.AliasNode {
			val = val.Alias
		}
		srcs := []*yaml.Node{val}
		if val.Kind == yaml.SequenceNode {
			srcs = slices.Clone(val.Content)
			slices.Reverse(srcs) // earlier sources take precedence
		}
		for _, src := range srcs {
			for src.Kind == yaml.AliasNode {
				src = src.Alias
			}
			d.decodeStruct(src, v, path)
		}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "want a key name, got %s", describe(k))
			continue
		}
		p := k.Value
		if path != "" {
			p = path + "." + k.Value
		}
		if line, dup := seen[k.Value]; dup {
			d.fail(k, p, "key given twice (first on line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		j := slices.IndexFunc(fields, func(f field) bool { return f.name == k.Value })
		if j < 0 && path == "" && strings.HasPrefix(k.Value, "x-") {
			continue // an extension key: a place for anchors
		}
		if j < 0 {
			d.fail(k, p, "unknown key%s", suggest(k.Value, fields))
			continue
		}
		d.lines[p] = k.Line
		d.decode(val, v.Field(fields[j].index), p)
	}
}

// suggest returns ` (did you mean "x"?)` for the known key closest to an
// unknown one, when there is a close one.
func suggest(key string, fields []field) string {
	best, bestDist := "", 3
	for _, f := range fields {
		if dist := editDistance(strings.ToLower(key), f.name); dist < bestDist {
			best, bestDist = f.name, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Normalize fills in the defaults that depend on other values, in place:
// an empty Upstream.Name becomes its URL's host:port, a nil Route.Breaker or
// Route.Retry becomes a pointer to true, an empty Webhook.Format becomes
// "generic", and trusted_proxies prefixes lose their host bits. Parse calls
// it; call it on a Config built in code before handing it out. It is
// idempotent and never fails; Validate reports what it cannot fix.
func (c *Config) Normalize() {
	for i := range c.TrustedProxies {
		c.TrustedProxies[i] = c.TrustedProxies[i].Masked()
	}
	for i := range c.Upstreams {
		c.Upstreams[i].Name = upstreamName(&c.Upstreams[i])
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Breaker == nil {
			r.Breaker = new(true)
		}
		if r.Retry == nil {
			r.Retry = new(true)
		}
	}
	if c.Healing.Upstream == "" {
		for _, u := range c.Upstreams {
			if !u.Backup {
				c.Healing.Upstream = u.Name
				break
			}
		}
	}
	for i := range c.Notify.Webhooks {
		if c.Notify.Webhooks[i].Format == "" {
			c.Notify.Webhooks[i].Format = FormatGeneric
		}
	}
}

// The environment variables ApplyEnv reads.
const (
	EnvListen      = "HEALGATE_LISTEN"       // overrides listen
	EnvAdminListen = "HEALGATE_ADMIN_LISTEN" // overrides admin.listen
	EnvLogLevel    = "HEALGATE_LOG_LEVEL"    // overrides log.level
	EnvLogFormat   = "HEALGATE_LOG_FORMAT"   // overrides log.format
)

// ApplyEnv overrides cfg's listen, admin.listen, log.level and log.format
// with the environment variables HEALGATE_LISTEN, HEALGATE_ADMIN_LISTEN,
// HEALGATE_LOG_LEVEL and HEALGATE_LOG_FORMAT, read through getenv (usually
// os.Getenv; nil reads nothing). A variable that is unset or empty changes
// nothing, so the environment cannot disable the admin listener. The result
// is validated as a whole: on success cfg is updated and ApplyEnv returns
// nil; otherwise cfg is left unchanged and ApplyEnv returns an Errors in
// which each problem caused by a variable names it in Error.Env.
func ApplyEnv(cfg *Config, getenv func(string) string) error {
	if getenv == nil {
		return nil
	}
	next := *cfg
	from := map[string]string{} // key path → variable
	for _, o := range []struct {
		env, path string
		dst       *string
	}{
		{EnvListen, "listen", &next.Listen},
		{EnvAdminListen, "admin.listen", &next.Admin.Listen},
		{EnvLogLevel, "log.level", &next.Log.Level},
		{EnvLogFormat, "log.format", &next.Log.Format},
	} {
		if val := getenv(o.env); val != "" {
			*o.dst = val
			from[o.path] = o.env
		}
	}
	if len(from) == 0 {
		return nil
	}
	if err := next.Validate(); err != nil {
		for _, e := range err.(Errors) {
			e.Env = from[e.Path]
		}
		return err
	}
	*cfg = next
	return nil
}

// WriteYAML writes c as YAML with every key, defaults included: durations as
// "5s", sizes as "1MiB", prefixes as "127.0.0.1/32". Parse reads the output
// back into an equal Config (for a Config that Normalize has seen; a nil
// Route.Breaker or Route.Retry is written as null).
func (c *Config) WriteYAML(w io.Writer) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(encode(reflect.ValueOf(c).Elem())); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

func scalar(tag, value string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
}

// encode builds the YAML node for v, the inverse of decoder.decode.
func encode(v reflect.Value) *yaml.Node {
	t := v.Type()
	switch t {
	case reflect.TypeFor[time.Duration]():
		return scalar("!!str", formatDuration(time.Duration(v.Int())))
	case reflect.TypeFor[ByteSize]():
		s := ByteSize(v.Int()).String()
		if _, err := strconv.ParseInt(s, 10, 64); err == nil {
			return scalar("!!int", s)
		}
		return scalar("!!str", s)
	case reflect.TypeFor[netip.Prefix]():
		return scalar("!!str", v.Interface().(netip.Prefix).String())
	}
	switch t.Kind() {
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for _, f := range fieldsOf(t) {
			n.Content = append(n.Content, scalar("!!str", f.name), encode(v.Field(f.index)))
		}
		return n
	case reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
		for i := range v.Len() {
			el := encode(v.Index(i))
			if el.Kind != yaml.ScalarNode {
				n.Style = 0
			}
			n.Content = append(n.Content, el)
		}
		return n
	case reflect.Pointer:
		if v.IsNil() {
			return scalar("!!null", "null")
		}
		return encode(v.Elem())
	case reflect.String:
		return scalar("!!str", v.String())
	case reflect.Bool:
		return scalar("!!bool", strconv.FormatBool(v.Bool()))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return scalar("!!int", strconv.FormatInt(v.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return scalar("!!int", strconv.FormatUint(v.Uint(), 10))
	case reflect.Float32, reflect.Float64:
		return scalar("!!float", strconv.FormatFloat(v.Float(), 'g', -1, 64))
	}
	panic(fmt.Sprintf("config: cannot encode %s", t)) // a new field type: a bug
}

// formatDuration writes d the way an operator would: "1m" rather than "1m0s",
// "1h" rather than "1h0m0s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
