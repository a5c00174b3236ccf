// Package dapclient is the Debug Adapter Protocol client of kloop's
// end-to-end suites (test/dap, test/faults, test/intercept, test/demo): it
// drives a real `kloop dap` over stdio the way VS Code does (breakpoints,
// function breakpoints and configurationDone on every `initialized`) and
// keeps every message it receives, so that a wait can look at what arrived
// after a Mark.
//
// Methods that take a context return errors and need no testing.TB (the
// demo program uses them, with New). The others are for tests: they need a
// client from Start and fail its test; each bounds its wait by
// Options.Wait.
package dapclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/kloop/kloop/internal/racecheck"
)

// DefaultWait is Options.Wait when unset: test/cluster's WaitTimeout.
const DefaultWait = 2 * time.Minute

// Options change how a Client behaves; the zero value is VS Code's behaviour.
type Options struct {
	// Wait bounds each wait for a message; 0 means DefaultWait.
	Wait time.Duration
	// ConfigureOnce makes the client answer only the first `initialized`
	// (breakpoints and configurationDone once), like an editor that ignores
	// the adapter's later ones: a relaunch must then go on without them.
	ConfigureOnce bool
}

// Message is one message from the adapter: its envelope, and go-dap's typed
// form when go-dap knows it.
type Message struct {
	Seq        int             `json:"seq"`
	Type       string          `json:"type"` // "response" or "event"
	Command    string          `json:"command"`
	Event      string          `json:"event"`
	RequestSeq int             `json:"request_seq"`
	Success    bool            `json:"success"`
	Message    string          `json:"message"`
	Body       json.RawMessage `json:"body"`
	// DAP is nil for what go-dap cannot decode (e.g. the answer to
	// kloop/relaunch).
	DAP godap.Message `json:"-"`
}

// Decode is m's go-dap form; it fails t when go-dap does not know m.
func (m Message) Decode(t testing.TB) godap.Message {
	t.Helper()
	if m.DAP == nil {
		t.Fatalf("go-dap cannot decode %s", m)
	}
	return m.DAP
}

// String is m in one line, its body cut short.
func (m Message) String() string {
	switch m.Type {
	case "event":
		if m.Event == "output" {
			var b godap.OutputEventBody
			_ = json.Unmarshal(m.Body, &b)
			return fmt.Sprintf("event output (%s: %q)", b.Category, truncate(b.Output, 300))
		}
		return fmt.Sprintf("event %s %s", m.Event, truncate(string(m.Body), 300))
	case "response":
		ok := "ok"
		if !m.Success {
			ok = "failed: " + m.Message
		}
		return fmt.Sprintf("response %d to %s %d, %s %s", m.Seq, m.Command, m.RequestSeq, ok, truncate(string(m.Body), 300))
	}
	return fmt.Sprintf("%s %d", m.Type, m.Seq)
}

// Client is a DAP client over `kloop dap`'s stdio.
type Client struct {
	t      testing.TB // nil from New
	opts   Options
	cmd    *exec.Cmd
	in     io.WriteCloser
	stderr lockedBuffer
	exited chan struct{}

	wmu sync.Mutex
	seq int

	mu         sync.Mutex
	cond       *sync.Cond
	msgs       []Message
	answered   map[int]int // request seq → index of its first response in msgs
	lastSeq    int
	seqErrors  []string
	closed     bool   // the adapter's output ended
	failure    string // why the client stopped reading, when the adapter broke the protocol
	writeErr   error  // the first failed write
	bps        map[string][]godap.SourceBreakpoint
	funcBPs    []godap.FunctionBreakpoint
	configured int // `initialized` events answered

	closeOnce sync.Once
	closeErr  error
}

