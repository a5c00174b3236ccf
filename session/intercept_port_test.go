package session

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// portServer is a main package that serves on $PORT, as a service that
// takes its port from the pod's env does.
const portServer = `package main

import (
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("served on " + os.Getenv("PORT"))) })
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil); err != nil {
		os.Exit(1)
	}
}
`

// TestInterceptWithAProgramAndNoPortUsesThePortTheEngineChose is `kloop
// intercept inventory --program .` with no --port and no port: in
// .kloop.yaml: the plan is not refused, the program starts after the
// engine chose the workload's port, and the local port defaults to it.
func TestInterceptWithAProgramAndNoPortUsesThePortTheEngineChose(t *testing.T) {
	for name, kloopYAML := range map[string]string{
		"CLI":         "",
		".kloop.yaml": "intercepts:\n  - workload: inventory\n    program: .\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "kubeconfig"))
			port := freePort(t)
			f := &fakeInterceptEngine{inferred: port, env: []string{"PORT=" + strconv.Itoa(port), "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}}
			m := NewManager(Options{Store: NewStore(filepath.Join(t.TempDir(), "state.json")), Engines: Engines{Intercepts: f}})
			t.Cleanup(func() { m.Close(context.Background()) })
			dir := t.TempDir()
			files := map[string]string{"go.mod": "module example.com/inventory\n\ngo 1.26\n", "main.go": portServer}
			args := InterceptArgs{Workload: "inventory"}
			if kloopYAML != "" {
				files[".kloop.yaml"] = kloopYAML
			} else {
				args.Program = "."
			}
			for n, content := range files {
				if err := os.WriteFile(filepath.Join(dir, n), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			s := m.Open(dir)
			st, err := s.Intercept(t.Context(), args, NoProgress{})
			if err != nil {
				t.Fatalf("intercept with a program and no port: %v", err)
			}
			want := strconv.Itoa(port) + "->" + strconv.Itoa(port)
			if len(st.Ports) != 1 || st.Ports[0] != want {
				t.Errorf("intercept ports = %v, want [%s]: the engine's port, locally the same", st.Ports, want)
			}
			// A tunneled connection for that port reaches the program.
			s.imu.Lock()
			ai := s.intercepts["deployment/inventory"]
			s.imu.Unlock()
			c, err := s.dialLocal(t.Context(), ai, port)
			if err != nil {
				t.Fatalf("dial the intercepted port: %v", err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(c)
			if !strings.Contains(string(body), "served on "+strconv.Itoa(port)) {
				t.Errorf("the program answered %q, want it serving on %d", body, port)
			}
			if err := s.Leave(t.Context(), LeaveArgs{Workload: "inventory"}, NoProgress{}); err != nil {
				t.Fatal(err)
			}
			if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
				c.Close()
				t.Errorf("the program still serves on %d after leave", port)
			}
		})
	}
}
