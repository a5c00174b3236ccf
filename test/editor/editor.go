// Package editor is a fake LSP editor for kloop's end-to-end tests, in the
// manner of gopls' integration runner: it spawns the real kloop binary and
// speaks LSP over real stdio, either to `kloop lsp --standalone` or through
// the `kloop lsp` forwarder to a shared daemon. It frames messages itself so
// tests can also send the malformed input real clients sometimes do.
package editor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kloop/kloop/internal/racecheck"
)

// Mode says how the editor reaches kloop.
type Mode string

const (
	// Standalone runs `kloop lsp --standalone`: the server in the child.
	Standalone Mode = "standalone"
	// Forwarded runs `kloop lsp`: a forwarder to the shared daemon,
	// started on demand.
	Forwarded Mode = "forwarded"
)

// Modes are the modes every LSP test runs in.
var Modes = []Mode{Standalone, Forwarded}

// Env isolates one test's daemon: its own socket and state directories.
type Env struct {
	Binary string
	Socket string
	State  string
	// Extra environment for kloop processes, NAME=VALUE.
	Extra []string
	// Credential, when set, runs kloop processes as another user: the
	// peer-uid tests need a client that is not the daemon's owner.
	Credential *syscall.Credential
	// RaceLog is the prefix of the files a -race kloop process of this Env
	// writes its reports to (racecheck.LogEnv); the test fails on any.
	RaceLog string
}

// NewEnv makes a private daemon environment under t.TempDir. Unix socket
// paths are limited to about 100 bytes, so the socket lives under /tmp.
func NewEnv(t testing.TB, binary string) *Env {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "kloop-sock-")
	if err != nil {
		t.Fatal(err)
	}
	// Not under dir (0700): a process run as another user (Credential)
	// must be able to create its report file, or the race runtime aborts it.
	raceDir, err := os.MkdirTemp("", "kloop-race-")
	if err == nil {
		err = os.Chmod(raceDir, 0o777)
	}
	if err != nil {
		t.Fatalf("race log directory: %v", err)
	}
	env := &Env{Binary: binary, Socket: filepath.Join(dir, "d", "daemon.sock"), State: filepath.Join(t.TempDir(), "state"),
		RaceLog: filepath.Join(raceDir, "race")}
	t.Cleanup(func() {
		env.StopDaemon(t)
		if err := env.CheckRaces(); err != nil {
			t.Error(err)
		}
		os.RemoveAll(dir)
		os.RemoveAll(raceDir)
	})
	return env
}

// CheckRaces returns the race reports the kloop processes of this Env
// printed so far: those in RaceLog files, and those in the daemon's log
// (daemon.log and its rotations), where a daemon started with its own
// GORACE would print them.
func (e *Env) CheckRaces() error {
	errs := []error{racecheck.CheckLogs(e.RaceLog)}
	logs, _ := filepath.Glob(filepath.Join(e.State, "daemon.log*"))
	for _, path := range logs {
		if log, err := os.ReadFile(path); err == nil {
			errs = append(errs, racecheck.Check("the daemon ("+filepath.Base(path)+")", string(log)))
		}
	}
	return errors.Join(errs...)
}

// Environ is the environment for a kloop process of this Env.
func (e *Env) Environ() []string {
	env := append(os.Environ(), "KLOOP_SOCKET="+e.Socket, "KLOOP_STATE_DIR="+e.State)
	if e.RaceLog != "" {
		env = append(env, racecheck.LogEnv(e.RaceLog))
	}
	return append(env, e.Extra...)
}

// Command returns a kloop command in this environment.
func (e *Env) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, e.Binary, args...)
	cmd.Env = e.Environ()
	if e.Credential != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: e.Credential}
	}
	return cmd
}

// DaemonPIDs lists the running `kloop daemon` processes of this Env.
func (e *Env) DaemonPIDs() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte("daemon")) {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if len(args) < 2 || args[1] != "daemon" {
			continue
		}
		environ, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "environ"))
		if err != nil || !bytes.Contains(environ, []byte("KLOOP_SOCKET="+e.Socket+"\x00")) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat")); err == nil {
			// A zombie is already dead.
			if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 0 && f[0] == "Z" {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// Exited reports whether process pid has finished dying: gone, or a
// zombie. DaemonPIDs alone cannot tell: a process in the middle of exiting
// has lost its environment but may still hold its socket open.
func Exited(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) == 0 || (f[0] != "Z" && f[0] != "X") {
		return false
	}
	// The leader of a Go process turns zombie while its other threads,
	// which share its open files, are still exiting.
	tasks, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	return len(tasks) <= 1
}

