package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"time"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"

	"github.com/kloop/kloop/handlers"
	"github.com/kloop/kloop/session"
)

// ConnOptions configure how one client connection is served.
type ConnOptions struct {
	Manager         *session.Manager
	Logger          *slog.Logger
	Version         string
	MaxMessageBytes int
	StopDaemon      func()
}

// MethodStopDaemon asks the shared daemon to exit (`kloop daemon stop`).
const MethodStopDaemon = "kloop/stopDaemon"

// daemonMethods serves the daemon's own methods (stop, stats) and passes
// everything else to the LSP server.
func daemonMethods(opts ConnOptions, next jsonrpc2.Handler) jsonrpc2.Handler {
	return func(ctx context.Context, req *jsonrpc2.Request) (any, error) {
		switch req.Method() {
		case MethodStopDaemon:
			if opts.StopDaemon == nil {
				return nil, jsonrpc2.NewError(jsonrpc2.ErrInvalidRequest.Code, "kloop: this server is not a shared daemon (standalone mode); nothing to stop")
			}
			go opts.StopDaemon()
			return map[string]bool{"stopping": true}, nil
		case MethodDaemonStats:
			return daemonStats(json.RawMessage(req.Params()), opts.Version)
		}
		return next(ctx, req)
	}
}

// ServeConn serves the LSP on rwc until the client exits or disconnects.
// The daemon calls it per accepted socket; `kloop lsp --standalone` calls
// it once on stdio, so both modes share every line of protocol handling.
func ServeConn(ctx context.Context, rwc io.ReadWriteCloser, opts ConnOptions) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	maxBytes, err := resolveMaxBytes(opts.MaxMessageBytes)
	if err != nil {
		log.Warn("message size limit", "err", err)
	}
	stream := newLSPStream(rwc, maxBytes, func(err error) {
		log.Warn("bad input from client", "err", err)
	})
	conn := jsonrpc2.NewConn(stream, jsonrpc2.WithCodec(Codec{}))
	srv := handlers.New(ctx, conn, handlers.Options{
		Manager: opts.Manager,
		Logger:  log,
		Version: opts.Version,
	})
	ctx = protocol.WithClient(ctx, srv.Client())
	conn.Go(ctx, orderedHandler(ctx, daemonMethods(opts, srv.Handler())))
	exited := srv.Exited()
	select {
	case <-conn.Done():
		return nil
	case <-exited:
	case <-ctx.Done():
	}
	// Close the transport first: for a socket that ends jsonrpc2's read
	// loop at once. A blocked read of a stdin pipe cannot be interrupted,
	// so conn.Close (which waits for that loop) is not called; the
	// standalone process exits right after this returns, as LSP's exit
	// requires.
	rwc.Close()
	select {
	case <-conn.Done():
	case <-time.After(time.Second):
	}
	return nil
}
