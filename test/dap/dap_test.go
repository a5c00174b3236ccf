package dap

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/kloop/kloop/test/dapclient"
)

func launchConfig(extra map[string]any) map[string]any {
	// Tests drive relaunches themselves with kloop/relaunch; the one that
	// tests relaunch on save turns it back on.
	cfg := map[string]any{"type": "kloop", "request": "launch", "name": "test", "program": "./server", "relaunchOnSave": false}
	for k, v := range extra {
		cfg[k] = v
	}
	return cfg
}

// waitStopped waits for a stopped event and checks the top frame is file:line.
func waitStopped(t testing.TB, e *dapclient.Client, since int, file string, line int) (threadID, frameID int) {
	t.Helper()
	st := e.WaitStopped(since, 20)
	top := st.Frames[0]
	if top.Source == nil || top.Source.Path != file || top.Line != line || !strings.HasSuffix(top.Name, ".handler") && !strings.HasSuffix(top.Name, ".big") {
		t.Fatalf("stopped (%s) at\n  %s\nwant %s:%d", st.Reason, strings.Join(st.Stack(), "\n  "), file, line)
	}
	return st.Thread, top.Id
}

// TestSaveRelaunchesUnderTheDebugger edits the handler on disk, as an
// editor's save does, and sends nothing else: the breakpoint then hits in
// the new code.
func TestSaveRelaunchesUnderTheDebugger(t *testing.T) {
	fx := newFixture(t)
	e := startEditor(t, fx.dir)
	e.SetBreakpoints(fx.main, []godap.SourceBreakpoint{{Line: fx.line(t, "reply")}})
	initializeAndLaunch(t, e, launchConfig(map[string]any{"relaunchOnSave": true}))
	serverAddr(t, e, 0)

	// The editor moves the breakpoint with the text as the user types,
	// before the save: three lines are inserted above it.
	newLine := fx.line(t, "reply") + 3
	e.SetBreakpoints(fx.main, []godap.SourceBreakpoint{{Line: newLine}})
	since := e.Mark()
	fx.write(t, "saved", 3)
	if got := fx.line(t, "reply"); got != newLine {
		t.Fatalf("the edit moved the handler to line %d, want %d", got, newLine)
	}
	e.WaitEvent(since, "the relaunch after the save", dapclient.OutputContaining("kloop: relaunched"))
	addr := serverAddr(t, e, since)
	since = e.Mark()
	answer := get(addr, "/?name=dan")
	thread, frame := waitStopped(t, e, since, fx.main, newLine)
	if got := e.Local(frame, "greeting"); got != `"saved dan"` {
		t.Errorf("after the save greeting = %s, want \"saved dan\"", got)
	}
	e.Request("continue", godap.ContinueArguments{ThreadId: thread})
	if got := recv(t, answer, "the request after the save"); got != "saved dan" {
		t.Errorf("answer %q, want saved dan", got)
	}
}

