package handlers

import (
	"context"
	"encoding/json"

	"go.lsp.dev/jsonrpc2"

	"github.com/kloop/kloop/session"
)

// MethodStatus is the server->client notification carrying session.Status
// after every state change; editors draw their status bar from it.
const MethodStatus = "kloop/status"

// attach binds the connection to the session of root and subscribes it to
// status changes. Two editors on one folder share that session.
func (s *Server) attach(ctx context.Context, root string) {
	sess := s.opts.Manager.Open(root)
	s.mu.Lock()
	if s.session != nil {
		s.mu.Unlock()
		return
	}
	s.session = sess
	s.mu.Unlock()
	// Notifications outlive the request that attached; detach from its
	// cancellation.
	nctx := context.WithoutCancel(ctx)
	unsubStatus := sess.Subscribe(func(st session.Status) { s.sendStatus(nctx, st) })
	unsubEvents := sess.SubscribeEvents(func(e session.Event) { s.sendEvent(nctx, e) })
	s.mu.Lock()
	s.unsubscribe = func() { unsubStatus(); unsubEvents() }
	s.mu.Unlock()
}

func (s *Server) currentSession() *session.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.session
}

// sendStatus notifies the client; a client that went away is not an error
// worth more than a debug line.
func (s *Server) sendStatus(ctx context.Context, st session.Status) {
	data, err := json.Marshal(st)
	if err != nil {
		s.log.Error("encode status", "err", err)
		return
	}
	if err := s.conn.Notify(ctx, MethodStatus, jsonrpc2.RawMessage(data)); err != nil {
		s.log.Debug("send status", "err", err)
	}
}
