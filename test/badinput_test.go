package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kloop/kloop/test/editor"
)

// Ids the tests put in hand-framed requests, far above the ones the fake
// editor numbers its own requests with.
const (
	idMalformed = 9001 + iota
	idTooShort
	idTooLong
	idOverLimit
)

// statusRequest is a request the server answers in any state after
// initialize, framed by hand so its framing can be broken.
func statusRequest(id int) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"workspace/executeCommand","params":{"command":"kloop.status"}}`, id)
}

// stillServes fails the test unless the server answers a well-formed
// request after bad input.
func stillServes(t *testing.T, ed *editor.Editor) {
	t.Helper()
	var st struct{ Workspace string }
	if err := ed.Execute("kloop.status", nil, &st); err != nil || st.Workspace == "" {
		t.Fatalf("after bad input kloop.status = %+v, %v; want the server to keep serving", st, err)
	}
}

// wantError fails the test unless m is an error response with code whose
// message contains every one of parts.
func wantError(t *testing.T, what string, m *editor.Message, code int, parts ...string) {
	t.Helper()
	if m.Error == nil {
		t.Fatalf("%s: got result %s, want error %d", what, m.Result, code)
	}
	if m.Error.Code != code {
		t.Errorf("%s: error code %d (%s), want %d", what, m.Error.Code, m.Error.Message, code)
	}
	for _, p := range parts {
		if !strings.Contains(m.Error.Message, p) {
			t.Errorf("%s: error %q does not say %q", what, m.Error.Message, p)
		}
	}
}

func TestMalformedJSONIsAnsweredAndServingContinues(t *testing.T) {
	forEachMode(t, func(t *testing.T, env *editor.Env, mode editor.Mode) {
		ed := editor.Start(t, env, mode)
		ed.Initialize(workspace(t, nil), true)

		// The id precedes the damage, so the error answers that request
		// and the editor stops waiting for it.
		ed.WriteFrame([]byte(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"workspace/executeCommand","params":{"command":`, idMalformed)))
		wantError(t, "truncated JSON", ed.Await(idMalformed), -32700, "malformed JSON")
		stillServes(t, ed)

		// Nothing to tell which request it was: an error with a null id.
		ed.WriteFrame([]byte(`{this is not json}`))
		ed.WaitError("malformed JSON")
		stillServes(t, ed)

		// JSON, but not a JSON-RPC message.
		ed.WriteFrame([]byte(`[1,2,3]`))
		ed.WaitError("invalid JSON-RPC message")
		stillServes(t, ed)
	})
}

func TestWrongContentLength(t *testing.T) {
	forEachMode(t, func(t *testing.T, env *editor.Env, mode editor.Mode) {
		ed := editor.Start(t, env, mode)
		ed.Initialize(workspace(t, nil), true)

		t.Run("too short", func(t *testing.T) {
			// An editor that counts characters instead of UTF-8 bytes
			// sends too small a length: the request is cut short, and its
			// tail runs into the next header.
			body := statusRequest(idTooShort)
			ed.WriteRaw([]byte(fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body)-10, body)))
			wantError(t, "Content-Length 10 bytes short", ed.Await(idTooShort), -32700, "Content-Length", "UTF-8 byte length")
			stillServes(t, ed)
		})
		t.Run("too long", func(t *testing.T) {
			// The body swallows the start of the next message; the server
			// gives those bytes back, so the next request is served.
			body := statusRequest(idTooLong)
			ed.WriteRaw([]byte(fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body)+12, body)))
			stillServes(t, ed)
			wantError(t, "Content-Length 12 bytes long", ed.Await(idTooLong), -32600, "Content-Length", "12 bytes more than the JSON message")
		})
		t.Run("not a number", func(t *testing.T) {
			ed.WriteRaw([]byte("Content-Length: lots\r\n\r\n" + statusRequest(idTooLong+100)))
			stillServes(t, ed)
			ed.WaitError(`invalid Content-Length "lots"`)
		})
		t.Run("missing", func(t *testing.T) {
			ed.WriteRaw([]byte("Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n" + statusRequest(idTooLong+200)))
			stillServes(t, ed)
			ed.WaitError("without a Content-Length field")
		})
		t.Run("garbage between messages", func(t *testing.T) {
			ed.WriteRaw([]byte("hello from a confused plugin\r\n"))
			stillServes(t, ed)
			ed.WaitError("malformed LSP header line")
		})
	})
}

