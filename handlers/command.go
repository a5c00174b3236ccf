package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"

	"github.com/kloop/kloop/command"
	"github.com/kloop/kloop/session"
)

// Error codes kloop answers with besides JSON-RPC's own.
const (
	// CodeNoWorkspace: the client named no workspace folder.
	CodeNoWorkspace = -32003
	// codeRequestFailed is LSP's RequestFailed.
	codeRequestFailed = -32803
)

// ExecuteCommand validates the arguments and runs the command on the
// connection's session.
func (s *Server) ExecuteCommand(ctx context.Context, params *protocol.ExecuteCommandParams) (protocol.LSPAny, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	result, err := s.execute(ctx, params)
	if err != nil {
		return nil, commandError(params.Command, err)
	}
	if res, ok := result.(*session.ReplayResult); ok {
		s.showReplay(ctx, res)
	}
	data, err := json.Marshal(result)
	if err != nil {
		return nil, fmt.Errorf("encode %s result: %w", params.Command, err)
	}
	return protocol.LSPAny(data), nil
}

func (s *Server) execute(ctx context.Context, params *protocol.ExecuteCommandParams) (any, error) {
	name := params.Command
	cmd, ok := command.Lookup(name)
	if !ok {
		return nil, jsonrpc2.NewError(jsonrpc2.ErrInvalidParams.Code, fmt.Sprintf("kloop: unknown command %q; known commands: %s", name, strings.Join(command.Names(), ", ")))
	}
	sess := s.currentSession()
	if sess == nil {
		return nil, jsonrpc2.NewError(CodeNoWorkspace, fmt.Sprintf("kloop: %s needs a workspace: open a folder (rootUri or workspaceFolders in initialize)", name))
	}
	raw := make([]json.RawMessage, len(params.Arguments))
	for i, a := range params.Arguments {
		raw[i] = json.RawMessage(a)
	}
	args, err := cmd.Decode(raw)
	if err != nil {
		return nil, jsonrpc2.NewError(jsonrpc2.ErrInvalidParams.Code, err.Error())
	}
	if !cmd.Progress() {
		return cmd.Run(ctx, sess, args, nil)
	}
	p := s.startProgress(ctx, params.WorkDoneToken, cmd.ProgressTitle(args))
	result, err := cmd.Run(ctx, sess, args, p)
	p.end(err)
	return result, err
}

// commandError maps a command's failure onto a JSON-RPC error whose message
// is what the user reads in the editor.
func commandError(cmd string, err error) error {
	var rpcErr *jsonrpc2.Error
	if errors.As(err, &rpcErr) {
		return err
	}
	return jsonrpc2.NewError(codeRequestFailed, fmt.Sprintf("kloop: %s: %v", cmd, err))
}
