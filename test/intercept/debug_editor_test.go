package intercept_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	godap "github.com/google/go-dap"

	"github.com/kloop/kloop/session"
	"github.com/kloop/kloop/test/dapclient"
	"github.com/kloop/kloop/test/editor"
)

// TestEditorDebugsWithDiagnostics drives LSP and DAP together, as an editor
// does: the workspace is open over LSP, the debug session launches over DAP
// on the intercepted workload. A broken save gets LSP diagnostics at the
// line and a kloop/status with the failed build, while the debug session
// stays connected and the old build keeps stopping at the breakpoint; the
// fix clears the diagnostics and the breakpoint hits in the new code.
func TestEditorDebugsWithDiagnostics(t *testing.T) {
	f := newFixture(t)
	ed := editor.Start(t, f.Daemon, editor.Forwarded)
	ed.Initialize(f.WS, true)
	src := ordersSource(t, "laptop-v1")
	ed.Open(f.Main, "go", src)

	c := startDAP(t, f)
	const marker = `"servedBy": cfg.Pod`
	c.SetBreakpoint(f.Main, dapclient.LineOf(t, f.Main, marker))
	launchOrders(t, c, f)
	ed.WaitNote("kloop/status", func(raw json.RawMessage) bool {
		var st session.Status
		return json.Unmarshal(raw, &st) == nil && len(st.Intercepts) == 1 &&
			st.Process != nil && st.Process.Debug && st.Process.State == "running"
	})

	stopAndContinue(t, c, f, dapclient.LineOf(t, f.Main, marker), "laptop-v1")

	// A broken save: diagnostics at the line in the editor, the failed build
	// in kloop/status and in the debug console; the old build stays
	// debuggable.
	broken := strings.Replace(src, `"build": "laptop-v1"`, `"build": undefinedBuildName`, 1)
	brokenLine := strings.Count(broken[:strings.Index(broken, "undefinedBuildName")], "\n")
	since := c.Mark()
	if err := os.WriteFile(f.Main, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	ed.Change(f.Main, 2, broken)
	ed.Save(f.Main)
	note := ed.WaitNote("textDocument/publishDiagnostics", diagnosticsOf(f.Main, true))
	var diags struct {
		Diagnostics []struct {
			Message string `json:"message"`
			Range   struct {
				Start struct{ Line int } `json:"start"`
			} `json:"range"`
		} `json:"diagnostics"`
	}
	if err := json.Unmarshal(note.Params, &diags); err != nil || len(diags.Diagnostics) == 0 {
		t.Fatalf("diagnostics %s: %v", note.Params, err)
	}
	if d := diags.Diagnostics[0]; d.Range.Start.Line != brokenLine || !strings.Contains(d.Message, "undefinedBuildName") {
		t.Errorf("diagnostic %q at line %d, want undefinedBuildName at line %d", d.Message, d.Range.Start.Line, brokenLine)
	}
	ed.WaitNote("kloop/status", func(raw json.RawMessage) bool {
		var st session.Status
		return json.Unmarshal(raw, &st) == nil && st.LastBuild != nil && !st.LastBuild.OK &&
			strings.Contains(st.LastBuild.Error, "undefinedBuildName") && st.Process != nil && st.Process.Debug
	})
	c.Wait(since, "the build error in the debug console", func(m godap.Message) bool {
		o, ok := m.(*godap.OutputEvent)
		return ok && strings.Contains(o.Body.Output, "build failed") && strings.Contains(o.Body.Output, "undefinedBuildName")
	})
	if c.Closed() {
		t.Fatal("the debug session ended on a build error")
	}
	stopAndContinue(t, c, f, dapclient.LineOf(t, f.Main, marker), "laptop-v1")

	// The fix, with lines inserted above the breakpoint (the editor moves it):
	// diagnostics cleared, the breakpoint hits in the new code.
	fixed := strings.Replace(ordersSource(t, "laptop-v2"), "\t\tw.Header().Set(\"Content-Type\", \"application/json\")\n\t\tjson.NewEncoder(w).Encode(map[string]any{\"order\"",
		"\t\t_ = 1\n\t\t_ = 2\n\t\tw.Header().Set(\"Content-Type\", \"application/json\")\n\t\tjson.NewEncoder(w).Encode(map[string]any{\"order\"", 1)
	newLine := strings.Count(fixed[:strings.Index(fixed, marker)], "\n") + 1
	c.SetBreakpoint(f.Main, newLine)
	since = c.Mark()
	if err := os.WriteFile(f.Main, []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	ed.Change(f.Main, 3, fixed)
	ed.Save(f.Main)
	ed.WaitNote("textDocument/publishDiagnostics", diagnosticsOf(f.Main, false))
	c.Wait(since, "the relaunch after the fix", func(m godap.Message) bool {
		o, ok := m.(*godap.OutputEvent)
		return ok && strings.Contains(o.Body.Output, "kloop: relaunched")
	})
	stopAndContinue(t, c, f, newLine, "laptop-v2")
	st := f.Status(t)
	if st.LastBuild == nil || !st.LastBuild.OK || st.LastRelaunchMillis <= 0 {
		t.Errorf("kloop status after the fix: last build %+v, last relaunch %d ms", st.LastBuild, st.LastRelaunchMillis)
	}
	for _, m := range c.Since(0) {
		if _, ok := m.(*godap.TerminatedEvent); ok {
			t.Fatal("the debug session was terminated by a relaunch")
		}
	}
}
