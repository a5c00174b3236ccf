package server

import (
	"context"
	"io"
	"log/slog"

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
	stream := newLSPStream(rwc, opts.MaxMessageBytes, func(err error) {
		log.Warn("bad input from client", "err", err)
	})
	conn := handlers.Serve(ctx, stream, handlers.Options{
		Manager:    opts.Manager,
		Logger:     log,
		Version:    opts.Version,
		StopDaemon: opts.StopDaemon,
	})
	select {
	case <-conn.Done():
	case <-ctx.Done():
		conn.Close()
		<-conn.Done()
	}
	return nil
}
