package intercept_test

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	godap "github.com/google/go-dap"

	"github.com/kloop/kloop/test/dapclient"
)

// startDAP runs `kloop dap` in the workspace with the fixture's daemon.
func startDAP(t testing.TB, f *fixture) *dapclient.Client {
	t.Helper()
	cmd := f.Daemon.Command(t.Context(), "dap")
	cmd.Dir = f.WS
	return dapclient.Start(t, cmd)
}

// launchTimings is the breakdown kloop puts in the launch response.
type launchTimings struct {
	TotalMillis     int64 `json:"totalMillis"`
	InterceptMillis int64 `json:"interceptMillis"`
	BuildMillis     int64 `json:"buildMillis"`
	DebuggerMillis  int64 `json:"debuggerMillis"`
}

// launchOrders initializes the debug session and launches the orders
// program on the intercepted workload, as an editor's launch.json would.
func launchOrders(t testing.TB, c *dapclient.Client, f *fixture) launchTimings {
	t.Helper()
	seq := c.Send(&godap.InitializeRequest{Request: c.Req("initialize"), Arguments: godap.InitializeRequestArguments{AdapterID: "kloop", PathFormat: "path", LinesStartAt1: true, ColumnsStartAt1: true}})
	c.Response(seq)
	launch := map[string]any{
		"workload": "orders", "program": ".", "port": fmt.Sprintf("8080:%d", f.LocalPort),
		"env": map[string]string{"HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", f.LocalPort), "ADMIN_ADDR": "127.0.0.1:0"},
	}
	args, _ := json.Marshal(launch)
	seq = c.Send(&godap.LaunchRequest{Request: c.Req("launch"), Arguments: args})
	r := c.Await(seq, "launch")
	if !r.Success {
		t.Fatalf("launch failed: %s", r.Message)
	}
	var body struct {
		Kloop launchTimings `json:"kloop"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || body.Kloop.TotalMillis == 0 {
		t.Errorf("the launch response has no timings: %s (%v)", r.Body, err)
	}
	return body.Kloop
}

// stopAndContinue sends a cluster request that must stop at line, continues,
// and checks the answer came from build wantBuild.
func stopAndContinue(t *testing.T, c *dapclient.Client, f *fixture, line int, wantBuild string) {
	t.Helper()
	type answer struct {
		a    ordersAnswer
		body string
	}
	pending := make(chan answer, 1)
	since := c.Mark()
	go func() {
		_, a, body := f.GetOrder(t)
		pending <- answer{a, body}
	}()
	thread := c.StoppedAt(since, f.Main, line)
	c.Send(&godap.ContinueRequest{Request: c.Req("continue"), Arguments: godap.ContinueArguments{ThreadId: thread}})
	if got := <-pending; got.a.Build != wantBuild {
		t.Fatalf("answer after continue: %s, want %s", got.body, wantBuild)
	}
}

// TestDebugSessionOnClusterTraffic is the debugger joined to the intercept:
// a launch naming the workload intercepts it through the daemon, a request
// from the cluster stops at a breakpoint, and after a save the next request
// stops in the new code; ending the session leaves the workload.
func TestDebugSessionOnClusterTraffic(t *testing.T) {
	f := newFixture(t)
	origTemplate, _ := f.Specs(t)
	c := startDAP(t, f)
	const marker = `"servedBy": cfg.Pod`
	c.SetBreakpoint(f.Main, dapclient.LineOf(t, f.Main, marker))

	launchOrders(t, c, f)

	stopAndContinue(t, c, f, dapclient.LineOf(t, f.Main, marker), "laptop-v1")

	// Save a change with three lines inserted above the breakpoint; the
	// editor moves the breakpoint with the text before saving.
	newSrc := strings.Replace(ordersSource(t, "laptop-v2"), "\t\tw.Header().Set(\"Content-Type\", \"application/json\")\n\t\tjson.NewEncoder(w).Encode(map[string]any{\"order\"",
		"\t\t_ = 1\n\t\t_ = 2\n\t\t_ = 3\n\t\tw.Header().Set(\"Content-Type\", \"application/json\")\n\t\tjson.NewEncoder(w).Encode(map[string]any{\"order\"", 1)
	newLine := strings.Count(newSrc[:strings.Index(newSrc, marker)], "\n") + 1
	c.SetBreakpoint(f.Main, newLine)
	since := c.Mark()
	if err := os.WriteFile(f.Main, []byte(newSrc), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Wait(since, "the relaunch after the save", func(m godap.Message) bool {
		o, ok := m.(*godap.OutputEvent)
		return ok && strings.Contains(o.Body.Output, "kloop: relaunched")
	})
	stopAndContinue(t, c, f, newLine, "laptop-v2")

	// Ending the debug session ends the intercept it made.
	seq := c.Send(&godap.DisconnectRequest{Request: c.Req("disconnect"), Arguments: &godap.DisconnectArguments{TerminateDebuggee: true}})
	c.Response(seq)
	eventually(t, "the workload restored after the debug session", func() bool {
		template, _ := f.Specs(t)
		return reflect.DeepEqual(template, origTemplate)
	})
}
