// Package dapclient is a small Debug Adapter Protocol client for kloop's
// end-to-end suites: it drives a real `kloop dap` over stdio the way VS
// Code does (breakpoints and configurationDone on every initialized) and
// lets a test wait for the messages a user would see.
package dapclient

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/kloop/kloop/test/sandbox"
)

// Client is a minimal DAP client over `kloop dap`'s stdio, doing what
// VS Code does: breakpoints and configurationDone on every `initialized`.
type Client struct {
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

func Start(t testing.TB, cmd *exec.Cmd) *Client {
	t.Helper()
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
	c := &Client{t: t, cmd: cmd, in: in, bps: map[string][]godap.SourceBreakpoint{}}
	c.cond = sync.NewCond(&c.mu)
	go c.read(bufio.NewReader(out))
	t.Cleanup(func() {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return
		}
		c.Send(&godap.DisconnectRequest{Request: c.Req("disconnect"), Arguments: &godap.DisconnectArguments{TerminateDebuggee: true}})
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

func (c *Client) read(r *bufio.Reader) {
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

func (c *Client) Req(command string) godap.Request {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.seq++
	return godap.Request{ProtocolMessage: godap.ProtocolMessage{Seq: c.seq, Type: "request"}, Command: command}
}

func (c *Client) Send(m godap.Message) int {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := godap.WriteProtocolMessage(c.in, m); err != nil {
		c.t.Logf("send DAP message: %v", err)
	}
	return m.GetSeq()
}

func (c *Client) configure() {
	c.mu.Lock()
	bps := make(map[string][]godap.SourceBreakpoint, len(c.bps))
	for k, v := range c.bps {
		bps[k] = v
	}
	c.mu.Unlock()
	for path, list := range bps {
		c.Send(&godap.SetBreakpointsRequest{Request: c.Req("setBreakpoints"), Arguments: godap.SetBreakpointsArguments{Source: godap.Source{Path: path}, Breakpoints: list}})
	}
	c.Send(&godap.ConfigurationDoneRequest{Request: c.Req("configurationDone")})
}

func (c *Client) SetBreakpoint(path string, line int) {
	c.mu.Lock()
	c.bps[path] = []godap.SourceBreakpoint{{Line: line}}
	c.mu.Unlock()
}

// mark is the index of the next message, for waits that look only later.
func (c *Client) Mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// wait returns the first message since index since that match accepts.
func (c *Client) Wait(since int, what string, match func(godap.Message) bool) godap.Message {
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

func (c *Client) Response(seq int) godap.ResponseMessage {
	c.t.Helper()
	m := c.Wait(0, fmt.Sprintf("response to request %d", seq), func(m godap.Message) bool {
		r, ok := m.(godap.ResponseMessage)
		return ok && r.GetResponse().RequestSeq == seq
	})
	return m.(godap.ResponseMessage)
}

func (c *Client) StoppedAt(since int, path string, line int) int {
	c.t.Helper()
	m := c.Wait(since, fmt.Sprintf("stop at %s:%d", path, line), func(m godap.Message) bool {
		_, ok := m.(*godap.StoppedEvent)
		return ok
	})
	thread := m.(*godap.StoppedEvent).Body.ThreadId
	seq := c.Send(&godap.StackTraceRequest{Request: c.Req("stackTrace"), Arguments: godap.StackTraceArguments{ThreadId: thread, Levels: 1}})
	st, ok := c.Response(seq).(*godap.StackTraceResponse)
	if !ok || len(st.Body.StackFrames) == 0 {
		c.t.Fatalf("no stack at the stop")
	}
	top := st.Body.StackFrames[0]
	if top.Source == nil || top.Source.Path != path || top.Line != line {
		c.t.Fatalf("stopped at %v:%d, want %s:%d", top.Source, top.Line, path, line)
	}
	return thread
}

func LineOf(t testing.TB, path, marker string) int {
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

// Since returns the messages received from index since on.
func (c *Client) Since(since int) []godap.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]godap.Message(nil), c.msgs[since:]...)
}

// Closed reports whether the adapter closed the connection.
func (c *Client) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Process is the adapter's process.
func (c *Client) Process() *exec.Cmd { return c.cmd }
