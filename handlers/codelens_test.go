package handlers

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"
	"go.lsp.dev/uri"

	"github.com/kloop/kloop/session"
)

const ordersMain = `package main

import "net/http"

func main() {
	http.ListenAndServe(":8080", nil)
}
`

// openOrders starts a Server on one end of a pipe, initializes it with
// initOptions as an editor would, and opens cmd/orders/main.go of a fresh
// workspace. The other end reads what the server sends; window/showMessage
// notifications arrive on messages.
func openOrders(t *testing.T, initOptions string) (s *Server, u uri.URI, messages <-chan protocol.ShowMessageParams) {
	t.Helper()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module example.com/shop\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "cmd", "orders", "main.go")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(ordersMain), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, b := net.Pipe()
	serverConn := jsonrpc2.NewConn(jsonrpc2.NewStream(a))
	editorConn := jsonrpc2.NewConn(jsonrpc2.NewStream(b))
	shown := make(chan protocol.ShowMessageParams, 8)
	editorConn.Go(ctx, func(ctx context.Context, req *jsonrpc2.Request) (any, error) {
		var m protocol.ShowMessageParams
		if req.Method() == protocol.MethodWindowShowMessage && json.Unmarshal(req.Params(), &m) == nil {
			shown <- m
		}
		return nil, nil
	})
	mgr := session.NewManager(session.Options{})
	s = New(ctx, serverConn, Options{Manager: mgr})
	serverConn.Go(ctx, s.Handler())
	t.Cleanup(func() {
		cancel()
		serverConn.Close()
		editorConn.Close()
		mgr.Close(context.Background())
	})
	params := &protocol.InitializeParams{ClientInfo: protocol.ClientInfo{Name: "test-editor"}}
	if initOptions != "" {
		params.InitializationOptions = protocol.LSPAny(initOptions)
	}
	if _, err := s.Initialize(ctx, params); err != nil {
		t.Fatal(err)
	}
	u = uri.File(path)
	if err := s.DidOpen(ctx, &protocol.DidOpenTextDocumentParams{TextDocument: protocol.TextDocumentItem{URI: u, LanguageID: "go", Version: 1, Text: ordersMain}}); err != nil {
		t.Fatal(err)
	}
	return s, u, shown
}

type offered struct {
	Title string
	Debug bool
}

func commandOffered(t *testing.T, c protocol.Command) offered {
	t.Helper()
	var args session.InterceptArgs
	if len(c.Arguments) != 1 || json.Unmarshal(c.Arguments[0], &args) != nil {
		t.Fatalf("%q: arguments %s", c.Title, c.Arguments)
	}
	if c.Command != "kloop.intercept" || args.Workload != "deployment/orders" || args.Program != "./cmd/orders" {
		t.Errorf("%q runs %s %+v, want kloop.intercept of deployment/orders with ./cmd/orders", c.Title, c.Command, args)
	}
	return offered{c.Title, args.Debug}
}

// TestDebugIsOfferedOnlyToEditorsThatStartDebugSessions: "& debug" sends the
// workload's traffic here and waits for a debug session; only an editor
// that said (initializationOptions.startsDebugSessions) it starts one is
// offered it, in the lens above func main and in the code actions. Every
// other editor gets "& run", which runs the program.
func TestDebugIsOfferedOnlyToEditorsThatStartDebugSessions(t *testing.T) {
	debugAndRun := []offered{{"Intercept deployment/orders & debug", true}, {"Intercept & run", false}}
	runOnly := []offered{{"Intercept deployment/orders & run", false}}
	tests := []struct {
		name        string
		initOptions string
		lenses      []offered
		actions     []offered
	}{
		{"VS Code, nvim with nvim-dap", `{"startsDebugSessions":true,"extensionVersion":"0.1.0"}`, debugAndRun,
			[]offered{{"kloop: Intercept deployment/orders & debug", true}, {"kloop: Intercept deployment/orders & run", false}}},
		{"no initializationOptions (GoLand's LSP4IJ, any LSP client)", "", runOnly,
			[]offered{{"kloop: Intercept deployment/orders & run", false}}},
		{"nvim without nvim-dap", `{"startsDebugSessions":false,"extensionVersion":"0.1.0"}`, runOnly,
			[]offered{{"kloop: Intercept deployment/orders & run", false}}},
		{"options of another shape", `["startsDebugSessions"]`, runOnly,
			[]offered{{"kloop: Intercept deployment/orders & run", false}}},
		{"not a boolean", `{"startsDebugSessions":"yes"}`, runOnly,
			[]offered{{"kloop: Intercept deployment/orders & run", false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, u, _ := openOrders(t, tt.initOptions)
			lenses, err := s.CodeLens(t.Context(), &protocol.CodeLensParams{TextDocument: protocol.TextDocumentIdentifier{URI: u}})
			if err != nil {
				t.Fatal(err)
			}
			var got []offered
			for _, l := range lenses {
				if l.Range.Start.Line != 4 {
					t.Errorf("lens %q on line %d, want 4 (func main)", l.Command.Title, l.Range.Start.Line)
				}
				got = append(got, commandOffered(t, l.Command))
			}
			if !slices.Equal(got, tt.lenses) {
				t.Errorf("lenses %+v\nwant %+v", got, tt.lenses)
			}
			acts, err := s.CodeAction(t.Context(), &protocol.CodeActionParams{TextDocument: protocol.TextDocumentIdentifier{URI: u},
				Range: lineRange(4), Context: protocol.CodeActionContext{Only: []protocol.CodeActionKind{KindIntercept}}})
			if err != nil {
				t.Fatal(err)
			}
			got = nil
			for _, a := range acts {
				ca, ok := a.(*protocol.CodeAction)
				if !ok {
					t.Fatalf("code action %#v has no command", a)
				}
				got = append(got, commandOffered(t, ca.Command))
			}
			if !slices.Equal(got, tt.actions) {
				t.Errorf("intercept actions %+v\nwant %+v", got, tt.actions)
			}
		})
	}
}

// TestNoticeIsShownToTheUser: the session's notice that an intercept made
// for debugging has no debugger (session's
// TestAnInterceptForDebuggingSaysWhenNoDebuggerAttaches) reaches the editor
// as a warning it shows, whichever editor it is.
func TestNoticeIsShownToTheUser(t *testing.T) {
	s, _, messages := openOrders(t, "")
	s.sendEvent(t.Context(), session.Event{Notice: &session.Notice{Workload: "deployment/orders", Message: "orders is intercepted for debugging but no debugger is attached"}})
	m := <-messages
	if m.Type != protocol.MessageTypeWarning || m.Message != "kloop: orders is intercepted for debugging but no debugger is attached" {
		t.Errorf("window/showMessage %+v", m)
	}
}

// The status lens above main says what the intercept does: a count of
// requests for one that takes traffic, and for traffic none why none come.
func TestStatusLensSaysWhatTheInterceptDoes(t *testing.T) {
	for _, tc := range []struct {
		in   session.InterceptStatus
		want string
	}{
		{session.InterceptStatus{Workload: "deployment/orders", Requests: 3, Traffic: "steal"}, "● intercepting deployment/orders · 3 requests"},
		{session.InterceptStatus{Workload: "deployment/orders", Traffic: "none"}, "● deployment/orders: env and Services only · no traffic"},
	} {
		lens := statusLens(protocol.Range{}, session.Status{Intercepts: []session.InterceptStatus{tc.in}})
		if lens.Command.Title != tc.want {
			t.Errorf("status lens of %+v: %+v; want %q", tc.in, lens.Command, tc.want)
		}
	}
}
