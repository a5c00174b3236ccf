// Package debugadapter is kloop's Debug Adapter Protocol face, served by the daemon: a
// bridge that owns the editor's DAP connection for a whole debug session and proxies it
// to Delve, which runs in a per-target worker process (`kloop debug-worker`). The program
// itself is the session's (package session): built, watched, relaunched and gated by the
// same loop as `kloop intercept --program`; the bridge is the loop's relaunch.Program,
// so a relaunch after a save is "build, then ask Delve to restart without rebuilding",
// and the editor's session survives every relaunch.
//
// Frames are proxied raw: only the envelope (seq, type, command, event, request_seq) is
// decoded, because go-dap drops fields it does not know and refuses messages over 4 MiB.
package debugadapter

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// maxFrameSize bounds one DAP message. Large enough for a 10 MB variable value several
// times over, small enough that a garbage Content-Length cannot exhaust memory.
const maxFrameSize = 256 << 20

// maxHeaderLine bounds one header line.
const maxHeaderLine = 8 << 10

// FramingError means the byte stream is no longer framed as DAP (bad header, bad
// Content-Length, truncated body). The connection cannot be resynchronised after it.
type FramingError struct{ Reason string }

func (e *FramingError) Error() string { return "malformed DAP framing: " + e.Reason }

// frameReader reads Content-Length framed messages and returns their raw bodies.
type frameReader struct{ r *bufio.Reader }

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// Read returns the next message body. io.EOF means a clean end between messages.
func (fr *frameReader) Read() ([]byte, error) {
	length := -1
	first := true
	for {
		// ReadSlice, not ReadString: a "header" line that never ends must not be
		// buffered whole before it is refused.
		raw, err := fr.r.ReadSlice('\n')
		if len(raw) > maxHeaderLine || errors.Is(err, bufio.ErrBufferFull) {
			return nil, &FramingError{Reason: "header line longer than 8 KiB"}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && first && len(raw) == 0 {
				return nil, io.EOF
			}
			if errors.Is(err, io.EOF) {
				return nil, &FramingError{Reason: "stream ended inside a header"}
			}
			return nil, err
		}
		first = false
		line := strings.TrimRight(string(raw), "\r\n")
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, &FramingError{Reason: fmt.Sprintf("header line %q has no colon", truncate(line, 80))}
		}
		if strings.EqualFold(strings.TrimSpace(name), "Content-Length") {
			n, err := parseLength(strings.TrimSpace(value))
			if err != nil {
				return nil, err
			}
			length = n
		}
	}
	if length < 0 {
		return nil, &FramingError{Reason: "header has no Content-Length"}
	}
	body := make([]byte, length)
	if n, err := io.ReadFull(fr.r, body); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &FramingError{Reason: fmt.Sprintf("stream ended %d bytes into a %d byte body", n, length)}
		}
		return nil, err
	}
	return body, nil
}

// parseLength reads a Content-Length value. A length over maxFrameSize is refused here,
// on its header line: the body is never waited for, so a peer that announces gigabytes
// learns at once, whether or not it goes on to send them. Digits past what an int holds
// are the same mistake, and are named as such rather than as a malformed number.
func parseLength(value string) (int, error) {
	digits := value != "" && strings.Trim(value, "0123456789") == ""
	n, err := strconv.Atoi(value)
	if digits && (n > maxFrameSize || errors.Is(err, strconv.ErrRange)) {
		return 0, &FramingError{Reason: fmt.Sprintf("Content-Length %s exceeds the limit of %d bytes (%d MiB) for one DAP message; the message was not read", truncate(value, 40), maxFrameSize, maxFrameSize>>20)}
	}
	if err != nil || n < 0 {
		return 0, &FramingError{Reason: fmt.Sprintf("Content-Length %q is not a non-negative integer", truncate(value, 40))}
	}
	return n, nil
}

// frameWriter writes messages and owns the seq counter of its direction: seq is
// assigned under the same lock that orders the writes, so seq always increases on the
// wire no matter how many goroutines send.
type frameWriter struct {
	mu  sync.Mutex
	w   io.Writer
	seq int
}

