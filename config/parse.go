package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kloop/kloop/kube/workload"
)

// Error is one problem in a .kloop.yaml, at the YAML node it is about.
type Error struct {
	Line   int    // 1-based
	Column int    // 1-based, in characters (runes) of the line
	Field  string // path of the setting, such as "intercepts[0].port"; "" for YAML syntax errors
	// Message says what is wrong and, where it helps, what to write instead.
	Message string
}

func (e Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Message)
	}
	return fmt.Sprintf("%d:%d: %s: %s", e.Line, e.Column, e.Field, e.Message)
}

// Errors is every problem Parse found in one file, ordered by position.
type Errors struct {
	Filename string
	List     []Error
}

func (e *Errors) Error() string {
	var b strings.Builder
	for i, err := range e.List {
		if i > 0 {
			b.WriteByte('\n')
		}
		if e.Filename != "" {
			b.WriteString(e.Filename)
			b.WriteByte(':')
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

const (
	// maxErrors keeps a pathological file from producing megabytes of
	// diagnostics; the user fixes the first ones first anyway.
	maxErrors = 100
	// maxSteps bounds the work aliases and merge keys can multiply.
	maxSteps = 100_000
)

var durationType = reflect.TypeFor[time.Duration]()

// Parse reads the content of a .kloop.yaml. filename is only used in error
// messages. It reports every problem it finds, as an *Errors, and returns a
// Config only when there are none. Fields the file leaves out get the values
// of Default(); an intercept without a name is named after its workload.
func Parse(filename string, data []byte) (cfg *Config, err error) {
	d := &decoder{pos: map[string]nodePos{}, active: map[*yaml.Node]bool{}, lines: lineCount(data)}
	cfg = Default()
	root := d.parseYAML(data)
	if root != nil {
		d.decodeRoot(root, cfg)
	}
	if len(d.errs) == 0 {
		return cfg, nil
	}
	sort.SliceStable(d.errs, func(i, j int) bool {
		a, b := d.errs[i], d.errs[j]
		return a.Line < b.Line || a.Line == b.Line && a.Column < b.Column
	})
	if len(d.errs) > maxErrors {
		last := d.errs[maxErrors-1]
		d.errs = append(d.errs[:maxErrors-1], Error{Line: last.Line, Column: last.Column, Message: "too many errors; fix the ones above first"})
	}
	return nil, &Errors{Filename: filename, List: d.errs}
}

// nodePos is where a setting was written: its key (nil for list items) and
// its value.
type nodePos struct{ key, value *yaml.Node }

type decoder struct {
	errs   []Error
	pos    map[string]nodePos  // by field path, for validators
	active map[*yaml.Node]bool // anchors being expanded, to stop self-reference
	steps  int
	lines  int
}

func (d *decoder) add(n *yaml.Node, field, msg string) {
	line, col := 1, 1
	if n != nil {
		line, col = max(n.Line, 1), max(n.Column, 1)
	}
	if line > d.lines {
		// An empty node at the end of the file sits past the last line.
		line, col = d.lines, 1
	}
	d.errs = append(d.errs, Error{Line: line, Column: col, Field: field, Message: msg})
}

// step counts work and reports false once the budget is spent.
func (d *decoder) step(n *yaml.Node) bool {
	d.steps++
	if d.steps == maxSteps {
		d.add(n, "", "the file is too large or its aliases and merge keys expand too much")
	}
	return d.steps < maxSteps
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML returns the root node of the single document in data, nil when
// there is none or it does not parse.
func (d *decoder) parseYAML(data []byte) (root *yaml.Node) {
	defer func() {
		// yaml.v3 is third-party code running on whatever is in the editor
		// buffer; a bug there must become a diagnostic, not kill the daemon.
		if r := recover(); r != nil {
			d.add(nil, "", fmt.Sprintf("the YAML parser failed on this file: %v", r))
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			d.syntaxError(err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		at := &next
		if len(next.Content) > 0 {
			at = next.Content[0]
		}
		d.add(at, "", "the file holds more than one YAML document; remove the '---' line before this one")
	case !errors.Is(err, io.EOF):
		d.syntaxError(err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	return doc.Content[0]
}

func (d *decoder) syntaxError(err error) {
	msg := err.Error()
	line := 1
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		if n, convErr := strconv.Atoi(m[1]); convErr == nil {
			line = min(max(n, 1), d.lines)
		}
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	d.errs = append(d.errs, Error{Line: line, Column: 1, Message: "YAML syntax: " + msg})
}

func (d *decoder) decodeRoot(root *yaml.Node, cfg *Config) {
	if isNull(root) {
		return
	}
	if root.Kind != yaml.MappingNode {
		d.add(root, "", fmt.Sprintf("the file must be a mapping of settings (claim, kubeconfig, context, agentImage, intercepts), not %s", describeNode(root)))
		return
	}
	d.decode(root, reflect.ValueOf(cfg).Elem(), "", nil, false)
}

// decode fills v from n. key is the mapping key n is the value of (nil for
// list items). elem is true for list items and map values, where strings may
// be written as any scalar (env: {PORT: 8080} means "8080").
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string, key *yaml.Node, elem bool) {
	if !d.step(n) {
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || d.active[n.Alias] {
			d.add(n, path, fmt.Sprintf("alias *%s refers to the value that contains it", n.Value))
			return
		}
		d.active[n.Alias] = true
		defer delete(d.active, n.Alias)
		d.decode(n.Alias, v, path, key, elem)
		return
	}
	d.pos[path] = nodePos{key: key, value: n}
	if isNull(n) {
		if elem {
			msg := fmt.Sprintf("must be %s, not null", describeType(v.Type()))
			if v.Kind() == reflect.String {
				msg += "; write \"\" for an empty string"
			}
			d.add(n, path, msg)
		}
		return // an unset optional field keeps its default; required ones are checked by the struct
	}
	if v.Type() == workloadType {
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			d.add(n, path, fmt.Sprintf("must be a string such as deployment/orders, not %s", describeNode(n)))
			return
		}
		if err := v.Addr().Interface().(*workload.Workload).UnmarshalText([]byte(n.Value)); err != nil {
			d.add(n, path, err.Error())
		}
		return
	}
	if v.CanAddr() {
		if u, ok := v.Addr().Interface().(yaml.Unmarshaler); ok {
			if err := u.UnmarshalYAML(n); err != nil {
				d.add(n, path, err.Error())
			}
			return
		}
	}
	if v.Type() == durationType {
		d.decodeDuration(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.String:
		switch {
		case n.Kind != yaml.ScalarNode:
			d.add(n, path, fmt.Sprintf("must be a string, not %s", describeNode(n)))
		case !elem && n.ShortTag() != "!!str":
			d.add(n, path, fmt.Sprintf("must be a string, not %s; quote it: \"%s\"", describeNode(n), n.Value))
		default:
			v.SetString(n.Value)
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.add(n, path, fmt.Sprintf("must be true or false, not %s", describeNode(n)))
			return
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			d.add(n, path, fmt.Sprintf("must be true or false: %v", err))
			return
		}
		v.SetBool(b)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.decode(n, p.Elem(), path, key, elem)
		v.Set(p)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.add(n, path, fmt.Sprintf("must be a list (lines starting with \"- \", or [a, b]), not %s", describeNode(n)))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), path+"["+strconv.Itoa(i)+"]", nil, true)
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.add(n, path, fmt.Sprintf("must be a mapping (NAME: VALUE), not %s", describeNode(n)))
			return
		}
		m := reflect.MakeMap(v.Type())
		seen := map[string]*yaml.Node{}
		for _, p := range d.pairs(n, path) {
			name, ok := d.keyName(p.key, path, seen)
			if !ok {
				continue
			}
			val := reflect.New(v.Type().Elem()).Elem()
			d.decode(p.value, val, joinPath(path, name), p.key, true)
			m.SetMapIndex(reflect.ValueOf(name).Convert(v.Type().Key()), val)
		}
		v.Set(m)
	default:
		// Only reachable when a field of a new type is added to Config
		// without teaching the decoder; the tests decode every field.
		d.add(n, path, fmt.Sprintf("kloop cannot read settings of Go type %s (a kloop bug)", v.Type()))
	}
}

func (d *decoder) decodeDuration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.add(n, path, fmt.Sprintf("must be a duration such as 8h or 90m, not %s", describeNode(n)))
		return
	}
	if t := n.ShortTag(); t == "!!int" || t == "!!float" {
		d.add(n, path, fmt.Sprintf("%s needs a unit: write %sh for hours or %sm for minutes", n.Value, n.Value, n.Value))
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		d.add(n, path, fmt.Sprintf("%q is not a duration: write one such as 8h, 90m or 1h30m", n.Value))
		return
	}
	v.SetInt(int64(dur))
}

type field struct {
	name     string
	index    int
	required bool
}

// fieldsOf lists the settings of struct type t by their YAML names.
func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if !sf.IsExported() || name == "-" || name == "" {
			continue
		}
		fs = append(fs, field{name: name, index: i, required: sf.Tag.Get("required") == "true"})
	}
	return fs
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.add(n, path, fmt.Sprintf("must be a mapping (key: value lines), not %s", describeNode(n)))
		return
	}
	fields := fieldsOf(v.Type())
	seen := map[string]*yaml.Node{}
	for _, p := range d.pairs(n, path) {
		name, ok := d.keyName(p.key, path, seen)
		if !ok {
			continue
		}
		i := indexOf(fields, name)
		if i < 0 {
			d.add(p.key, joinPath(path, name), unknownField(name, fields))
			continue
		}
		d.decode(p.value, v.Field(fields[i].index), joinPath(path, name), p.key, false)
	}
	for _, f := range fields {
		k := seen[f.name]
		np, decoded := d.pos[joinPath(path, f.name)]
		if f.required && (k == nil || decoded && isNull(np.value)) {
			at := n
			if k != nil {
				at = k
			}
			d.add(at, joinPath(path, f.name), f.name+" is required")
		}
	}
	if val, ok := v.Addr().Interface().(validator); ok {
		val.validate(reporter{d: d, path: path})
	}
}

