// Package handlers implements kloop's LSP surface, one file per feature in
// the manner of gopls' server package: initialize, text sync, code lenses,
// code actions, executeCommand, diagnostics, progress and the kloop/status
// notification. A Server serves one connection (an editor or a CLI call);
// state shared between connections lives in the session package.
package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
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
	// StopDaemon, when set, lets a client stop the shared daemon
	// (`kloop daemon stop`).
	StopDaemon func()
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
}

// Serve answers LSP requests on stream until the connection ends. Text
// synchronisation notifications are handled in wire order on the read
// goroutine; every other request is released to run concurrently, so a long
// claim does not stall the editor's next keystroke.
//
// The returned channel closes when the client sends exit. A stdio server
// must then return without waiting for the connection to drain: a read
// blocked on the process's stdin is not interrupted by closing it.
func Serve(ctx context.Context, stream jsonrpc2.Stream, opts Options) (jsonrpc2.Conn, <-chan struct{}) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	conn := jsonrpc2.NewConn(stream, jsonrpc2.WithCodec(Codec{}))
	s := &Server{
		opts:            opts,
		log:             opts.Logger,
		conn:            conn,
		client:          protocol.ClientDispatcher(conn),
		docs:            newDocuments(),
		configDiagnosed: map[string]bool{},
		exited:          make(chan struct{}),
	}
	ctx = protocol.WithClient(ctx, s.client)
	conn.Go(ctx, orderedHandler(ctx, s.answerErrors(protocol.ServerHandler(s, jsonrpc2.MethodNotFoundHandler))))
	go func() {
		<-conn.Done()
		s.close()
	}()
	return conn, s.exited
}

// orderedHandler keeps the handlers that mutate documents or connection
// state in wire order and releases the rest.
//
// It also gives each handler an ordinary context derived from the
// connection's own and serves $/cancelRequest itself: jsonrpc2 v1 recycles
// its per-request contexts once a request is answered, so any context
// derived from one (as jsonrpc2.CancelHandler does) can later read a
// recycled parent and crash the daemon.
func orderedHandler(base context.Context, next jsonrpc2.Handler) jsonrpc2.Handler {
	var mu sync.Mutex
	inflight := map[string]context.CancelFunc{}
	return func(reqCtx context.Context, req *jsonrpc2.Request) (any, error) {
		switch req.Method() {
		case protocol.MethodInitialize, protocol.MethodInitialized, protocol.MethodShutdown, protocol.MethodExit,
			protocol.MethodTextDocumentDidOpen, protocol.MethodTextDocumentDidChange,
			protocol.MethodTextDocumentDidSave, protocol.MethodTextDocumentDidClose,
			protocol.MethodWorkspaceDidChangeWorkspaceFolders:
		case "$/cancelRequest":
			var params struct {
				ID json.RawMessage `json:"id"`
			}
			if err := json.Unmarshal(req.Params(), &params); err != nil || len(params.ID) == 0 {
				// A notification's error would end the connection (see
				// answerErrors); a cancel naming no request is ignored.
				return nil, nil
			}
			mu.Lock()
			cancel := inflight[string(bytes.TrimSpace(params.ID))]
			mu.Unlock()
			if cancel != nil {
				cancel()
			}
			return nil, nil
		default:
			jsonrpc2.Async(reqCtx)
		}
		ctx, cancel := context.WithCancel(base)
		defer cancel()
		if req.IsCall() {
			if key := idKey(req.ID()); key != "" {
				mu.Lock()
				inflight[key] = cancel
				mu.Unlock()
				defer func() {
					mu.Lock()
					delete(inflight, key)
					mu.Unlock()
				}()
			}
		}
		return next(ctx, req)
	}
}

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

// idKey spells a request id the way it appears in $/cancelRequest.
func idKey(id jsonrpc2.ID) string {
	if n, ok := id.Number(); ok {
		return strconv.FormatInt(n, 10)
	}
	if str, ok := id.StringValue(); ok {
		q, _ := json.Marshal(str)
		return string(q)
	}
	return ""
}

// Detached adapts a handler for the client side of a connection the same
// way: requests run concurrently on contexts derived from base.
func Detached(base context.Context, next jsonrpc2.Handler) jsonrpc2.Handler {
	return func(reqCtx context.Context, req *jsonrpc2.Request) (any, error) {
		jsonrpc2.Async(reqCtx)
		ctx, cancel := context.WithCancel(base)
		defer cancel()
		return next(ctx, req)
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

// Codec is the LSP payload codec: the protocol package's union-aware
// encoder for typed payloads, raw bytes passed through verbatim. The
// protocol package does not export its own, and kloop builds its
// connections itself to control handler ordering.
type Codec struct{}

// Marshal implements jsonrpc2.Codec.
func (Codec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case jsonrpc2.RawMessage:
		if m == nil {
			return []byte("null"), nil
		}
		return m, nil
	case *jsonrpc2.RawMessage:
		if m == nil || *m == nil {
			return []byte("null"), nil
		}
		return *m, nil
	}
	return protocol.Marshal(v)
}

// Unmarshal implements jsonrpc2.Codec.
func (Codec) Unmarshal(data []byte, v any) error {
	if p, ok := v.(*jsonrpc2.RawMessage); ok {
		*p = append(jsonrpc2.RawMessage(nil), data...)
		return nil
	}
	return protocol.Unmarshal(data, v)
}

// MethodStopDaemon asks the shared daemon to exit (`kloop daemon stop`).
const MethodStopDaemon = "kloop/stopDaemon"

// Request serves kloop's own methods beyond the LSP.
func (s *Server) Request(ctx context.Context, method string, params any) (any, error) {
	switch method {
	case MethodStopDaemon:
		if s.opts.StopDaemon == nil {
			return nil, jsonrpc2.NewError(jsonrpc2.ErrInvalidRequest.Code, "kloop: this server is not a shared daemon (standalone mode); nothing to stop")
		}
		go s.opts.StopDaemon()
		return map[string]bool{"stopping": true}, nil
	case MethodDaemonStats:
		return s.daemonStats(params)
	}
	return nil, jsonrpc2.NewError(jsonrpc2.ErrMethodNotFound.Code, "kloop: unknown method "+method)
}
