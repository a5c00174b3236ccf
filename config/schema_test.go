package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestSchemaFileIsUpToDate(t *testing.T) {
	want, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(SchemaFile)
	if err != nil {
		t.Fatalf("read committed schema: %v (run: go generate ./config)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("config/%s differs from what the Go types generate; regenerate it with: go generate ./config", SchemaFile)
	}
}

// TestSchemaMatchesParser feeds the same files to Parse and to a small
// draft-07 validator running the generated schema, the way the YAML language
// server would: both must accept or reject each one. Rules the schema cannot
// state are listed with the reason, and the schema must then accept the file
// (so a case moves here only on purpose).
func TestSchemaMatchesParser(t *testing.T) {
	raw, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	icp := func(body string) string { return "intercepts:\n  - " + body + "\n" }
	tests := []struct {
		name       string
		src        string
		valid      bool
		parserOnly string // why only Parse can reject it
	}{
		{name: "full example", src: fullExample, valid: true},
		{name: "empty claim", src: "claim:\n", valid: true},
		{name: "claim fields", src: "claim: {pool: team-a.dev, for: 1h30m}\n", valid: true},
		{name: "kubeconfig and context", src: "kubeconfig: ./kc\ncontext: dev\n", valid: true},
		{name: "port as number", src: icp("{workload: a, port: 8080}"), valid: true},
		{name: "port pair", src: icp("{workload: a, port: '1:65535'}"), valid: true},
		{name: "port leading zero", src: icp("{workload: a, port: '08080'}"), valid: true},
		{name: "kubectl kinds", src: icp("{workload: sts/a}") + "  - {workload: deploy/b}\n", valid: true},
		{name: "kubectl kinds with group", src: icp("{workload: deployments.apps/a}") + "  - {workload: sts.v1.apps/b}\n", valid: true},
		{name: "kind names in any case", src: icp("{workload: Deployment/a}") + "  - {workload: STATEFULSETS.apps/b}\n", valid: true},
		{name: "scalars as text", src: icp("{workload: a, args: [1, true], env: {A: 1.5}, header: {x-n: 1}}"), valid: true},
		{name: "optional fields null", src: icp("{workload: a, program: , port: , env: , readiness: }"), valid: true},
		{name: "run with build and watch", src: icp("{workload: a, run: {command: [x]}, build: {command: [make]}, watch: ['**/*.py']}"), valid: true},
		{name: "readiness", src: icp("{workload: a, readiness: {httpPath: /ready}}"), valid: true},
		{name: "replayOnSave", src: icp("{workload: a, program: ., replayOnSave: true}"), valid: true},
		{name: "replayOnSave a string", src: icp("{workload: a, replayOnSave: 'yes'}")},

		{name: "unknown top-level key", src: "intercept: []\n"},
		{name: "unknown intercept key", src: icp("{workload: a, prot: 1}")},
		{name: "unknown claim key", src: "claim: {size: 1}\n"},
		{name: "claim is a list", src: "claim: [a]\n"},
		{name: "context is a number", src: "context: 1\n"},
		{name: "intercepts keyed by name", src: "intercepts:\n  a: {workload: a}\n"},
		{name: "workload missing", src: icp("{name: a}")},
		{name: "workload null", src: icp("{workload: }")},
		{name: "workload kind", src: icp("{workload: foo/bar}")},
		{name: "workload short kind capitalized", src: icp("{workload: Deploy/a}")},
		{name: "workload group capitalized", src: icp("{workload: deployment.APPS/a}")},
		{name: "workload group", src: icp("{workload: deployment.extensions/a}")},
		{name: "workload name", src: icp("{workload: Orders}")},
		{name: "workload number", src: icp("{workload: 1}")},
		{name: "port zero", src: icp("{workload: a, port: 0}")},
		{name: "port too large", src: icp("{workload: a, port: 65536}")},
		{name: "local port too large", src: icp("{workload: a, port: '1:70000'}")},
		{name: "port local empty", src: icp("{workload: a, port: '8080:'}")},
		{name: "port name", src: icp("{workload: a, port: http}")},
		{name: "port float", src: icp("{workload: a, port: 80.5}")},
		{name: "port list", src: icp("{workload: a, port: [80]}")},
		{name: "program and run", src: icp("{workload: a, program: ./x, run: {command: [x]}}")},
		{name: "build without run", src: icp("{workload: a, program: ./x, build: {command: [x]}}")},
		{name: "buildFlags with run", src: icp("{workload: a, buildFlags: [-race], run: {command: [x]}}")},
		{name: "header name", src: icp("{workload: a, header: {'x dev': me}}")},
		{name: "header value", src: icp("{workload: a, header: {x-dev: \"a\\nb\"}}")},
		{name: "env name", src: icp("{workload: a, env: {A=B: c}}")},
		{name: "env value null", src: icp("{workload: a, env: {A: }}")},
		{name: "args null item", src: icp("{workload: a, args: [a, ~]}")},
		{name: "args mapping item", src: icp("{workload: a, args: [{a: b}]}")},
		{name: "duration number", src: "claim: {for: 8}\n"},
		{name: "duration words", src: "claim: {for: 8 hours}\n"},
		{name: "pool name", src: "claim: {pool: Team_A}\n"},
		{name: "readiness path", src: icp("{workload: a, readiness: {httpPath: healthz}}")},
		{name: "run without command", src: icp("{workload: a, run: {}}")},
		{name: "run empty command", src: icp("{workload: a, run: {command: []}}")},
		{name: "intercept name", src: icp("{name: my orders, workload: a}")},
		{name: "intercept name empty", src: icp("{name: '', workload: a}")},
		{name: "file is a list", src: "- a\n"},

		{name: "duplicate names", src: icp("{workload: a}") + "  - {workload: statefulset/a}\n",
			parserOnly: "a schema cannot compare list items by one field"},
		{name: "zero duration", src: "claim: {for: 0s}\n", parserOnly: "a schema has no range for duration strings"},
		{name: "duration over a week", src: "claim: {for: 169h}\n", parserOnly: "a schema has no range for duration strings"},
		{name: "empty program in command", src: icp("{workload: a, run: {command: ['', x]}}"),
			parserOnly: "draft-07 cannot constrain only the first item without constraining the rest"},
		{name: "bad glob", src: icp("{workload: a, watch: ['[a-']}"), parserOnly: "glob syntax is not a regular language"},
		{name: "workload name too long", src: icp("{workload: deployment/" + strings.Repeat("a", 254) + "}"),
			parserOnly: "the name length limit cannot be combined with the optional kind prefix in one pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, parseErr := Parse("x.yaml", []byte(tt.src))
			var doc any
			if err := yaml.Unmarshal([]byte(tt.src), &doc); err != nil {
				t.Fatalf("test YAML does not parse: %v", err)
			}
			schemaErrs := validate(t, schema, jsonValue(t, doc), "")
			if parserValid := parseErr == nil; parserValid != tt.valid && tt.parserOnly == "" || tt.parserOnly != "" && parserValid {
				t.Errorf("Parse: got error %v, want valid=%v", parseErr, tt.valid && tt.parserOnly == "")
			}
			wantSchemaValid := tt.valid || tt.parserOnly != ""
			if schemaValid := len(schemaErrs) == 0; schemaValid != wantSchemaValid {
				t.Errorf("schema: got %v, want valid=%v (parser said: %v)", schemaErrs, wantSchemaValid, parseErr)
			}
		})
	}
}

