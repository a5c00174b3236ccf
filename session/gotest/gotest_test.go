package gotest

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kloop/kloop/session/capture"
)

// A program as kloop runs one: its port from the env, a call to another
// service through HTTP_PROXY, a JSON answer.
const program = `package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("GET /profiles/{id}", func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(os.Getenv("USERS_URL") + "/users/" + r.PathValue("id"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		user, _ := io.ReadAll(resp.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Build", "BUILD")
		json.NewEncoder(w).Encode(map[string]any{"user": json.RawMessage(user), "build": "BUILD", "auth": r.Header.Get("Authorization"), "token": os.Getenv("API_TOKEN")})
	})
	http.ListenAndServe(os.Getenv("HTTP_ADDR"), nil)
}
`

func recorded() Input {
	t0 := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	return Input{
		Request: capture.Exchange{ID: 7, Workload: "deployment/profiles", Time: t0, Method: "GET", Target: "/profiles/1?full=1", Host: "profiles",
			Header: http.Header{"Authorization": {"Bearer ***"}, "Accept": {"*/*"}, "Content-Length": {"0"}},
			Response: &capture.Response{Status: 200, Header: http.Header{
				"Content-Type": {"application/json"}, "X-Build": {"v1"}, "Date": {"Wed"}, "Set-Cookie": {"sid=***"}},
				Body: `{"auth":"Bearer ***","build":"v1","token":"***","user":{"id":"1","name":"Ada"}}` + "\n"}},
		Outbound: []capture.Exchange{{Method: "GET", Host: "users:8080", Target: "/users/1",
			Response: &capture.Response{Status: 200, Header: http.Header{"Content-Type": {"application/json"}, "Content-Length": {"24"}}, Body: `{"id":"1","name":"Ada"}` + "\n"}}},
		Env: []string{"USERS_URL=http://users:8080", "HTTP_ADDR=127.0.0.1:18080", "API_TOKEN=s3cr3t", "KLOOP_ROOT=/run/x",
			"HTTP_PROXY=http://kloop:pw@127.0.0.1:1", "no_proxy=localhost"},
		Port: 18080, Command: "kloop requests export 7 --go-test",
	}
}

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		name     string
		edit     func(*Input)
		want     []string
		dontWant []string
		err      string
	}{
		{name: "recorded env, port moved, secrets and proxies out", edit: func(*Input) {},
			want: []string{`"HTTP_ADDR=127.0.0.1:"+p`, `"API_TOKEN=***", // masked`, `"USERS_URL=http://users:8080"`, `host: "users:8080", target: "/users/1"`,
				`"Authorization": {"Bearer ***"}`, `"X-Build":      "v1"`, "Not checked, as their values were masked: Set-Cookie.", "func TestKloopRequest7(t *testing.T)"},
			dontWant: []string{"s3cr3t", "KLOOP_ROOT", "kloop:pw", "Content-Length", `"Date"`, "localhost"}},
		{name: "a port not in the env stays", edit: func(in *Input) { in.Port = 9999 },
			want: []string{"port := 9999\n\tp := strconv.Itoa(port)", `"HTTP_ADDR=127.0.0.1:18080"`}},
		{name: "overlapping requests are told", edit: func(in *Input) { in.Overlapped = true },
			want: []string{"Other requests were being served at the same time"}},
		{name: "no answer", edit: func(in *Input) { in.Request.Response = nil }, err: "got no answer"},
		{name: "a truncated body", edit: func(in *Input) { in.Request.BodyTruncated = true }, err: "cannot send it whole"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := recorded()
			tc.edit(&in)
			src, err := Write(in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Write: %v; want an error saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(src), w) {
					t.Errorf("the test lacks %q:\n%s", w, src)
				}
			}
			for _, w := range tc.dontWant {
				if strings.Contains(string(src), w) {
					t.Errorf("the test has %q:\n%s", w, src)
				}
			}
		})
	}
}

// The written test, run by `go test` in the program's own module, passes
// against the build that gave the recorded answer and fails once a change
// alters the answer or the calls it makes.
func TestWrittenTestPassesThenCatchesAChange(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/profiles\n\ngo 1.26\n")
	write("main.go", strings.ReplaceAll(program, "BUILD", "v1"))
	src, err := Write(recorded())
	if err != nil {
		t.Fatal(err)
	}
	write("kloop_request_7_test.go", string(src))
	gotest := func() (string, error) {
		cmd := exec.Command("go", "test", "-count=1", "-run", "TestKloopRequest7", ".")
		cmd.Dir = dir
		// The caller's proxy settings must not matter.
		cmd.Env = append(os.Environ(), "HTTP_PROXY=http://127.0.0.1:1", "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := gotest(); err != nil {
		t.Fatalf("the written test fails against the build that served the request: %v\n%s\n%s", err, out, src)
	}
	for _, change := range []struct{ name, from, to, want string }{
		{"the answer", `"build": "BUILD"`, `"build": "v2"`, `"build":"v2"`},
		{"a header", `"X-Build", "BUILD"`, `"X-Build", "v2"`, `header X-Build: "v2"; it was "v1"`},
		{"the outbound call", `"/users/"`, `"/people/"`, "the program called GET http://users:8080/people/1, which it did not call"},
	} {
		t.Run(change.name, func(t *testing.T) {
			src := strings.ReplaceAll(strings.Replace(program, change.from, change.to, 1), "BUILD", "v1")
			if src == strings.ReplaceAll(program, "BUILD", "v1") {
				t.Fatalf("%q is not in the program", change.from)
			}
			write("main.go", src)
			out, err := gotest()
			if err == nil || !strings.Contains(out, change.want) {
				t.Errorf("after changing %s: %v\n%s\nwant a failure saying %q", change.name, err, out, change.want)
			}
		})
	}
}
