package intercept_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/kloop/kloop/session"
	"github.com/kloop/kloop/test/editor"
)

// diagnosticsOf matches publishDiagnostics for path; nonEmpty selects
// reports with errors (true) or clearing reports (false).
func diagnosticsOf(path string, nonEmpty bool) func(json.RawMessage) bool {
	return func(raw json.RawMessage) bool {
		var p struct {
			URI         string `json:"uri"`
			Diagnostics []struct {
				Message string `json:"message"`
				Range   struct {
					Start struct{ Line int } `json:"start"`
				} `json:"range"`
			} `json:"diagnostics"`
		}
		if json.Unmarshal(raw, &p) != nil || p.URI != editor.URI(path) {
			return false
		}
		return (len(p.Diagnostics) > 0) == nonEmpty
	}
}

// TestEditorInterceptShowsBuildErrorsAndKeepsServing drives the loop from
// an editor: the intercept command with progress, a save with a compile
// error (diagnostics at the line; the old build keeps serving cluster
// traffic), then a fix (diagnostics cleared; the new build serves).
func TestEditorInterceptShowsBuildErrorsAndKeepsServing(t *testing.T) {
	f := newFixture(t)
	ed := editor.Start(t, f.Daemon, editor.Forwarded)
	ed.Initialize(f.WS, true)
	src := ordersSource(t, "laptop-v1")
	ed.Open(f.Main, "go", src)

	var in session.InterceptStatus
	if err := ed.Execute("kloop.intercept", map[string]any{"workload": "orders"}, &in); err != nil {
		t.Fatalf("kloop.intercept: %v\nkloop stderr:\n%s", err, ed.Stderr())
	}
	if in.Workload != "deployment/orders" {
		t.Errorf("intercept result %+v", in)
	}
	if len(ed.Notes("$/progress")) == 0 {
		t.Errorf("the intercept reported no $/progress")
	}
	ed.WaitNote("kloop/status", func(raw json.RawMessage) bool {
		var st session.Status
		return json.Unmarshal(raw, &st) == nil && len(st.Intercepts) == 1 && st.Process != nil && st.Process.State == "running"
	})
	if code, a, body := f.GetOrder(t); code != 200 || a.Build != "laptop-v1" {
		t.Fatalf("through the intercept: %d %s", code, body)
	}
	// The program's output reaches the editor's log (an editor that did not
	// ask for kloop/output gets window/logMessage).
	ed.WaitNote("window/logMessage", func(raw json.RawMessage) bool {
		return strings.Contains(string(raw), "orders listening")
	})
	if n := len(ed.Notes("kloop/output")); n != 0 {
		t.Errorf("the editor got %d kloop/output notifications it did not ask for", n)
	}

	// A compile error: diagnostics on the file, the old process serves on.
	broken := strings.Replace(src, `"build": "laptop-v1"`, `"build": undefinedBuildName`, 1)
	if err := os.WriteFile(f.Main, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	ed.Change(f.Main, 2, broken)
	ed.Save(f.Main)
	note := ed.WaitNote("textDocument/publishDiagnostics", diagnosticsOf(f.Main, true))
	if !strings.Contains(string(note.Params), "undefinedBuildName") {
		t.Errorf("diagnostics %s do not name the undefined identifier", note.Params)
	}
	if code, a, body := f.GetOrder(t); code != 200 || a.Build != "laptop-v1" {
		t.Errorf("after a failed build: %d %s, want the old build still serving", code, body)
	}

	// The fix: diagnostics cleared, the new build serves.
	fixed := ordersSource(t, "laptop-v2")
	if err := os.WriteFile(f.Main, []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	ed.Change(f.Main, 3, fixed)
	ed.Save(f.Main)
	ed.WaitNote("textDocument/publishDiagnostics", diagnosticsOf(f.Main, false))
	eventually(t, "the fixed build serving", func() bool {
		_, a, _ := f.GetOrder(t)
		return a.Build == "laptop-v2"
	})

	if err := ed.Execute("kloop.leave", map[string]any{"workload": "orders"}, nil); err != nil {
		t.Fatalf("kloop.leave: %v", err)
	}
	if code, a, body := f.GetOrder(t); code != 200 || a.Build != "" {
		t.Errorf("after leave: %d %s, want the app's answer", code, body)
	}
}
