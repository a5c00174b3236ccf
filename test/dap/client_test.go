package dap

import (
	"bufio"
	"encoding/json"
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
)

// message is one DAP message as the editor received it.
type message struct {
	Seq        int             `json:"seq"`
	Type       string          `json:"type"`
	Command    string          `json:"command"`
	Event      string          `json:"event"`
	RequestSeq int             `json:"request_seq"`
	Success    bool            `json:"success"`
	Message    string          `json:"message"`
	Body       json.RawMessage `json:"body"`
	raw        []byte
}

// decode gives the go-dap typed form, for messages go-dap knows.
func (m message) decode(t testing.TB) godap.Message {
	t.Helper()
	msg, err := godap.DecodeProtocolMessage(m.raw)
	if err != nil {
		t.Fatalf("decode %s%s: %v", m.Command, m.Event, err)
	}
	return msg
}

// editor is a DAP client that behaves like VS Code where it matters: it re-sends its
// breakpoints and configurationDone on every `initialized` event.
type editor struct {
	t       testing.TB
	cmd     *exec.Cmd
	in      io.WriteCloser
	stderr  *lockedBuffer
	writeMu sync.Mutex
	seq     int

	mu          sync.Mutex
	cond        *sync.Cond
	events      []message
	responses   map[int]message
	lastSeqSeen int
	seqErrors   []string
	closed      bool
	breakpoints map[string][]godap.SourceBreakpoint
	funcBPs     []godap.FunctionBreakpoint
	configDone  int // configurationDone responses received
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

// startEditor runs `kloop dap` on stdio and connects to it.
func startEditor(t testing.TB, dir string) *editor {
	t.Helper()
	return startEditorCmd(t, exec.Command(kloopBin, "dap", "-v"), dir)
}

// startEditorCmd connects to the adapter that cmd runs.
func startEditorCmd(t testing.TB, cmd *exec.Cmd, dir string) *editor {
	t.Helper()
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	e := &editor{
		t: t, cmd: cmd, in: stdin, stderr: &lockedBuffer{},
		responses: map[int]message{}, breakpoints: map[string][]godap.SourceBreakpoint{},
	}
	e.cond = sync.NewCond(&e.mu)
	cmd.Stderr = e.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kloop dap: %v", err)
	}
	go e.readLoop(stdout)
	t.Cleanup(func() {
		_ = e.in.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		// Under -race the adapter and its worker are race-built: a report from either
		// (adapter stderr, or worker stderr relayed as output) fails the test.
		if strings.Contains(e.stderr.String(), "DATA RACE") || e.sawOutput("DATA RACE") {
			t.Errorf("the race detector fired in kloop dap or its worker:\n%s", e.outputText())
		}
		if t.Failed() || os.Getenv("KLOOP_DAP_TEST_LOG") != "" {
			t.Logf("kloop dap stderr:\n%s", e.stderr.String())
		}
	})
	return e
}

func (e *editor) readLoop(r io.Reader) {
	br := bufio.NewReaderSize(r, 1<<20)
	tp := textproto.NewReader(br)
	for {
		hdr, err := tp.ReadMIMEHeader()
		if err != nil {
			break
		}
		n, err := strconv.Atoi(hdr.Get("Content-Length"))
		if err != nil {
			e.fail("bad Content-Length from adapter: %q", hdr.Get("Content-Length"))
			break
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			break
		}
		var m message
		if err := json.Unmarshal(body, &m); err != nil {
			e.fail("adapter sent non-JSON: %v", err)
			break
		}
		m.raw = body
		e.mu.Lock()
		if m.Seq <= e.lastSeqSeen {
			e.seqErrors = append(e.seqErrors, fmt.Sprintf("seq %d after %d", m.Seq, e.lastSeqSeen))
		}
		e.lastSeqSeen = m.Seq
		switch m.Type {
		case "response":
			if _, dup := e.responses[m.RequestSeq]; dup {
				e.seqErrors = append(e.seqErrors, fmt.Sprintf("second response to request %d (%s)", m.RequestSeq, m.Command))
			}
			e.responses[m.RequestSeq] = m
			if m.Command == "configurationDone" {
				e.configDone++
			}
		case "event":
			e.events = append(e.events, m)
		}
		e.cond.Broadcast()
		e.mu.Unlock()
		if m.Type == "event" && m.Event == "initialized" {
			go e.configure()
		}
	}
	e.mu.Lock()
	e.closed = true
	e.cond.Broadcast()
	e.mu.Unlock()
}

