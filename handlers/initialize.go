package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"
	"go.lsp.dev/uri"

	"github.com/kloop/kloop/command"
	"github.com/kloop/kloop/config"
	"github.com/kloop/kloop/session"
)

// codeServerNotInitialized is LSP's error for requests before initialize.
const codeServerNotInitialized = -32002

// Initialize records the workspace and the client's capabilities and
// advertises kloop's.
func (s *Server) Initialize(ctx context.Context, params *protocol.InitializeParams) (*protocol.InitializeResult, error) {
	s.mu.Lock()
	if s.initialized {
		s.mu.Unlock()
		return nil, jsonrpc2.NewError(jsonrpc2.ErrInvalidRequest.Code, "initialize was already called on this connection")
	}
	s.initialized = true
	if w := params.Capabilities.Window; w != nil && w.WorkDoneProgress != nil {
		s.caps.workDoneProgress = *w.WorkDoneProgress
	}
	s.caps.name = params.ClientInfo.Name
	s.caps.outputNotifications = wantsOutput(params.Capabilities.Experimental)
	s.caps.replayView = experimentalFlag(params.Capabilities.Experimental, ExperimentalReplayView)
	s.caps.startsDebugSessions = initOptions(params).StartsDebugSessions
	s.mu.Unlock()

	if root := workspaceRoot(params); root != "" {
		s.attach(ctx, root)
		if sess := s.currentSession(); sess != nil {
			sess.NoteClient(clientInfo(params))
		}
	}

	yes := true
	full := protocol.TextDocumentSyncKindFull
	version := s.opts.Version
	return &protocol.InitializeResult{
		Capabilities: protocol.ServerCapabilities{
			TextDocumentSync: &protocol.TextDocumentSyncOptions{
				OpenClose: &yes,
				Change:    &full,
				Save:      &protocol.SaveOptions{IncludeText: &yes},
			},
			CodeLensProvider: &protocol.CodeLensOptions{},
			CodeActionProvider: &protocol.CodeActionOptions{
				CodeActionKinds: codeActionKinds(),
			},
			ExecuteCommandProvider: protocol.ExecuteCommandOptions{Commands: command.Names()},
			Workspace: &protocol.WorkspaceOptions{
				WorkspaceFolders: &protocol.WorkspaceFoldersServerCapabilities{
					Supported:           &yes,
					ChangeNotifications: protocol.Boolean(true),
				},
			},
		},
		ServerInfo: protocol.ServerInfo{Name: "kloop", Version: protocol.NewOptional(version)},
	}, nil
}

// clientInfo is what the client told of itself, for kloop.doctor: its
// clientInfo and the kloop extension's version from
// initializationOptions.extensionVersion. The CLI is not an editor.
func clientInfo(params *protocol.InitializeParams) session.ClientInfo {
	if params.ClientInfo.Name == "kloop-cli" {
		return session.ClientInfo{}
	}
	c := session.ClientInfo{Name: params.ClientInfo.Name}
	c.Version, _ = params.ClientInfo.Version.Get()
	c.Extension = initOptions(params).ExtensionVersion
	return c
}

// InitializationOptions are what kloop reads of initialize's
// initializationOptions; kloop's own editor extensions send them.
type InitializationOptions struct {
	// ExtensionVersion is the extension's own version, for kloop.doctor.
	ExtensionVersion string `json:"extensionVersion"`
	// StartsDebugSessions: the client runs a kloop.intercept with
	// debug=true (the "& debug" lens and action) by starting a `kloop`
	// debug session. Clients that do not say so are offered "& run".
	StartsDebugSessions bool `json:"startsDebugSessions"`
}

// initOptions reads the options; options of another shape read as none.
func initOptions(params *protocol.InitializeParams) InitializationOptions {
	var opts InitializationOptions
	if len(params.InitializationOptions) > 0 {
		if json.Unmarshal(params.InitializationOptions, &opts) != nil {
			return InitializationOptions{}
		}
	}
	return opts
}

// Initialized sends the first status, and diagnostics for a broken
// .kloop.yaml on disk, so the editor shows them before any file is opened.
func (s *Server) Initialized(ctx context.Context, _ *protocol.InitializedParams) error {
	sess := s.currentSession()
	if sess == nil {
		return nil
	}
	s.sendStatus(ctx, sess.Status())
	for _, name := range []string{config.FileName, config.AltFileName} {
		path := filepath.Join(sess.Root(), name)
		if s.docs.isOpen(uri.File(path)) {
			continue
		}
		// Capped: a huge file gets an error, not the daemon's memory.
		data, err := config.ReadFile(path)
		switch {
		case err == nil:
			s.diagnoseConfig(ctx, uri.File(path), data)
		case errors.Is(err, config.ErrFileTooLarge):
			if serr := s.client.ShowMessage(ctx, &protocol.ShowMessageParams{Type: protocol.MessageTypeError, Message: "kloop: " + err.Error()}); serr != nil {
				s.log.Debug("report oversize .kloop.yaml", "err", serr)
			}
		}
	}
	return nil
}

// Shutdown stops serving requests other than exit.
func (s *Server) Shutdown(context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	s.mu.Unlock()
	return nil
}

// Exit ends the connection. The shared daemon lives on for other clients.
func (s *Server) Exit(context.Context) error {
	s.exitOnce.Do(func() { close(s.exited) })
	return nil
}

// ready rejects requests outside the initialize..shutdown window.
func (s *Server) ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.initialized {
		return jsonrpc2.NewError(codeServerNotInitialized, "kloop: the client must send initialize first")
	}
	if s.shutdown {
		return jsonrpc2.NewError(jsonrpc2.ErrInvalidRequest.Code, "kloop: the server is shut down; only exit is accepted")
	}
	return nil
}

func workspaceRoot(params *protocol.InitializeParams) string {
	if folders, ok := params.WorkspaceFolders.Get(); ok && len(folders) > 0 {
		return folders[0].URI.FsPath()
	}
	//lint:ignore SA1019 editors without workspace folders send only rootUri or rootPath
	rootURI, rootPath := params.RootURI, params.RootPath
	if rootURI != nil && *rootURI != "" {
		return rootURI.FsPath()
	}
	if p, ok := rootPath.Get(); ok && p != "" {
		return p
	}
	return ""
}

// rootFor finds the workspace of a file opened by a client that named no
// workspace.
func rootFor(file string) string { return session.FindRoot(filepath.Dir(file)) }
