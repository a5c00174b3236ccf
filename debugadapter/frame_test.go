package debugadapter

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestFrameReader(t *testing.T) {
	big := `{"seq":1,"type":"response","body":{"result":"` + strings.Repeat("x", 10<<20) + `"}}`
	tests := []struct {
		name      string
		stream    string
		want      []string
		wantFrame bool // a FramingError ends the stream
	}{
		{name: "two messages", stream: "Content-Length: 2\r\n\r\n{}Content-Length: 7\r\n\r\n{\"a\":1}", want: []string{"{}", `{"a":1}`}},
		{name: "extra header and case", stream: "content-length: 2\r\nContent-Type: application/json\r\n\r\n{}", want: []string{"{}"}},
		{name: "bare LF lines", stream: "Content-Length: 2\n\n{}", want: []string{"{}"}},
		{name: "10 MB message passes", stream: "Content-Length: " + itoa(len(big)) + "\r\n\r\n" + big, want: []string{big}},
		{name: "no length", stream: "Content-Type: x\r\n\r\n{}", wantFrame: true},
		{name: "length not a number", stream: "Content-Length: twelve\r\n\r\n{}", wantFrame: true},
		{name: "negative length", stream: "Content-Length: -1\r\n\r\n", wantFrame: true},
		{name: "absurd length", stream: "Content-Length: 99999999999\r\n\r\n", wantFrame: true},
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