func TestMessageOverTheSizeLimit(t *testing.T) {
	const limit = 64 << 10
	forEachMode(t, func(t *testing.T, env *editor.Env, mode editor.Mode) {
		// The variable reaches the daemon too: the forwarder starts it
		// with its own environment.
		env.Extra = append(env.Extra, fmt.Sprintf("KLOOP_MAX_MESSAGE_BYTES=%d", limit))
		root := workspace(t, map[string]string{"go.mod": "module x\n"})
		ed := editor.Start(t, env, mode)
		ed.Initialize(root, true)

		// A document past the limit is refused, not half-opened.
		big := filepath.Join(root, "big/main.go")
		bigText := ordersMain + "\n// " + strings.Repeat("x", 2*limit) + "\n"
		ed.Open(big, "go", bigText)
		ed.WaitError(fmt.Sprintf("exceeds the limit of %d bytes", limit))
		if l := ed.CodeLens(big); len(l) != 0 {
			t.Errorf("lenses on a document refused as too large: %+v", l)
		}

		// A request past the limit gets its error under its own id.
		req, _ := json.Marshal(map[string]any{
			"jsonrpc": "2.0", "id": idOverLimit, "method": "workspace/executeCommand",
			"params": map[string]any{"command": "kloop.status", "arguments": []any{strings.Repeat("y", 2*limit)}},
		})
		ed.WriteFrame(req)
		wantError(t, "request over the limit", ed.Await(idOverLimit), -32600, fmt.Sprintf("exceeds the limit of %d bytes", limit))

		// A document under the limit still works.
		small := filepath.Join(root, "cmd/orders/main.go")
		ed.Open(small, "go", ordersMain)
		if l := ed.CodeLens(small); len(l) != 1 {
			t.Errorf("after an over-size message, lenses of a normal file = %+v, want 1", l)
		}
	})
}

func TestUnknownMethod(t *testing.T) {
	forEachMode(t, func(t *testing.T, env *editor.Env, mode editor.Mode) {
		ed := editor.Start(t, env, mode)
		ed.Initialize(workspace(t, nil), true)
		for _, method := range []string{"kloop/teleport", "textDocument/hover"} {
			err := ed.Call(method, map[string]any{}, nil)
			var rpcErr *editor.RPCError
			if !errors.As(err, &rpcErr) || rpcErr.Code != -32601 {
				t.Errorf("%s: got %v, want error -32601 method not found", method, err)
			}
		}
		// Unknown notifications are ignored, as LSP asks for $/ ones.
		ed.Notify("$/kloop/unknownNotification", map[string]any{"x": 1})
		ed.Notify("kloop/unknownNotification", nil)
		stillServes(t, ed)
	})
}

// TestFailingNotificationKeepsTheConnection: a notification has no reply,
// so a failing one must neither go unnoticed nor end the connection.
func TestFailingNotificationKeepsTheConnection(t *testing.T) {
	forEachMode(t, func(t *testing.T, env *editor.Env, mode editor.Mode) {
		root := workspace(t, nil)
		ed := editor.Start(t, env, mode)
		ed.Initialize(root, true)
		// Notifications VS Code sends that kloop has no use for.
		ed.Notify("$/setTrace", map[string]any{"value": "verbose"})
		ed.Notify("workspace/didChangeConfiguration", map[string]any{"settings": map[string]any{}})
		ed.Notify("workspace/didChangeWatchedFiles", map[string]any{"changes": []any{}})
		ed.Notify("$/cancelRequest", map[string]any{})
		// A change to a file that was never opened is the editor's bug:
		// it is told in its log.
		ed.Change(filepath.Join(root, "never-opened.go"), 2, "package x\n")
		ed.WaitNote("window/logMessage", func(p json.RawMessage) bool {
			return strings.Contains(string(p), "never opened")
		})
		// Params of the wrong shape in a notification.
		ed.Notify("textDocument/didOpen", map[string]any{"textDocument": "main.go"})
		ed.WaitNote("window/logMessage", func(p json.RawMessage) bool {
			return strings.Contains(string(p), "invalid params for textDocument/didOpen")
		})
		stillServes(t, ed)
	})
}

func TestInvalidParams(t *testing.T) {
	cases := []struct {
		method string
		params any
	}{
		{"textDocument/codeLens", "main.go"},
		{"textDocument/codeLens", map[string]any{"textDocument": 5}},
		{"textDocument/codeAction", map[string]any{"textDocument": map[string]any{"uri": 7}}},
		{"workspace/executeCommand", []any{"kloop.status"}},
	}
	forEachMode(t, func(t *testing.T, env *editor.Env, mode editor.Mode) {
		ed := editor.Start(t, env, mode)
		ed.Initialize(workspace(t, nil), true)
		for _, c := range cases {
			wantError(t, fmt.Sprintf("%s with %v", c.method, c.params), ed.Await(ed.Send(c.method, c.params)), -32602, "invalid params for "+c.method)
		}
		stillServes(t, ed)
	})
}

