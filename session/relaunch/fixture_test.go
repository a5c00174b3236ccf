package relaunch

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kloop/kloop/session/build"
	"github.com/kloop/kloop/session/run"
)

// The test binary doubles as the non-Go program: with KLOOP_RELAUNCH_HELPER
// set it serves the contents of $BODY_FILE, read once at start, so only a
// relaunch shows a new body.
func TestMain(m *testing.M) {
	if os.Getenv("KLOOP_RELAUNCH_HELPER") == "fileserver" {
		body, err := os.ReadFile(os.Getenv("BODY_FILE"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		srv := &http.Server{Addr: "127.0.0.1:" + os.Getenv("PORT"), Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Write(body)
		})}
		go func() {
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGTERM)
			<-sig
			srv.Shutdown(context.Background())
		}()
		srv.ListenAndServe()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fixture is a Loop over a copy of testdata/server.
type fixture struct {
	t     *testing.T
	src   string
	port  int
	loop  *Loop
	diags *diagLog
	stop  func()
}

type diagLog struct {
	mu  sync.Mutex
	got []map[string][]build.Diagnostic
}

func (d *diagLog) add(m map[string][]build.Diagnostic) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, m)
}

func (d *diagLog) all() []map[string][]build.Diagnostic {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]map[string][]build.Diagnostic(nil), d.got...)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// goConfig is a Loop config for the Go server fixture in src.
func goConfig(t testing.TB, src string, port int) Config {
	return Config{
		Builder: &build.GoBuild{Dir: src, Package: ".", Output: filepath.Join(t.TempDir(), "server")},
		Run: run.Spec{
			Env:          append(os.Environ(), fmt.Sprintf("PORT=%d", port)),
			Port:         port,
			ReadyTimeout: time.Minute,
		},
		HoldTimeout: time.Minute,
	}
}

func newGoFixture(t *testing.T, mutate func(*Config)) *fixture {
	t.Helper()
	f := &fixture{t: t, src: copyDir(t, filepath.Join("testdata", "server")), port: freePort(t), diags: &diagLog{}}
	cfg := goConfig(t, f.src, f.port)
	cfg.Run.Argv = []string{cfg.Builder.(*build.GoBuild).Output}
	cfg.OnDiagnostics = f.diags.add
	if mutate != nil {
		mutate(&cfg)
	}
	f.start(cfg)
	return f
}

func (f *fixture) start(cfg Config) {
	loop, err := New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.loop = loop
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- loop.Run(ctx) }()
	var once sync.Once
	f.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				f.t.Errorf("loop stopped with %v", err)
			}
		})
	}
	f.t.Cleanup(f.stop)
}

// setVersion rewrites the fixture's version constant, as an editor save does.
func setVersion(t testing.TB, src, v string) {
	t.Helper()
	p := filepath.Join(src, "main.go")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "const version = ") {
			lines[i] = fmt.Sprintf("const version = %q", v)
		}
	}
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
}

// client sends requests through DialLocal, as the tunnel does.
func client(l *Loop) *http.Client {
	return &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return l.DialLocal(ctx)
		},
	}}
}

func get(c *http.Client) (string, error) {
	resp, err := c.Get("http://program/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s: %s", resp.Status, b)
	}
	return string(b), nil
}

// waitStatus polls until cond holds; generous, for a loaded machine.
func waitStatus(t testing.TB, l *Loop, what string, cond func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		s := l.Status()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; status %+v", what, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitBody polls through DialLocal until the program answers want.
func waitBody(t testing.TB, c *http.Client, want string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		got, err := get(c)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("program never answered %q; last %q, %v", want, got, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
