package dap

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kloop/kloop/internal/racecheck"
	"github.com/kloop/kloop/test/dapclient"
)

var (
	kloopBin string
	waitLong = 4 * time.Minute // a cold debug build of net/http takes ~45 s on 2 shared cores
)

func TestMain(m *testing.M) {
	if os.Getenv(denyPtraceEnv) != "" {
		execWithoutPtrace()
	}
	dir, err := os.MkdirTemp("", "kloop-dap-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kloopBin = filepath.Join(dir, "kloop")
	// With -race the kloop binary under test is built with the race detector
	// too, so the bridge's concurrency is checked, not only this client's.
	args := append([]string{"build", "-o", kloopBin}, racecheck.BuildFlags()...)
	build := exec.Command("go", append(args, "github.com/kloop/kloop/cmd/kloop")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build kloop:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	// A launch that names a workload reaches the kloop daemon: a private
	// one, with a kubeconfig that does not exist (there is no cluster here;
	// the intercept path is tested against the sandbox in test/intercept).
	os.Setenv("KLOOP_SOCKET", filepath.Join(dir, "daemon.sock"))
	os.Setenv("KLOOP_STATE_DIR", filepath.Join(dir, "state"))
	os.Setenv("KUBECONFIG", filepath.Join(dir, "no-kubeconfig"))
	code := m.Run()
	exec.Command(kloopBin, "daemon", "stop").Run()
	// dapclient checks each adapter's stderr and its worker's output; the
	// daemon the adapters share writes its reports to its log.
	logs, _ := filepath.Glob(filepath.Join(dir, "state", "daemon.log*"))
	for _, path := range logs {
		log, err := os.ReadFile(path)
		if err == nil {
			err = racecheck.Check("the kloop daemon ("+filepath.Base(path)+")", string(log))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "FAIL:", err)
			code = 1
		}
	}
	if code != 0 || os.Getenv("KLOOP_DAP_TEST_LOG") != "" {
		// The debug sessions ran in the daemon: its log says what they did.
		if log, err := os.ReadFile(filepath.Join(dir, "state", "daemon.log")); err == nil {
			fmt.Fprintf(os.Stderr, "kloop daemon log:\n%s\n", log)
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// serverSource is the fixture: an HTTP server whose handler the tests edit. Lines
// marked with "// at:NAME" are found by marker, so edits may move them.
const serverSource = `package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
)

func handler(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	greeting := "GREETING " + name // at:greet
	fmt.Fprintln(w, greeting) // at:reply
}

func big(w http.ResponseWriter, r *http.Request) {
	value := strings.Repeat("x", 10<<20)
	fmt.Fprintln(w, len(value)) // at:big
}

func crash(w http.ResponseWriter, r *http.Request) {
	// Outside the handler's goroutine, where net/http cannot recover it.
	go func() {
		var m map[string]int
		m["boom"]++
	}()
}

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s env=%s\n", ln.Addr(), os.Getenv("FIXTURE_ENV"))
	mux := http.NewServeMux()
	mux.HandleFunc("/", handler)
	mux.HandleFunc("/big", big)
	mux.HandleFunc("/crash", crash)
	fmt.Fprintln(os.Stderr, http.Serve(ln, mux))
}
`

// fixture is a module on disk with the server in it.
type fixture struct {
	dir  string
	main string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, main: filepath.Join(dir, "server", "main.go")}
	if err := os.MkdirAll(filepath.Join(dir, "server"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module fixture\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lib", "lib.go"), []byte("package lib\n\nfunc X() int { return 1 }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.write(t, "hello", 0)
	return f
}

// write rewrites the server with another greeting, pushed down by pad blank lines so
// that the breakpoint line moves as it would in a real edit.
func (f *fixture) write(t testing.TB, greeting string, pad int) {
	t.Helper()
	src := strings.Replace(serverSource, `"GREETING "`, fmt.Sprintf("%q", greeting+" "), 1)
	src = strings.Replace(src, "\tname := r.URL", strings.Repeat("\n", pad)+"\tname := r.URL", 1)
	if err := os.WriteFile(f.main, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// line finds the line of a marker in the current source.
func (f *fixture) line(t testing.TB, marker string) int {
	t.Helper()
	data, err := os.ReadFile(f.main)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for n := 1; sc.Scan(); n++ {
		if strings.Contains(sc.Text(), "// at:"+marker) {
			return n
		}
	}
	t.Fatalf("marker %s not in %s", marker, f.main)
	return 0
}

var listeningRE = regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)

// serverAddr waits for the program's "listening on" line after mark and returns the
// address. The line reaches the test only as a DAP output event.
func serverAddr(t testing.TB, e *dapclient.Client, since int) string {
	t.Helper()
	m := e.WaitEvent(since, "the program's listening line", dapclient.OutputContaining("listening on "))
	return listeningRE.FindStringSubmatch(string(m.Body))[1]
}

// get sends an HTTP request in the background; the program may be paused at a breakpoint.
func get(addr, path string) <-chan string {
	ch := make(chan string, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ch <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		ch <- strings.TrimSpace(string(body))
	}()
	return ch
}

func recv(t testing.TB, ch <-chan string, what string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(waitLong):
		t.Fatalf("no HTTP answer to %s within %s", what, waitLong)
		return ""
	}
}
