package intercept_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	godap "github.com/google/go-dap"

	"github.com/kloop/kloop/session"
	"github.com/kloop/kloop/test/dapclient"
	"github.com/kloop/kloop/test/editor"
)

// replayOnSave in .kloop.yaml does what --replay-on-save does: after a save,
// the last request reaches the new build by itself and the change in its
// answer is reported, with no flag on the command line.
func TestReplayOnSaveFromKloopYAML(t *testing.T) {
	f := newFixture(t)
	cfgPath := filepath.Join(f.WS, ".kloop.yaml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	withReplay := strings.Replace(string(cfg), "    program: .\n", "    program: .\n    replayOnSave: true\n", 1)
	if withReplay == string(cfg) {
		t.Fatalf("the fixture's .kloop.yaml has no `program: .` line to add replayOnSave under:\n%s", cfg)
	}
	if err := os.WriteFile(cfgPath, []byte(withReplay), 0o644); err != nil {
		t.Fatal(err)
	}
	f.MustKloop(t, "intercept", "orders", "--detach")
	firstPid := f.Status(t).Process.PID
	if code, body := f.send(t, http.MethodGet, "/orders/1"); code != 200 || !strings.Contains(body, "laptop-v1") {
		t.Fatalf("through the intercept: %d %s", code, body)
	}
	if err := os.WriteFile(f.Main, []byte(ordersSource(t, "laptop-v2")), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the replay on save in kloop logs", func() bool {
		logs := f.MustKloop(t, "logs")
		out := logs.Stdout + logs.Stderr
		return strings.Contains(out, "GET /orders/1 to pid") && strings.Contains(out, "after the relaunch: 200, the answer changed:") &&
			strings.Contains(out, `$.build: "laptop-v1" → "laptop-v2"`)
	})
	st := f.Status(t)
	if st.LastReplay == nil || st.LastReplay.Same || st.LastReplay.Pid == firstPid || st.LastReplay.Request.Target != "/orders/1" {
		t.Errorf("status lastReplay = %+v; want GET /orders/1 replayed to the new build (not pid %d) with a changed answer", st.LastReplay, firstPid)
	}

	// An LSP client that is none of kloop's own (no kloopReplayView
	// capability) that runs kloop.replay is shown the outcome as a message.
	ed := editor.Start(t, f.Daemon, editor.Forwarded)
	ed.Initialize(f.WS, true)
	var res session.ReplayResult
	if err := ed.Execute("kloop.replay", map[string]any{"id": st.LastReplay.Request.ID}, &res); err != nil {
		t.Fatalf("kloop.replay: %v\nkloop stderr:\n%s", err, ed.Stderr())
	}
	ed.WaitNote("window/showMessage", func(raw json.RawMessage) bool {
		var m struct{ Message string }
		return json.Unmarshal(raw, &m) == nil && strings.Contains(m.Message, fmt.Sprintf("kloop: replayed #%d GET /orders/1 to pid %d: 200", res.Request.ID, res.Pid)) &&
			strings.Contains(m.Message, `the answer changed:`) && strings.Contains(m.Message, `$.build: "laptop-v1" → "laptop-v2"`)
	})
}

// replayOnSave in the DAP launch configuration: a request from the cluster
// stops at a breakpoint; after a save the same request is sent to the new
// build by itself and stops there, in the new code, with no new request
// from outside; the answers' difference is reported once it goes on.
func TestReplayOnSaveUnderTheDebugger(t *testing.T) {
	f := newFixture(t)
	c := startDAP(t, f)
	const marker = `"servedBy": cfg.Pod`
	line := dapclient.LineOf(t, f.Main, marker)
	c.SetBreakpoint(f.Main, line)
	seq := c.Send(&godap.InitializeRequest{Request: c.Req("initialize"), Arguments: godap.InitializeRequestArguments{AdapterID: "kloop", PathFormat: "path", LinesStartAt1: true, ColumnsStartAt1: true}})
	c.Response(seq)
	args, _ := json.Marshal(map[string]any{
		"workload": "orders", "program": ".", "port": fmt.Sprintf("8080:%d", f.LocalPort), "replayOnSave": true,
		"env": map[string]string{"HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", f.LocalPort), "ADMIN_ADDR": "127.0.0.1:0"},
	})
	if r := c.Await(c.Send(&godap.LaunchRequest{Request: c.Req("launch"), Arguments: args}), "launch"); !r.Success {
		t.Fatalf("launch with replayOnSave failed: %s", r.Message)
	}
	stopAndContinue(t, c, f, line, "laptop-v1")
	st := f.Status(t)
	if st.Process == nil || st.Process.PID == 0 {
		t.Fatalf("status process = %+v; want the debuggee", st.Process)
	}
	firstPid := st.Process.PID

	// The save changes the answer, not the lines: the breakpoint stays.
	since := c.Mark()
	if err := os.WriteFile(f.Main, []byte(ordersSource(t, "laptop-v2")), 0o644); err != nil {
		t.Fatal(err)
	}
	thread := c.StoppedAt(since, f.Main, line)
	if st := f.Status(t); st.Process == nil || st.Process.PID == firstPid {
		t.Errorf("stopped in process %+v; want the new build, not pid %d", st.Process, firstPid)
	}
	c.Send(&godap.ContinueRequest{Request: c.Req("continue"), Arguments: godap.ContinueArguments{ThreadId: thread}})
	eventually(t, "the replay's outcome in the status", func() bool {
		st := f.Status(t)
		return st.LastReplay != nil && st.LastReplay.Pid != firstPid &&
			strings.Contains(strings.Join(st.LastReplay.Diff, "\n"), `$.build: "laptop-v1" → "laptop-v2"`)
	})
}
