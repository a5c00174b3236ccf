package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kloop/kloop/session"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		cmd     Info
		raw     []string
		wantErr string // "" means it decodes
	}{
		{name: "no argument", cmd: Status},
		{name: "null", cmd: Release, raw: []string{`null`}},
		{name: "a valid intercept", cmd: Intercept, raw: []string{`{"workload":"orders","port":"8080:3000","header":{"x-dev":"me"}}`}},
		{name: "two arguments", cmd: Claim, raw: []string{`{}`, `{}`}, wantErr: "kloop.claim: takes one object argument, got 2 arguments"},
		{name: "not an object", cmd: Env, raw: []string{`"orders"`}, wantErr: `kloop.env: takes an object argument such as {"workload":"deployment/orders","format":"dotenv"}, got "orders"`},
		{name: "unknown field with an example", cmd: Leave, raw: []string{`{"wrkload":"x"}`}, wantErr: `kloop.leave: unknown argument "wrkload" (example: {"workload":"deployment/orders"} or {"all":true})`},
		{name: "wrong type", cmd: Intercept, raw: []string{`{"workload":"orders","header":["x"]}`}, wantErr: `argument "header" must be an object of strings, not a JSON array`},
		{name: "trailing data", cmd: Claim, raw: []string{`{} {}`}, wantErr: "trailing data after the argument object"},
		{name: "validation: duration", cmd: Claim, raw: []string{`{"for":"forever"}`}, wantErr: `kloop.claim: for "forever": want a positive duration such as 8h or 90m`},
		{name: "validation: too long", cmd: Claim, raw: []string{`{"for":"9000h"}`}, wantErr: "a claim lasts at most"},
		{name: "validation: workload required", cmd: Env, raw: []string{`{}`}, wantErr: "kloop.env: workload is required"},
		{name: "validation: bad port", cmd: Intercept, raw: []string{`{"workload":"orders","port":"http"}`}, wantErr: `port "http"`},
		{name: "two headers, a path and methods", cmd: Intercept, raw: []string{`{"workload":"orders","header":{"a":"1","b":"2"},"path":"/api/","method":["GET,POST"],"match":"any"}`}},
		{name: "validation: bad path regex", cmd: Intercept, raw: []string{`{"workload":"orders","pathRegex":"^/(v1"}`}, wantErr: `kloop.intercept: intercept orders: path regex "^/(v1" at offset 0: missing closing )`},
		{name: "validation: bad method", cmd: Intercept, raw: []string{`{"workload":"orders","method":["GET","FETCH"]}`}, wantErr: `method "FETCH" is not an HTTP method`},
		{name: "validation: match alone", cmd: Intercept, raw: []string{`{"workload":"orders","match":"any"}`}, wantErr: "the filter has no condition"},
		{name: "validation: both workload and all", cmd: Leave, raw: []string{`{"workload":"orders","all":true}`}, wantErr: "either workload or all"},
		{name: "workloads takes an empty object", cmd: Workloads, raw: []string{`{}`}},
		{name: "workloads takes no namespace", cmd: Workloads, raw: []string{`{"namespace":"prod"}`}, wantErr: `kloop.workloads: unknown argument "namespace" (example: {})`},
		{name: "validation: env format", cmd: Env, raw: []string{`{"workload":"orders","format":"yaml"}`}, wantErr: `format "yaml": want dotenv, json or shell`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw []json.RawMessage
			for _, r := range tt.raw {
				raw = append(raw, json.RawMessage(r))
			}
			_, err := tt.cmd.Decode(raw)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Decode: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Decode error %v, want one containing %q", err, tt.wantErr)
			}
			var ae *ArgsError
			if err != nil && !errors.As(err, &ae) {
				t.Errorf("Decode error %T is not an *ArgsError", err)
			}
		})
	}
}

// fakeExecutor records what a typed Call sends.
type fakeExecutor struct {
	name string
	args any
}

func (f *fakeExecutor) Execute(_ context.Context, name string, args, result any) error {
	f.name, f.args = name, args
	return json.Unmarshal([]byte(`{"workspace":"/w","intercepts":[]}`), result)
}