// New runs cmd (a `kloop dap`) and connects to its stdio.
func New(cmd *exec.Cmd, opts Options) (*Client, error) {
	if opts.Wait == 0 {
		opts.Wait = DefaultWait
	}
	c := &Client{
		opts: opts, cmd: cmd, exited: make(chan struct{}),
		answered: map[int]int{}, bps: map[string][]godap.SourceBreakpoint{},
	}
	c.cond = sync.NewCond(&c.mu)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// A pipe of our own rather than StdoutPipe: Wait, which runs as soon as
	// the adapter exits, must not close it before its last message is read.
	out, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = w, &c.stderr
	err = cmd.Start()
	w.Close()
	if err != nil {
		out.Close()
		return nil, fmt.Errorf("start kloop dap: %w", err)
	}
	c.in = in
	go c.read(out)
	go func() {
		_ = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// Start is New for a test: it fails t on error, and at the end of the test
// ends kloop dap (Close) and fails t if kloop dap or its worker reported a
// data race or a protocol error; kloop dap's stderr goes to the test log when
// the test failed or KLOOP_DAP_TEST_LOG is set. At most one Options.
func Start(t testing.TB, cmd *exec.Cmd, opts ...Options) *Client {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	c, err := New(cmd, o)
	if err != nil {
		t.Fatal(err)
	}
	c.t = t
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Log(err)
		}
		c.mu.Lock()
		failure := c.failure
		c.mu.Unlock()
		if failure != "" {
			t.Errorf("kloop dap broke the protocol: %s", failure)
		}
		// Under -race the adapter and its worker are race-built: a report
		// from either (the adapter's stderr, or the worker's relayed as
		// output) fails the test.
		if err := racecheck.Check("kloop dap (its stderr)", c.Stderr()); err != nil {
			t.Error(err)
		}
		if err := racecheck.Check("kloop dap's debug worker (its output events)", c.OutputText()); err != nil {
			t.Error(err)
		}
		if t.Failed() || os.Getenv("KLOOP_DAP_TEST_LOG") != "" {
			t.Logf("kloop dap stderr:\n%s", c.Stderr())
		}
	})
	return c
}

func (c *Client) read(out io.ReadCloser) {
	defer out.Close()
	br := bufio.NewReaderSize(out, 1<<20)
	tp := textproto.NewReader(br)
	failure := ""
	for {
		hdr, err := tp.ReadMIMEHeader()
		if err != nil {
			break
		}
		n, err := strconv.Atoi(hdr.Get("Content-Length"))
		if err != nil {
			failure = fmt.Sprintf("bad Content-Length %q", hdr.Get("Content-Length"))
			break
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			break
		}
		var m Message
		if err := json.Unmarshal(body, &m); err != nil {
			failure = fmt.Sprintf("non-JSON message: %v", err)
			break
		}
		if d, err := godap.DecodeProtocolMessage(body); err == nil {
			m.DAP = d
		}
		c.mu.Lock()
		if m.Seq <= c.lastSeq {
			c.seqErrors = append(c.seqErrors, fmt.Sprintf("seq %d after %d", m.Seq, c.lastSeq))
		}
		c.lastSeq = m.Seq
		if m.Type == "response" {
			if _, dup := c.answered[m.RequestSeq]; dup {
				c.seqErrors = append(c.seqErrors, fmt.Sprintf("second response to request %d (%s)", m.RequestSeq, m.Command))
			} else {
				c.answered[m.RequestSeq] = len(c.msgs)
			}
		}
		c.msgs = append(c.msgs, m)
		configure := m.Type == "event" && m.Event == "initialized" && (!c.opts.ConfigureOnce || c.configured == 0)
		if configure {
			c.configured++
		}
		c.cond.Broadcast()
		c.mu.Unlock()
		if configure {
			go c.configure()
		}
	}
	c.mu.Lock()
	c.closed, c.failure = true, failure
	c.cond.Broadcast()
	c.mu.Unlock()
}

