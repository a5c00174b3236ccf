package handlers

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"unicode/utf8"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"
	"go.lsp.dev/uri"

	"github.com/kloop/kloop/config"
)

// document is one open text document as the client last sent it.
type document struct {
	version int32
	text    []byte
	// lensMu guards the lens cache: codeLens requests run concurrently
	// (editors re-ask on every change without waiting) on the same
	// document.
	lensMu sync.Mutex
	// lenses caches the code lenses computed for this version.
	lenses []protocol.CodeLens
	lensOK bool
}

// documents is the per-connection store of open documents. Handlers that
// change it run in wire order (see orderedHandler); readers run anywhere.
type documents struct {
	mu   sync.Mutex
	docs map[uri.URI]*document
}

func newDocuments() *documents { return &documents{docs: map[uri.URI]*document{}} }

func (d *documents) isOpen(u uri.URI) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.docs[u]
	return ok
}

func (d *documents) get(u uri.URI) (*document, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	doc, ok := d.docs[u]
	return doc, ok
}

func (d *documents) set(u uri.URI, doc *document) {
	d.mu.Lock()
	d.docs[u] = doc
	d.mu.Unlock()
}

func (d *documents) remove(u uri.URI) {
	d.mu.Lock()
	delete(d.docs, u)
	d.mu.Unlock()
}

// DidOpen stores the document and diagnoses it if it is a .kloop.yaml.
func (s *Server) DidOpen(ctx context.Context, params *protocol.DidOpenTextDocumentParams) error {
	if err := s.ready(); err != nil {
		return err
	}
	u := params.TextDocument.URI
	text := []byte(params.TextDocument.Text)
	s.docs.set(u, &document{version: params.TextDocument.Version, text: text})
	if s.currentSession() == nil && u.IsFile() {
		s.attach(ctx, rootFor(u.FsPath()))
	}
	if isConfigFile(u) {
		s.diagnoseConfig(ctx, u, text)
	}
	return nil
}

// DidChange applies full-document changes. kloop asks for full sync: its
// features read whole files and documents are small.
func (s *Server) DidChange(ctx context.Context, params *protocol.DidChangeTextDocumentParams) error {
	if err := s.ready(); err != nil {
		return err
	}
	u := params.TextDocument.URI
	doc, ok := s.docs.get(u)
	if !ok {
		return jsonrpc2.NewError(jsonrpc2.ErrInvalidParams.Code, fmt.Sprintf("kloop: didChange for %s, which was never opened; send didOpen first", u))
	}
	if params.TextDocument.Version < doc.version {
		return jsonrpc2.NewError(jsonrpc2.ErrInvalidParams.Code, fmt.Sprintf("kloop: didChange version %d of %s is older than the version %d already applied", params.TextDocument.Version, u, doc.version))
	}
	text := doc.text
	for _, change := range params.ContentChanges {
		switch c := change.(type) {
		case *protocol.TextDocumentContentChangeWholeDocument:
			text = []byte(c.Text)
		case *protocol.TextDocumentContentChangePartial:
			var err error
			if text, err = applyEdit(text, c.Range, c.Text); err != nil {
				return jsonrpc2.NewError(jsonrpc2.ErrInvalidParams.Code, fmt.Sprintf("kloop: didChange of %s: %v", u, err))
			}
		}
	}
	s.docs.set(u, &document{version: params.TextDocument.Version, text: text})
	if isConfigFile(u) {
		s.diagnoseConfig(ctx, u, text)
	}
	return nil
}

// DidSave is the relaunch trigger for Go files of an intercepted program.
func (s *Server) DidSave(ctx context.Context, params *protocol.DidSaveTextDocumentParams) error {
	if err := s.ready(); err != nil {
		return err
	}
	u := params.TextDocument.URI
	if params.Text != nil {
		if doc, open := s.docs.get(u); open {
			s.docs.set(u, &document{version: doc.version, text: []byte(*params.Text)})
		}
	}
	if isConfigFile(u) {
		if doc, ok := s.docs.get(u); ok {
			s.diagnoseConfig(ctx, u, doc.text)
		}
	}
	if sess := s.currentSession(); sess != nil && u.IsFile() {
		sess.Saved(ctx, u.FsPath())
	}
	return nil
}

// DidClose forgets the document.
func (s *Server) DidClose(ctx context.Context, params *protocol.DidCloseTextDocumentParams) error {
	if err := s.ready(); err != nil {
		return err
	}
	s.docs.remove(params.TextDocument.URI)
	return nil
}

// DidChangeWorkspaceFolders attaches to the first folder when the client
// started without one.
func (s *Server) DidChangeWorkspaceFolders(ctx context.Context, params *protocol.DidChangeWorkspaceFoldersParams) error {
	if err := s.ready(); err != nil {
		return err
	}
	if s.currentSession() == nil && len(params.Event.Added) > 0 {
		s.attach(ctx, params.Event.Added[0].URI.FsPath())
	}
	return nil
}

func isConfigFile(u uri.URI) bool {
	base := filepath.Base(u.FsPath())
	return u.IsFile() && (base == config.FileName || base == config.AltFileName)
}

// applyEdit replaces rng (UTF-16 positions, as LSP counts them) in text.
func applyEdit(text []byte, rng protocol.Range, newText string) ([]byte, error) {
	start, err := offsetOf(text, rng.Start)
	if err != nil {
		return nil, err
	}
	end, err := offsetOf(text, rng.End)
	if err != nil {
		return nil, err
	}
	if end < start {
		return nil, fmt.Errorf("range end %d:%d is before its start %d:%d", rng.End.Line, rng.End.Character, rng.Start.Line, rng.Start.Character)
	}
	out := make([]byte, 0, len(text)-(end-start)+len(newText))
	out = append(out, text[:start]...)
	out = append(out, newText...)
	return append(out, text[end:]...), nil
}

// offsetOf converts an LSP position into a byte offset.
func offsetOf(text []byte, pos protocol.Position) (int, error) {
	line, off := uint32(0), 0
	for line < pos.Line {
		i := bytes.IndexByte(text[off:], '\n')
		if i < 0 {
			return 0, fmt.Errorf("line %d is past the end of the document (%d lines)", pos.Line, line+1)
		}
		off += i + 1
		line++
	}
	units := uint32(0)
	for off < len(text) && text[off] != '\n' && units < pos.Character {
		r, size := utf8.DecodeRune(text[off:])
		if r >= 0x10000 {
			units += 2
		} else {
			units++
		}
		off += size
	}
	return off, nil
}