func TestBreakpointKeepsHittingAcrossRelaunch(t *testing.T) {
	fx := newFixture(t)
	e := startEditor(t, fx.dir)
	e.SetBreakpoints(fx.main, []godap.SourceBreakpoint{{Line: fx.line(t, "reply")}})
	initializeAndLaunch(t, e, launchConfig(map[string]any{"env": map[string]string{"FIXTURE_ENV": "from-launch"}}))
	e.WaitEvent(0, "the launch env in the program's output", dapclient.OutputContaining("env=from-launch"))
	addr := serverAddr(t, e, 0)

	since := e.Mark()
	answer := get(addr, "/?name=bob")
	thread, frame := waitStopped(t, e, since, fx.main, fx.line(t, "reply"))
	if got := e.Local(frame, "greeting"); got != `"hello bob"` {
		t.Errorf("greeting = %s, want \"hello bob\"", got)
	}
	e.Request("continue", godap.ContinueArguments{ThreadId: thread})
	if got := recv(t, answer, "the first request"); got != "hello bob" {
		t.Errorf("answer %q, want hello bob", got)
	}

	// Edit the handler; the editor moves its breakpoint with the text.
	fx.write(t, "goodbye", 3)
	newLine := fx.line(t, "reply")
	e.SetBreakpoints(fx.main, []godap.SourceBreakpoint{{Line: newLine}})
	since = e.Mark()
	e.Request("kloop/relaunch", nil)
	addr = serverAddr(t, e, since)
	since = e.Mark()
	answer = get(addr, "/?name=bob")
	thread, frame = waitStopped(t, e, since, fx.main, newLine)
	if got := e.Local(frame, "greeting"); got != `"goodbye bob"` {
		t.Errorf("after relaunch greeting = %s, want \"goodbye bob\"", got)
	}
	e.Request("continue", godap.ContinueArguments{ThreadId: thread})
	if got := recv(t, answer, "the request after relaunch"); got != "goodbye bob" {
		t.Errorf("answer %q, want goodbye bob", got)
	}

	// A build error is reported and the old program stays debuggable.
	good, err := os.ReadFile(fx.main)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(good), `greeting := "goodbye " + name`, `greeting := undefinedGreeting + name`, 1)
	if err := os.WriteFile(fx.main, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	since = e.Mark()
	resp := e.Await(e.SendRequest("kloop/relaunch", nil), "relaunch with a build error")
	if resp.Success {
		t.Fatal("relaunch of a broken program succeeded")
	}
	e.WaitEvent(since, "compiler error with file:line", dapclient.OutputContaining(fmt.Sprintf("main.go:%d", fx.line(t, "greet"))))
	since = e.Mark()
	answer = get(addr, "/?name=carol")
	thread, _ = waitStopped(t, e, since, fx.main, newLine)
	e.Request("continue", godap.ContinueArguments{ThreadId: thread})
	if got := recv(t, answer, "the request after the failed build"); got != "goodbye carol" {
		t.Errorf("answer %q, want the old program's goodbye carol", got)
	}

	for _, ev := range []string{"terminated", "exited"} {
		if e.SawEvent(0, ev) {
			t.Errorf("the session got an %s event; a relaunch replaces the program silently", ev)
		}
	}
	e.CheckSeqs()

	procs := sessionProcs(t, nil)
	if len(procs) < 2 {
		t.Fatalf("want a worker and a debuggee under the daemon, found pids %v", procs)
	}
	e.Request("disconnect", godap.DisconnectArguments{TerminateDebuggee: true})
	waitGone(t, procs, "worker and debuggee after disconnect")
}