// keyName checks a mapping key and records it in seen; ok is false when the
// key cannot be used.
func (d *decoder) keyName(k *yaml.Node, path string, seen map[string]*yaml.Node) (name string, ok bool) {
	if k.Kind == yaml.AliasNode && k.Alias != nil {
		k = k.Alias
	}
	if k.Kind != yaml.ScalarNode || isNull(k) {
		d.add(k, path, fmt.Sprintf("keys must be names, not %s", describeNode(k)))
		return "", false
	}
	if first := seen[k.Value]; first != nil {
		d.add(k, joinPath(path, k.Value), fmt.Sprintf("%q is set twice (first at line %d); keep one", k.Value, first.Line))
		return "", false
	}
	seen[k.Value] = k
	return k.Value, true
}

type pair struct{ key, value *yaml.Node }

// pairs returns the key/value pairs of mapping n with YAML merge keys
// ("<<: *base") applied: keys written in n win over merged ones, and earlier
// merged mappings win over later ones.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	var own, merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergePairs(v, path)...)
			continue
		}
		own = append(own, pair{k, v})
	}
	if len(merged) == 0 {
		return own
	}
	have := map[string]bool{}
	for _, p := range own {
		if p.key.Kind == yaml.ScalarNode {
			have[p.key.Value] = true
		}
	}
	out := own
	for _, p := range merged {
		if p.key.Kind == yaml.ScalarNode && !have[p.key.Value] {
			have[p.key.Value] = true
			out = append(out, p)
		}
	}
	return out
}

