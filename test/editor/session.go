package editor

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
)

// URI is the file URI of path.
func URI(path string) string {
	return (&url.URL{Scheme: "file", Path: path}).String()
}

// Initialize performs initialize + initialized for root. progress says
// whether the client declares window.workDoneProgress.
func (e *Editor) Initialize(root string, progress bool) map[string]any {
	e.t.Helper()
	return e.InitializeWith(root, progress, nil)
}

// InitializeWith is Initialize sending initializationOptions (as kloop's
// own extensions do, e.g. startsDebugSessions) when options is not nil.
func (e *Editor) InitializeWith(root string, progress bool, options map[string]any) map[string]any {
	e.t.Helper()
	var result map[string]any
	params := map[string]any{
		"processId":  os.Getpid(),
		"clientInfo": map[string]any{"name": "fake-editor"},
		"rootUri":    URI(root),
		"capabilities": map[string]any{
			"window": map[string]any{"workDoneProgress": progress},
		},
		"workspaceFolders": []any{map[string]any{"uri": URI(root), "name": filepath.Base(root)}},
	}
	if options != nil {
		params["initializationOptions"] = options
	}
	if err := e.Call("initialize", params, &result); err != nil {
		e.t.Fatalf("initialize: %v", err)
	}
	e.Notify("initialized", map[string]any{})
	return result
}

// Open sends didOpen for path with its content.
func (e *Editor) Open(path, languageID, text string) {
	e.Notify("textDocument/didOpen", map[string]any{
		"textDocument": map[string]any{"uri": URI(path), "languageId": languageID, "version": 1, "text": text},
	})
}

// Change sends a full-document didChange.
func (e *Editor) Change(path string, version int, text string) {
	e.Notify("textDocument/didChange", map[string]any{
		"textDocument":   map[string]any{"uri": URI(path), "version": version},
		"contentChanges": []any{map[string]any{"text": text}},
	})
}

// Save sends didSave.
func (e *Editor) Save(path string) {
	e.Notify("textDocument/didSave", map[string]any{"textDocument": map[string]any{"uri": URI(path)}})
}

// Lens is a code lens as the test reads it.
type Lens struct {
	Range struct {
		Start struct{ Line, Character int }
	}
	Command struct {
		Title     string
		Command   string
		Arguments []json.RawMessage
	}
}

// CodeLens asks for the lenses of path.
func (e *Editor) CodeLens(path string) []Lens {
	e.t.Helper()
	var lenses []Lens
	if err := e.Call("textDocument/codeLens", map[string]any{"textDocument": map[string]any{"uri": URI(path)}}, &lenses); err != nil {
		e.t.Fatalf("codeLens: %v", err)
	}
	return lenses
}

// Action is a code action as the test reads it.
type Action struct {
	Title   string
	Kind    string
	Command struct {
		Command   string
		Arguments []json.RawMessage
	}
}

// CodeActions asks for the code actions of path at line, filtered by only.
func (e *Editor) CodeActions(path string, line int, only ...string) []Action {
	e.t.Helper()
	ctx := map[string]any{"diagnostics": []any{}}
	if len(only) > 0 {
		ctx["only"] = only
	}
	pos := map[string]any{"line": line, "character": 0}
	var actions []Action
	if err := e.Call("textDocument/codeAction", map[string]any{
		"textDocument": map[string]any{"uri": URI(path)},
		"range":        map[string]any{"start": pos, "end": pos},
		"context":      ctx,
	}, &actions); err != nil {
		e.t.Fatalf("codeAction: %v", err)
	}
	return actions
}

// Execute runs workspace/executeCommand with one argument (nil for none).
func (e *Editor) Execute(command string, arg any, result any) error {
	e.t.Helper()
	params := map[string]any{"command": command}
	if arg != nil {
		params["arguments"] = []any{arg}
	}
	return e.Call("workspace/executeCommand", params, result)
}

// Shutdown performs shutdown + exit.
func (e *Editor) Shutdown() {
	e.t.Helper()
	if err := e.Call("shutdown", nil, nil); err != nil {
		e.t.Fatalf("shutdown: %v", err)
	}
	e.Notify("exit", nil)
}
