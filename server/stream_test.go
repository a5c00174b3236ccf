package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"go.lsp.dev/jsonrpc2"
)

// pipeRWC is a connection whose input is fixed and whose output is kept.
type pipeRWC struct {
	io.Reader
	out bytes.Buffer
}

func (p *pipeRWC) Write(b []byte) (int, error) { return p.out.Write(b) }
func (p *pipeRWC) Close() error                { return nil }

// reply is an error response the stream wrote back.
type reply struct {
	ID    json.RawMessage
	Code  int
	Error string
}

// readAll feeds input to a stream and returns what it delivered, what it
// answered, and the error that ended reading.
func readAll(t testing.TB, input []byte, maxBytes int) ([]jsonrpc2.Message, []reply, error) {
	t.Helper()
	rwc := &pipeRWC{Reader: bytes.NewReader(input)}
	s := newLSPStream(rwc, maxBytes, nil)
	var msgs []jsonrpc2.Message
	var err error
	// Every delivered message or error consumes input, so a stream that
	// reads more often than the input has bytes is stuck in a loop.
	for range len(input) + 2 {
		var m jsonrpc2.Message
		m, _, err = s.Read(context.Background())
		if err != nil {
			break
		}
		msgs = append(msgs, m)
	}
	if err == nil {
		t.Fatalf("stream still delivering after %d reads of %d bytes", len(input)+2, len(input))
	}
	return msgs, parseReplies(t, rwc.out.Bytes()), err
}

// parseReplies checks that out is a sequence of well-formed frames holding
// JSON-RPC error responses and decodes them.
func parseReplies(t testing.TB, out []byte) []reply {
	t.Helper()
	var replies []reply
	r := bufio.NewReader(bytes.NewReader(out))
	for {
		line, err := r.ReadString('\n')
		if errors.Is(err, io.EOF) && line == "" {
			return replies
		}
		if err != nil {
			t.Fatalf("reply header: %v (output %q)", err, out)
		}
		v, ok := strings.CutPrefix(line, "Content-Length: ")
		if !ok {
			t.Fatalf("reply header %q lacks Content-Length", line)
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			t.Fatalf("reply Content-Length %q: %v", v, err)
		}
		if blank, _ := r.ReadString('\n'); blank != "\r\n" {
			t.Fatalf("reply header not ended by a blank line: %q", blank)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatalf("reply body shorter than its Content-Length %d: %v", n, err)
		}
		var resp struct {
			JSONRPC string          `json:"jsonrpc"`
			ID      json.RawMessage `json:"id"`
			Error   *rpcError       `json:"error"`
		}
		if err := json.Unmarshal(body, &resp); err != nil {
			t.Fatalf("reply %q is not JSON: %v", body, err)
		}
		if resp.JSONRPC != "2.0" || resp.Error == nil || len(resp.ID) == 0 {
			t.Fatalf("reply %s is not a JSON-RPC 2.0 error response", body)
		}
		if resp.Error.Code != codeParseError && resp.Error.Code != codeInvalidRequest {
			t.Fatalf("reply %s: code %d, want -32700 or -32600", body, resp.Error.Code)
		}
		if !strings.HasPrefix(resp.Error.Message, "kloop: ") {
			t.Fatalf("reply %s: message does not say it comes from kloop", body)
		}
		replies = append(replies, reply{ID: resp.ID, Code: resp.Error.Code, Error: resp.Error.Message})
	}
}

func frame(body string) string { return fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body) }

func method(m jsonrpc2.Message) string {
	switch m := m.(type) {
	case *jsonrpc2.Call:
		return m.Method()
	case *jsonrpc2.Notification:
		return m.Method()
	}
	return fmt.Sprintf("%T", m)
}