func (d *decoder) mergePairs(v *yaml.Node, path string) []pair {
	if !d.step(v) {
		return nil
	}
	if v.Kind == yaml.AliasNode && v.Alias != nil {
		if d.active[v.Alias] {
			d.add(v, path, fmt.Sprintf("alias *%s refers to the value that contains it", v.Value))
			return nil
		}
		d.active[v.Alias] = true
		defer delete(d.active, v.Alias)
		return d.mergePairs(v.Alias, path)
	}
	switch v.Kind {
	case yaml.MappingNode:
		return d.pairs(v, path)
	case yaml.SequenceNode:
		var out []pair
		for _, item := range v.Content {
			if item.Kind == yaml.SequenceNode {
				d.add(item, path, "<< merges a mapping or a list of mappings, not a list of lists")
				continue
			}
			out = append(out, d.mergePairs(item, path)...)
		}
		return out
	}
	d.add(v, path, fmt.Sprintf("<< merges a mapping or a list of mappings, not %s", describeNode(v)))
	return nil
}

func indexOf(fields []field, name string) int {
	for i, f := range fields {
		if f.name == name {
			return i
		}
	}
	return -1
}

func unknownField(name string, fields []field) string {
	best, bestDist := "", 1<<30
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
		if dist := editDistance(strings.ToLower(name), strings.ToLower(f.name)); dist < bestDist {
			best, bestDist = f.name, dist
		}
	}
	// Allow about one typo per four letters, at least one.
	if bestDist <= max(1, len(best)/4) {
		return fmt.Sprintf("unknown field %q; did you mean %q?", name, best)
	}
	return fmt.Sprintf("unknown field %q; known fields here: %s", name, strings.Join(names, ", "))
}

