package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"

	godap "github.com/google/go-dap"
)

// dapClient is a DAP client over `kloop dap`'s stdio that does what VS Code
// does: it sends the breakpoints and configurationDone on every
// `initialized` event, and it keeps every message it receives so that waits
// can look at what arrived after a mark.
type dapClient struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	stderr *lockedBuffer
	wait   time.Duration
	exited chan struct{}

	wmu sync.Mutex
	seq int

	mu     sync.Mutex
	cond   *sync.Cond
	msgs   []godap.Message
	bps    map[string][]godap.SourceBreakpoint
	closed bool
}

func startDAP(cmd *exec.Cmd, wait time.Duration) (*dapClient, error) {
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c := &dapClient{cmd: cmd, in: in, stderr: &lockedBuffer{}, wait: wait, exited: make(chan struct{}), bps: map[string][]godap.SourceBreakpoint{}}
	cmd.Stderr = c.stderr
	c.cond = sync.NewCond(&c.mu)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start kloop dap: %w", err)
	}
	go c.read(bufio.NewReader(out))
	go func() {
		_ = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
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

func (c *dapClient) send(m godap.Message) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := godap.WriteProtocolMessage(c.in, m); err != nil {
		return 0, fmt.Errorf("send DAP %T: %w", m, err)
	}
	return m.GetSeq(), nil
}

func (c *dapClient) configure() {
	c.mu.Lock()
	bps := make(map[string][]godap.SourceBreakpoint, len(c.bps))
	for k, v := range c.bps {
		bps[k] = v
	}
	c.mu.Unlock()
	for path, list := range bps {
		_, _ = c.send(&godap.SetBreakpointsRequest{Request: c.req("setBreakpoints"), Arguments: godap.SetBreakpointsArguments{Source: godap.Source{Path: path}, Breakpoints: list}})
	}
	_, _ = c.send(&godap.ConfigurationDoneRequest{Request: c.req("configurationDone")})
}

// setBreakpoint replaces the breakpoints of path (sent at the next
// `initialized`, as an editor does).
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

// waitFor returns the first message since index since that match accepts.
// The bound only turns a hang into an error naming what was awaited.
func (c *dapClient) waitFor(ctx context.Context, since int, what string, match func(godap.Message) bool) (godap.Message, error) {
	deadline := time.Now().Add(c.wait)
	wake := func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() }
	timer := time.AfterFunc(c.wait, wake)
	defer timer.Stop()
	stop := context.AfterFunc(ctx, wake)
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for _, m := range c.msgs[since:] {
			if match(m) {
				return m, nil
			}
		}
		if c.closed || ctx.Err() != nil || time.Now().After(deadline) {
			var seen []string
			for _, m := range c.msgs[since:] {
				b, _ := json.Marshal(m)
				seen = append(seen, "  "+string(b))
			}
			why := "kloop dap closed its output"
			switch {
			case ctx.Err() != nil:
				why = ctx.Err().Error()
			case !c.closed:
				why = fmt.Sprintf("nothing after %s", c.wait)
			}
			return nil, fmt.Errorf("DAP: no %s (%s); received:\n%s\nkloop dap stderr:\n%s", what, why, strings.Join(seen, "\n"), lastLines(c.stderr.String(), 30))
		}
		c.cond.Wait()
	}
}

// call sends a request and waits for its response, failing on an error
// response.
func (c *dapClient) call(ctx context.Context, m godap.RequestMessage) (godap.ResponseMessage, error) {
	seq, err := c.send(m)
	if err != nil {
		return nil, err
	}
	command := m.GetRequest().Command
	r, err := c.waitFor(ctx, 0, fmt.Sprintf("response to %s (seq %d)", command, seq), func(m godap.Message) bool {
		r, ok := m.(godap.ResponseMessage)
		return ok && r.GetResponse().RequestSeq == seq
	})
	if err != nil {
		return nil, err
	}
	resp := r.(godap.ResponseMessage)
	if !resp.GetResponse().Success {
		msg := resp.GetResponse().Message
		if er, ok := resp.(*godap.ErrorResponse); ok && er.Body.Error != nil {
			msg += ": " + er.Body.Error.Format
		}
		return resp, fmt.Errorf("DAP %s failed: %s", command, msg)
	}
	return resp, nil
}

// Stop is where the debuggee stopped at a breakpoint.
type Stop struct {
	// Function, File and Line are the top stack frame.
	Function string
	File     string
	Line     int
	// Stack is the top frames, "function file:line" each.
	Stack []string
	// Variable was evaluated in the top frame; Value is what Delve says.
	Variable string
	Value    string
	thread   int
}

// stopped waits for a stopped event after since, then reads the stack and
// evaluates variable in the top frame.
func (c *dapClient) stopped(ctx context.Context, since int, variable string) (*Stop, error) {
	m, err := c.waitFor(ctx, since, "stopped event (a breakpoint hit)", func(m godap.Message) bool {
		_, ok := m.(*godap.StoppedEvent)
		return ok
	})
	if err != nil {
		return nil, err
	}
	ev := m.(*godap.StoppedEvent)
	s := &Stop{thread: ev.Body.ThreadId, Variable: variable}
	r, err := c.call(ctx, &godap.StackTraceRequest{Request: c.req("stackTrace"), Arguments: godap.StackTraceArguments{ThreadId: s.thread, Levels: 3}})
	if err != nil {
		return nil, err
	}
	st, ok := r.(*godap.StackTraceResponse)
	if !ok || len(st.Body.StackFrames) == 0 {
		return nil, fmt.Errorf("no stack at the stop (reason %q)", ev.Body.Reason)
	}
	for _, f := range st.Body.StackFrames {
		path := ""
		if f.Source != nil {
			path = f.Source.Path
		}
		s.Stack = append(s.Stack, fmt.Sprintf("%s %s:%d", f.Name, path, f.Line))
	}
	top := st.Body.StackFrames[0]
	s.Function, s.Line = top.Name, top.Line
	if top.Source != nil {
		s.File = top.Source.Path
	}
	r, err = c.call(ctx, &godap.EvaluateRequest{Request: c.req("evaluate"), Arguments: godap.EvaluateArguments{Expression: variable, FrameId: top.Id, Context: "watch"}})
	if err != nil {
		return s, err
	}
	if ev, ok := r.(*godap.EvaluateResponse); ok {
		s.Value = ev.Body.Result
	}
	return s, nil
}

func (c *dapClient) cont(ctx context.Context, thread int) error {
	_, err := c.call(ctx, &godap.ContinueRequest{Request: c.req("continue"), Arguments: godap.ContinueArguments{ThreadId: thread}})
	return err
}

// disconnect ends the debug session (terminating the debuggee, as an
// editor's stop button does) and waits for kloop dap to exit.
func (c *dapClient) disconnect(ctx context.Context) error {
	_, err := c.call(ctx, &godap.DisconnectRequest{Request: c.req("disconnect"), Arguments: &godap.DisconnectArguments{TerminateDebuggee: true}})
	c.in.Close()
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
		if err == nil {
			err = errors.New("kloop dap did not exit within 30s of the disconnect; killed it")
		}
	}
	return err
}

// kill ends kloop dap without a protocol goodbye (cleanup after a failure).
func (c *dapClient) kill() {
	select {
	case <-c.exited:
		return
	default:
	}
	_, _ = c.send(&godap.DisconnectRequest{Request: c.req("disconnect"), Arguments: &godap.DisconnectArguments{TerminateDebuggee: true}})
	c.in.Close()
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
