package server

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"sync"

	"go.lsp.dev/jsonrpc2"
	"go.lsp.dev/protocol"
)

// Codec is the LSP payload codec: the protocol package's union-aware
// encoder for typed payloads, raw bytes passed through verbatim. The
// protocol package does not export its own, and kloop builds its
// connections itself to control handler ordering.
type Codec struct{}

// Marshal implements jsonrpc2.Codec.
func (Codec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case jsonrpc2.RawMessage:
		if m == nil {
			return []byte("null"), nil
		}
		return m, nil
	case *jsonrpc2.RawMessage:
		if m == nil || *m == nil {
			return []byte("null"), nil
		}
		return *m, nil
	}
	return protocol.Marshal(v)
}

// Unmarshal implements jsonrpc2.Codec.
func (Codec) Unmarshal(data []byte, v any) error {
	if p, ok := v.(*jsonrpc2.RawMessage); ok {
		*p = append(jsonrpc2.RawMessage(nil), data...)
		return nil
	}
	return protocol.Unmarshal(data, v)
}

// orderedHandler keeps the handlers that mutate documents or connection
// state in wire order and releases the rest.
//
// It also gives each handler an ordinary context derived from the
// connection's own and serves $/cancelRequest itself: jsonrpc2 v1 recycles
// its per-request contexts once a request is answered, so any context
// derived from one (as jsonrpc2.CancelHandler does) can later read a
// recycled parent and crash the daemon.
func orderedHandler(base context.Context, next jsonrpc2.Handler) jsonrpc2.Handler {
	var mu sync.Mutex
	inflight := map[string]context.CancelFunc{}
	return func(reqCtx context.Context, req *jsonrpc2.Request) (any, error) {
		switch req.Method() {
		case protocol.MethodInitialize, protocol.MethodInitialized, protocol.MethodShutdown, protocol.MethodExit,
			protocol.MethodTextDocumentDidOpen, protocol.MethodTextDocumentDidChange,
			protocol.MethodTextDocumentDidSave, protocol.MethodTextDocumentDidClose,
			protocol.MethodWorkspaceDidChangeWorkspaceFolders:
		case "$/cancelRequest":
			var params struct {
				ID json.RawMessage `json:"id"`
			}
			if err := json.Unmarshal(req.Params(), &params); err != nil || len(params.ID) == 0 {
				// A notification's error would end the connection (see
				// answerErrors); a cancel naming no request is ignored.
				return nil, nil
			}
			mu.Lock()
			cancel := inflight[string(bytes.TrimSpace(params.ID))]
			mu.Unlock()
			if cancel != nil {
				cancel()
			}
			return nil, nil
		default:
			jsonrpc2.Async(reqCtx)
		}
		ctx, cancel := context.WithCancel(base)
		defer cancel()
		if req.IsCall() {
			if key := idKey(req.ID()); key != "" {
				mu.Lock()
				inflight[key] = cancel
				mu.Unlock()
				defer func() {
					mu.Lock()
					delete(inflight, key)
					mu.Unlock()
				}()
			}
		}
		return next(ctx, req)
	}
}

// idKey spells a request id the way it appears in $/cancelRequest.
func idKey(id jsonrpc2.ID) string {
	if n, ok := id.Number(); ok {
		return strconv.FormatInt(n, 10)
	}
	if str, ok := id.StringValue(); ok {
		q, _ := json.Marshal(str)
		return string(q)
	}
	return ""
}

// Detached adapts a handler for the client side of a connection the same
// way: requests run concurrently on contexts derived from base.
func Detached(base context.Context, next jsonrpc2.Handler) jsonrpc2.Handler {
	return func(reqCtx context.Context, req *jsonrpc2.Request) (any, error) {
		jsonrpc2.Async(reqCtx)
		ctx, cancel := context.WithCancel(base)
		defer cancel()
		return next(ctx, req)
	}
}