// configure does what VS Code does on `initialized`.
func (c *Client) configure() {
	c.mu.Lock()
	bps := make(map[string][]godap.SourceBreakpoint, len(c.bps))
	for k, v := range c.bps {
		bps[k] = v
	}
	fbps := append([]godap.FunctionBreakpoint{}, c.funcBPs...)
	c.mu.Unlock()
	for path, list := range bps {
		c.SendRequest("setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: path}, Breakpoints: list})
	}
	c.SendRequest("setFunctionBreakpoints", godap.SetFunctionBreakpointsArguments{Breakpoints: fbps})
	c.SendRequest("configurationDone", nil)
}

// SetBreakpoints replaces the breakpoints of path, sent at the next
// `initialized` (as an editor does); send a setBreakpoints request to apply
// them now.
func (c *Client) SetBreakpoints(path string, bps []godap.SourceBreakpoint) {
	c.mu.Lock()
	c.bps[path] = bps
	c.mu.Unlock()
}

// SetBreakpoint is SetBreakpoints with one breakpoint at line.
func (c *Client) SetBreakpoint(path string, line int) {
	c.SetBreakpoints(path, []godap.SourceBreakpoint{{Line: line}})
}

// SetFunctionBreakpoints replaces the function breakpoints sent at the next
// `initialized`.
func (c *Client) SetFunctionBreakpoints(bps []godap.FunctionBreakpoint) {
	c.mu.Lock()
	c.funcBPs = bps
	c.mu.Unlock()
}

// Req is the header of the next request, for Send.
func (c *Client) Req(command string) godap.Request {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.seq++
	return godap.Request{ProtocolMessage: godap.ProtocolMessage{Seq: c.seq, Type: "request"}, Command: command}
}

// Send writes m (its header from Req) and returns its seq without waiting.
func (c *Client) Send(m godap.Message) int {
	body, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("encode %T: %v", m, err))
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.write(body)
	return m.GetSeq()
}

// SendRequest writes a request with these arguments (none when nil) and
// returns its seq without waiting.
func (c *Client) SendRequest(command string, args any) int {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.seq++
	msg := map[string]any{"seq": c.seq, "type": "request", "command": command}
	if args != nil {
		msg["arguments"] = args
	}
	body, err := json.Marshal(msg)
	if err != nil {
		panic(fmt.Sprintf("encode %s: %v", command, err))
	}
	c.write(body)
	return c.seq
}

// write frames body; c.wmu is held. A failed write shows in the next
// wait's error.
func (c *Client) write(body []byte) {
	c.writeLocked(fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body))
}

func (c *Client) writeLocked(s string) {
	if _, err := io.WriteString(c.in, s); err != nil {
		c.mu.Lock()
		if c.writeErr == nil {
			c.writeErr = err
		}
		c.mu.Unlock()
	}
}

// WriteRaw writes s to the adapter as it is (malformed frames).
func (c *Client) WriteRaw(s string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.writeLocked(s)
}

// CloseInput closes the adapter's stdin, as an editor that goes away does.
func (c *Client) CloseInput() error { return c.in.Close() }

// Mark is the index of the next message, for waits that look only later.
func (c *Client) Mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// Messages returns the messages received from index since on.
func (c *Client) Messages(since int) []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Message(nil), c.msgs[since:]...)
}

// Since returns the go-dap form of the messages from index since on.
func (c *Client) Since(since int) []godap.Message {
	var out []godap.Message
	for _, m := range c.Messages(since) {
		if m.DAP != nil {
			out = append(out, m.DAP)
		}
	}
	return out
}

// SawEvent reports whether an event with this name arrived from index since on.
func (c *Client) SawEvent(since int, name string) bool {
	for _, m := range c.Messages(since) {
		if m.Type == "event" && m.Event == name {
			return true
		}
	}
	return false
}

// OutputText is everything the adapter sent as output events.
func (c *Client) OutputText() string {
	var b strings.Builder
	for _, m := range c.Messages(0) {
		if m.Event == "output" {
			var body godap.OutputEventBody
			_ = json.Unmarshal(m.Body, &body)
			b.WriteString(body.Output)
		}
	}
	return b.String()
}

// Stderr is what kloop dap wrote to its stderr so far.
func (c *Client) Stderr() string { return c.stderr.String() }

// Closed reports whether the adapter closed the connection.
func (c *Client) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Process is the adapter's process.
func (c *Client) Process() *exec.Cmd { return c.cmd }

// Exited is closed once the adapter's process has exited.
func (c *Client) Exited() <-chan struct{} { return c.exited }

// EventNamed matches events by name.
func EventNamed(name string) func(Message) bool {
	return func(m Message) bool { return m.Type == "event" && m.Event == name }
}

// OutputContaining matches output events whose text contains sub.
func OutputContaining(sub string) func(Message) bool {
	return func(m Message) bool {
		if m.Event != "output" {
			return false
		}
		var body godap.OutputEventBody
		_ = json.Unmarshal(m.Body, &body)
		return strings.Contains(body.Output, sub)
	}
}

