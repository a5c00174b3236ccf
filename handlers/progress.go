package handlers

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"go.lsp.dev/protocol"
)

var progressTokens atomic.Int64

// progress reports long work to one client: $/progress when the client
// declared work-done progress, window/showMessage at start and end when not.
// It implements session.Progress.
type progress struct {
	s     *Server
	ctx   context.Context
	title string
	token protocol.ProgressToken // nil: showMessage fallback

	mu   sync.Mutex
	last string
}

// startProgress begins a report titled title. token is the client's
// workDoneToken from the request, if it sent one.
func (s *Server) startProgress(ctx context.Context, token protocol.ProgressToken, title string) *progress {
	p := &progress{s: s, ctx: context.WithoutCancel(ctx), title: title}
	s.mu.Lock()
	supported := s.caps.workDoneProgress
	s.mu.Unlock()
	if supported {
		if token == nil {
			t := protocol.String(fmt.Sprintf("kloop-%d", progressTokens.Add(1)))
			if err := s.client.WorkDoneProgressCreate(ctx, &protocol.WorkDoneProgressCreateParams{Token: t}); err == nil {
				token = t
			} else {
				s.log.Debug("create progress token", "err", err)
			}
		}
		p.token = token
	}
	if p.token != nil {
		p.send(&protocol.WorkDoneProgressBegin{Kind: "begin", Title: title})
	} else {
		p.show(protocol.MessageTypeInfo, title+"…")
	}
	return p
}

// Report implements session.Progress.
func (p *progress) Report(message string, percentage int) {
	p.mu.Lock()
	p.last = message
	p.mu.Unlock()
	if p.token == nil {
		return
	}
	r := &protocol.WorkDoneProgressReport{Kind: "report", Message: &message}
	if percentage >= 0 && percentage <= 100 {
		pct := uint32(percentage)
		r.Percentage = &pct
	}
	p.send(r)
}

// end closes the report with the outcome.
func (p *progress) end(err error) {
	msg := "done"
	if err != nil {
		msg = "failed: " + err.Error()
	}
	if p.token != nil {
		p.send(&protocol.WorkDoneProgressEnd{Kind: "end", Message: &msg})
		return
	}
	typ := protocol.MessageTypeInfo
	if err != nil {
		typ = protocol.MessageTypeError
	}
	p.show(typ, p.title+": "+msg)
}

func (p *progress) send(value any) {
	data, err := protocol.Marshal(value)
	if err != nil {
		p.s.log.Error("encode progress", "err", err)
		return
	}
	if err := p.s.client.Progress(p.ctx, &protocol.ProgressParams{Token: p.token, Value: protocol.LSPAny(data)}); err != nil {
		p.s.log.Debug("send progress", "err", err)
	}
}

func (p *progress) show(typ protocol.MessageType, msg string) {
	if err := p.s.client.ShowMessage(p.ctx, &protocol.ShowMessageParams{Type: typ, Message: "kloop: " + msg}); err != nil {
		p.s.log.Debug("show message", "err", err)
	}
}