// TestSchemaDescribesEverySetting keeps hover text from silently going
// missing when a field is added.
func TestSchemaDescribesEverySetting(t *testing.T) {
	raw, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	var walk func(s map[string]any, path string)
	walk = func(s map[string]any, path string) {
		props, _ := s["properties"].(map[string]any)
		for name, p := range props {
			ps := p.(map[string]any)
			if d, _ := ps["description"].(string); d == "" {
				t.Errorf("%s has no description tag", joinPath(path, name))
			}
			walk(ps, joinPath(path, name))
			if items, ok := ps["items"].(map[string]any); ok {
				walk(items, joinPath(path, name)+"[]")
			}
		}
	}
	walk(schema, "")
	if len(schema["properties"].(map[string]any)) != 5 {
		t.Errorf("top-level settings = %v, want claim, kubeconfig, context, agentImage, intercepts", schema["properties"])
	}
}

// jsonValue turns a decoded YAML value into what JSON decoding gives
// (json.Number for numbers), the data model the YAML language server checks.
func jsonValue(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("test YAML has no JSON form: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// annotations are schema keywords that do not constrain values.
var annotations = map[string]bool{
	"$schema": true, "title": true, "description": true, "default": true,
	"errorMessage": true, "patternErrorMessage": true,
}

// validate checks v against the draft-07 subset the generator emits and
// fails the test on any keyword it does not know, so that no constraint is
// silently skipped. It returns the violations found.
func validate(t *testing.T, s map[string]any, v any, at string) []string {
	t.Helper()
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, args...)) }
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	obj, isObj := v.(map[string]any)
	arr, isArr := v.([]any)
	str, isStr := v.(string)
	num, isNum := v.(json.Number)
	for _, k := range keys {
		kw := s[k]
		switch k {
		case "type":
			types, ok := kw.([]any)
			if !ok {
				types = []any{kw}
			}
			match := false
			for _, ty := range types {
				match = match || hasType(v, ty.(string))
			}
			if !match {
				fail("type %v", kw)
			}
		case "properties":
			for name, ps := range kw.(map[string]any) {
				if pv, ok := obj[name]; isObj && ok {
					errs = append(errs, validate(t, ps.(map[string]any), pv, at+"."+name)...)
				}
			}
		case "additionalProperties":
			if !isObj {
				continue
			}
			props, _ := s["properties"].(map[string]any)
			for name, pv := range obj {
				if _, known := props[name]; known {
					continue
				}
				switch ap := kw.(type) {
				case bool:
					if !ap {
						fail("property %q not allowed", name)
					}
				case map[string]any:
					errs = append(errs, validate(t, ap, pv, at+"."+name)...)
				}
			}
		case "required":
			for _, name := range kw.([]any) {
				if _, ok := obj[name.(string)]; isObj && !ok {
					fail("%s is required", name)
				}
			}
		case "propertyNames":
			for name := range obj {
				errs = append(errs, validate(t, kw.(map[string]any), name, at+"."+name+"(name)")...)
			}
		case "pattern":
			if isStr && !regexp.MustCompile(kw.(string)).MatchString(str) {
				fail("%q does not match %s", str, kw)
			}
		case "items":
			for i, item := range arr {
				errs = append(errs, validate(t, kw.(map[string]any), item, fmt.Sprintf("%s[%d]", at, i))...)
			}
		case "minItems":
			if isArr && float64(len(arr)) < kw.(float64) {
				fail("fewer than %v items", kw)
			}
		case "minimum", "maximum":
			if !isNum {
				continue
			}
			f, _ := num.Float64()
			if k == "minimum" && f < kw.(float64) || k == "maximum" && f > kw.(float64) {
				fail("%s %v", k, kw)
			}
		case "anyOf":
			ok := false
			for _, alt := range kw.([]any) {
				ok = ok || len(validate(t, alt.(map[string]any), v, at)) == 0
			}
			if !ok {
				fail("matches no anyOf alternative")
			}
		case "allOf":
			for _, sub := range kw.([]any) {
				errs = append(errs, validate(t, sub.(map[string]any), v, at)...)
			}
		case "not":
			if len(validate(t, kw.(map[string]any), v, at)) == 0 {
				fail("matches a schema that is not allowed: %v", kw)
			}
		case "enum":
			if !slices.Contains(kw.([]any), v) {
				fail("%v is not one of %v", v, kw)
			}
		case "dependencies":
			for name, deps := range kw.(map[string]any) {
				if _, ok := obj[name]; !isObj || !ok {
					continue
				}
				for _, dep := range deps.([]any) {
					if _, ok := obj[dep.(string)]; !ok {
						fail("%s needs %s", name, dep)
					}
				}
			}
		default:
			if !annotations[k] {
				t.Fatalf("schema keyword %q at %s is unknown to this test's validator; teach validate() about it", k, at)
			}
		}
	}
	return errs
}

func hasType(v any, ty string) bool {
	switch ty {
	case "null":
		return v == nil
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		return ok && !strings.ContainsAny(n.String(), ".eE")
	case "array":
		_, ok := v.([]any)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	}
	return false
}