func (e *editor) fail(format string, args ...any) {
	e.t.Errorf(format, args...)
}

// configure does what VS Code does on `initialized`.
func (e *editor) configure() {
	e.mu.Lock()
	bps := make(map[string][]godap.SourceBreakpoint, len(e.breakpoints))
	for k, v := range e.breakpoints {
		bps[k] = v
	}
	fbps := e.funcBPs
	e.mu.Unlock()
	for path, list := range bps {
		e.send("setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: path}, Breakpoints: list})
	}
	e.send("setFunctionBreakpoints", godap.SetFunctionBreakpointsArguments{Breakpoints: fbps})
	e.send("configurationDone", nil)
}

// send writes a request and returns its seq without waiting.
func (e *editor) send(command string, args any) int {
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	e.seq++
	msg := map[string]any{"seq": e.seq, "type": "request", "command": command}
	if args != nil {
		msg["arguments"] = args
	}
	body, err := json.Marshal(msg)
	if err != nil {
		e.t.Fatalf("encode %s: %v", command, err)
	}
	e.writeRaw(fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body))
	return e.seq
}

func (e *editor) writeRaw(s string) {
	if _, err := io.WriteString(e.in, s); err != nil {
		e.t.Logf("write to adapter: %v", err)
	}
}

// request sends and waits for the answer, failing the test on an error response.
func (e *editor) request(command string, args any) message {
	e.t.Helper()
	m := e.await(e.send(command, args), command)
	if !m.Success {
		e.t.Fatalf("%s failed: %s\n%s", command, m.Message, m.raw)
	}
	return m
}

// await waits for the response to request seq.
func (e *editor) await(seq int, what string) message {
	e.t.Helper()
	deadline := time.Now().Add(waitLong)
	e.mu.Lock()
	defer e.mu.Unlock()
	for {
		if m, ok := e.responses[seq]; ok {
			return m
		}
		if e.closed {
			e.t.Fatalf("adapter closed the connection before answering %s", what)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no answer to %s within %s", what, waitLong)
		}
		e.waitLocked()
	}
}

// waitLocked waits for a new message, waking up now and then to check deadlines.
func (e *editor) waitLocked() {
	timer := time.AfterFunc(500*time.Millisecond, func() {
		e.mu.Lock()
		e.cond.Broadcast()
		e.mu.Unlock()
	})
	e.cond.Wait()
	timer.Stop()
}

// mark is a position in the event history; waitEvent looks only after it.
func (e *editor) mark() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.events)
}

// waitEvent waits for an event after mark that satisfies match.
func (e *editor) waitEvent(since int, what string, match func(message) bool) message {
	e.t.Helper()
	deadline := time.Now().Add(waitLong)
	e.mu.Lock()
	defer e.mu.Unlock()
	for {
		for _, m := range e.events[since:] {
			if match(m) {
				return m
			}
		}
		if e.closed {
			e.t.Fatalf("adapter closed the connection while waiting for %s", what)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no %s within %s; events: %s; all: %s; responses: %v", what, waitLong, e.summaryLocked(since), e.summaryLocked(0), e.responsesDebug())
		}
		e.waitLocked()
	}
}

