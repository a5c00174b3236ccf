package handlers

import (
	"context"
	"errors"

	"go.lsp.dev/protocol"
	"go.lsp.dev/uri"

	"github.com/kloop/kloop/config"
)

// diagnoseConfig publishes the errors of a .kloop.yaml, or clears them once
// the file parses.
func (s *Server) diagnoseConfig(ctx context.Context, u uri.URI, text []byte) {
	diags := []protocol.Diagnostic{}
	_, err := config.Parse(u.FsPath(), text)
	var cerrs *config.Errors
	switch {
	case err == nil:
	case errors.As(err, &cerrs):
		for _, e := range cerrs.List {
			diags = append(diags, configDiagnostic(e))
		}
	default:
		diags = append(diags, protocol.Diagnostic{
			Severity: protocol.DiagnosticSeverityError,
			Source:   protocol.NewOptional("kloop"),
			Message:  protocol.String(err.Error()),
		})
	}
	s.mu.Lock()
	had := s.configDiagnosed[string(u)]
	s.configDiagnosed[string(u)] = len(diags) > 0
	s.mu.Unlock()
	if len(diags) == 0 && !had {
		return
	}
	s.publishDiagnostics(ctx, u, diags)
}

func configDiagnostic(e config.Error) protocol.Diagnostic {
	line := uint32(max(e.Line-1, 0))
	col := uint32(max(e.Column-1, 0))
	return protocol.Diagnostic{
		Range: protocol.Range{
			Start: protocol.Position{Line: line, Character: col},
			End:   protocol.Position{Line: line, Character: col + 1},
		},
		Severity: protocol.DiagnosticSeverityError,
		Source:   protocol.NewOptional("kloop"),
		Message:  protocol.String(e.Message),
	}
}

func (s *Server) publishDiagnostics(ctx context.Context, u uri.URI, diags []protocol.Diagnostic) {
	if err := s.client.PublishDiagnostics(ctx, &protocol.PublishDiagnosticsParams{URI: u, Diagnostics: diags}); err != nil {
		s.log.Debug("publish diagnostics", "uri", u, "err", err)
	}
}
