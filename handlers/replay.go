package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.lsp.dev/protocol"

	"github.com/kloop/kloop/session"
)

// ExperimentalReplayView is the experimental client capability of clients
// that show a replay's outcome themselves — kloop's VS Code extension (a
// diff editor), its Neovim plugin (a diff split) and the CLI:
// {"kloopReplayView": true}. Every other client gets the outcome of a
// kloop.replay it runs as a window/showMessage summary, since most ignore
// executeCommand results. A window/showDocument of a virtual document was
// the other way: LSP has no way for a server to serve a document's content
// that generic clients support (workspace/textDocumentContent is new in
// 3.18 and barely implemented), and a file on disk would keep recorded
// answers, which stay in memory.
const ExperimentalReplayView = "kloopReplayView"

func experimentalFlag(experimental []byte, name string) bool {
	var caps map[string]any
	if json.Unmarshal(experimental, &caps) != nil {
		return false
	}
	on, _ := caps[name].(bool)
	return on
}

// showReplay tells a client that shows no replay view of its own what a
// replay found.
func (s *Server) showReplay(ctx context.Context, res *session.ReplayResult) {
	s.mu.Lock()
	own := s.caps.replayView
	s.mu.Unlock()
	if own || res == nil {
		return
	}
	if err := s.client.ShowMessage(ctx, &protocol.ShowMessageParams{Type: protocol.MessageTypeInfo, Message: replaySummary(res)}); err != nil {
		s.log.Debug("show the replay", "err", err)
	}
}

// replaySummary is the replay in the words of `kloop replay`.
func replaySummary(res *session.ReplayResult) string {
	var b strings.Builder
	status := 0
	if res.Response != nil {
		status = res.Response.Status
	}
	fmt.Fprintf(&b, "kloop: replayed #%d %s %s to pid %d: %d in %s", res.Request.ID, res.Request.Method, res.Request.Target,
		res.Pid, status, res.Duration.Round(100*time.Microsecond))
	if res.Same {
		b.WriteString(", same answer as recorded")
		return b.String()
	}
	b.WriteString("; the answer changed:")
	for _, d := range res.Diff {
		b.WriteString("\n  " + d)
	}
	return b.String()
}
