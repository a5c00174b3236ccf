package debugadapter

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestBreakpointsReplaced(t *testing.T) {
	args := json.RawMessage(`{"source":{"path":"/src/main.go"},"breakpoints":[{"line":10},{"line":20,"condition":"x > 1"}]}`)
	answer := func(bps string) []byte { return []byte(`{"success":true,"body":{"breakpoints":` + bps + `}}`) }
	tests := []struct {
		name   string
		before string
		after  string
		want   []breakpointResult
	}{
		{name: "same answer: nothing to tell",
			before: `[{"id":1,"verified":true,"line":10},{"id":2,"verified":true,"line":20}]`,
			after:  `[{"id":1,"verified":true,"line":10},{"id":2,"verified":true,"line":20}]`},
		{name: "a line no longer valid in the new build",
			before: `[{"id":1,"verified":true,"line":10},{"id":2,"verified":true,"line":20}]`,
			after:  `[{"id":1,"verified":true,"line":10},{"id":2,"verified":false,"message":"no code at line"}]`,
			want:   []breakpointResult{{ID: 2, Verified: false, Message: "no code at line"}}},
		{name: "a new debugger numbers anew: the editor's ids are kept",
			before: `[{"id":1,"verified":false},{"id":2,"verified":true,"line":20}]`,
			after:  `[{"id":7,"verified":true,"line":10},{"id":8,"verified":true,"line":21}]`,
			want:   []breakpointResult{{ID: 1, Verified: true, Line: 10}, {ID: 2, Verified: true, Line: 21}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m breakpoints
			observe := m.remember("setBreakpoints", args)
			observe(answer(tt.before))
			sets := m.all()
			if len(sets) != 1 || string(sets[0].args) != string(args) {
				t.Fatalf("remembered %+v", sets)
			}
			got := m.replaced("setBreakpoints", args, answer(tt.after))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("changed = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestBreakpointsKeyedBySourceAndKind(t *testing.T) {
	var m breakpoints
	m.remember("setBreakpoints", json.RawMessage(`{"source":{"path":"/a.go"},"breakpoints":[{"line":1}]}`))
	m.remember("setBreakpoints", json.RawMessage(`{"source":{"path":"/b.go"},"breakpoints":[{"line":2}]}`))
	m.remember("setFunctionBreakpoints", json.RawMessage(`{"breakpoints":[{"name":"main.f"}]}`))
	// The editor replaces a source's set as a whole, and clears it with an empty list.
	m.remember("setBreakpoints", json.RawMessage(`{"source":{"path":"/a.go"},"breakpoints":[]}`))
	var got []string
	for _, s := range m.all() {
		got = append(got, s.command+" "+string(s.args))
	}
	want := []string{
		`setBreakpoints {"source":{"path":"/a.go"},"breakpoints":[]}`,
		`setBreakpoints {"source":{"path":"/b.go"},"breakpoints":[{"line":2}]}`,
		`setFunctionBreakpoints {"breakpoints":[{"name":"main.f"}]}`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("remembered\n%v\nwant\n%v", got, want)
	}
}

func TestFirstDiagnostic(t *testing.T) {
	tests := map[string]string{
		"go build .: exit status 1\n# broken\n./main.go:4:2: undefined: x\n./main.go:5:2: undefined: y": "./main.go:4:2: undefined: x",
		"go build ./cmd/x: package not found": "go build ./cmd/x: package not found",
		"":                                    "",
	}
	for in, want := range tests {
		if got := firstDiagnostic(in); got != want {
			t.Errorf("firstDiagnostic(%q) = %q, want %q", in, got, want)
		}
	}
}
