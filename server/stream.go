package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"

	"go.lsp.dev/jsonrpc2"
)

// DefaultMaxMessageBytes bounds one LSP message body. Editors send whole
// documents in didOpen; 64 MiB is far above any source file while keeping a
// runaway client from making the shared daemon allocate without bound.
const DefaultMaxMessageBytes = 64 << 20

// MaxMessageBytesEnv names the environment variable that sets the message
// size limit when no explicit limit was configured. The forwarder passes its
// environment to the daemon it starts, so one variable covers both modes;
// tests use it to exercise the limit without sending 64 MiB.
const MaxMessageBytesEnv = "KLOOP_MAX_MESSAGE_BYTES"

// maxHeaderLine bounds one header line; a longer one is garbage, not a header.
const maxHeaderLine = 4096

// idProbeBytes is how much of an over-size body, of what arrived with its
// header, is searched for its id, so the error answers the request instead of
// leaving the editor waiting.
const idProbeBytes = 4096

// eagerBodyBytes is how much of a body is allocated before its bytes
// arrive. A header alone must not make the daemon allocate 64 MiB.
const eagerBodyBytes = 1 << 20

// Error codes from the JSON-RPC 2.0 specification.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
)

// resolveMaxBytes returns the limit to enforce: an explicit configured
// value wins, then MaxMessageBytesEnv, then the default.
func resolveMaxBytes(configured int) (int, error) {
	if configured > 0 && configured != DefaultMaxMessageBytes {
		return configured, nil
	}
	v := os.Getenv(MaxMessageBytesEnv)
	if v == "" {
		return DefaultMaxMessageBytes, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return DefaultMaxMessageBytes, fmt.Errorf("%s=%q is not a positive byte count; using %d", MaxMessageBytesEnv, v, DefaultMaxMessageBytes)
	}
	return n, nil
}

// lspStream is a jsonrpc2.Stream with LSP Content-Length framing that survives
// bad input. The library's own framer ends the connection on any malformed
// message; a daemon shared by several editors must instead answer the bad
// message with a JSON-RPC error and keep reading, so one buggy client cannot
// take down the session state others see.
type lspStream struct {
	raw    io.Reader
	in     *bufio.Reader
	out    io.Writer
	closer io.Closer
	max    int

	// pending holds bytes given back to the input by unread, ahead of raw.
	pending *bytes.Reader
	// quiet is set after a framing error was reported: the bytes up to the
	// next good header are the same mistake, and the editor needs one
	// error for it, not one per garbage line.
	quiet bool

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
	return &lspStream{raw: rwc, in: bufio.NewReaderSize(rwc, 64<<10), out: rwc, closer: rwc, max: maxBytes, onBadInput: onBadInput}
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
			s.rejectOversize(length)
			continue
		}
		body, err := s.readBody(length)
		if err != nil {
			return nil, 0, err
		}
		msg, err := jsonrpc2.DecodeMessage(body)
		if err != nil {
			s.rejectBody(body, err)
			continue
		}
		s.quiet = false
		return msg, int64(headerLen + length), nil
	}
}

// readBody reads n bytes, growing the buffer as they arrive.
func (s *lspStream) readBody(n int) ([]byte, error) {
	body := make([]byte, 0, min(n, eagerBodyBytes))
	for len(body) < n {
		if len(body) == cap(body) {
			body = slices.Grow(body, min(n, 2*cap(body))-len(body))
		}
		m, err := s.in.Read(body[len(body):cap(body)])
		body = body[:len(body)+m]
		if err != nil && len(body) < n {
			return nil, unexpectedEOF(err)
		}
	}
	return body, nil
}

