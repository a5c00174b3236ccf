package faults_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
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