func TestConditionsAndLogpointsAfterRelaunch(t *testing.T) {
	fx := newFixture(t)
	e := startEditor(t, fx.dir)
	e.SetBreakpoints(fx.main, []godap.SourceBreakpoint{
		{Line: fx.line(t, "greet"), LogMessage: "saw {name}"},
		{Line: fx.line(t, "reply"), Condition: `name == "alice"`},
	})
	initializeAndLaunch(t, e, launchConfig(nil))

	check := func(round string, since int) {
		t.Helper()
		addr := serverAddr(t, e, since)
		since = e.Mark()
		if got := recv(t, get(addr, "/?name=bob"), round+" bob"); got != "hello bob" {
			t.Fatalf("%s: bob's answer %q; the condition should have let it through", round, got)
		}
		e.WaitEvent(since, round+" logpoint output", dapclient.OutputContaining(`saw "bob"`))
		if e.SawEvent(since, "stopped") {
			t.Fatalf("%s: stopped for bob; the condition is name == alice", round)
		}
		since = e.Mark()
		answer := get(addr, "/?name=alice")
		thread, frame := waitStopped(t, e, since, fx.main, fx.line(t, "reply"))
		if got := e.Local(frame, "name"); got != `"alice"` {
			t.Errorf("%s: name = %s at the conditional breakpoint", round, got)
		}
		e.Request("continue", godap.ContinueArguments{ThreadId: thread})
		if got := recv(t, answer, round+" alice"); got != "hello alice" {
			t.Errorf("%s: alice's answer %q", round, got)
		}
	}
	check("before relaunch", 0)
	since := e.Mark()
	e.Request("kloop/relaunch", nil)
	check("after relaunch", since)

	// A hit condition: the first request to /big passes, the second stops.
	bps := []godap.SourceBreakpoint{
		{Line: fx.line(t, "greet"), LogMessage: "saw {name}"},
		{Line: fx.line(t, "reply"), Condition: `name == "alice"`},
		{Line: fx.line(t, "big"), HitCondition: "2"},
	}
	e.SetBreakpoints(fx.main, bps)
	set := e.Request("setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: fx.main}, Breakpoints: bps})
	for i, bp := range set.Decode(t).(*godap.SetBreakpointsResponse).Body.Breakpoints {
		if !bp.Verified {
			t.Fatalf("breakpoint %d not verified: %s", i, bp.Message)
		}
	}
	addr := serverAddr(t, e, since)
	since = e.Mark()
	if got := recv(t, get(addr, "/big"), "first /big"); got != fmt.Sprint(10<<20) {
		t.Fatalf("first /big answered %q; the hit condition should have let it through", got)
	}
	if e.SawEvent(since, "stopped") {
		t.Fatal("stopped on the first hit of a hitCondition 2 breakpoint")
	}
	answer := get(addr, "/big")
	thread, _ := waitStopped(t, e, since, fx.main, fx.line(t, "big"))
	e.Request("continue", godap.ContinueArguments{ThreadId: thread})
	recv(t, answer, "second /big")
	e.CheckSeqs()
}

func TestLargeVariableAndCrash(t *testing.T) {
	fx := newFixture(t)
	e := startEditor(t, fx.dir)
	e.SetBreakpoints(fx.main, []godap.SourceBreakpoint{{Line: fx.line(t, "big")}})
	// maxStringLen is Delve's own attribute: it must pass through the bridge.
	initializeAndLaunch(t, e, launchConfig(map[string]any{"maxStringLen": 11 << 20}))
	addr := serverAddr(t, e, 0)

	since := e.Mark()
	answer := get(addr, "/big")
	thread, frame := waitStopped(t, e, since, fx.main, fx.line(t, "big"))
	ev := e.Request("evaluate", godap.EvaluateArguments{Expression: "value", FrameId: frame, Context: "clipboard"})
	var body godap.EvaluateResponseBody
	if err := json.Unmarshal(ev.Body, &body); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(body.Result, "x"); n != 10<<20 {
		t.Errorf("evaluate value: %d x's came through, want %d", n, 10<<20)
	}
	e.Request("continue", godap.ContinueArguments{ThreadId: thread})
	if got := recv(t, answer, "/big"); got != fmt.Sprint(10<<20) {
		t.Errorf("/big answered %q", got)
	}

	// The program crashes: the editor sees it exit, the session stays, a relaunch revives it.
	since = e.Mark()
	get(addr, "/crash")
	for done := false; !done; {
		m := e.WaitEvent(since, "the crash", func(m dapclient.Message) bool { return m.Event == "stopped" || m.Event == "exited" })
		since = e.Mark()
		if m.Event == "stopped" { // Delve stops on the unrecovered panic first
			var st godap.StoppedEventBody
			_ = json.Unmarshal(m.Body, &st)
			e.Request("continue", godap.ContinueArguments{ThreadId: st.ThreadId})
			continue
		}
		done = true
	}
	since = e.Mark()
	e.Request("kloop/relaunch", nil)
	addr = serverAddr(t, e, since)
	if got := recv(t, get(addr, "/?name=again"), "a request after the crash"); got != "hello again" {
		t.Errorf("answer after relaunch %q", got)
	}
	if e.SawEvent(0, "terminated") {
		t.Error("a crash of the program ended the session (terminated event)")
	}

	// The editor vanishes without a disconnect: nothing may be left running.
	procs := sessionProcs(t, nil)
	if len(procs) < 2 {
		t.Fatalf("want a worker and a debuggee, found pids %v", procs)
	}
	_ = e.CloseInput()
	waitGone(t, append(procs, e.Process().Process.Pid), "kloop dap, worker and debuggee after the editor went away")
}

func TestWorkersDieWithTheAdapter(t *testing.T) {
	fx := newFixture(t)
	e := startEditor(t, fx.dir)
	initializeAndLaunch(t, e, launchConfig(nil))
	addr := serverAddr(t, e, 0)
	if got := recv(t, get(addr, "/?name=x"), "first request"); got != "hello x" {
		t.Fatalf("answer %q", got)
	}
	procs := sessionProcs(t, nil)
	if len(procs) < 2 {
		t.Fatalf("want a worker and a debuggee, found pids %v", procs)
	}
	// The daemon owns the session; the forwarder's death ends it like a disconnect.
	if err := e.Process().Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, procs, "worker and debuggee after kloop dap was killed")
}