// editDistance is the optimal string alignment distance between a and b, by
// runes: insertions, deletions, substitutions and swaps of neighbours ("prot"
// for "port") count one each.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// parentPath drops the last ".name" or "[i]" of path.
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func describeNode(n *yaml.Node) string {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "a string"
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "null"
		case "!!merge":
			return "a merge key"
		default:
			return "a value tagged " + n.ShortTag()
		}
	}
	return "an alias"
}

func describeType(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Struct:
		return "a mapping"
	case reflect.Slice:
		return "a list"
	case reflect.Map:
		return "a mapping"
	}
	return "a value"
}

// validator is implemented by settings types with rules beyond their shape.
// validate runs after the struct and everything in it were decoded.
type validator interface {
	validate(r reporter)
}

// reporter adds errors for fields of the struct being validated, placing
// each at the closest node that was written in the file.
type reporter struct {
	d    *decoder
	path string
}

// atValue reports msg at the value of field (a path relative to the struct,
// such as "port" or "watch[2]").
func (r reporter) atValue(field, msg string) { r.report(field, false, msg) }

// atKey reports msg at the key of field, for problems with the setting as a
// whole rather than with what it is set to.
func (r reporter) atKey(field, msg string) { r.report(field, true, msg) }

func (r reporter) report(field string, key bool, msg string) {
	full := joinPath(r.path, field)
	for p := full; ; p = parentPath(p) {
		if np, ok := r.d.pos[p]; ok {
			n := np.value
			if key && np.key != nil && p == full {
				n = np.key
			}
			r.d.add(n, full, msg)
			return
		}
		if p == "" {
			r.d.add(nil, full, msg)
			return
		}
	}
}

// line returns the line field was written at, 0 when it was not.
func (r reporter) line(field string) int {
	if np, ok := r.d.pos[joinPath(r.path, field)]; ok {
		return np.value.Line
	}
	return 0
}

// written reports whether field was set to something other than null.
func (r reporter) written(field string) bool {
	np, ok := r.d.pos[joinPath(r.path, field)]
	return ok && !isNull(np.value)
}

// lineCount counts lines the way YAML does: \r\n, \r and \n end a line, and
// so do NEL, LS and PS (which LSP clients do not treat as line breaks).
func lineCount(data []byte) int {
	n := 1
	for i := 0; i < len(data); i++ {
		switch {
		case data[i] == '\n':
			n++
		case data[i] == '\r':
			n++
			if i+1 < len(data) && data[i+1] == '\n' {
				i++
			}
		case bytes.HasPrefix(data[i:], []byte("\u0085")),
			bytes.HasPrefix(data[i:], []byte("\u2028")),
			bytes.HasPrefix(data[i:], []byte("\u2029")):
			n++
		}
	}
	return n
}
