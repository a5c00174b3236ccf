package handlers

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"

	"go.lsp.dev/protocol"

	"github.com/kloop/kloop/command"
	"github.com/kloop/kloop/session"
)

// Code action kinds. Editors filter with context.only, so each action has
// its own kind under source.kloop.
const (
	KindClaim     protocol.CodeActionKind = "source.kloop.claim"
	KindRelease   protocol.CodeActionKind = "source.kloop.release"
	KindIntercept protocol.CodeActionKind = "source.kloop.intercept"
	KindLeave     protocol.CodeActionKind = "source.kloop.leave"
	KindEnv       protocol.CodeActionKind = "source.kloop.env"
)

func codeActionKinds() []protocol.CodeActionKind {
	return []protocol.CodeActionKind{"source.kloop", KindClaim, KindRelease, KindIntercept, KindLeave, KindEnv}
}

// CodeAction offers the session's next steps: claim or release, intercept
// the workload this file belongs to or leave it, and copy its env.
func (s *Server) CodeAction(ctx context.Context, params *protocol.CodeActionParams) ([]protocol.CommandOrCodeAction, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	sess := s.currentSession()
	if sess == nil {
		return nil, nil
	}
	st := sess.Status()
	var actions []*protocol.CodeAction
	add := func(kind protocol.CodeActionKind, c protocol.Command) {
		k := kind
		actions = append(actions, &protocol.CodeAction{Title: c.Title, Kind: &k, Command: c})
	}
	if st.Claim == nil {
		add(KindClaim, lspCommand("kloop: Claim a dev namespace", command.Claim, session.ClaimArgs{}))
	} else {
		add(KindRelease, lspCommand("kloop: Release "+st.Claim.Slot, command.Release, session.ReleaseArgs{}))
	}
	target := s.targetFor(params)
	if target.Workload != "" {
		intercepted := slices.ContainsFunc(st.Intercepts, func(in session.InterceptStatus) bool { return in.Workload == target.Workload })
		if intercepted {
			add(KindLeave, lspCommand("kloop: Leave "+target.Workload, command.Leave, session.LeaveArgs{Workload: target.Workload}))
		} else if target.Program == "" {
			// A manifest's workload: traffic goes to the local port.
			add(KindIntercept, lspCommand("kloop: Intercept "+target.Workload, command.Intercept, target))
		} else {
			if s.startsDebugSessions() {
				add(KindIntercept, lspCommand("kloop: Intercept "+target.Workload+" & debug", command.Intercept, withDebug(target, true)))
			}
			add(KindIntercept, lspCommand("kloop: Intercept "+target.Workload+" & run", command.Intercept, withDebug(target, false)))
		}
		add(KindEnv, lspCommand("kloop: Copy env of "+target.Workload, command.Env, session.EnvArgs{Workload: target.Workload, Format: "dotenv"}))
	}
	if len(st.Intercepts) > 0 {
		add(KindLeave, lspCommand("kloop: Leave all intercepts", command.Leave, session.LeaveArgs{All: true}))
	}
	out := make([]protocol.CommandOrCodeAction, 0, len(actions))
	for _, a := range actions {
		if wanted(*a.Kind, params.Context.Only) {
			out = append(out, a)
		}
	}
	return out, nil
}

// targetFor names the workload a document is about: the one in the lens of
// a main package or the manifest document under the cursor.
func (s *Server) targetFor(params *protocol.CodeActionParams) session.InterceptArgs {
	u := params.TextDocument.URI
	doc, ok := s.docs.get(u)
	if !ok {
		return session.InterceptArgs{}
	}
	switch {
	case isGoFile(u):
		if len(s.mainLenses(u.FsPath(), doc.text)) > 0 {
			return s.interceptArgsFor(filepath.Dir(u.FsPath()))
		}
	case strings.HasSuffix(u.FsPath(), ".yaml") || strings.HasSuffix(u.FsPath(), ".yml"):
		var best session.InterceptArgs
		for _, l := range manifestLenses(doc.text) {
			if l.Range.Start.Line <= params.Range.Start.Line || best.Workload == "" {
				var a session.InterceptArgs
				if len(l.Command.Arguments) == 1 && json.Unmarshal(l.Command.Arguments[0], &a) == nil {
					best = a
				}
			}
		}
		return best
	}
	return session.InterceptArgs{}
}

// wanted applies context.only: a requested kind matches itself and every
// kind below it ("source" matches "source.kloop.claim").
func wanted(kind protocol.CodeActionKind, only []protocol.CodeActionKind) bool {
	if len(only) == 0 {
		return true
	}
	for _, o := range only {
		if kind == o || strings.HasPrefix(string(kind), string(o)+".") {
			return true
		}
	}
	return false
}
