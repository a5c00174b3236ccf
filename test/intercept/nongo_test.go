package intercept_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pythonServer is a program that is not Go: it answers like the orders
// sample, with its build marker, the pod's POD_NAME and the ConfigMap's
// GREETING, so an answer proves the pod's env reached it.
func pythonServer(build string) string {
	return `import http.server, json, os

BUILD = "` + build + `"

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({"build": BUILD, "servedBy": os.environ.get("POD_NAME", ""),
                           "greeting": os.environ.get("GREETING", "")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

host, port = os.environ["HTTP_ADDR"].rsplit(":", 1)
http.server.ThreadingHTTPServer((host, int(port)), Handler).serve_forever()
`
}

// TestInterceptRunsAProgramThatIsNotGo is a Python service behind an
// intercept, configured in .kloop.yaml with a build command, a run command
// and the files to watch: it gets the pod's env, a change relaunches it,
// a build error keeps the old process serving, and the fix relaunches.
func TestInterceptRunsAProgramThatIsNotGo(t *testing.T) {
	f := newFixture(t)
	server := filepath.Join(f.WS, "server.py")
	write := func(src string) {
		t.Helper()
		if err := os.WriteFile(server, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(pythonServer("py-v1"))
	kloopYAML := fmt.Sprintf(`kubeconfig: %s
intercepts:
  - workload: orders
    port: "8080:%d"
    build: {command: [python3, -m, py_compile, server.py]}
    run: {command: [python3, server.py]}
    watch: ["*.py"]
    env:
      HTTP_ADDR: "127.0.0.1:%d"
`, f.Env.Kubeconfig, f.LocalPort, f.LocalPort)
	if err := os.WriteFile(filepath.Join(f.WS, ".kloop.yaml"), []byte(kloopYAML), 0o644); err != nil {
		t.Fatal(err)
	}

	f.MustKloop(t, "intercept", "orders", "--detach")
	code, a, body := f.GetOrder(t)
	if code != 200 || a.Build != "py-v1" || a.Greeting != "hello from orders" || !strings.HasPrefix(a.ServedBy, "orders-") {
		t.Fatalf("through the intercept: %d %s, want py-v1 with the pod's GREETING and POD_NAME", code, body)
	}
	st := f.Status(t)
	if st.Process == nil || st.Process.State != "running" {
		t.Fatalf("status: %+v", st)
	}
	pid := st.Process.PID

	relaunchedTo := func(build string) {
		t.Helper()
		eventually(t, "a relaunch to "+build, func() bool {
			st := f.Status(t)
			return st.Process != nil && st.Process.PID != pid && st.Process.State == "running"
		})
		pid = f.Status(t).Process.PID
		if code, a, body := f.GetOrder(t); code != 200 || a.Build != build {
			t.Fatalf("after the change: %d %s, want %s", code, body, build)
		}
	}
	write(pythonServer("py-v2"))
	relaunchedTo("py-v2")

	// A syntax error: the build command fails, the old process serves on.
	write(pythonServer("py-v3") + "def broken(:\n")
	eventually(t, "the failed build in the status", func() bool {
		st := f.Status(t)
		return st.LastBuild != nil && !st.LastBuild.OK
	})
	if st := f.Status(t); st.Process == nil || st.Process.PID != pid || st.Process.State != "build-failed" || !pidAlive(pid) {
		t.Errorf("after the failed build: %+v, want process %d alive, its state build-failed", st.Process, pid)
	}
	if code, a, body := f.GetOrder(t); code != 200 || a.Build != "py-v2" {
		t.Errorf("after the failed build: %d %s, want the old py-v2 still serving", code, body)
	}

	write(pythonServer("py-v3"))
	relaunchedTo("py-v3")
	if st := f.Status(t); st.LastBuild == nil || !st.LastBuild.OK {
		t.Errorf("after the fix: last build %+v, want ok", st.LastBuild)
	}

	f.MustKloop(t, "leave", "orders")
	if pidAlive(pid) {
		t.Errorf("the python process %d still runs after leave", pid)
	}
	if code, a, body := f.GetOrder(t); code != 200 || a.Build != "" {
		t.Errorf("after leave: %d %s, want the app's answer", code, body)
	}
}