func TestLaunchErrors(t *testing.T) {
	fx := newFixture(t)
	brokenDir := t.TempDir()
	if err := os.WriteFile(brokenDir+"/go.mod", []byte("module broken\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(brokenDir+"/main.go", []byte("package main\n\nfunc main() {\n\tundefinedCall()\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		dir        string
		launch     map[string]any
		wantError  string
		wantOutput string
	}{
		{name: "missing program", dir: fx.dir, launch: launchConfig(map[string]any{"program": "./nope"}), wantError: "does not exist"},
		{name: "no program", dir: fx.dir, launch: map[string]any{"type": "kloop", "request": "launch"}, wantError: `no "program"`},
		{name: "not a main package", dir: fx.dir, launch: launchConfig(map[string]any{"program": "./lib"}), wantError: "not a main package"},
		{name: "workload without a cluster", dir: fx.dir, launch: launchConfig(map[string]any{"workload": "orders"}), wantError: "intercept deployment/orders: no kubeconfig found"},
		{name: "other debug mode", dir: fx.dir, launch: launchConfig(map[string]any{"mode": "test"}), wantError: `remove "mode"`},
		{name: "working directory missing", dir: fx.dir, launch: launchConfig(map[string]any{"cwd": "./missing-dir"}), wantError: `cwd "./missing-dir" is not a directory`},
		{name: "build error", dir: brokenDir, launch: launchConfig(map[string]any{"program": "."}), wantError: "build failed", wantOutput: "main.go:4:2: undefined: undefinedCall"},
		// Delve ignores what it does not know: a typo is named, with the fix.
		{name: "misspelled attribute", dir: brokenDir, launch: launchConfig(map[string]any{"program": ".", "worklaod": "orders"}), wantError: "build failed",
			wantOutput: `launch attribute "worklaod" is not one kloop or Delve reads; it is ignored (did you mean "workload"?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startEditor(t, tt.dir)
			e.Request("initialize", godap.InitializeRequestArguments{AdapterID: "kloop", PathFormat: "path", LinesStartAt1: true, ColumnsStartAt1: true})
			resp := e.Await(e.SendRequest("launch", tt.launch), "launch")
			if resp.Success {
				t.Fatalf("launch succeeded, want an error containing %q", tt.wantError)
			}
			if !strings.Contains(resp.Message, tt.wantError) {
				t.Errorf("launch error %q, want it to contain %q", resp.Message, tt.wantError)
			}
			if tt.wantOutput != "" {
				e.WaitEvent(0, "compiler output", dapclient.OutputContaining(tt.wantOutput))
			}
			if procs := sessionProcs(t, nil); len(procs) != 0 {
				t.Errorf("a failed launch left processes behind: %v", procs)
			}
		})
	}
}

func TestMalformedFrames(t *testing.T) {
	dir := t.TempDir()
	t.Run("bad body gets an error and the session goes on", func(t *testing.T) {
		e := startEditor(t, dir)
		for _, body := range []string{`not json`, `{"seq":7,"type":"request"}`, `{"seq":8}`, `[1,2]`} {
			e.WriteRaw(fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body))
		}
		e.Await(0, "the malformed messages without a seq")
		for _, seq := range []int{7, 8} {
			r := e.Await(seq, fmt.Sprintf("malformed message %d", seq))
			if r.Success || !strings.Contains(r.Message, "malformed DAP message") {
				t.Errorf("answer to malformed message %d: success=%v %q", seq, r.Success, r.Message)
			}
		}
		init := e.Request("initialize", godap.InitializeRequestArguments{AdapterID: "kloop", PathFormat: "path", LinesStartAt1: true, ColumnsStartAt1: true})
		var caps godap.Capabilities
		if err := json.Unmarshal(init.Body, &caps); err != nil || !caps.SupportsConditionalBreakpoints || !caps.SupportsRestartRequest {
			t.Errorf("initialize after malformed messages: caps %s err %v", init.Body, err)
		}
		if r := e.Await(e.SendRequest("kloop/relaunch", nil), "relaunch before launch"); r.Success || !strings.Contains(r.Message, "no program is being debugged yet") {
			t.Errorf("relaunch before launch: success=%v %q", r.Success, r.Message)
		}
		if r := e.Await(e.SendRequest("threads", nil), "threads before launch"); r.Success || !strings.Contains(r.Message, "needs a running program") {
			t.Errorf("threads before launch: success=%v %q", r.Success, r.Message)
		}
	})
	t.Run("broken framing ends the session with a message", func(t *testing.T) {
		e := startEditor(t, dir)
		e.WriteRaw("Content-Length: twelve\r\n\r\n{}")
		e.WaitEvent(0, "an explanation", dapclient.OutputContaining("Content-Length"))
		select {
		case <-e.Exited():
		case <-time.After(waitLong):
			t.Fatal("kloop dap hung after broken framing")
		}
	})
}
