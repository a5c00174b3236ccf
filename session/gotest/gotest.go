// Package gotest writes a recorded exchange as a Go test (`kloop requests
// export ID --go-test`): the test builds the main package it sits in,
// starts it with the env it had under kloop, its listening port moved to a
// free one and its HTTP proxy pointed at an httptest server that answers
// the outbound calls it made then as the cluster answered them, sends it
// the recorded request and checks the answer against the recorded one.
// The test needs no cluster and nothing of kloop: only the standard
// library, so it compiles in any module.
//
// What the recording masked (credentials in headers) stays masked in the
// file, and so do env values whose names say they are secrets: a handler
// that checks them sees "***".
package gotest

import (
	"bytes"
	"fmt"
	"go/format"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"unicode/utf8"

	"github.com/kloop/kloop/session/capture"
)

// Input is what a test is written from.
type Input struct {
	// Request is the recorded exchange, credentials masked.
	Request capture.Exchange
	// Outbound are the calls the program made while serving it (see
	// capture.Store.Outbound), masked.
	Outbound []capture.Exchange
	// Overlapped: other requests were served at the same time, so some
	// outbound calls may be theirs.
	Overlapped bool
	// Env is the environment the program ran with under kloop, KEY=VALUE
	// (the pod's and .kloop.yaml's); proxy settings and KLOOP_ROOT are
	// left out of the test.
	Env []string
	// Args are the program's arguments.
	Args []string
	// Port is the local port the program listened on. Env values that
	// are this port, or end in ":PORT", get the test's free port instead.
	Port int
	// Package is the package clause of the test file ("main").
	Package string
	// Command is the command line that wrote the file, for its header.
	Command string
}

// TestName is the name of the test function written for request id.
func TestName(id int) string { return fmt.Sprintf("TestKloopRequest%d", id) }

// droppedEnv are variables of the recorded env the test sets itself or
// that point at what lives only while kloop intercepts.
var droppedEnv = map[string]bool{
	"HTTP_PROXY": true, "HTTPS_PROXY": true, "ALL_PROXY": true, "NO_PROXY": true, "KLOOP_ROOT": true,
}

// secretName matches env names whose values are masked in the file.
var secretName = regexp.MustCompile(`(?i)(secret|passw|token|credential|api_?key|private|auth)`)

// skippedHeaders describe the transfer, or change by themselves, so the
// test neither sends nor checks them (capture.Compare ignores them too).
var skippedHeaders = map[string]bool{
	"Date": true, "Content-Length": true, "Connection": true, "Keep-Alive": true,
	"Transfer-Encoding": true, "Age": true, "Expires": true, "Last-Modified": true, "Etag": true,
}

type envVar struct {
	Name, Value string
	// Port: Value is the port (PortPrefix + port) in the test.
	Port       bool
	PortPrefix string
	Masked     bool
}

type header struct{ Name, Value string }

type call struct {
	Method, Host, Target, Body string
	Status                     int
	Header                     []header
	Answer                     string
}

type data struct {
	Input
	Name            string
	Env             []envVar
	PortFound       bool
	ReqHeader       []header
	Calls           []call
	Status          int
	Check           []header
	Skipped         []string
	Answer          string
	AnswerTruncated bool
	MaxBody         int
}

