package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/kloop/kloop/agent/tunnel"
	"github.com/kloop/kloop/kube/workload"
)

// SchemaFile is the name of the committed schema next to this package,
// written by `go generate ./config` for the editor extensions.
const SchemaFile = "kloop.schema.json"

// durationPattern matches what time.ParseDuration reads, except signs and a
// bare 0, which claim.for rejects anyway.
const durationPattern = `^(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+$`

// Struct tags read by the schema generator (and, for patterns, the parser):
//
//	description  hover text
//	default      default value, as a string
//	required     "true" when the field must be set
//	pattern      regular expression a string value must match
//	keyPattern   regular expression the keys of a map must match
//	valuePattern regular expression the string values of a map must match
//	minItems     least number of items of a list

// schemaer is implemented by types that read a scalar their own way.
type schemaer interface{ jsonSchema() map[string]any }

// schemaExtender is implemented by structs with rules across fields.
type schemaExtender interface{ extendSchema(s map[string]any) }

// Schema returns the JSON Schema (draft-07, the dialect the YAML language
// server in VS Code handles best) of .kloop.yaml, generated from the Config
// types so that it describes exactly what Parse reads. Rules the schema
// language cannot say (duplicate intercept names, the claim.for range) are
// only checked by Parse.
func Schema() ([]byte, error) {
	s := typeSchema(reflect.TypeFor[Config](), false)
	s["$schema"] = "http://json-schema.org/draft-07/schema#"
	s["title"] = "kloop workspace configuration (.kloop.yaml)"
	s["description"] = "Settings for kloop in this workspace: claim defaults, the cluster to use, and the workloads to intercept with the local programs that take their traffic."
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("encode kloop JSON Schema: %w", err)
	}
	return b.Bytes(), nil
}

// typeSchema describes t. elem is true for list items and map values, where
// the parser reads any scalar as a string.
func typeSchema(t reflect.Type, elem bool) map[string]any {
	if s, ok := reflect.Zero(t).Interface().(schemaer); ok {
		return s.jsonSchema()
	}
	if t == durationType {
		return map[string]any{"type": "string", "pattern": durationPattern}
	}
	if t == workloadType {
		return map[string]any{
			"type":                "string",
			"pattern":             workloadPattern(),
			"patternErrorMessage": "write deployment/NAME, statefulset/NAME or NAME (kubectl's deploy/NAME, sts/NAME, deployments.apps/NAME and the like work too), with a lowercase Kubernetes name",
		}
	}
	switch t.Kind() {
	case reflect.String:
		if elem {
			return map[string]any{"type": []any{"string", "number", "boolean"}}
		}
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Pointer:
		return typeSchema(t.Elem(), elem)
	case reflect.Slice:
		return map[string]any{"type": "array", "items": typeSchema(t.Elem(), true)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": typeSchema(t.Elem(), true)}
	case reflect.Struct:
		props := map[string]any{}
		var required []any
		for _, f := range fieldsOf(t) {
			props[f.name] = fieldSchema(t.Field(f.index), f.required)
			if f.required {
				required = append(required, f.name)
			}
		}
		s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		if len(required) > 0 {
			s["required"] = required
		}
		if x, ok := reflect.Zero(reflect.PointerTo(t)).Interface().(schemaExtender); ok {
			x.extendSchema(s)
		}
		return s
	}
	// Parse reports the same type as unreadable; TestSchemaMatchesParser
	// notices either.
	return map[string]any{"description": "unsupported Go type " + t.String()}
}

var workloadType = reflect.TypeFor[workload.Workload]()

// workloadPattern is the JSON Schema pattern of a workload, built from
// workload.Spellings and workload.NamePattern so that it accepts the kinds
// workload.Parse accepts. Schema patterns have no flags, so a spelling that
// kubectl reads in any case gets a character class per letter ([dD][eE]...).
// Only the name length limit is left to the parser.
func workloadPattern() string {
	// Resource names in the order of Spellings, each with its suffixes.
	var order []string
	sufs := map[string][]string{}
	for _, sp := range workload.Spellings() {
		r := sp.Resource
		if sp.AnyCase {
			r = anyCase(r)
		} else {
			r = regexp.QuoteMeta(r)
		}
		if _, ok := sufs[r]; !ok {
			order = append(order, r)
		}
		sufs[r] = append(sufs[r], sp.Suffix)
	}
	// Names with the same suffixes share one alternative:
	// (deployment|deployments|deploy|...)(\.apps|\.v1\.apps)?
	var keys []string
	names := map[string][]string{}
	for _, r := range order {
		k := strings.Join(sufs[r], "\x00")
		if _, ok := names[k]; !ok {
			keys = append(keys, k)
		}
		names[k] = append(names[k], r)
	}
	var alts []string
	for _, k := range keys {
		alt := "(" + strings.Join(names[k], "|") + ")"
		var opt []string
		bare := false
		for _, s := range strings.Split(k, "\x00") {
			if s == "" {
				bare = true
				continue
			}
			opt = append(opt, regexp.QuoteMeta(s))
		}
		switch {
		case len(opt) > 0 && bare:
			alt += "(" + strings.Join(opt, "|") + ")?"
		case len(opt) > 0:
			alt += "(" + strings.Join(opt, "|") + ")"
		}
		alts = append(alts, alt)
	}
	return "^((" + strings.Join(alts, "|") + ")/)?" + workload.NamePattern + "$"
}

// anyCase writes s as a pattern that matches it in any case of its ASCII
// letters: "sts" becomes "[sS][tT][sS]".
func anyCase(s string) string {
	var b strings.Builder
	for _, c := range s {
		lo, up := strings.ToLower(string(c)), strings.ToUpper(string(c))
		if lo == up || c > 0x7f {
			b.WriteString(regexp.QuoteMeta(string(c)))
			continue
		}
		b.WriteString("[" + lo + up + "]")
	}
	return b.String()
}

func fieldSchema(sf reflect.StructField, required bool) map[string]any {
	s := typeSchema(sf.Type, false)
	tag := sf.Tag
	if v := tag.Get("description"); v != "" {
		s["description"] = v
	}
	if v := tag.Get("default"); v != "" {
		s["default"] = v
	}
	if v := tag.Get("pattern"); v != "" {
		s["pattern"] = v
	}
	if v := tag.Get("keyPattern"); v != "" {
		s["propertyNames"] = map[string]any{"pattern": v}
	}
	if v := tag.Get("valuePattern"); v != "" {
		if vs, ok := s["additionalProperties"].(map[string]any); ok {
			vs["pattern"] = v
		}
	}
	if v := tag.Get("itemPattern"); v != "" {
		if items, ok := s["items"].(map[string]any); ok {
			items["pattern"] = v
		}
	}
	if v := tag.Get("minItems"); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			s["minItems"] = n
		}
	}
	if !required {
		allowNull(s)
	}
	return s
}

