// Package handlers implements kloop's LSP surface, one file per feature in
// the manner of gopls' server package: initialize, text sync, code lenses,
// code actions, executeCommand, diagnostics, progress and the kloop/status
// notification. A Server serves one connection (an editor or a CLI call);
// state shared between connections lives in the session package.
package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"

	"github.com/kloop/kloop/session"
)

// Options configure a Server.
type Options struct {
	Manager *session.Manager
	Logger  *slog.Logger
	// Version is reported in serverInfo.
	Version string
}

// Server serves the LSP for one connection.
type Server struct {
	protocol.UnimplementedServer

	opts   Options
	log    *slog.Logger
	client protocol.Client
	conn   jsonrpc2.Conn

	docs *documents

	mu          sync.Mutex
	session     *session.Session
	caps        clientCaps
	initialized bool
	shutdown    bool
	unsubscribe func()
	exited      chan struct{}
	exitOnce    sync.Once
	// configDiagnosed remembers which .kloop.yaml files carry diagnostics,
	// so a fixed file gets an empty publish that clears them.
	configDiagnosed map[string]bool
}

// clientCaps are the client capabilities kloop acts on.
type clientCaps struct {
	workDoneProgress bool
	name             string
	// outputNotifications: the client asked for kloop/output (see
	// ExperimentalOutput).
	outputNotifications bool
	// replayView: the client shows replays itself (see
	// ExperimentalReplayView).
	replayView bool
	// startsDebugSessions: the client said (initializationOptions) that it
	// turns an intercept with debug=true into a kloop debug session. Only
	// such a client is offered "& debug": from any other, the intercept
	// would send traffic here with nothing to run the program.
	startsDebugSessions bool
}

// New makes the LSP server of one connection. The transport (package
// server) owns the connection: its codec, the order handlers run in, and
// the daemon's own methods; Handler is what it calls for everything else.
func New(ctx context.Context, conn jsonrpc2.Conn, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:            opts,
		log:             opts.Logger,
		conn:            conn,
		client:          protocol.ClientDispatcher(conn),
		docs:            newDocuments(),
		configDiagnosed: map[string]bool{},
		exited:          make(chan struct{}),
	}
	go func() {
		<-conn.Done()
		s.close()
	}()
	return s
}

// Handler serves the LSP: protocol requests and notifications, with
// kloop's error shaping.
func (s *Server) Handler() jsonrpc2.Handler {
	return s.answerErrors(protocol.ServerHandler(s, jsonrpc2.MethodNotFoundHandler))
}

// Client is the connection's client side, for a context (protocol.WithClient).
func (s *Server) Client() protocol.Client { return s.client }

// Exited closes when the client sends exit. A stdio server must then
// return without waiting for the connection to drain: a read blocked on
// the process's stdin is not interrupted by closing it.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// answerErrors shapes handler errors for the client.
//
// Params that do not decode are reported as -32602 Invalid params: the
// protocol package answers them with -32700 Parse error, which tells the
// editor its JSON was unreadable when it was well-formed JSON of the wrong
// shape (the stream has already answered truly unparseable messages).
//
// A notification's error must never reach jsonrpc2: it ends the whole
// connection on one, so an editor sending $/setTrace, an unknown
// notification or a didChange for a closed file would lose its server.
// Unknown notifications are ignored, as LSP allows; other failures go to
// the editor's log as window/logMessage, the only channel a notification
// has back.
func (s *Server) answerErrors(next jsonrpc2.Handler) jsonrpc2.Handler {
	return func(ctx context.Context, req *jsonrpc2.Request) (any, error) {
		result, err := next(ctx, req)
		if err == nil {
			return result, nil
		}
		method := req.Method()
		var rpcErr *jsonrpc2.Error
		if errors.As(err, &rpcErr) && rpcErr.Code == jsonrpc2.ErrParse.Code {
			err = jsonrpc2.NewError(jsonrpc2.ErrInvalidParams.Code, fmt.Sprintf("kloop: invalid params for %s: %s", method, strings.TrimPrefix(err.Error(), jsonrpc2.ErrParse.Message+": ")))
		}
		if req.IsCall() {
			return result, err
		}
		if errors.As(err, &rpcErr) && rpcErr.Code == jsonrpc2.ErrMethodNotFound.Code {
			s.log.Debug("ignored notification", "method", method, "err", err)
			return nil, nil
		}
		s.log.Warn("notification failed", "method", method, "err", err)
		msg := err.Error()
		if !strings.HasPrefix(msg, "kloop: ") {
			msg = fmt.Sprintf("kloop: %s: %s", method, msg)
		}
		if lerr := s.client.LogMessage(context.WithoutCancel(ctx), &protocol.LogMessageParams{Type: protocol.MessageTypeError, Message: msg}); lerr != nil {
			s.log.Debug("report notification failure", "err", lerr)
		}
		return nil, nil
	}
}

func (s *Server) close() {
	s.mu.Lock()
	unsub := s.unsubscribe
	s.unsubscribe = nil
	s.mu.Unlock()
	if unsub != nil {
		unsub()
	}
}

// Request serves kloop's own methods beyond the LSP; the daemon's (stop,
// stats) are the transport's (package server).
func (s *Server) Request(ctx context.Context, method string, params any) (any, error) {
	return nil, jsonrpc2.NewError(jsonrpc2.ErrMethodNotFound.Code, "kloop: unknown method "+method)
}