// Write returns the test's source, gofmt'd.
func Write(in Input) ([]byte, error) {
	e := in.Request
	if e.Response == nil {
		return nil, fmt.Errorf("request %d got no answer, so there is nothing to test against", e.ID)
	}
	if e.BodyTruncated {
		return nil, fmt.Errorf("request %d had a body over %d KiB, of which only the start was kept; a test cannot send it whole", e.ID, capture.MaxBody>>10)
	}
	if in.Package == "" {
		in.Package = "main"
	}
	d := data{Input: in, Name: TestName(e.ID), Status: e.Response.Status, Answer: e.Response.Body,
		AnswerTruncated: e.Response.BodyTruncated, MaxBody: capture.MaxBody}
	port := strconv.Itoa(in.Port)
	for _, kv := range in.Env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || droppedEnv[strings.ToUpper(name)] {
			continue
		}
		v := envVar{Name: name, Value: value}
		switch {
		case in.Port != 0 && value == port:
			v.Port = true
		case in.Port != 0 && strings.HasSuffix(value, ":"+port):
			v.Port, v.PortPrefix = true, strings.TrimSuffix(value, port)
		case secretName.MatchString(name):
			v.Value, v.Masked = "***", true
		}
		d.PortFound = d.PortFound || v.Port
		d.Env = append(d.Env, v)
	}
	sort.SliceStable(d.Env, func(i, j int) bool { return d.Env[i].Name < d.Env[j].Name })
	d.ReqHeader = headers(e.Header, false)
	for _, o := range in.Outbound {
		if o.Response == nil {
			continue
		}
		d.Calls = append(d.Calls, call{Method: o.Method, Host: o.Host, Target: o.Target, Body: o.Body,
			Status: o.Response.Status, Header: headers(o.Response.Header, false), Answer: o.Response.Body})
	}
	for _, h := range headers(e.Response.Header, true) {
		if strings.Contains(h.Value, "***") {
			d.Skipped = append(d.Skipped, h.Name)
			continue
		}
		d.Check = append(d.Check, h)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("write the test of request %d: %w", e.ID, err)
	}
	src, err := format.Source(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("format the test of request %d: %w", e.ID, err)
	}
	return src, nil
}

// headers lists h sorted, one entry per name, without the transfer's.
func headers(h http.Header, joined bool) []header {
	var out []header
	for name, vs := range h {
		name = http.CanonicalHeaderKey(name)
		if skippedHeaders[name] {
			continue
		}
		if joined {
			out = append(out, header{name, strings.Join(vs, ", ")})
			continue
		}
		for _, v := range vs {
			out = append(out, header{name, v})
		}
	}
	slices.SortStableFunc(out, func(a, b header) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// quote writes s as a Go string literal, raw when that reads better.
func quote(s string) string {
	if strings.ContainsAny(s, "\n\"\\") && !strings.ContainsAny(s, "`\r") && utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r < ' ' && r != '\n' && r != '\t' }) {
		return "`" + s + "`"
	}
	return strconv.Quote(s)
}

