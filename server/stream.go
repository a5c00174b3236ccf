package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"go.lsp.dev/jsonrpc2"
)

// DefaultMaxMessageBytes bounds one LSP message body. Editors send whole
// documents in didOpen; 64 MiB is far above any source file while keeping a
// runaway client from making the shared daemon allocate without bound.
const DefaultMaxMessageBytes = 64 << 20

// maxHeaderLine bounds one header line; a longer one is garbage, not a header.
const maxHeaderLine = 4096

// Error codes from the JSON-RPC 2.0 specification.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
)

// lspStream is a jsonrpc2.Stream with LSP Content-Length framing that survives
// bad input. The library's own framer ends the connection on any malformed
// message; a daemon shared by several editors must instead answer the bad
// message with a JSON-RPC error and keep reading, so one buggy client cannot
// take down the session state others see.
type lspStream struct {
	in     *bufio.Reader
	out    io.Writer
	closer io.Closer
	max    int

	wmu sync.Mutex
	// onBadInput reports each recovered error for the daemon log.
	onBadInput func(error)
}

func newLSPStream(rwc io.ReadWriteCloser, maxBytes int, onBadInput func(error)) *lspStream {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxMessageBytes
	}
	if onBadInput == nil {
		onBadInput = func(error) {}
	}
	return &lspStream{in: bufio.NewReaderSize(rwc, 64<<10), out: rwc, closer: rwc, max: maxBytes, onBadInput: onBadInput}
}

// Read returns the next well-formed message. Malformed ones are answered
// with an error response and skipped.
func (s *lspStream) Read(ctx context.Context) (jsonrpc2.Message, int64, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		length, headerLen, err := s.readHeader()
		if err != nil {
			return nil, 0, err
		}
		if length > s.max {
			if _, err := io.CopyN(io.Discard, s.in, int64(length)); err != nil {
				return nil, 0, unexpectedEOF(err)
			}
			s.reject(nil, codeInvalidRequest, fmt.Sprintf("message of %d bytes exceeds the limit of %d bytes; split the request or send smaller documents", length, s.max))
			continue
		}
		body := make([]byte, length)
		if _, err := io.ReadFull(s.in, body); err != nil {
			return nil, 0, unexpectedEOF(err)
		}
		msg, err := jsonrpc2.DecodeMessage(body)
		if err != nil {
			id, code := idOf(body)
			reason := "malformed JSON"
			if code == codeInvalidRequest {
				reason = "invalid JSON-RPC message"
			}
			s.reject(id, code, fmt.Sprintf("%s in a message of %d bytes: %v; check the Content-Length header matches the UTF-8 byte length of the body", reason, length, err))
			continue
		}
		return msg, int64(headerLen + length), nil
	}
}

// readHeader parses one header block. A garbage line is reported and
// skipped; when a Content-Length field appears inside garbage (the tail of a
// body whose Content-Length was too short runs into the next header) the
// framing is re-synchronised on it.
func (s *lspStream) readHeader() (length, consumed int, err error) {
	length = -1
	for {
		line, err := s.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) && consumed > 0 {
				err = io.ErrUnexpectedEOF
			}
			return 0, 0, err
		}
		consumed += len(line)
		trimmed := bytes.TrimRight(line, "\r\n")
		if len(trimmed) == 0 {
			if length >= 0 {
				return length, consumed, nil
			}
			if consumed == len(line) {
				// Blank lines between messages are harmless noise.
				consumed = 0
				continue
			}
			s.reject(nil, codeParseError, "LSP header block without a Content-Length field; every message needs `Content-Length: N` followed by an empty line")
			consumed = 0
			continue
		}
		name, value, ok := bytes.Cut(trimmed, []byte(":"))
		if ok && isToken(name) {
			if bytes.EqualFold(bytes.TrimSpace(name), []byte("Content-Length")) {
				n, perr := strconv.Atoi(string(bytes.TrimSpace(value)))
				if perr != nil || n <= 0 {
					s.reject(nil, codeParseError, fmt.Sprintf("invalid Content-Length %q: it must be a positive byte count", bytes.TrimSpace(value)))
					length = -1
					continue
				}
				length = n
			}
			continue
		}
		// Garbage: look for a header that was glued onto it.
		if i := indexFold(trimmed, []byte("content-length:")); i > 0 {
			s.reject(nil, codeParseError, fmt.Sprintf("%d stray bytes before an LSP header; was the previous Content-Length too small?", i))
			n, perr := strconv.Atoi(string(bytes.TrimSpace(trimmed[i+len("content-length:"):])))
			if perr == nil && n > 0 {
				length = n
				consumed = len(line) - i
			}
			continue
		}
		s.reject(nil, codeParseError, fmt.Sprintf("malformed LSP header line %q; expected `Content-Length: N`", truncate(trimmed, 60)))
		consumed = 0
	}
}

func (s *lspStream) readLine() ([]byte, error) {
	line, err := s.in.ReadSlice('\n')
	if err == nil {
		return append([]byte(nil), line...), nil
	}
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxHeaderLine {
		// An over-long line is not a header: drop through to its end.
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = s.in.ReadSlice('\n')
		}
		if err != nil {
			return nil, err
		}
		return []byte("<over-long line>\n"), nil
	}
	return nil, err
}

// reject answers a message the stream could not deliver. The error goes to
// the peer, so an editor's log shows what it sent wrong.
func (s *lspStream) reject(id json.RawMessage, code int, message string) {
	s.onBadInput(errors.New(message))
	if id == nil {
		id = json.RawMessage("null")
	}
	body, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}{JSONRPC: "2.0", ID: id, Error: struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, "kloop: " + message}})
	_ = s.writeFrame(body)
}

// Write frames msg as one contiguous write.
func (s *lspStream) Write(ctx context.Context, msg jsonrpc2.Message) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	body, err := jsonrpc2.EncodeMessage(msg)
	if err != nil {
		return 0, fmt.Errorf("encode message: %w", err)
	}
	if err := s.writeFrame(body); err != nil {
		return 0, err
	}
	return int64(len(body)), nil
}

func (s *lspStream) writeFrame(body []byte) error {
	buf := make([]byte, 0, len(body)+32)
	buf = append(buf, "Content-Length: "...)
	buf = strconv.AppendInt(buf, int64(len(body)), 10)
	buf = append(buf, "\r\n\r\n"...)
	buf = append(buf, body...)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.out.Write(buf)
	return err
}

func (s *lspStream) Close() error { return s.closer.Close() }

// idOf extracts the id of a message that failed to decode so the error
// response can name it; code tells whether the body was JSON at all.
func idOf(body []byte) (json.RawMessage, int) {
	var probe struct {
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return nil, codeParseError
	}
	if len(probe.ID) > 0 && (probe.ID[0] == '"' || probe.ID[0] == '-' || (probe.ID[0] >= '0' && probe.ID[0] <= '9')) {
		return probe.ID, codeInvalidRequest
	}
	return nil, codeInvalidRequest
}

func isToken(b []byte) bool {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !(c == '-' || c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

func indexFold(s, sub []byte) int {
	return bytes.Index(bytes.ToLower(s), sub)
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: connection closed inside a message body", io.ErrUnexpectedEOF)
	}
	return err
}
