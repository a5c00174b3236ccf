package server

import (
	"context"
	"io"
	"log/slog"
	"time"

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
	conn, exited := handlers.Serve(ctx, stream, handlers.Options{
		Manager:    opts.Manager,
		Logger:     log,
		Version:    opts.Version,
		StopDaemon: opts.StopDaemon,
	})
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