func TestCallValidatesBeforeSending(t *testing.T) {
	var x fakeExecutor
	if _, err := Leave.Call(t.Context(), &x, session.LeaveArgs{Workload: "x/y"}); err == nil || x.name != "" {
		t.Errorf("an invalid leave was sent (%v, sent %q)", err, x.name)
	}
	st, err := Status.Call(t.Context(), &x, NoArgs{})
	if err != nil || x.name != "kloop.status" || st.Workspace != "/w" {
		t.Errorf("status call: %+v, %v, sent %q", st, err, x.name)
	}
}

// TestCommandsJSONUpToDate: extensions/commands.json is what the
// declarations say (`go generate ./command` rewrites it).
func TestCommandsJSONUpToDate(t *testing.T) {
	want, err := Manifest()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "extensions", "commands.json")
	if os.Getenv("KLOOP_UPDATE_COMMANDS") != "" {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v; run `go generate ./command`", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is out of date; run `go generate ./command`", path)
	}
}

// TestEditorManifestsListEveryCommand: the VS Code palette has NAME.ui with
// the declared title for every command (and no other kloop.*.ui), and the
// Neovim plugin executes every command by name.
func TestEditorManifestsListEveryCommand(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "extensions", "vscode", "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		Contributes struct {
			Commands []struct{ Command, Title string } `json:"commands"`
		} `json:"contributes"`
	}
	if err := json.Unmarshal(data, &pkg); err != nil {
		t.Fatal(err)
	}
	palette := map[string]string{}
	for _, c := range pkg.Contributes.Commands {
		if strings.HasSuffix(c.Command, ".ui") {
			palette[strings.TrimSuffix(c.Command, ".ui")] = c.Title
		}
	}
	for _, c := range All() {
		title, ok := palette[c.Name()]
		switch {
		case !ok:
			t.Errorf("extensions/vscode/package.json has no palette command %s.ui", c.Name())
		case title != c.Title():
			t.Errorf("VS Code titles %s.ui %q; the declaration says %q", c.Name(), title, c.Title())
		}
		delete(palette, c.Name())
	}
	for name := range palette {
		t.Errorf("extensions/vscode/package.json has %s.ui, which no declared command backs", name)
	}

	lua, err := os.ReadFile(filepath.Join("..", "extensions", "neovim", "lua", "kloop", "init.lua"))
	if err != nil {
		t.Fatal(err)
	}
	// The plugin's list of the server's commands, which it routes through
	// its own handlers.
	m := regexp.MustCompile(`for _, name in ipairs\(\{([^}]*)\}\)`).FindSubmatch(lua)
	if m == nil {
		t.Fatal("extensions/neovim/lua/kloop/init.lua no longer lists the commands it handles; update this test")
	}
	var nvim []string
	for _, q := range regexp.MustCompile(`'([^']+)'`).FindAllSubmatch(m[1], -1) {
		nvim = append(nvim, string(q[1]))
	}
	slices.Sort(nvim)
	if !slices.Equal(nvim, Names()) {
		t.Errorf("the Neovim plugin handles %v; the declared commands are %v", nvim, Names())
	}
}

// TestEditorsCheckWorkloadsAsTheDaemonDoes: the VS Code launch schema and the
// palette's input check use the pattern config/kloop.schema.json derives
// from kube/workload, so an editor never warns about a workload the daemon
// takes, or lets through one it refuses.
func TestEditorsCheckWorkloadsAsTheDaemonDoes(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "config", "kloop.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`"workload":\s*\{[^{}]*"pattern":\s*("(?:[^"\\]|\\.)*")`).FindSubmatch(data)
	if m == nil {
		t.Fatal("config/kloop.schema.json has no workload pattern")
	}
	var want string
	if err := json.Unmarshal(m[1], &want); err != nil {
		t.Fatal(err)
	}
	quoted, _ := json.Marshal(want)
	for _, f := range []string{filepath.Join("vscode", "package.json"), filepath.Join("vscode", "src", "logic.ts")} {
		src, err := os.ReadFile(filepath.Join("..", "extensions", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(src, quoted) {
			t.Errorf("extensions/%s does not check workloads with the daemon's pattern %s", f, quoted)
		}
	}
}