const (
	initReq  = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"processId":1,"rootUri":"file:///w","capabilities":{}}}`
	shutdown = `{"jsonrpc":"2.0","id":2,"method":"shutdown"}`
)

// TestStreamRecoversFromBadInput checks each bad input gets one clear
// error, answered under the request's id when it can be found, and that
// the message after it is still delivered.
func TestStreamRecoversFromBadInput(t *testing.T) {
	cases := []struct {
		name    string
		input   string
		replies []reply // Error is a substring; ID "" means null
	}{
		{"well formed", frame(initReq) + frame(shutdown), nil},
		{"malformed JSON", frame(`{"jsonrpc":"2.0","id":7,"method":`) + frame(shutdown),
			[]reply{{ID: json.RawMessage("7"), Code: codeParseError, Error: "malformed JSON"}}},
		{"not JSON at all", frame(`hello`) + frame(shutdown),
			[]reply{{Code: codeParseError, Error: "malformed JSON"}}},
		{"Content-Length too short", fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(initReq)-30, initReq) + frame(shutdown),
			[]reply{{ID: json.RawMessage("1"), Code: codeParseError, Error: "Content-Length header matches the UTF-8 byte length"}}},
		{"Content-Length too long", fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(initReq)+9, initReq) + frame(shutdown),
			[]reply{{ID: json.RawMessage("1"), Code: codeInvalidRequest, Error: "9 bytes more than the JSON message"}}},
		{"Content-Length not a number", "Content-Length: ten\r\n\r\n" + initReq + frame(shutdown),
			[]reply{{Code: codeParseError, Error: `invalid Content-Length "ten"`}}},
		{"no Content-Length", "Content-Type: application/json\r\n\r\n" + initReq + frame(shutdown),
			[]reply{{Code: codeParseError, Error: "without a Content-Length"}}},
		{"garbage line", "GET / HTTP/1.1\r\n" + frame(shutdown),
			[]reply{{Code: codeParseError, Error: "malformed LSP header line"}}},
		{"over the limit", frame(`{"jsonrpc":"2.0","id":"big","method":"textDocument/didOpen","params":"`+strings.Repeat("x", 300)+`"}`) + frame(shutdown),
			[]reply{{ID: json.RawMessage(`"big"`), Code: codeInvalidRequest, Error: "exceeds the limit of 256 bytes"}}},
		{"batch", frame("["+initReq+"]") + frame(shutdown),
			[]reply{{Code: codeInvalidRequest, Error: "invalid JSON-RPC message"}}},
		{"wrong version", frame(`{"jsonrpc":"1.0","id":3,"method":"shutdown"}`) + frame(shutdown),
			[]reply{{ID: json.RawMessage("3"), Code: codeInvalidRequest, Error: "invalid JSON-RPC message"}}},
		{"over-long garbage glued to a header", strings.Repeat("y", 100<<10) + frame(shutdown),
			[]reply{{Code: codeParseError, Error: "stray bytes before an LSP header"}}},
		// Over the limit: answered from the header, the body (as far as it
		// comes) skipped up to the next header, whatever the length said.
		{"10 GB announced, next message at a line start", "Content-Length: 9999999999\r\n\r\n" + frame(shutdown),
			[]reply{{Code: codeInvalidRequest, Error: "message of 9999999999 bytes exceeds the limit of 256 bytes"}}},
		{"10 GB announced, body cut short by the next header", "Content-Length: 9999999999\r\n\r\n" + `{"jsonrpc":"2.0","id":5,"method":"x","params":"` + strings.Repeat("z", 100<<10) + frame(shutdown),
			[]reply{{ID: json.RawMessage("5"), Code: codeInvalidRequest, Error: "message of 9999999999 bytes exceeds the limit"}}},
		{"length past what an int holds", "Content-Length: 99999999999999999999\r\n\r\n" + frame(shutdown),
			[]reply{{Code: codeInvalidRequest, Error: "more than 9223372036854775807 bytes exceeds the limit of 256 bytes"}}},
		{"over the limit, pretty-printed body", frame("{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 6,\n  \"method\": \"x\",\n  \"params\": \""+strings.Repeat("p", 300)+"\"\n}\n") + frame(shutdown),
			[]reply{{ID: json.RawMessage("6"), Code: codeInvalidRequest, Error: "exceeds the limit of 256 bytes"}}},
		{"over the limit, body mentions a Content-Length", frame(`{"jsonrpc":"2.0","id":7,"method":"textDocument/didOpen","params":{"text":"`+strings.Repeat("h", 300)+`Content-Length: 12\r\n\r\nhello"}}`) + frame(shutdown),
			[]reply{{ID: json.RawMessage("7"), Code: codeInvalidRequest, Error: "exceeds the limit of 256 bytes"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msgs, replies, err := readAll(t, []byte(c.input), 256)
			if !errors.Is(err, io.EOF) {
				t.Errorf("stream ended with %v, want EOF at the end of the input", err)
			}
			if len(msgs) == 0 || method(msgs[len(msgs)-1]) != "shutdown" {
				var got []string
				for _, m := range msgs {
					got = append(got, method(m))
				}
				t.Errorf("delivered %v, want the shutdown after the bad input", got)
			}
			if len(replies) != len(c.replies) {
				t.Fatalf("replies = %+v, want %d like %+v", replies, len(c.replies), c.replies)
			}
			for i, want := range c.replies {
				got := replies[i]
				wantID := string(want.ID)
				if wantID == "" {
					wantID = "null"
				}
				if string(got.ID) != wantID || got.Code != want.Code || !strings.Contains(got.Error, want.Error) {
					t.Errorf("reply %d = %s %d %q, want %s %d containing %q", i, got.ID, got.Code, got.Error, wantID, want.Code, want.Error)
				}
			}
		})
	}
}

