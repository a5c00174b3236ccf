package fidelity_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kloop/kloop/kube/portforward"
	"github.com/kloop/kloop/test/cluster"
	"github.com/kloop/kloop/test/editor"
)

func TestMain(m *testing.M) { cluster.Main(m) }

// kloop is built once per test binary (with -race under `go test -race`).
var kloopBinary = editor.NewBinary("kloop-fidelity-test-bin")

func binary(t testing.TB) string { return kloopBinary.Path(t) }

// writeModule writes files (path relative to dir -> content) into dir.
func writeModule(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// goBuild builds pkg of the module in dir into a binary and returns its path.
func goBuild(t *testing.T, dir, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "program")
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// getThroughService GETs path from a Ready pod of the Service svc, at the
// port the Service's first port targets now (a number or a container
// port's name), through a port-forward: where the cluster's traffic for
// the Service goes, the agent's port while the workload is intercepted.
func getThroughService(ctx context.Context, env *cluster.Env, pf *portforward.Dialer, svc, path string) (string, error) {
	s, err := env.Client.CoreV1().Services(env.Namespace).Get(ctx, svc, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	pods, err := env.Client.CoreV1().Pods(env.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(s.Spec.Selector).String()})
	if err != nil {
		return "", err
	}
	tp := s.Spec.Ports[0].TargetPort
	for i := range pods.Items {
		pod := &pods.Items[i]
		if !podReady(pod) || pod.DeletionTimestamp != nil {
			continue
		}
		target := tp.IntValue()
		for _, c := range pod.Spec.Containers {
			for _, cp := range c.Ports {
				if tp.StrVal != "" && cp.Name == tp.StrVal {
					target = int(cp.ContainerPort)
				}
			}
		}
		return get(ctx, pf, env.Namespace, pod.Name, target, path)
	}
	return "", fmt.Errorf("no Ready pod of Service %s", svc)
}

// get sends one GET to pod:port through a port-forward and returns the body
// of a 200 answer.
func get(ctx context.Context, pf *portforward.Dialer, namespace, pod string, port int, path string) (string, error) {
	conn, err := pf.Dial(ctx, namespace, pod, port)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+pod+path, nil)
	if err != nil {
		return "", err
	}
	req.Close = true
	if err := req.Write(conn); err != nil {
		return "", fmt.Errorf("send GET %s to %s:%d: %w", path, pod, port, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return "", fmt.Errorf("GET %s from %s:%d: %w", path, pod, port, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s from %s:%d: HTTP %d: %s", path, pod, port, resp.StatusCode, bytes.TrimSpace(body))
	}
	return string(body), nil
}

// safeBuffer collects a process's output while the test reads it.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
