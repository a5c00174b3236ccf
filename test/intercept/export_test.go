package intercept_test

import (
	"encoding/json"
	"fmt"
	"go/format"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kloop/kloop/session"
)

// A live request becomes a Go test: `kloop requests export ID --go-test`
// writes a test beside the program that served it, with the call the
// program made to the users Service through kloop's outbound proxy as a
// stub; after the intercept ends, `go test` passes against the code that
// served the request, with no cluster, and fails once a change alters the
// answer. The program is the profiles sample (test/testdata/profiles), run
// in place of the orders workload's, whose pod env has USERS_URL.
func TestExportARequestAsAGoTest(t *testing.T) {
	f := newFixture(t)
	sample, err := os.ReadFile(filepath.Join("..", "testdata", "profiles", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.Main, sample, 0o644); err != nil {
		t.Fatal(err)
	}
	f.MustKloop(t, "intercept", "orders", "--detach")
	code, body := f.send(t, http.MethodGet, "/profiles/2", "Authorization", "Bearer sekret-9")
	if code != 200 || !strings.Contains(body, `"displayName":"GRACE HOPPER"`) {
		t.Fatalf("through the intercept: %d %s; want the profile built from the users Service's answer", code, body)
	}
	r := f.MustKloop(t, "requests", "-o", "json")
	var list session.RequestsResult
	if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil {
		t.Fatalf("requests -o json: %v\n%s", err, r.Stdout)
	}
	id := 0
	for _, e := range list.Requests {
		if e.Target == "/profiles/2" && e.Response != nil && e.Response.Status == 200 {
			id = e.ID
		}
	}
	if id == 0 {
		t.Fatalf("kloop requests lists %+v; want GET /profiles/2", list.Requests)
	}

	if r := f.Kloop(t, "requests", "export", fmt.Sprint(id)); r.Code == 0 || !strings.Contains(r.Stderr, "--go-test") {
		t.Errorf("export without a format: exit %d %q; want an error naming --go-test", r.Code, r.Stderr)
	}
	if r := f.Kloop(t, "requests", "export", fmt.Sprint(id), "--go-test", "-o", "profile.go"); r.Code == 0 || !strings.Contains(r.Stderr, "_test.go") {
		t.Errorf("export to a file that is no test: exit %d %q; want an error saying test files end in _test.go", r.Code, r.Stderr)
	}
	mine := filepath.Join(f.WS, "mine_test.go")
	if err := os.WriteFile(mine, []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := f.Kloop(t, "requests", "export", fmt.Sprint(id), "--go-test", "-o", "mine_test.go"); r.Code == 0 || !strings.Contains(r.Stderr, "not written by kloop") {
		t.Errorf("export over a file of the user's: exit %d %q; want a refusal", r.Code, r.Stderr)
	}
	if b, _ := os.ReadFile(mine); string(b) != "package main\n" {
		t.Errorf("the user's file was changed: %q", b)
	}
	os.Remove(mine)
	// Twice: the second export overwrites the file the first wrote.
	f.MustKloop(t, "requests", "export", fmt.Sprint(id), "--go-test")
	r = f.MustKloop(t, "requests", "export", fmt.Sprint(id), "--go-test")
	file := filepath.Join(f.WS, fmt.Sprintf("kloop_request_%d_test.go", id))
	name := fmt.Sprintf("TestKloopRequest%d", id)
	if !strings.Contains(r.Stdout, file) || !strings.Contains(r.Stdout, "1 outbound calls stubbed") {
		t.Errorf("export printed %q; want the file %s and the one call to users stubbed", r.Stdout, file)
	}
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if formatted, err := format.Source(src); err != nil || string(formatted) != string(src) {
		t.Errorf("the exported file is not gofmt'd (%v):\n%s", err, src)
	}
	for _, secret := range []string{"sekret-9", "sample-token-not-a-real-secret", "kloop:"} {
		if strings.Contains(string(src), secret) {
			t.Errorf("the exported file holds %q (a credential, the Secret's value or the proxy's password):\n%s", secret, src)
		}
	}
	for _, want := range []string{`"Bearer ***"`, `host: "users:8080", target: "/users/2"`, `Grace Hopper`} {
		if !strings.Contains(string(src), want) {
			t.Errorf("the exported file lacks %s:\n%s", want, src)
		}
	}

	// No cluster from here on: the intercept ends, and the test's process
	// gets no proxy of kloop's.
	f.MustKloop(t, "leave", "--all")
	gotest := func() (string, error) {
		cmd := exec.Command("go", "test", "-count=1", "-run", "^"+name+"$", ".")
		cmd.Dir = f.WS
		cmd.Env = append(os.Environ(), "HTTP_PROXY=", "http_proxy=", "HTTPS_PROXY=", "https_proxy=")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := gotest(); err != nil {
		t.Fatalf("the exported test fails against the code that served the request: %v\n%s\n%s", err, out, src)
	}
	changed := strings.Replace(string(sample), `const build = "v1"`, `const build = "v2"`, 1)
	if changed == string(sample) {
		t.Fatal(`profiles/main.go no longer has const build = "v1"; update the test`)
	}
	if err := os.WriteFile(f.Main, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := gotest(); err == nil || !strings.Contains(out, `"build":"v2"`) || !strings.Contains(out, "FAIL: "+name) {
		t.Errorf("after a change to the answer the exported test: %v\n%s\nwant it to fail showing the new answer", err, out)
	}
}
