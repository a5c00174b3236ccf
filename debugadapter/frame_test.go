package debugadapter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFrameReader(t *testing.T) {
	big := `{"seq":1,"type":"response","body":{"result":"` + strings.Repeat("x", 10<<20) + `"}}`
	tests := []struct {
		name      string
		stream    string
		want      []string
		wantFrame bool   // a FramingError ends the stream
		reason    string // what the FramingError says, when set
	}{
		{name: "two messages", stream: "Content-Length: 2\r\n\r\n{}Content-Length: 7\r\n\r\n{\"a\":1}", want: []string{"{}", `{"a":1}`}},
		{name: "extra header and case", stream: "content-length: 2\r\nContent-Type: application/json\r\n\r\n{}", want: []string{"{}"}},
		{name: "bare LF lines", stream: "Content-Length: 2\n\n{}", want: []string{"{}"}},
		{name: "10 MB message passes", stream: "Content-Length: " + itoa(len(big)) + "\r\n\r\n" + big, want: []string{big}},
		{name: "no length", stream: "Content-Type: x\r\n\r\n{}", wantFrame: true},
		{name: "length not a number", stream: "Content-Length: twelve\r\n\r\n{}", wantFrame: true},
		{name: "negative length", stream: "Content-Length: -1\r\n\r\n", wantFrame: true},
		{name: "absurd length", stream: "Content-Length: 99999999999\r\n\r\n", wantFrame: true, reason: "Content-Length 99999999999 exceeds the limit of 268435456 bytes"},
		{name: "length past what an int holds", stream: "Content-Length: 99999999999999999999\r\n\r\n{}", wantFrame: true, reason: "Content-Length 99999999999999999999 exceeds the limit of 268435456 bytes"},
		{name: "one over the limit", stream: "Content-Length: 268435457\r\n\r\n{}", wantFrame: true, reason: "exceeds the limit"},
		{name: "endless header line", stream: strings.Repeat("x", 100<<10) + "\r\n\r\n", wantFrame: true, reason: "longer than 8 KiB"},
		{name: "header without colon", stream: "hello\r\n\r\n", wantFrame: true},
		{name: "truncated body", stream: "Content-Length: 10\r\n\r\n{}", wantFrame: true},
		{name: "stream ends in header", stream: "Content-Length: 2\r\n", wantFrame: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fr := newFrameReader(strings.NewReader(tt.stream))
			var got []string
			var err error
			for {
				var body []byte
				body, err = fr.Read()
				if err != nil {
					break
				}
				got = append(got, string(body))
			}
			var fe *FramingError
			if tt.wantFrame != errors.As(err, &fe) {
				t.Fatalf("err = %v, want framing error %v", err, tt.wantFrame)
			}
			if tt.reason != "" && !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("err = %v, want it to say %q", err, tt.reason)
			}
			if !tt.wantFrame && !errors.Is(err, io.EOF) {
				t.Fatalf("err = %v, want EOF after the messages", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("read %d messages, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("message %d differs (len %d vs %d)", i, len(got[i]), len(tt.want[i]))
				}
			}
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestSetTopLevelInts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		set  map[string]int
		want string
	}{
		{name: "replace both", in: `{"seq":5,"type":"response","request_seq":3,"body":{"seq":9}}`, set: map[string]int{"seq": 1, "request_seq": 42},
			want: `{"seq":1,"type":"response","request_seq":42,"body":{"seq":9}}`},
		{name: "nested seq untouched", in: `{"body":{"seq":9,"request_seq":8},"seq":2}`, set: map[string]int{"seq": 7, "request_seq": 1},
			want: `{"seq":1,"request_seq":1,"body":{"seq":9,"request_seq":8},"seq":7}`},
		{name: "missing seq inserted", in: `{"type":"event"}`, set: map[string]int{"seq": 3}, want: `{"seq":3,"type":"event"}`},
		{name: "empty object", in: `{ }`, set: map[string]int{"seq": 3}, want: `{"seq":3 }`},
		{name: "whitespace and unknown fields kept", in: "{ \"seq\" : 10 , \"x-custom\": [1, 2] }", set: map[string]int{"seq": 11},
			want: "{ \"seq\" : 11 , \"x-custom\": [1, 2] }"},
		{name: "strings with braces", in: `{"message":"}{\"seq\":1","seq":4}`, set: map[string]int{"seq": 5}, want: `{"message":"}{\"seq\":1","seq":5}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := setTopLevelInts([]byte(tt.in), tt.set)
			if err != nil {
				t.Fatal(err)
			}
			if tt.name == "nested seq untouched" {
				// Keys inserted in front plus the existing one replaced: check semantics.
				var m map[string]json.RawMessage
				if err := json.Unmarshal(got, &m); err != nil {
					t.Fatalf("result is not JSON: %s", got)
				}
				if string(m["body"]) != `{"seq":9,"request_seq":8}` {
					t.Errorf("nested members changed: %s", got)
				}
				return
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("result is not valid JSON: %s", got)
			}
		})
	}
	for _, bad := range []string{`[1]`, `not json`, `{"seq":}`} {
		if _, err := setTopLevelInts([]byte(bad), map[string]int{"seq": 1}); err == nil {
			t.Errorf("setTopLevelInts(%s) succeeded, want an error", bad)
		}
	}
}

func TestFrameWriterNumbersInOrder(t *testing.T) {
	var buf bytes.Buffer
	fw := &frameWriter{w: &buf}
	var seen []int
	for i := 0; i < 3; i++ {
		seq, err := fw.send([]byte(`{"seq":99,"type":"event","event":"output"}`), -1, func(s int) { seen = append(seen, s) })
		if err != nil {
			t.Fatal(err)
		}
		if seq != i+1 || seen[i] != i+1 {
			t.Fatalf("message %d got seq %d (callback %d)", i, seq, seen[i])
		}
	}
	fr := newFrameReader(&buf)
	for i := 1; i <= 3; i++ {
		body, err := fr.Read()
		if err != nil {
			t.Fatal(err)
		}
		env, err := parseEnvelope(body)
		if err != nil || env.Seq != i {
			t.Fatalf("frame %d: seq %d err %v", i, env.Seq, err)
		}
	}
}

func TestParseEnvelope(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{in: `{"seq":1,"type":"request","command":"initialize"}`},
		{in: `{"seq":1,"type":"event","event":"output"}`},
		{in: `{"seq":1,"type":"response","command":"next","request_seq":3,"success":true}`},
		{in: `{"seq":1,"type":"request"}`, wantErr: `no "command"`},
		{in: `{"seq":1}`, wantErr: `no "type"`},
		{in: `{"seq":1,"type":"bogus"}`, wantErr: "not request, response or event"},
		{in: `{"seq":1,"type":"event"}`, wantErr: `no "event"`},
		{in: `[]`, wantErr: "not a JSON object"},
	}
	for _, tt := range tests {
		_, err := parseEnvelope([]byte(tt.in))
		if tt.wantErr == "" && err != nil {
			t.Errorf("parseEnvelope(%s): %v", tt.in, err)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("parseEnvelope(%s) = %v, want error containing %q", tt.in, err, tt.wantErr)
		}
	}
}

// socketPair returns the two ends of a connected unix stream socket pair.
func socketPair(t *testing.T) (editor, adapter net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return conns[0], conns[1]
}

// hugeFrames are inputs the frame reader must refuse from what has arrived, while the
// peer keeps the connection open: waiting for the announced body, or for the end of an
// endless line, would hang the debug session.
var hugeFrames = []struct {
	name, input, reason string
}{
	{"10 GB announced", "Content-Length: 9999999999\r\n\r\n", "Content-Length 9999999999 exceeds the limit of 268435456 bytes (256 MiB)"},
	{"length past what an int holds", "Content-Length: 99999999999999999999\r\n", "Content-Length 99999999999999999999 exceeds the limit of 268435456 bytes (256 MiB)"},
	{"header line that never ends", "Content-Length: 2\r\nX-Junk: " + strings.Repeat("x", 200<<10), "header line longer than 8 KiB"},
}

// TestFrameReaderRefusesHugeFramesAtOnce reads from a real socket whose writer stays
// open: the refusal must come from the header alone.
func TestFrameReaderRefusesHugeFramesAtOnce(t *testing.T) {
	for _, tt := range hugeFrames {
		t.Run(tt.name, func(t *testing.T) {
			editor, adapter := socketPair(t)
			go editor.Write([]byte(tt.input))
			type result struct {
				body []byte
				err  error
			}
			done := make(chan result, 1)
			go func() {
				body, err := newFrameReader(adapter).Read()
				done <- result{body, err}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Read still waiting 5s after the header arrived; want a framing error at once")
			}
			var fe *FramingError
			if !errors.As(r.err, &fe) || !strings.Contains(r.err.Error(), tt.reason) {
				t.Fatalf("Read = %q, %v; want a FramingError saying %q", r.body, r.err, tt.reason)
			}
		})
	}
}

// TestBridgeEndsSessionOnHugeFrame: the bridge cannot resynchronise DAP framing, so it
// ends the debug session; it must do so at once, telling the editor the size and the
// limit, not after reading (or waiting for) the announced body.
func TestBridgeEndsSessionOnHugeFrame(t *testing.T) {
	for _, tt := range hugeFrames {
		t.Run(tt.name, func(t *testing.T) {
			editor, adapter := socketPair(t)
			served := make(chan error, 1)
			go func() { served <- New(Options{}).Serve(context.Background(), adapter) }()
			go editor.Write([]byte(tt.input))

			_ = editor.SetReadDeadline(time.Now().Add(5 * time.Second))
			fr := newFrameReader(bufio.NewReader(editor))
			var events []envelope
			var said string
			for len(events) < 2 {
				body, err := fr.Read()
				if err != nil {
					t.Fatalf("after %d events from the bridge: %v; want an output event and terminated at once", len(events), err)
				}
				env, err := parseEnvelope(body)
				if err != nil {
					t.Fatalf("bridge sent %s: %v", body, err)
				}
				events = append(events, env)
				if env.Event == "output" {
					var out struct {
						Body struct{ Category, Output string }
					}
					_ = json.Unmarshal(body, &out)
					said = out.Body.Output
				}
			}
			if events[0].Event != "output" || events[1].Event != "terminated" {
				t.Fatalf("bridge sent events %q, %q; want output, then terminated", events[0].Event, events[1].Event)
			}
			for _, want := range []string{tt.reason, "ending the debug session"} {
				if !strings.Contains(said, want) {
					t.Errorf("bridge told the editor %q; want it to say %q", said, want)
				}
			}
			select {
			case err := <-served:
				var fe *FramingError
				if !errors.As(err, &fe) {
					t.Errorf("Serve = %v, want the FramingError", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Serve did not return after ending the session")
			}
		})
	}
}