func TestClientDisconnectingMidRequest(t *testing.T) {
	t.Run(string(editor.Forwarded), func(t *testing.T) {
		// Two editors share the daemon; one dies in the middle of a
		// message, another right after sending a request. The survivor's
		// session, and the daemon, carry on.
		env := editor.NewEnv(t, kloopBin)
		root := workspace(t, map[string]string{"go.mod": "module x\n", "cmd/orders/main.go": ordersMain})
		path := filepath.Join(root, "cmd/orders/main.go")
		survivor := editor.Start(t, env, editor.Forwarded)
		survivor.Initialize(root, true)
		survivor.Open(path, "go", ordersMain)
		daemons := env.DaemonPIDs()
		if len(daemons) != 1 {
			t.Fatalf("daemons = %v, want one", daemons)
		}

		midMessage := editor.Start(t, env, editor.Forwarded)
		midMessage.Initialize(root, true)
		midMessage.Open(path, "go", ordersMain)
		body := statusRequest(1)
		midMessage.WriteRaw([]byte(fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body[:len(body)/2])))
		midMessage.Kill()

		unanswered := editor.Start(t, env, editor.Forwarded)
		unanswered.Initialize(root, true)
		unanswered.Send("textDocument/codeLens", map[string]any{"textDocument": map[string]any{"uri": editor.URI(path)}})
		unanswered.Send("workspace/executeCommand", map[string]any{"command": "kloop.status"})
		unanswered.Kill()

		if l := survivor.CodeLens(path); len(l) != 1 {
			t.Fatalf("survivor's lenses = %+v, want 1", l)
		}
		stillServes(t, survivor)
		// A new editor still gets in, on the same daemon.
		late := editor.Start(t, env, editor.Forwarded)
		late.Initialize(root, true)
		stillServes(t, late)
		if now := env.DaemonPIDs(); len(now) != 1 || now[0] != daemons[0] {
			t.Fatalf("daemons = %v after clients died, want the same one %v", now, daemons)
		}
	})
	t.Run(string(editor.Standalone), func(t *testing.T) {
		// A standalone server has one client: when it goes away mid
		// message the server must exit rather than linger.
		ed := editor.Start(t, editor.NewEnv(t, kloopBin), editor.Standalone)
		ed.Initialize(workspace(t, nil), true)
		ed.WriteRaw([]byte("Content-Length: 200\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":"))
		ed.CloseInput()
		ed.WaitClosed()
		exited := make(chan error, 1)
		go func() { exited <- ed.Wait() }()
		select {
		case err := <-exited:
			// Either exit status is fine: LSP only asks for 1 when exit
			// came without shutdown, and here neither came.
			t.Logf("kloop lsp --standalone exited: %v", err)
		case <-time.After(editor.WaitTimeout):
			t.Fatalf("kloop lsp --standalone still running %s after its client went away; stderr:\n%s", editor.WaitTimeout, ed.Stderr())
		}
	})
}

func TestStaleSocketFromDeadDaemon(t *testing.T) {
	env := editor.NewEnv(t, kloopBin)
	root := workspace(t, map[string]string{"go.mod": "module x\n"})

	killDaemon := func() {
		t.Helper()
		pids := env.DaemonPIDs()
		if len(pids) != 1 {
			t.Fatalf("daemons = %v, want one to kill", pids)
		}
		if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 the daemon: %v", err)
		}
		waitUntil(t, "the killed daemon to be gone", func() bool { return editor.Exited(pids[0]) })
		// A daemon killed with -9 cannot remove its socket: the file stays,
		// and connecting to it is refused.
		if _, err := os.Lstat(env.Socket); err != nil {
			t.Fatalf("the dead daemon's socket file is gone (%v); the test needs it stale", err)
		}
		if c, err := net.Dial("unix", env.Socket); err == nil {
			c.Close()
			t.Fatal("the dead daemon's socket still accepts connections")
		}
	}

	ed := editor.Start(t, env, editor.Forwarded)
	ed.Initialize(root, true)
	first := env.DaemonPIDs()
	killDaemon()
	// The editor loses its server with the daemon.
	ed.WaitClosed()

	t.Run("kloop lsp recovers", func(t *testing.T) {
		ed := editor.Start(t, env, editor.Forwarded)
		ed.Initialize(root, true)
		stillServes(t, ed)
		if now := env.DaemonPIDs(); len(now) != 1 || now[0] == first[0] {
			t.Fatalf("daemons = %v, want one new daemon replacing %v", now, first)
		}
		ed.Shutdown()
		ed.Wait()
		killDaemon()
	})
	t.Run("kloop status recovers", func(t *testing.T) {
		out, err := env.Command(t.Context(), "status", "-o", "json", "-w", root).CombinedOutput()
		if err != nil {
			t.Fatalf("kloop status after a daemon died: %v\n%s", err, out)
		}
		var st struct{ Workspace string }
		if err := json.Unmarshal(out, &st); err != nil || st.Workspace != root {
			t.Fatalf("kloop status -o json = %s (%v), want workspace %s", out, err, root)
		}
		if now := env.DaemonPIDs(); len(now) != 1 {
			t.Fatalf("daemons = %v, want one", now)
		}
	})
}

// waitUntil polls cond. The bound only keeps a broken run from hanging; no
// test depends on how fast cond becomes true.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(editor.WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not after %s", what, editor.WaitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
