package handlers

import (
	"context"
	"encoding/json"
	"fmt"

	"go.lsp.dev/protocol"
	"go.lsp.dev/uri"

	"github.com/kloop/kloop/session"
	"github.com/kloop/kloop/session/build"
)

// MethodOutput is the server->client notification carrying one line of the
// local program's output (session.OutputLine); editors show it in their
// output channel. Clients that ignore it still get window/logMessage.
const MethodOutput = "kloop/output"

// sendEvent turns a session event into build diagnostics or output.
func (s *Server) sendEvent(ctx context.Context, e session.Event) {
	if n := e.Notice; n != nil {
		if err := s.client.ShowMessage(ctx, &protocol.ShowMessageParams{Type: protocol.MessageTypeWarning, Message: "kloop: " + n.Message}); err != nil {
			s.log.Debug("send notice", "err", err)
		}
	}
	for file, diags := range e.Diagnostics {
		s.publishDiagnostics(ctx, uri.File(file), buildDiagnostics(diags))
	}
	if l := e.Output; l != nil {
		s.mu.Lock()
		typed := s.caps.outputNotifications
		s.mu.Unlock()
		// Each line once: typed to clients that asked (the CLI keeps
		// stdout and stderr apart), as a log message to every other editor.
		var err error
		if typed {
			err = s.conn.Notify(ctx, MethodOutput, l)
		} else {
			err = s.client.LogMessage(ctx, &protocol.LogMessageParams{Type: protocol.MessageTypeLog, Message: fmt.Sprintf("[%s] %s", l.Program, l.Line)})
		}
		if err != nil {
			s.log.Debug("send program output", "err", err)
		}
	}
}

// buildDiagnostics converts compiler errors (1-based, columns in bytes as
// go build prints them) to LSP diagnostics (0-based). Columns are passed as
// they are: for the ASCII that Go source mostly is, bytes and UTF-16 units
// agree.
func buildDiagnostics(diags []build.Diagnostic) []protocol.Diagnostic {
	out := make([]protocol.Diagnostic, 0, len(diags))
	for _, d := range diags {
		line, col := max(d.Line-1, 0), max(d.Column-1, 0)
		pos := protocol.Position{Line: uint32(line), Character: uint32(col)}
		out = append(out, protocol.Diagnostic{
			Range:    protocol.Range{Start: pos, End: pos},
			Severity: protocol.DiagnosticSeverityError,
			Source:   protocol.NewOptional("kloop build"),
			Message:  protocol.String(d.Message),
		})
	}
	return out
}

// ExperimentalOutput is the experimental client capability that asks for
// kloop/output instead of window/logMessage: {"kloopOutput": true}.
const ExperimentalOutput = "kloopOutput"

func wantsOutput(experimental []byte) bool {
	var caps map[string]any
	if json.Unmarshal(experimental, &caps) != nil {
		return false
	}
	on, _ := caps[ExperimentalOutput].(bool)
	return on
}