// rejectOversize answers a header that announces a body over the limit, at once: the
// body is not waited for, since a client that announces 10 GB may never send them, or
// send them for minutes while everything behind them waits. The id is taken from the
// body's first bytes when they came with the header, so the editor stops waiting for
// that request; otherwise the error has a null id, which is all JSON-RPC allows when
// the request cannot be identified.
//
// The body's bytes, whatever of them arrive, are then skipped the way any bytes that
// are not a header are: readHeader discards them up to the next Content-Length field,
// at the start of a line or glued to the end of the body, and serves the message it
// frames. Reported only here and in the log: the skipped bytes are one mistake, already
// answered.
func (s *lspStream) rejectOversize(length int) {
	var id json.RawMessage
	if n := min(s.in.Buffered(), length, idProbeBytes); n > 0 {
		head, _ := s.in.Peek(n)
		id = leadingID(head)
	}
	size := strconv.Itoa(length)
	if length == math.MaxInt {
		size = "more than " + size
	}
	s.reject(id, codeInvalidRequest, fmt.Sprintf("message of %s bytes exceeds the limit of %d bytes; it was not read, and its body is skipped up to the next Content-Length header. Split the request or send smaller documents", size, s.max))
	s.quiet = true
}

// rejectBody answers a body that is not one JSON-RPC message. A wrong
// Content-Length shows here: too small cuts the JSON short, too large
// swallows the start of the next message. In the second case the bytes
// after the JSON value are given back to the input, so the next message is
// still served.
func (s *lspStream) rejectBody(body []byte, decodeErr error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var value json.RawMessage
	if dec.Decode(&value) == nil {
		end := int(dec.InputOffset())
		if rest := body[end:]; len(bytes.TrimSpace(rest)) > 0 {
			s.unread(rest)
			s.reject(leadingID(value), codeInvalidRequest, fmt.Sprintf("Content-Length %d is %d bytes more than the JSON message it frames (%d bytes); the message was not run and the bytes after it were read as the next message. Content-Length counts the UTF-8 bytes of the body", len(body), len(rest), end))
			return
		}
		s.reject(leadingID(body), codeInvalidRequest, fmt.Sprintf("invalid JSON-RPC message of %d bytes: %v; a message needs \"jsonrpc\":\"2.0\" and a method, or a result or error", len(body), decodeErr))
		return
	}
	// Whatever follows a cut-short body is garbage up to the next header:
	// this error covers it.
	s.quiet = true
	s.reject(leadingID(body), codeParseError, fmt.Sprintf("malformed JSON in a message of %d bytes; check the Content-Length header matches the UTF-8 byte length of the body", len(body)))
}

// unread puts b back in front of the unread input.
func (s *lspStream) unread(b []byte) {
	buffered, _ := s.in.Peek(s.in.Buffered())
	next := make([]byte, 0, len(b)+len(buffered))
	next = append(append(next, b...), buffered...)
	if s.pending != nil {
		rest, _ := io.ReadAll(s.pending)
		next = append(next, rest...)
	}
	s.pending = bytes.NewReader(next)
	s.in.Reset(io.MultiReader(s.pending, s.raw))
}

// readHeader parses one header block. A garbage line is reported and
// skipped; when a Content-Length field appears inside garbage (the tail of a
// body whose Content-Length was too short runs into the next header) the
// framing is re-synchronised on it.
func (s *lspStream) readHeader() (length, consumed int, err error) {
	length = -1
	badLength := false
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
			if !badLength {
				s.framingError("LSP header block without a Content-Length field; every message needs `Content-Length: N` followed by an empty line")
			}
			consumed, badLength = 0, false
			continue
		}
		// A header glued onto the end of other bytes: the tail of a body
		// whose Content-Length was too small. Checked before header syntax,
		// since such a tail can itself look like `name: value`.
		// The last occurrence: the bytes before the header may be a skipped
		// body that mentions a Content-Length itself.
		if i := lastIndexFold(trimmed, []byte("content-length:")); i > 0 {
			s.framingError(fmt.Sprintf("%d stray bytes before an LSP header; was the previous Content-Length too small?", i))
			n, perr := parseLength(bytes.TrimSpace(trimmed[i+len("content-length:"):]))
			if perr == nil && n > 0 {
				length = n
				consumed = len(line) - i
			}
			continue
		}
		name, value, ok := bytes.Cut(trimmed, []byte(":"))
		if ok && isToken(name) {
			if bytes.EqualFold(bytes.TrimSpace(name), []byte("Content-Length")) {
				n, perr := parseLength(bytes.TrimSpace(value))
				if perr != nil || n <= 0 {
					s.framingError(fmt.Sprintf("invalid Content-Length %q: it must be a positive byte count", truncate(bytes.TrimSpace(value), 60)))
					length, badLength = -1, true
					continue
				}
				length = n
			}
			continue
		}
		s.framingError(fmt.Sprintf("malformed LSP header line %q; expected `Content-Length: N`", truncate(trimmed, 60)))
		consumed = 0
	}
}