var tmpl = template.Must(template.New("test").Funcs(template.FuncMap{"q": quote}).Parse(`// Code generated by ` + "`{{.Command}}`" + `; edit it as you like.

package {{.Package}}

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// {{.Name}} sends {{.Request.Method}} {{.Request.Target}}, as {{.Request.Workload}} received it
// through kloop at {{.Request.Time.UTC.Format "2006-01-02 15:04:05"}} UTC, to this package's program and
// checks that it answers as it did then. The program is built from this
// directory and started with the env it had under kloop{{if .PortFound}} (its port moved
// to a free one){{end}}; the calls it made to other services through kloop's
// outbound proxy are answered by a stub proxy with the answers recorded then,
// so no cluster is needed. Credentials were masked in the recording and stay
// masked here.{{if .Overlapped}}
//
// Other requests were being served at the same time as this one, so some of
// the recorded calls below may be theirs: delete those the program does not
// make for this request.{{end}}
func {{.Name}}(t *testing.T) {
	type call struct {
		method, host, target, body string
		status                     int
		header                     http.Header
		answer                     string
		made                       bool
	}
	calls := []*call{ {{- range .Calls}}
		{
			method: {{q .Method}}, host: {{q .Host}}, target: {{q .Target}},{{if .Body}} body: {{q .Body}},{{end}}
			status: {{.Status}},
			header: http.Header{ {{- range .Header}}{{q .Name}}: {{"{"}}{{q .Value}}{{"}"}}, {{end}}},
			answer: {{q .Answer}},
		},{{end}}
	}
	var mu sync.Mutex
	stubs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			t.Errorf("the program made an HTTPS call to %s; only plain HTTP calls were recorded", r.Host)
			http.Error(w, "no recorded answer for HTTPS calls", http.StatusBadGateway)
			return
		}
		body, _ := io.ReadAll(r.Body)
		host := r.Host
		if r.URL.IsAbs() {
			host = r.URL.Host
		}
		mu.Lock()
		defer mu.Unlock()
		for _, c := range calls {
			if !c.made && c.method == r.Method && c.host == host && c.target == r.URL.RequestURI() && c.body == string(body) {
				c.made = true
				for name, values := range c.header {
					w.Header()[name] = values
				}
				w.WriteHeader(c.status)
				io.WriteString(w, c.answer)
				return
			}
		}
		t.Errorf("the program called %s http://%s%s, which it did not call when it served the recorded request", r.Method, host, r.URL.RequestURI())
		http.Error(w, "no recorded answer for this call", http.StatusBadGateway)
	}))
	defer stubs.Close()

	bin := filepath.Join(t.TempDir(), "program")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	port := {{.Port}}{{if .PortFound}}
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}{{end}}
	p := strconv.Itoa(port)
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(name) {
		case "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY":
		default:
			env = append(env, kv)
		}
	}
	env = append(env,{{range .Env}}
		{{if .Port}}{{q (printf "%s=%s" .Name .PortPrefix)}}+p{{else}}{{q (printf "%s=%s" .Name .Value)}}{{end}},{{if .Masked}} // masked: it looks like a secret{{end}}{{end}}
		"HTTP_PROXY="+stubs.URL, "http_proxy="+stubs.URL,
	)
	var output strings.Builder
	cmd := exec.Command(bin{{range .Args}}, {{q .}}{{end}})
	cmd.Env, cmd.Stdout, cmd.Stderr = env, &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("the program's output:\n%s", output.String())
		}
	}()
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("the program exited before it listened on port %d: %v", port, err)
		default:
		}
		if c, err := net.Dial("tcp", "127.0.0.1:"+p); err == nil {
			c.Close()
			break
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("nothing listens on port %d a minute after the program started", port)
		}
	}

	req, err := http.NewRequest({{q .Request.Method}}, "http://127.0.0.1:"+p+{{q .Request.Target}}, strings.NewReader({{q .Request.Body}}))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = {{q .Request.Host}}
	req.Header = http.Header{ {{- range .ReqHeader}}
		{{q .Name}}: {{"{"}}{{q .Value}}{{"}"}},{{end}}
	}
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}

	if resp.StatusCode != {{.Status}} {
		t.Errorf("status %d; it was {{.Status}}", resp.StatusCode)
	}{{if .Skipped}}
	// Not checked, as their values were masked: {{range $i, $h := .Skipped}}{{if $i}}, {{end}}{{$h}}{{end}}.{{end}}
	for name, want := range map[string]string{ {{- range .Check}}
		{{q .Name}}: {{q .Value}},{{end}}
	} {
		if got := strings.Join(resp.Header.Values(name), ", "); got != want {
			t.Errorf("header %s: %q; it was %q", name, got, want)
		}
	}
	want := {{q .Answer}}{{if .AnswerTruncated}}
	// Only the first {{.MaxBody}} bytes of the answer were recorded.
	got = got[:min(len(got), {{.MaxBody}})]{{end}}
	var gotJSON, wantJSON any
	if json.Unmarshal(got, &gotJSON) == nil && json.Unmarshal([]byte(want), &wantJSON) == nil {
		if !reflect.DeepEqual(gotJSON, wantJSON) {
			t.Errorf("answer:\n%s\nit was:\n%s", got, want)
		}
	} else if string(got) != want {
		t.Errorf("answer:\n%s\nit was:\n%s", got, want)
	}
	for _, c := range calls {
		if !c.made {
			t.Errorf("the program did not call %s http://%s%s, which it called when it served the recorded request", c.method, c.host, c.target)
		}
	}
}
`))
