package intercept_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/kloop/kloop/test/sandbox"
)

// dapClient is a minimal DAP client over `kloop dap`'s stdio, doing what
// VS Code does: breakpoints and configurationDone on every `initialized`.
type dapClient struct {
	t   testing.TB
	cmd *exec.Cmd
	in  io.WriteCloser

	wmu sync.Mutex
	seq int

	mu     sync.Mutex
	cond   *sync.Cond
	msgs   []godap.Message
	bps    map[string][]godap.SourceBreakpoint
	closed bool
}

func startDAP(t testing.TB, f *fixture) *dapClient {
	t.Helper()
	cmd := f.daemon.Command(t.Context(), "dap")
	cmd.Dir = f.ws
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &dapClient{t: t, cmd: cmd, in: in, bps: map[string][]godap.SourceBreakpoint{}}
	c.cond = sync.NewCond(&c.mu)
	go c.read(bufio.NewReader(out))
	t.Cleanup(func() {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return
		}
		c.send(&godap.DisconnectRequest{Request: c.req("disconnect"), Arguments: &godap.DisconnectArguments{TerminateDebuggee: true}})
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("kloop dap stderr:\n%s", stderr.String())
		}
	})
	return c
}

func (c *dapClient) read(r *bufio.Reader) {
	for {
		m, err := godap.ReadProtocolMessage(r)
		if err != nil {
			c.mu.Lock()
			c.closed = true
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		c.msgs = append(c.msgs, m)
		c.cond.Broadcast()
		c.mu.Unlock()
		if _, ok := m.(*godap.InitializedEvent); ok {
			go c.configure()
		}
	}
}

func (c *dapClient) req(command string) godap.Request {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.seq++
	return godap.Request{ProtocolMessage: godap.ProtocolMessage{Seq: c.seq, Type: "request"}, Command: command}
}

func (c *dapClient) send(m godap.Message) int {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := godap.WriteProtocolMessage(c.in, m); err != nil {
		c.t.Logf("send DAP message: %v", err)
	}
	return m.GetSeq()
}

func (c *dapClient) configure() {
	c.mu.Lock()
	bps := make(map[string][]godap.SourceBreakpoint, len(c.bps))
	for k, v := range c.bps {
		bps[k] = v
	}
	c.mu.Unlock()
	for path, list := range bps {
		c.send(&godap.SetBreakpointsRequest{Request: c.req("setBreakpoints"), Arguments: godap.SetBreakpointsArguments{Source: godap.Source{Path: path}, Breakpoints: list}})
	}
	c.send(&godap.ConfigurationDoneRequest{Request: c.req("configurationDone")})
}

func (c *dapClient) setBreakpoint(path string, line int) {
	c.mu.Lock()
	c.bps[path] = []godap.SourceBreakpoint{{Line: line}}
	c.mu.Unlock()
}

// mark is the index of the next message, for waits that look only later.
func (c *dapClient) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// wait returns the first message since index since that match accepts.
func (c *dapClient) wait(since int, what string, match func(godap.Message) bool) godap.Message {
	c.t.Helper()
	deadline := time.Now().Add(sandbox.WaitTimeout)
	timer := time.AfterFunc(sandbox.WaitTimeout, func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for _, m := range c.msgs[since:] {
			if match(m) {
				return m
			}
		}
		if c.closed || time.Now().After(deadline) {
			var seen []string
			for _, m := range c.msgs[since:] {
				b, _ := json.Marshal(m)
				seen = append(seen, string(b))
			}
			c.t.Fatalf("DAP: no %s; got:\n%s", what, strings.Join(seen, "\n"))
		}
		c.cond.Wait()
	}
}

func (c *dapClient) response(seq int) godap.ResponseMessage {
	c.t.Helper()
	m := c.wait(0, fmt.Sprintf("response to request %d", seq), func(m godap.Message) bool {
		r, ok := m.(godap.ResponseMessage)
		return ok && r.GetResponse().RequestSeq == seq
	})
	return m.(godap.ResponseMessage)
}

func (c *dapClient) stoppedAt(since int, path string, line int) int {
	c.t.Helper()
	m := c.wait(since, fmt.Sprintf("stop at %s:%d", path, line), func(m godap.Message) bool {
		_, ok := m.(*godap.StoppedEvent)
		return ok
	})
	thread := m.(*godap.StoppedEvent).Body.ThreadId
	seq := c.send(&godap.StackTraceRequest{Request: c.req("stackTrace"), Arguments: godap.StackTraceArguments{ThreadId: thread, Levels: 1}})
	st, ok := c.response(seq).(*godap.StackTraceResponse)
	if !ok || len(st.Body.StackFrames) == 0 {
		c.t.Fatalf("no stack at the stop")
	}
	top := st.Body.StackFrames[0]
	if top.Source == nil || top.Source.Path != path || top.Line != line {
		c.t.Fatalf("stopped at %v:%d, want %s:%d", top.Source, top.Line, path, line)
	}
	return thread
}

func lineOf(t testing.TB, path, marker string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	t.Fatalf("%s has no %q", path, marker)
	return 0
}

// TestDebugSessionOnClusterTraffic is the debugger joined to the intercept:
// a launch naming the workload intercepts it through the daemon, a request
// from the cluster stops at a breakpoint, and after a save the next request
// stops in the new code; ending the session leaves the workload.
func TestDebugSessionOnClusterTraffic(t *testing.T) {
	f := newFixture(t)
	origTemplate, _ := f.specs(t)
	c := startDAP(t, f)
	const marker = `"servedBy": cfg.Pod`
	c.setBreakpoint(f.main, lineOf(t, f.main, marker))

	seq := c.send(&godap.InitializeRequest{Request: c.req("initialize"), Arguments: godap.InitializeRequestArguments{AdapterID: "kloop", PathFormat: "path", LinesStartAt1: true, ColumnsStartAt1: true}})
	c.response(seq)
	launch := map[string]any{
		"workload": "orders", "program": ".", "port": fmt.Sprintf("8080:%d", f.localPort),
		"env": map[string]string{"HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", f.localPort), "ADMIN_ADDR": "127.0.0.1:0"},
	}
	args, _ := json.Marshal(launch)
	seq = c.send(&godap.LaunchRequest{Request: c.req("launch"), Arguments: args})
	if r := c.response(seq).GetResponse(); !r.Success {
		t.Fatalf("launch failed: %s", r.Message)
	}

	type answer struct {
		a    ordersAnswer
		body string
	}
	get := func() <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			_, a, body := f.getOrder(t)
			ch <- answer{a, body}
		}()
		return ch
	}
	since := c.mark()
	pending := get()
	thread := c.stoppedAt(since, f.main, lineOf(t, f.main, marker))
	c.send(&godap.ContinueRequest{Request: c.req("continue"), Arguments: godap.ContinueArguments{ThreadId: thread}})
	if got := <-pending; got.a.Build != "laptop-v1" {
		t.Fatalf("answer after continue: %s, want the debugged laptop-v1", got.body)
	}

	// Save a change with three lines inserted above the breakpoint; the
	// editor moves the breakpoint with the text before saving.
	newSrc := strings.Replace(ordersSource(t, "laptop-v2"), "\t\tw.Header().Set(\"Content-Type\", \"application/json\")\n\t\tjson.NewEncoder(w).Encode(map[string]any{\"order\"",
		"\t\t_ = 1\n\t\t_ = 2\n\t\t_ = 3\n\t\tw.Header().Set(\"Content-Type\", \"application/json\")\n\t\tjson.NewEncoder(w).Encode(map[string]any{\"order\"", 1)
	newLine := strings.Count(newSrc[:strings.Index(newSrc, marker)], "\n") + 1
	c.setBreakpoint(f.main, newLine)
	since = c.mark()
	if err := os.WriteFile(f.main, []byte(newSrc), 0o644); err != nil {
		t.Fatal(err)
	}
	c.wait(since, "the relaunch after the save", func(m godap.Message) bool {
		o, ok := m.(*godap.OutputEvent)
		return ok && strings.Contains(o.Body.Output, "kloop: relaunched")
	})
	since = c.mark()
	pending = get()
	thread = c.stoppedAt(since, f.main, newLine)
	c.send(&godap.ContinueRequest{Request: c.req("continue"), Arguments: godap.ContinueArguments{ThreadId: thread}})
	if got := <-pending; got.a.Build != "laptop-v2" {
		t.Fatalf("answer after the relaunch: %s, want laptop-v2", got.body)
	}

	// Ending the debug session ends the intercept it made.
	seq = c.send(&godap.DisconnectRequest{Request: c.req("disconnect"), Arguments: &godap.DisconnectArguments{TerminateDebuggee: true}})
	c.response(seq)
	eventually(t, "the workload restored after the debug session", func() bool {
		template, _ := f.specs(t)
		return reflect.DeepEqual(template, origTemplate)
	})
}