// readLine returns the next line. An over-long line is not a header; its
// last maxHeaderLine bytes are kept because a header glued to the end of
// garbage (after a too-small Content-Length) is how framing recovers.
func (s *lspStream) readLine() ([]byte, error) {
	line, err := s.in.ReadSlice('\n')
	if err == nil {
		return append([]byte(nil), line...), nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	tail := append([]byte(nil), line...)
	for errors.Is(err, bufio.ErrBufferFull) {
		line, err = s.in.ReadSlice('\n')
		tail = append(tail, line...)
		if len(tail) > maxHeaderLine {
			tail = append(tail[:0], tail[len(tail)-maxHeaderLine:]...)
		}
	}
	if err != nil {
		return nil, err
	}
	return append([]byte("<over-long line>"), tail...), nil
}

// framingError reports bytes that are not a header. Only the first of a
// run goes to the peer (see quiet); all go to the log.
func (s *lspStream) framingError(message string) {
	if s.quiet {
		s.onBadInput(errors.New(message))
		return
	}
	s.quiet = true
	s.reject(nil, codeParseError, message)
}

// reject answers a message the stream could not deliver. The error goes to
// the peer, so an editor's log shows what it sent wrong; with the id of the
// request, when it could be found, so the editor stops waiting for it.
func (s *lspStream) reject(id json.RawMessage, code int, message string) {
	s.onBadInput(errors.New(message))
	if id == nil {
		id = json.RawMessage("null")
	}
	body, err := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   rpcError        `json:"error"`
	}{JSONRPC: "2.0", ID: id, Error: rpcError{code, "kloop: " + message}})
	if err != nil {
		s.onBadInput(fmt.Errorf("encode error response: %w", err))
		return
	}
	_ = s.writeFrame(body)
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
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
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return writeFrame(s.out, body)
}

// writeFrame writes body with its header in one write, so frames from
// concurrent writers never interleave.
func writeFrame(w io.Writer, body []byte) error {
	buf := make([]byte, 0, len(body)+32)
	buf = append(buf, "Content-Length: "...)
	buf = strconv.AppendInt(buf, int64(len(body)), 10)
	buf = append(buf, "\r\n\r\n"...)
	buf = append(buf, body...)
	_, err := w.Write(buf)
	return err
}

func (s *lspStream) Close() error { return s.closer.Close() }

// leadingID finds the id member of a JSON-RPC request in data, which may be
// cut short or followed by garbage: editors put the id near the front, so
// a truncated request can still be answered under its own id. It returns
// nil when no number or string id precedes the damage.
func leadingID(data []byte) json.RawMessage {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil
		}
		if key == "id" && len(value) > 0 && (value[0] == '"' || value[0] == '-' || (value[0] >= '0' && value[0] <= '9')) {
			return value
		}
	}
	return nil
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

// parseLength reads a Content-Length value. Digits past what an int holds are
// a length over any limit, not a malformed one: they are read as math.MaxInt.
func parseLength(v []byte) (int, error) {
	n, err := strconv.Atoi(string(v))
	if errors.Is(err, strconv.ErrRange) && len(v) > 0 && v[0] != '-' && v[0] != '+' {
		return math.MaxInt, nil
	}
	return n, err
}

// lastIndexFold finds the last ASCII lower-case sub in s, ignoring ASCII case.
// It keeps byte offsets intact, which bytes.ToLower does not for invalid UTF-8.
func lastIndexFold(s, sub []byte) int {
	for i := len(s) - len(sub); i >= 0; i-- {
		match := true
		for j, c := range sub {
			b := s[i+j]
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			if b != c {
				match = false
				break
			}
		}
		if match {
			return i
		}
	}
	return -1
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