// StopDaemon kills this Env's daemons, if any are left.
func (e *Env) StopDaemon(t testing.TB) {
	for _, pid := range e.DaemonPIDs() {
		if p, err := os.FindProcess(pid); err == nil {
			p.Kill()
		}
	}
}

// Editor is one running LSP client.
type Editor struct {
	t    testing.TB
	env  *Env
	mode Mode
	cmd  *exec.Cmd
	in   io.WriteCloser
	wmu  sync.Mutex
	errb *lockedBuffer

	mu        sync.Mutex
	cond      *sync.Cond
	nextID    int
	responses map[int]*Message
	notes     []*Message
	requests  []*Message
	closed    bool
	readErr   error
}

// Message is one JSON-RPC message received from the server.
type Message struct {
	ID     json.RawMessage `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *RPCError       `json:"error,omitempty"`
}

// RPCError is a JSON-RPC error object.
type RPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *RPCError) Error() string { return fmt.Sprintf("jsonrpc error %d: %s", e.Code, e.Message) }

// Start spawns kloop in mode and returns the editor, not yet initialized.
func Start(t testing.TB, env *Env, mode Mode) *Editor {
	t.Helper()
	args := []string{"lsp"}
	if mode == Standalone {
		args = append(args, "--standalone")
	}
	// vscode-languageclient appends --stdio; every test does too.
	args = append(args, "--stdio")
	cmd := env.Command(context.Background(), args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	e := &Editor{t: t, env: env, mode: mode, cmd: cmd, in: in, errb: &lockedBuffer{}, responses: map[int]*Message{}}
	e.cond = sync.NewCond(&e.mu)
	cmd.Stderr = e.errb
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kloop %v: %v", args, err)
	}
	go e.read(bufio.NewReader(out))
	t.Cleanup(func() {
		e.Kill()
		// The Env's RaceLog gets the reports; a GORACE in Extra may send
		// them to stderr instead.
		if err := racecheck.Check(fmt.Sprintf("kloop %v", args), e.Stderr()); err != nil {
			t.Error(err)
		}
	})
	return e
}

// Stderr is what the kloop process wrote to stderr so far.
func (e *Editor) Stderr() string { return e.errb.String() }

// Kill ends the kloop process abruptly, as a crashing editor would.
func (e *Editor) Kill() {
	if e.cmd.Process != nil {
		e.cmd.Process.Kill()
		e.cmd.Wait()
	}
}

// CloseInput closes kloop's stdin, as an editor that goes away without
// exit does.
func (e *Editor) CloseInput() {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	e.in.Close()
}

// PID is the kloop process's id.
func (e *Editor) PID() int { return e.cmd.Process.Pid }

// Wait waits for the kloop process to exit and returns its error.
func (e *Editor) Wait() error { return e.cmd.Wait() }

func (e *Editor) read(r *bufio.Reader) {
	for {
		body, err := readFrame(r)
		if err != nil {
			e.mu.Lock()
			e.closed, e.readErr = true, err
			e.cond.Broadcast()
			e.mu.Unlock()
			return
		}
		var m Message
		if err := json.Unmarshal(body, &m); err != nil {
			e.mu.Lock()
			e.closed, e.readErr = true, fmt.Errorf("server sent invalid JSON %q: %w", body, err)
			e.cond.Broadcast()
			e.mu.Unlock()
			return
		}
		switch {
		case m.Method != "" && m.ID != nil:
			// A server->client request: answer like VS Code does.
			e.mu.Lock()
			e.requests = append(e.requests, &m)
			e.mu.Unlock()
			e.writeJSON(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": nil})
		case m.Method != "":
			e.mu.Lock()
			e.notes = append(e.notes, &m)
			e.cond.Broadcast()
			e.mu.Unlock()
		default:
			id, err := strconv.Atoi(string(m.ID))
			e.mu.Lock()
			if err != nil {
				id = -1 // responses to unparseable messages carry id null
			}
			if id == -1 {
				e.notes = append(e.notes, &m)
			} else {
				e.responses[id] = &m
			}
			e.cond.Broadcast()
			e.mu.Unlock()
		}
	}
}

func readFrame(r *bufio.Reader) ([]byte, error) {
	length := -1
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			if length, err = strconv.Atoi(v); err != nil {
				return nil, fmt.Errorf("bad Content-Length from server: %q", line)
			}
		}
	}
	if length < 0 {
		return nil, errors.New("server sent a header without Content-Length")
	}
	body := make([]byte, length)
	_, err := io.ReadFull(r, body)
	return body, err
}

// WriteRaw sends bytes as they are: tests of malformed input use it.
func (e *Editor) WriteRaw(b []byte) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	if _, err := e.in.Write(b); err != nil {
		e.t.Fatalf("write to kloop: %v", err)
	}
}

// WriteFrame sends body with a correct Content-Length header.
func (e *Editor) WriteFrame(body []byte) {
	e.WriteRaw(append([]byte(fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body))), body...))
}

func (e *Editor) writeJSON(v any) {
	body, err := json.Marshal(v)
	if err != nil {
		e.t.Fatalf("encode: %v", err)
	}
	e.wmu.Lock()
	defer e.wmu.Unlock()
	e.in.Write(append([]byte(fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body))), body...))
}

// Notify sends a notification.
func (e *Editor) Notify(method string, params any) {
	e.writeJSON(map[string]any{"jsonrpc": "2.0", "method": method, "params": params})
}

// Send sends a request and returns its id without waiting.
func (e *Editor) Send(method string, params any) int {
	e.mu.Lock()
	e.nextID++
	id := e.nextID
	e.mu.Unlock()
	msg := map[string]any{"jsonrpc": "2.0", "id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	e.writeJSON(msg)
	return id
}

// Await waits for the response to id.
func (e *Editor) Await(id int) *Message {
	e.t.Helper()
	var m *Message
	e.waitFor(fmt.Sprintf("response to request %d", id), func() bool {
		m = e.responses[id]
		return m != nil
	})
	return m
}

// Call sends a request and decodes its result; a JSON-RPC error is returned.
func (e *Editor) Call(method string, params, result any) error {
	e.t.Helper()
	m := e.Await(e.Send(method, params))
	if m.Error != nil {
		return m.Error
	}
	if result != nil {
		return json.Unmarshal(m.Result, result)
	}
	return nil
}

// WaitNote waits until a notification of method satisfying match has
// arrived (match may be nil) and returns it.
func (e *Editor) WaitNote(method string, match func(params json.RawMessage) bool) *Message {
	e.t.Helper()
	var found *Message
	e.waitFor("notification "+method, func() bool {
		for _, n := range e.notes {
			if n.Method == method && (match == nil || match(n.Params)) {
				found = n
				return true
			}
		}
		return false
	})
	return found
}

// Notes returns the notifications received so far with the given method
// ("" for all, including error responses with a null id).
func (e *Editor) Notes(method string) []*Message {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*Message
	for _, n := range e.notes {
		if method == "" || n.Method == method {
			out = append(out, n)
		}
	}
	return out
}

// WaitError waits for an error response that answers no request (its id
// is null, because the server could not tell which request it was) whose
// message contains substr, and returns it.
func (e *Editor) WaitError(substr string) *RPCError {
	e.t.Helper()
	var found *RPCError
	e.waitFor("an error response containing "+strconv.Quote(substr), func() bool {
		for _, n := range e.notes {
			if n.Method == "" && n.Error != nil && strings.Contains(n.Error.Message, substr) {
				found = n.Error
				return true
			}
		}
		return false
	})
	return found
}

// ServerRequests returns the server->client requests received so far.
func (e *Editor) ServerRequests(method string) []*Message {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*Message
	for _, r := range e.requests {
		if r.Method == method {
			out = append(out, r)
		}
	}
	return out
}

// WaitTimeout bounds every wait; generous because CI machines are loaded.
const WaitTimeout = 60 * time.Second

func (e *Editor) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	timer := time.AfterFunc(WaitTimeout, func() {
		e.mu.Lock()
		e.cond.Broadcast()
		e.mu.Unlock()
	})
	defer timer.Stop()
	e.mu.Lock()
	defer e.mu.Unlock()
	for !cond() {
		if e.closed {
			e.t.Fatalf("waiting for %s: connection closed: %v; kloop stderr:\n%s%s", what, e.readErr, e.errb.String(), e.daemonLog())
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("waiting for %s: nothing after %s; kloop stderr:\n%s%s", what, WaitTimeout, e.errb.String(), e.daemonLog())
		}
		e.cond.Wait()
	}
}

// daemonLog is the shared daemon's log, for failure messages of forwarded
// editors: what went wrong is usually there, not in the forwarder's stderr.
func (e *Editor) daemonLog() string {
	if e.mode != Forwarded {
		return ""
	}
	data, err := os.ReadFile(filepath.Join(e.env.State, "daemon.log"))
	if err != nil {
		return fmt.Sprintf("\n(no daemon log: %v)", err)
	}
	const tail = 4 << 10
	if len(data) > tail {
		data = data[len(data)-tail:]
	}
	return "\ndaemon log (tail):\n" + string(data)
}

// WaitClosed waits until the server closes the connection.
func (e *Editor) WaitClosed() error {
	e.t.Helper()
	e.waitFor("the connection to close", func() bool { return e.closed })
	return e.readErr
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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