func (e *editor) summaryLocked(since int) string {
	var parts []string
	for _, m := range e.events[since:] {
		s := m.Event
		if m.Event == "output" {
			var body godap.OutputEventBody
			_ = json.Unmarshal(m.Body, &body)
			s += fmt.Sprintf("(%s: %q)", body.Category, truncate(body.Output, 300))
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// eventNamed matches events by name.
func eventNamed(name string) func(message) bool {
	return func(m message) bool { return m.Event == name }
}

// outputContaining matches output events whose text contains sub.
func outputContaining(sub string) func(message) bool {
	return func(m message) bool {
		if m.Event != "output" {
			return false
		}
		var body godap.OutputEventBody
		_ = json.Unmarshal(m.Body, &body)
		return strings.Contains(body.Output, sub)
	}
}

// sawEvent reports whether an event with this name arrived after since.
func (e *editor) sawEvent(since int, name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, m := range e.events[since:] {
		if m.Event == name {
			return true
		}
	}
	return false
}

// sawOutput reports whether any output event contained sub.
func (e *editor) sawOutput(sub string) bool {
	match := outputContaining(sub)
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, m := range e.events {
		if match(m) {
			return true
		}
	}
	return false
}

// outputText is everything the adapter sent as output events.
func (e *editor) outputText() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var b strings.Builder
	for _, m := range e.events {
		if m.Event == "output" {
			var body godap.OutputEventBody
			_ = json.Unmarshal(m.Body, &body)
			b.WriteString(body.Output)
		}
	}
	return b.String()
}

// checkSeqs fails the test if the adapter broke seq order or answered a request twice.
func (e *editor) checkSeqs() {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.seqErrors {
		e.t.Errorf("adapter seq error: %s", s)
	}
}

func (e *editor) setBreakpoints(path string, bps []godap.SourceBreakpoint) {
	e.mu.Lock()
	e.breakpoints[path] = bps
	e.mu.Unlock()
}

// initializeAndLaunch runs the start of a session the way VS Code does.
func (e *editor) initializeAndLaunch(launch map[string]any) {
	e.t.Helper()
	e.request("initialize", godap.InitializeRequestArguments{
		ClientID: "kloop-test", AdapterID: "kloop", PathFormat: "path",
		LinesStartAt1: true, ColumnsStartAt1: true, SupportsVariableType: true,
	})
	m := e.await(e.send("launch", launch), "launch")
	if !m.Success {
		e.t.Fatalf("launch failed: %s", m.Message)
	}
}

// pidAlive reports whether pid exists and is not a zombie.
func pidAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || !strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z") {
		return true
	}
	// A killed multi-threaded process shows its leader as a zombie while
	// the other threads still exit, and its sockets close only when the
	// last one has: it is gone once no other task remains.
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	return err == nil && len(tasks) > 1
}

// descendants lists live processes below pid.
func descendants(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, ent := range entries {
		p, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[p] = pp
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
			if _, ok := parent[q]; !ok {
				break
			}
		}
	}
	return out
}

// waitGone polls until none of pids is alive.
func waitGone(t testing.TB, pids []int, what string) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		var alive []int
		for _, p := range pids {
			if pidAlive(p) {
				alive = append(alive, p)
			}
		}
		if len(alive) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still running after %s: pids %v", what, waitLong, alive)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *editor) responsesDebug() string {
	var parts []string
	for seq, m := range e.responses {
		parts = append(parts, fmt.Sprintf("%d:%s:%v:%s", seq, m.Command, m.Success, truncate(string(m.Body), 300)))
	}
	return strings.Join(parts, " | ")
}

// sessionProcs lists what the daemon runs for debug sessions: workers and their
// debuggees (the tests here run one session at a time). env names the daemon; nil
// means the package's shared one.
func sessionProcs(t testing.TB, env []string) []int {
	t.Helper()
	cmd := exec.Command(kloopBin, "daemon", "stats", "-o", "json")
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kloop daemon stats: %v", err)
	}
	var st struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(out, &st); err != nil || st.PID == 0 {
		t.Fatalf("kloop daemon stats: no pid in %s (%v)", out, err)
	}
	return descendants(st.PID)
}