// send rewrites the top-level seq (and request_seq when requestSeq >= 0) of body and
// writes it. beforeWrite, if set, sees the assigned seq before the bytes leave, so a
// caller can register a pending request that the answer will find.
func (fw *frameWriter) send(body []byte, requestSeq int, beforeWrite func(seq int)) (int, error) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.seq++
	seq := fw.seq
	set := map[string]int{"seq": seq}
	if requestSeq >= 0 {
		set["request_seq"] = requestSeq
	}
	out, err := setTopLevelInts(body, set)
	if err != nil {
		return 0, fmt.Errorf("renumber message: %w", err)
	}
	if beforeWrite != nil {
		beforeWrite(seq)
	}
	if _, err := fmt.Fprintf(fw.w, "Content-Length: %d\r\n\r\n", len(out)); err != nil {
		return 0, fmt.Errorf("write DAP header: %w", err)
	}
	if _, err := fw.w.Write(out); err != nil {
		return 0, fmt.Errorf("write DAP body: %w", err)
	}
	return seq, nil
}

// envelope is the part of a DAP message the bridge routes on.
type envelope struct {
	Seq        int             `json:"seq"`
	Type       string          `json:"type"`
	Command    string          `json:"command"`
	Event      string          `json:"event"`
	RequestSeq int             `json:"request_seq"`
	Success    bool            `json:"success"`
	Message    string          `json:"message"`
	Arguments  json.RawMessage `json:"arguments"`
}

// parseEnvelope decodes the routing fields and checks what the protocol requires of them.
func parseEnvelope(body []byte) (envelope, error) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return env, fmt.Errorf("message is not a JSON object: %w", err)
	}
	switch env.Type {
	case "request":
		if env.Command == "" {
			return env, errors.New(`request has no "command"`)
		}
	case "response":
		if env.Command == "" {
			return env, errors.New(`response has no "command"`)
		}
	case "event":
		if env.Event == "" {
			return env, errors.New(`event has no "event" name`)
		}
	case "":
		return env, errors.New(`message has no "type" (want request, response or event)`)
	default:
		return env, fmt.Errorf("message type %q is not request, response or event", env.Type)
	}
	return env, nil
}

// setTopLevelInts replaces (or adds) integer members of the top-level object without
// re-encoding the rest, so unknown fields and huge values pass through byte for byte.
func setTopLevelInts(body []byte, set map[string]int) ([]byte, error) {
	type span struct{ start, end, value int }
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("read message start: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("message is not a JSON object")
	}
	var spans []span
	seen := map[string]bool{}
	for dec.More() {
		keyTok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("read member name: %w", err)
		}
		key, _ := keyTok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("read member %q: %w", key, err)
		}
		if v, ok := set[key]; ok && !seen[key] {
			end := int(dec.InputOffset())
			spans = append(spans, span{start: end - len(raw), end: end, value: v})
			seen[key] = true
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("read message end: %w", err)
	}

	var out bytes.Buffer
	out.Grow(len(body) + 32)
	open := bytes.IndexByte(body, '{')
	out.Write(body[:open+1])
	// Missing members go first; keys sorted for a stable wire format.
	for _, key := range []string{"seq", "request_seq"} {
		if v, ok := set[key]; ok && !seen[key] {
			fmt.Fprintf(&out, "%q:%d,", key, v)
		}
	}
	rest := body[open+1:]
	if len(spans) == 0 && len(set) > 0 && isEmptyObjectRest(rest) {
		// `{}` plus inserted members would end in a trailing comma.
		out.Truncate(out.Len() - 1)
	}
	pos := open + 1
	for _, s := range spans {
		out.Write(body[pos:s.start])
		out.WriteString(strconv.Itoa(s.value))
		pos = s.end
	}
	out.Write(body[pos:])
	return out.Bytes(), nil
}

func isEmptyObjectRest(rest []byte) bool {
	return bytes.Equal(bytes.TrimSpace(rest), []byte("}"))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