// NextContext returns the first message from index since on that match
// accepts. It fails when the adapter closes the connection, ctx ends, or
// nothing matched within Options.Wait, naming what was awaited.
func (c *Client) NextContext(ctx context.Context, since int, what string, match func(Message) bool) (Message, error) {
	i := since
	return c.wait(ctx, since, what, func() (Message, bool) {
		for ; i < len(c.msgs); i++ {
			if match(c.msgs[i]) {
				return c.msgs[i], true
			}
		}
		return Message{}, false
	})
}

// AwaitContext returns the response to request seq, successful or not.
func (c *Client) AwaitContext(ctx context.Context, seq int, what string) (Message, error) {
	return c.wait(ctx, 0, fmt.Sprintf("answer to %s (seq %d)", what, seq), func() (Message, bool) {
		if i, ok := c.answered[seq]; ok {
			return c.msgs[i], true
		}
		return Message{}, false
	})
}

// CallContext sends a request and returns its response; an error response
// is an error.
func (c *Client) CallContext(ctx context.Context, command string, args any) (Message, error) {
	m, err := c.AwaitContext(ctx, c.SendRequest(command, args), command)
	if err == nil && !m.Success {
		msg := m.Message
		if er, ok := m.DAP.(*godap.ErrorResponse); ok && er.Body.Error != nil {
			msg += ": " + er.Body.Error.Format
		}
		err = fmt.Errorf("DAP %s failed: %s", command, msg)
	}
	return m, err
}

// Stop is where a stopped event left a thread.
type Stop struct {
	Thread int
	Reason string
	Frames []godap.StackFrame // the top ones, never none
}

// Stack is the frames as "function path:line", top first.
func (s *Stop) Stack() []string {
	var out []string
	for _, f := range s.Frames {
		path := ""
		if f.Source != nil {
			path = f.Source.Path
		}
		out = append(out, fmt.Sprintf("%s %s:%d", f.Name, path, f.Line))
	}
	return out
}

// StoppedContext waits for a stopped event from index since on and reads the
// top levels frames of the stopped thread.
func (c *Client) StoppedContext(ctx context.Context, since, levels int) (*Stop, error) {
	m, err := c.NextContext(ctx, since, "a stopped event", EventNamed("stopped"))
	if err != nil {
		return nil, err
	}
	var ev godap.StoppedEventBody
	if err := json.Unmarshal(m.Body, &ev); err != nil {
		return nil, fmt.Errorf("stopped event %s: %w", m.Body, err)
	}
	r, err := c.CallContext(ctx, "stackTrace", godap.StackTraceArguments{ThreadId: ev.ThreadId, Levels: levels})
	if err != nil {
		return nil, err
	}
	st, ok := r.DAP.(*godap.StackTraceResponse)
	if !ok || len(st.Body.StackFrames) == 0 {
		return nil, fmt.Errorf("stopped (%s) with an empty stack: %s", ev.Reason, r)
	}
	return &Stop{Thread: ev.ThreadId, Reason: ev.Reason, Frames: st.Body.StackFrames}, nil
}

// Disconnect ends the session as an editor's stop button does (terminating
// the debuggee), then Close.
func (c *Client) Disconnect(ctx context.Context) error {
	_, err := c.CallContext(ctx, "disconnect", godap.DisconnectArguments{TerminateDebuggee: true})
	return errors.Join(err, c.Close())
}

// Close ends kloop dap: a disconnect (terminating the debuggee) without
// waiting for its answer, stdin closed, and kill -9 if it has not exited
// within 30s, which is an error. Later calls return the first one's result.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		select {
		case <-c.exited:
		default:
			if !c.Closed() {
				c.SendRequest("disconnect", godap.DisconnectArguments{TerminateDebuggee: true})
			}
		}
		_ = c.in.Close()
		select {
		case <-c.exited:
		case <-time.After(30 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
			c.closeErr = errors.New("kloop dap did not exit within 30s of the end of its input; killed it")
		}
	})
	return c.closeErr
}

