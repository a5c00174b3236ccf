package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kloop/kloop/test/editor"
)

var kloopBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kloop-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kloopBin, err = editor.BuildKloop(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// forEachMode runs body against standalone and forwarded kloop, each with
// a private daemon environment.
func forEachMode(t *testing.T, body func(t *testing.T, env *editor.Env, mode editor.Mode)) {
	for _, mode := range editor.Modes {
		t.Run(string(mode), func(t *testing.T) {
			body(t, editor.NewEnv(t, kloopBin), mode)
		})
	}
}

// workspace writes files (path -> content) into a fresh workspace folder.
func workspace(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const ordersMain = `package main

import "net/http"

// main serves orders.
func main() {
	http.ListenAndServe(":8080", nil)
}
`

func TestInitializeAdvertisesKloopCapabilities(t *testing.T) {
	forEachMode(t, func(t *testing.T, env *editor.Env, mode editor.Mode) {
		ed := editor.Start(t, env, mode)
		res := ed.Initialize(workspace(t, map[string]string{"go.mod": "module x\n"}), true)
		caps, _ := res["capabilities"].(map[string]any)
		if caps["codeLensProvider"] == nil || caps["codeActionProvider"] == nil {
			t.Fatalf("capabilities lack code lens or code action: %v", caps)
		}
		exec, _ := caps["executeCommandProvider"].(map[string]any)
		var cmds []string
		for _, c := range exec["commands"].([]any) {
			cmds = append(cmds, c.(string))
		}
		for _, want := range []string{"kloop.claim", "kloop.release", "kloop.intercept", "kloop.leave", "kloop.status", "kloop.relaunch", "kloop.env"} {
			if !slices.Contains(cmds, want) {
				t.Errorf("executeCommandProvider lacks %s: %v", want, cmds)
			}
		}
		info, _ := res["serverInfo"].(map[string]any)
		if info["name"] != "kloop" {
			t.Errorf("serverInfo = %v, want name kloop", info)
		}
		// The first status arrives without asking.
		ed.WaitNote("kloop/status", nil)
		ed.Shutdown()
		if err := ed.Wait(); err != nil {
			t.Errorf("kloop lsp exited with %v after exit; stderr:\n%s", err, ed.Stderr())
		}
	})
}

func TestCodeLensAboveMainFollowsEdits(t *testing.T) {
	forEachMode(t, func(t *testing.T, env *editor.Env, mode editor.Mode) {
		root := workspace(t, map[string]string{"go.mod": "module x\n", "cmd/orders/main.go": ordersMain})
		// An editor that starts kloop debug sessions (VS Code, Neovim with
		// nvim-dap) is offered "& debug"; the others only "& run" (see
		// handlers' TestDebugIsOfferedOnlyToEditorsThatStartDebugSessions).
		plain := editor.Start(t, env, mode)
		plain.Initialize(root, true)
		path := filepath.Join(root, "cmd/orders/main.go")
		plain.Open(path, "go", ordersMain)
		if l := plain.CodeLens(path); len(l) != 1 || l[0].Command.Title != "Intercept deployment/orders & run" {
			t.Fatalf("lenses for an editor that starts no debug session = %+v", l)
		}
		ed := editor.Start(t, env, mode)
		ed.InitializeWith(root, true, map[string]any{"startsDebugSessions": true})
		ed.Open(path, "go", ordersMain)
		lenses := ed.CodeLens(path)
		var titles []string
		for _, l := range lenses {
			titles = append(titles, l.Command.Title)
			if l.Range.Start.Line != 5 {
				t.Errorf("lens %q on line %d, want 5 (func main)", l.Command.Title, l.Range.Start.Line)
			}
		}
		if !slices.Equal(titles, []string{"Intercept deployment/orders & debug", "Intercept & run"}) {
			t.Fatalf("lenses = %q", titles)
		}
		var args struct {
			Workload, Program string
			Debug             bool
		}
		if err := json.Unmarshal(lenses[0].Command.Arguments[0], &args); err != nil || args.Workload != "deployment/orders" || args.Program != "./cmd/orders" || !args.Debug {
			t.Errorf("debug lens arguments = %+v (%v)", args, err)
		}
		// Edits arrive in order: the lens reads the last version. Moving
		// main down 50 lines, then renaming the package, removes the lens.
		for v := 2; v <= 50; v++ {
			ed.Change(path, v, strings.Repeat("\n", v)+ordersMain)
		}
		if l := ed.CodeLens(path); len(l) != 2 || l[0].Range.Start.Line != 55 {
			t.Fatalf("after 49 edits lenses = %+v, want two on line 55", l)
		}
		ed.Change(path, 51, strings.Replace(ordersMain, "package main", "package orders", 1))
		if l := ed.CodeLens(path); len(l) != 0 {
			t.Fatalf("lenses on a non-main package: %+v", l)
		}
	})
}

func TestCodeLensAboveManifestWorkloads(t *testing.T) {
	manifest := `apiVersion: v1
kind: Service
metadata:
  name: orders
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: orders
---
# the cache
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: redis
`
	forEachMode(t, func(t *testing.T, env *editor.Env, mode editor.Mode) {
		root := workspace(t, map[string]string{"deploy/app.yaml": manifest})
		ed := editor.Start(t, env, mode)
		ed.Initialize(root, true)
		path := filepath.Join(root, "deploy/app.yaml")
		ed.Open(path, "yaml", manifest)
		lenses := ed.CodeLens(path)
		type got struct {
			Line     int
			Workload string
		}
		var gots []got
		for _, l := range lenses {
			var a struct{ Workload string }
			json.Unmarshal(l.Command.Arguments[0], &a)
			if l.Command.Title != "Intercept this workload" || l.Command.Command != "kloop.intercept" {
				t.Errorf("lens = %+v", l.Command)
			}
			gots = append(gots, got{l.Range.Start.Line, a.Workload})
		}
		want := []got{{5, "deployment/orders"}, {11, "statefulset/redis"}}
		if !slices.Equal(gots, want) {
			t.Fatalf("manifest lenses = %+v, want %+v", gots, want)
		}
	})
}

func TestCodeActionsOfferTheNextSteps(t *testing.T) {
	forEachMode(t, func(t *testing.T, env *editor.Env, mode editor.Mode) {
		root := workspace(t, map[string]string{"go.mod": "module x\n", "cmd/orders/main.go": ordersMain})
		ed := editor.Start(t, env, mode)
		ed.Initialize(root, true)
		path := filepath.Join(root, "cmd/orders/main.go")
		ed.Open(path, "go", ordersMain)
		kinds := map[string]string{}
		for _, a := range ed.CodeActions(path, 5) {
			kinds[a.Kind] = a.Command.Command
		}
		want := map[string]string{
			"source.kloop.claim":     "kloop.claim",
			"source.kloop.intercept": "kloop.intercept",
			"source.kloop.env":       "kloop.env",
		}
		for k, c := range want {
			if kinds[k] != c {
				t.Errorf("code action %s -> %q, want %q (all: %v)", k, kinds[k], c, kinds)
			}
		}
		only := ed.CodeActions(path, 5, "source.kloop.claim")
		if len(only) != 1 || only[0].Kind != "source.kloop.claim" {
			t.Errorf("with only=source.kloop.claim got %+v", only)
		}
		if got := ed.CodeActions(path, 5, "quickfix"); len(got) != 0 {
			t.Errorf("with only=quickfix got %+v", got)
		}
	})
}

func TestExecuteCommandValidatesArguments(t *testing.T) {
	cases := []struct {
		name    string
		command string
		arg     any
		code    int
		want    string
	}{
		{"unknown command", "kloop.fly", nil, -32602, `unknown command "kloop.fly"`},
		{"wrong type", "kloop.claim", map[string]any{"for": 8}, -32602, `argument "for" must be a string`},
		{"unknown field", "kloop.claim", map[string]any{"pol": "dev"}, -32602, `unknown argument "pol"`},
		{"bad duration", "kloop.claim", map[string]any{"for": "eight hours"}, -32602, `want a positive duration`},
		{"not an object", "kloop.intercept", "orders", -32602, "takes an object argument"},
		{"missing workload", "kloop.intercept", map[string]any{}, -32602, "workload is required"},
		{"bad workload kind", "kloop.intercept", map[string]any{"workload": "pod/x"}, -32602, "kind must be deployment or statefulset"},
		{"bad port", "kloop.intercept", map[string]any{"workload": "orders", "port": "99999"}, -32602, "99999"},
		{"bad header", "kloop.intercept", map[string]any{"workload": "orders", "header": map[string]any{"x dev": "me"}}, -32602, "not a valid HTTP header name"},
		{"leave both", "kloop.leave", map[string]any{"workload": "orders", "all": true}, -32602, "not both"},
		{"env format", "kloop.env", map[string]any{"workload": "orders", "format": "xml"}, -32602, "want dotenv, json or shell"},
		{"intercept without a cluster", "kloop.intercept", map[string]any{"workload": "orders"}, -32803, "kubeconfig"},
		{"relaunch with nothing running", "kloop.relaunch", nil, -32803, "no local program runs"},
	}
	forEachMode(t, func(t *testing.T, env *editor.Env, mode editor.Mode) {
		// No cluster here: a kubeconfig that does not exist, never the
		// developer's own.
		env.Extra = append(env.Extra, "KUBECONFIG="+filepath.Join(t.TempDir(), "no-kubeconfig"))
		ed := editor.Start(t, env, mode)
		ed.Initialize(workspace(t, nil), true)
		for _, c := range cases {
			err := ed.Execute(c.command, c.arg, nil)
			rpcErr, ok := err.(*editor.RPCError)
			if !ok {
				t.Errorf("%s: got %v, want a JSON-RPC error", c.name, err)
				continue
			}
			if rpcErr.Code != c.code || !strings.Contains(rpcErr.Message, c.want) {
				t.Errorf("%s: got %d %q, want %d containing %q", c.name, rpcErr.Code, rpcErr.Message, c.code, c.want)
			}
		}
		var st struct {
			Workspace  string
			Intercepts []any
		}
		if err := ed.Execute("kloop.status", nil, &st); err != nil || st.Workspace == "" {
			t.Fatalf("kloop.status = %+v, %v", st, err)
		}
	})
}

func TestLongCommandsReportProgress(t *testing.T) {
	forEachMode(t, func(t *testing.T, env *editor.Env, mode editor.Mode) {
		t.Run("work done progress", func(t *testing.T) {
			ed := editor.Start(t, env, mode)
			ed.Initialize(workspace(t, nil), true)
			// kloop.claim fails in a daemon without pools, but it still
			// reports begin and end so the editor's spinner stops.
			ed.Execute("kloop.claim", map[string]any{"pool": "dev"}, nil)
			if len(ed.ServerRequests("window/workDoneProgress/create")) == 0 {
				t.Fatal("no window/workDoneProgress/create")
			}
			ed.WaitNote("$/progress", func(p json.RawMessage) bool { return strings.Contains(string(p), `"begin"`) })
			end := ed.WaitNote("$/progress", func(p json.RawMessage) bool { return strings.Contains(string(p), `"end"`) })
			if !strings.Contains(string(end.Params), "failed") {
				t.Errorf("progress end = %s, want the failure", end.Params)
			}
		})
		t.Run("showMessage fallback", func(t *testing.T) {
			ed := editor.Start(t, env, mode)
			ed.Initialize(workspace(t, nil), false)
			ed.Execute("kloop.claim", nil, nil)
			ed.WaitNote("window/showMessage", func(p json.RawMessage) bool { return strings.Contains(string(p), "Claiming") })
			if n := len(ed.Notes("$/progress")); n != 0 {
				t.Errorf("%d $/progress notifications to a client without workDoneProgress", n)
			}
		})
	})
}

func TestConfigDiagnostics(t *testing.T) {
	bad := "claim:\n  pool: dev\n  fro: 8h\nintercepts:\n  - workload: pod/orders\n"
	good := "claim:\n  pool: dev\n  for: 8h\nintercepts:\n  - workload: deployment/orders\n"
	forEachMode(t, func(t *testing.T, env *editor.Env, mode editor.Mode) {
		root := workspace(t, map[string]string{".kloop.yaml": bad})
		ed := editor.Start(t, env, mode)
		ed.Initialize(root, true)
		type diag struct {
			Range struct {
				Start struct{ Line, Character int }
			}
			Message string
		}
		var params struct {
			URI         string
			Diagnostics []diag
		}
		// Reported from disk at start, before the file is opened.
		n := ed.WaitNote("textDocument/publishDiagnostics", nil)
		json.Unmarshal(n.Params, &params)
		if len(params.Diagnostics) != 2 {
			t.Fatalf("diagnostics = %+v, want 2", params.Diagnostics)
		}
		at := map[int]string{}
		for _, d := range params.Diagnostics {
			at[d.Range.Start.Line] = fmt.Sprintf("%d:%s", d.Range.Start.Character, d.Message)
		}
		if !strings.HasPrefix(at[2], "2:") || !strings.Contains(at[2], "for") {
			t.Errorf("unknown key diagnostic = %q, want at 3:3 suggesting for", at[2])
		}
		if !strings.HasPrefix(at[4], "14:") || !strings.Contains(at[4], "deployment or statefulset") {
			t.Errorf("workload diagnostic = %q, want at 5:15", at[4])
		}
		// Fixing the file in the editor clears them.
		path := filepath.Join(root, ".kloop.yaml")
		ed.Open(path, "yaml", bad)
		ed.Change(path, 2, good)
		ed.WaitNote("textDocument/publishDiagnostics", func(p json.RawMessage) bool {
			return strings.Contains(string(p), `"diagnostics":[]`)
		})
	})
}