// allowNull lets an optional setting be written empty ("key:" alone), which
// Parse reads as "not set".
func allowNull(s map[string]any) {
	switch t := s["type"].(type) {
	case string:
		s["type"] = []any{t, "null"}
	case []any:
		s["type"] = append(t, "null")
	}
	if alts, ok := s["anyOf"].([]any); ok {
		s["anyOf"] = append(alts, map[string]any{"type": "null"})
	}
}

func (*Intercept) extendSchema(s map[string]any) {
	s["allOf"] = []any{
		map[string]any{
			"not":          map[string]any{"required": []any{"program", "run"}},
			"errorMessage": "program and run cannot both be set: program is a Go main package, run.command starts any other program",
		},
		map[string]any{
			"not":          map[string]any{"required": []any{"buildFlags", "run"}},
			"errorMessage": "buildFlags apply to go build of program; with run, put the build in build.command",
		},
	}
	s["dependencies"] = map[string]any{"build": []any{"run"}}
	if props, ok := s["properties"].(map[string]any); ok {
		if t, ok := props["traffic"].(map[string]any); ok {
			enum := make([]any, 0, len(TrafficModes)+1)
			for _, m := range TrafficModes {
				enum = append(enum, m)
			}
			t["enum"] = append(enum, nil)
		}
		if m, ok := props["match"].(map[string]any); ok {
			m["enum"] = []any{tunnel.MatchAll, tunnel.MatchAny, nil}
		}
	}
}

// tagOf returns the struct tag key of field name of the struct value v; the
// validators use it to share their patterns with the schema.
func tagOf(v any, name, key string) string {
	sf, ok := reflect.TypeOf(v).FieldByName(name)
	if !ok {
		panic("config: no field " + name) // a typo in this package, caught by any test
	}
	return strings.TrimSpace(sf.Tag.Get(key))
}