// TestStreamHeaderAloneAllocatesLittle checks a client that announces a
// large body and never sends it cannot make the daemon allocate it.
func TestStreamHeaderAloneAllocatesLittle(t *testing.T) {
	input := []byte(fmt.Sprintf("Content-Length: %d\r\n\r\n{", DefaultMaxMessageBytes))
	s := newLSPStream(&pipeRWC{Reader: bytes.NewReader(input)}, 0, nil)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := s.Read(context.Background())
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Read = %v, want unexpected EOF", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Fatalf("a bare %d-byte header made the stream allocate %d bytes", DefaultMaxMessageBytes, grew)
	}
}

func TestResolveMaxBytes(t *testing.T) {
	t.Setenv(MaxMessageBytesEnv, "")
	if n, err := resolveMaxBytes(0); n != DefaultMaxMessageBytes || err != nil {
		t.Errorf("no setting: %d, %v", n, err)
	}
	t.Setenv(MaxMessageBytesEnv, "4096")
	if n, _ := resolveMaxBytes(0); n != 4096 {
		t.Errorf("env 4096 with no flag: %d", n)
	}
	if n, _ := resolveMaxBytes(DefaultMaxMessageBytes); n != 4096 {
		t.Errorf("env 4096 with the default flag: %d", n)
	}
	if n, _ := resolveMaxBytes(1000); n != 1000 {
		t.Errorf("explicit 1000 must win over the env: %d", n)
	}
	t.Setenv(MaxMessageBytesEnv, "lots")
	if n, err := resolveMaxBytes(0); n != DefaultMaxMessageBytes || err == nil || !strings.Contains(err.Error(), MaxMessageBytesEnv) {
		t.Errorf("bad env: %d, %v; want the default and an error naming the variable", n, err)
	}
}

// FuzzLSPStream feeds arbitrary bytes to the framing. Whatever arrives, the
// stream must not panic or loop, must answer only with well-formed error
// frames, must deliver only messages that encode back to themselves, and
// must end at the end of the input. The seed corpus in
// testdata/fuzz/FuzzLSPStream runs in plain `go test`.
func FuzzLSPStream(f *testing.F) {
	f.Add([]byte(frame(initReq) + frame(shutdown)))
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, _, err := readAll(t, data, 4096)
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("stream ended with %v, want (unexpected) EOF", err)
		}
		for _, m := range msgs {
			enc, err := jsonrpc2.EncodeMessage(m)
			if err != nil {
				t.Fatalf("delivered %T does not encode: %v", m, err)
			}
			if len(enc) > 4096*2 {
				t.Fatalf("delivered a %d-byte message past the 4096-byte limit", len(enc))
			}
			back, err := jsonrpc2.DecodeMessage(enc)
			if err != nil {
				t.Fatalf("delivered message %s does not decode again: %v", enc, err)
			}
			if again, _ := jsonrpc2.EncodeMessage(back); !bytes.Equal(again, enc) {
				t.Fatalf("message changed on a round trip: %s -> %s", enc, again)
			}
		}
	})
}
