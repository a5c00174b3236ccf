package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"time"

	"go.lsp.dev/protocol"
	"go.lsp.dev/uri"
	"gopkg.in/yaml.v3"

	"github.com/kloop/kloop/command"
	"github.com/kloop/kloop/config"
	"github.com/kloop/kloop/session"
)

// CodeLens offers intercepts where a user starts them: above func main of
// a Go main package, and above each Deployment or StatefulSet of a YAML
// manifest. Lenses are cached per document version; the status lens is
// added fresh each time because it changes with the session.
func (s *Server) CodeLens(ctx context.Context, params *protocol.CodeLensParams) ([]protocol.CodeLens, error) {
	if err := s.ready(); err != nil {
		return nil, err
	}
	u := params.TextDocument.URI
	doc, ok := s.docs.get(u)
	if !ok {
		return nil, nil
	}
	doc.lensMu.Lock()
	if !doc.lensOK {
		doc.lenses = s.computeLenses(u, doc.text)
		doc.lensOK = true
	}
	lenses := doc.lenses
	doc.lensMu.Unlock()
	if sess := s.currentSession(); sess != nil && len(lenses) > 0 && isGoFile(u) {
		if st := sess.Status(); len(st.Intercepts) > 0 {
			lenses = append([]protocol.CodeLens{statusLens(lenses[0].Range, st)}, lenses...)
		}
	}
	return lenses, nil
}

func (s *Server) computeLenses(u uri.URI, text []byte) []protocol.CodeLens {
	path := u.FsPath()
	switch {
	case isGoFile(u):
		return s.mainLenses(path, text)
	case strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml"):
		if isConfigFile(u) {
			return nil
		}
		return manifestLenses(text)
	}
	return nil
}

func isGoFile(u uri.URI) bool { return strings.HasSuffix(u.FsPath(), ".go") }

// mainLenses finds func main in package main. A file that does not parse
// gets no lenses rather than an error: the user is mid-edit.
func (s *Server) mainLenses(path string, text []byte) []protocol.CodeLens {
	if !bytes.Contains(text, []byte("func main()")) {
		return nil
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, text, parser.SkipObjectResolution)
	if err != nil && f == nil {
		return nil
	}
	if f.Name == nil || f.Name.Name != "main" {
		return nil
	}
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Recv != nil || fn.Name.Name != "main" || fn.Type.Params.NumFields() != 0 {
			continue
		}
		pos := fset.Position(fn.Pos())
		rng := lineRange(pos.Line - 1)
		args := s.interceptArgsFor(filepath.Dir(path))
		if !s.startsDebugSessions() {
			return []protocol.CodeLens{
				{Range: rng, Command: lspCommand("Intercept "+args.Workload+" & run", command.Intercept, withDebug(args, false))},
			}
		}
		return []protocol.CodeLens{
			{Range: rng, Command: lspCommand("Intercept "+args.Workload+" & debug", command.Intercept, withDebug(args, true))},
			{Range: rng, Command: lspCommand("Intercept & run", command.Intercept, withDebug(args, false))},
		}
	}
	return nil
}

// startsDebugSessions: the client turns debug=true into a debug session of
// its own (see clientCaps).
func (s *Server) startsDebugSessions() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.caps.startsDebugSessions
}

// interceptArgsFor picks the workload of the main package in dir: the
// .kloop.yaml intercept whose program is that package, else the
// directory's name (cmd/orders serves deployment/orders by convention).
func (s *Server) interceptArgsFor(dir string) session.InterceptArgs {
	root := dir
	if sess := s.currentSession(); sess != nil {
		root = sess.Root()
	}
	if cfg, _, err := config.Load(root); err == nil && cfg != nil {
		for _, ic := range cfg.Intercepts {
			if ic.Program == "" {
				continue
			}
			if filepath.Clean(filepath.Join(root, ic.Program)) == filepath.Clean(dir) {
				rel, _ := filepath.Rel(root, dir)
				return session.InterceptArgs{Workload: ic.Workload.String(), Program: "./" + filepath.ToSlash(rel)}
			}
		}
	}
	rel, err := filepath.Rel(root, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		rel = dir
	}
	return session.InterceptArgs{Workload: "deployment/" + filepath.Base(dir), Program: "./" + filepath.ToSlash(rel)}
}

func withDebug(a session.InterceptArgs, debug bool) session.InterceptArgs {
	a.Debug = debug
	return a
}

// manifestLenses puts "Intercept this workload" above each Deployment and
// StatefulSet document of a multi-document YAML file.
func manifestLenses(text []byte) []protocol.CodeLens {
	var lenses []protocol.CodeLens
	dec := yaml.NewDecoder(bytes.NewReader(text))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			break
		}
		if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
			continue
		}
		m := doc.Content[0]
		var kind, name string
		for i := 0; i+1 < len(m.Content); i += 2 {
			switch m.Content[i].Value {
			case "kind":
				kind = m.Content[i+1].Value
			case "metadata":
				md := m.Content[i+1]
				for j := 0; j+1 < len(md.Content); j += 2 {
					if md.Content[j].Value == "name" {
						name = md.Content[j+1].Value
					}
				}
			}
		}
		if name == "" || (kind != "Deployment" && kind != "StatefulSet") {
			continue
		}
		workload := strings.ToLower(kind) + "/" + name
		lenses = append(lenses, protocol.CodeLens{
			Range:   lineRange(m.Line - 1),
			Command: lspCommand("Intercept this workload", command.Intercept, session.InterceptArgs{Workload: workload}),
		})
	}
	return lenses
}

func statusLens(rng protocol.Range, st session.Status) protocol.CodeLens {
	in := st.Intercepts[0]
	title := fmt.Sprintf("● intercepting %s · %d requests", in.Workload, in.Requests)
	if in.Traffic == string(session.TrafficNone) {
		// A request count would only ever say 0: say why instead.
		title = fmt.Sprintf("● %s: env and Services only · no traffic", in.Workload)
	}
	if st.LastRelaunchMillis > 0 {
		title += fmt.Sprintf(" · last relaunch %s", (time.Duration(st.LastRelaunchMillis) * time.Millisecond).String())
	}
	return protocol.CodeLens{Range: rng, Command: lspCommand(title, command.Status, command.NoArgs{})}
}

func lineRange(line int) protocol.Range {
	l := uint32(max(line, 0))
	return protocol.Range{Start: protocol.Position{Line: l}, End: protocol.Position{Line: l}}
}

// lspCommand is a lens's or action's command: the declaration's name with
// an argument object of the type it takes.
func lspCommand[A command.Args, R any](title string, c *command.Command[A, R], arg A) protocol.Command {
	lc := protocol.Command{Title: title, Command: c.Name()}
	if data, err := json.Marshal(arg); err == nil {
		lc.Arguments = []protocol.LSPAny{protocol.LSPAny(data)}
	}
	return lc
}