// wait returns what find (called with c.mu held) finds, waiting for more
// messages until ctx ends, Options.Wait passes or the adapter closes the
// connection.
func (c *Client) wait(ctx context.Context, since int, what string, find func() (Message, bool)) (Message, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, c.opts.Wait, fmt.Errorf("nothing within %s", c.opts.Wait))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if m, ok := find(); ok {
			return m, nil
		}
		if c.closed || ctx.Err() != nil {
			why := "kloop dap closed its output"
			if c.failure != "" {
				why += " after " + c.failure
			}
			if !c.closed {
				why = context.Cause(ctx).Error()
			}
			if c.writeErr != nil {
				why += "; a write failed: " + c.writeErr.Error()
			}
			return Message{}, fmt.Errorf("DAP: no %s (%s); received:\n%s\nkloop dap stderr:\n%s", what, why, c.historyLocked(since), lastLines(c.stderr.String(), 30))
		}
		c.cond.Wait()
	}
}

// historyLocked lists the messages from index since on, at most the last 100.
func (c *Client) historyLocked(since int) string {
	var lines []string
	if n := len(c.msgs) - since; n > 100 {
		lines = append(lines, fmt.Sprintf("  (%d before)", n-100))
		since = len(c.msgs) - 100
	}
	for _, m := range c.msgs[since:] {
		lines = append(lines, "  "+m.String())
	}
	return strings.Join(lines, "\n")
}

// The methods below are for tests: they fail the test of Start.

// Wait returns the go-dap form of the first message from index since on that
// match accepts.
func (c *Client) Wait(since int, what string, match func(godap.Message) bool) godap.Message {
	c.t.Helper()
	return c.must(c.NextContext(context.Background(), since, what, func(m Message) bool { return m.DAP != nil && match(m.DAP) })).DAP
}

// WaitEvent returns the first event from index since on that match accepts.
func (c *Client) WaitEvent(since int, what string, match func(Message) bool) Message {
	c.t.Helper()
	return c.must(c.NextContext(context.Background(), since, what, func(m Message) bool { return m.Type == "event" && match(m) }))
}

// Await returns the response to request seq, successful or not.
func (c *Client) Await(seq int, what string) Message {
	c.t.Helper()
	return c.must(c.AwaitContext(context.Background(), seq, what))
}

// Response is the go-dap form of the response to request seq.
func (c *Client) Response(seq int) godap.ResponseMessage {
	c.t.Helper()
	m := c.Await(seq, "request")
	r, ok := m.DAP.(godap.ResponseMessage)
	if !ok {
		c.t.Fatalf("go-dap cannot decode %s", m)
	}
	return r
}

// Request sends a request and returns its response, failing on an error
// response.
func (c *Client) Request(command string, args any) Message {
	c.t.Helper()
	return c.must(c.CallContext(context.Background(), command, args))
}

// WaitStopped waits for a stopped event from index since on and reads the
// top levels frames of the stopped thread.
func (c *Client) WaitStopped(since, levels int) *Stop {
	c.t.Helper()
	s, err := c.StoppedContext(context.Background(), since, levels)
	if err != nil {
		c.t.Fatal(err)
	}
	return s
}

// StoppedAt waits for a stop from index since on, checks that it is at
// path:line and returns the thread.
func (c *Client) StoppedAt(since int, path string, line int) int {
	c.t.Helper()
	s := c.WaitStopped(since, 1)
	if top := s.Frames[0]; top.Source == nil || top.Source.Path != path || top.Line != line {
		c.t.Fatalf("stopped at %s, want %s:%d", s.Stack()[0], path, line)
	}
	return s.Thread
}

// Local reads a local variable of a frame as the editor's Variables view does.
func (c *Client) Local(frameID int, name string) string {
	c.t.Helper()
	scopes := c.Request("scopes", godap.ScopesArguments{FrameId: frameID}).Decode(c.t).(*godap.ScopesResponse).Body.Scopes
	for _, sc := range scopes {
		vars := c.Request("variables", godap.VariablesArguments{VariablesReference: sc.VariablesReference}).Decode(c.t).(*godap.VariablesResponse).Body.Variables
		for _, v := range vars {
			if v.Name == name {
				return v.Value
			}
		}
	}
	c.t.Fatalf("no variable %q in frame %d", name, frameID)
	return ""
}

// CheckSeqs fails the test if the adapter broke seq order or answered a
// request twice.
func (c *Client) CheckSeqs() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.seqErrors {
		c.t.Errorf("adapter seq error: %s", s)
	}
}

func (c *Client) must(m Message, err error) Message {
	c.t.Helper()
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

// LineOf is the line of path that contains marker.
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

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
