package intercept_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kloop/kloop/kube/portforward"
	"github.com/kloop/kloop/session"
	"github.com/kloop/kloop/test/editor"
	"github.com/kloop/kloop/test/sandbox"
)

func TestMain(m *testing.M) { sandbox.Main(m) }

var (
	buildOnce sync.Once
	kloopBin  string
	buildErr  error
)

// binary builds kloop once per test binary, into a fixed directory because
// sandbox.Main exits without giving TestMain a chance to clean up.
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir := filepath.Join(os.TempDir(), "kloop-intercept-test-bin")
		if buildErr = os.MkdirAll(dir, 0o755); buildErr == nil {
			kloopBin, buildErr = editor.BuildKloop(dir)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return kloopBin
}

// fixture is a namespace running the users and orders samples as
// stand-ins, a private daemon whose kubeconfig targets that namespace, and
// a workspace holding a copy of the orders program.
type fixture struct {
	env       *sandbox.Env
	daemon    *editor.Env
	ws        string
	main      string // the workspace's main.go
	localPort int
	pf        *portforward.Dialer
}

// ordersSource is the sample's main.go with a marker in its answer, so a
// response tells which build served it.
func ordersSource(t testing.TB, marker string) string {
	t.Helper()
	src, err := os.ReadFile("../testdata/orders/main.go")
	if err != nil {
		t.Fatal(err)
	}
	const anchor = `"servedBy": cfg.Pod`
	if !bytes.Contains(src, []byte(anchor)) {
		t.Fatalf("orders/main.go no longer has %s; update the test", anchor)
	}
	return strings.Replace(string(src), anchor, anchor+`, "build": "`+marker+`"`, 1)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := sandbox.New(t)
	si := env.StartStandIns(t, sandbox.DefaultImages())
	env.Apply(t, "../testdata/users.yaml", "../testdata/orders.yaml")
	for _, pod := range env.WaitPodsRunning(t, "app=orders", 2) {
		si.Wait(t, pod.Name, "orders")
	}
	for _, pod := range env.WaitPodsRunning(t, "app=users", 1) {
		si.Wait(t, pod.Name, "users")
	}

	f := &fixture{env: env, localPort: freePort(t), pf: portforward.NewDialer(env.Config)}
	f.ws = t.TempDir()
	f.main = filepath.Join(f.ws, "main.go")
	kloopYAML := fmt.Sprintf(`kubeconfig: %s
intercepts:
  - workload: orders
    program: .
    port: "8080:%d"
    env:
      HTTP_ADDR: "127.0.0.1:%d"
      ADMIN_ADDR: "127.0.0.1:0"
`, env.Kubeconfig, f.localPort, f.localPort)
	files := map[string]string{
		"go.mod":      "module example.com/orders\n\ngo 1.26\n",
		"main.go":     ordersSource(t, "laptop-v1"),
		".kloop.yaml": kloopYAML,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(f.ws, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.daemon = editor.NewEnv(t, binary(t))
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(f.daemon.State, "daemon.log")); err == nil {
				t.Logf("daemon log:\n%s", log)
			}
		}
	})
	return f
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

type result struct {
	stdout, stderr string
	code           int
}

// kloop runs the CLI in the workspace. The timeout only turns a hang into
// a failure.
func (f *fixture) kloop(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sandbox.WaitTimeout)
	defer cancel()
	cmd := f.daemon.Command(ctx, args...)
	cmd.Dir = f.ws
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run kloop %v: %v", args, err)
	}
	return r
}

func (f *fixture) mustKloop(t testing.TB, args ...string) result {
	t.Helper()
	r := f.kloop(t, args...)
	if r.code != 0 {
		t.Fatalf("kloop %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

func (f *fixture) status(t testing.TB) session.Status {
	t.Helper()
	r := f.mustKloop(t, "status", "-o", "json")
	var st session.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, r.stdout)
	}
	return st
}

// ordersAnswer is what GET /orders/1 returns.
type ordersAnswer struct {
	Order    map[string]string `json:"order"`
	User     map[string]string `json:"user"`
	Greeting string            `json:"greeting"`
	ServedBy string            `json:"servedBy"`
	Build    string            `json:"build"`
}

// getOrder does what a cluster client does: it sends GET /orders/1 to the
// orders Service, resolved to a ready pod and the Service's targetPort (as
// `kubectl port-forward svc/orders` does), through a real port-forward. It
// returns the HTTP status and the decoded answer. Transport errors are
// retried: kwok marks a new pod Ready before its stand-in process serves,
// which a real kubelet's readiness would not.
func (f *fixture) getOrder(t testing.TB, header ...string) (int, ordersAnswer, string) {
	t.Helper()
	var lastErr error
	var code int
	var a ordersAnswer
	var body string
	eventually(t, "an answer from the orders Service", func() bool {
		code, a, body, lastErr = f.tryGetOrder(t, header...)
		if lastErr != nil {
			t.Logf("GET /orders/1: %v (retrying)", lastErr)
		}
		return lastErr == nil
	})
	return code, a, body
}

func (f *fixture) tryGetOrder(t testing.TB, header ...string) (int, ordersAnswer, string, error) {
	t.Helper()
	ctx := context.Background()
	svc, err := f.env.Client.CoreV1().Services(f.env.Namespace).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		return 0, ordersAnswer{}, "", err
	}
	var tp intstr.IntOrString
	for _, sp := range svc.Spec.Ports {
		if sp.Port == 8080 {
			tp = sp.TargetPort
		}
	}
	pod := f.readyPod(t, labels.SelectorFromSet(svc.Spec.Selector).String())
	target := tp.IntValue()
	if tp.Type == intstr.String {
		for _, c := range pod.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == tp.StrVal {
					target = int(cp.ContainerPort)
				}
			}
		}
	}
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return f.pf.Dial(ctx, f.env.Namespace, pod.Name, target)
		},
	}}
	req, _ := http.NewRequest(http.MethodGet, "http://orders/orders/1", nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, ordersAnswer{}, "", fmt.Errorf("via Service orders (pod %s port %d): %w", pod.Name, target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, ordersAnswer{}, "", err
	}
	var a ordersAnswer
	_ = json.Unmarshal(data, &a)
	return resp.StatusCode, a, string(data), nil
}

func (f *fixture) readyPod(t testing.TB, selector string) corev1.Pod {
	t.Helper()
	var found corev1.Pod
	eventually(t, "a ready pod for "+selector, func() bool {
		pods, err := f.env.Client.CoreV1().Pods(f.env.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					found = p
					return true
				}
			}
		}
		return false
	})
	return found
}

// specs is what leave must restore exactly.
func (f *fixture) specs(t testing.TB) (any, any) {
	t.Helper()
	ctx := context.Background()
	d, err := f.env.Client.AppsV1().Deployments(f.env.Namespace).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.env.Client.CoreV1().Services(f.env.Namespace).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template, s.Spec.Ports
}

// eventually polls cond; the harness's generous bound only turns a hang
// into a failure that names what was awaited.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(sandbox.WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not the case after %s", what, sandbox.WaitTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func pidAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && !strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}
