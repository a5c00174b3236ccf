// Package orders is the end-to-end fixture of the orders sample: a test
// namespace of the sandbox running users and orders as stand-ins, a private
// kloop daemon whose kubeconfig targets it, a workspace holding a copy of
// the orders program, and what a cluster client does to reach it.
package orders

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
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kloop/kloop/kube/portforward"
	"github.com/kloop/kloop/sandbox/standin"
	"github.com/kloop/kloop/session"
	"github.com/kloop/kloop/test/cluster"
	"github.com/kloop/kloop/test/editor"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// fixture is a namespace running the users and orders samples as
// stand-ins, a private daemon whose kubeconfig targets that namespace, and
// a workspace holding a copy of the orders program.
type Fixture struct {
	Env      *cluster.Env
	StandIns *cluster.StandIns
	Daemon   *editor.Env
	// WS is the workspace; Main its copy of the orders main.go.
	WS, Main  string
	LocalPort int
	PF        *portforward.Dialer
}

// ordersSource is the sample's main.go with a marker in its answer, so a
// response tells which build served it.
func Source(t testing.TB, marker string) string {
	t.Helper()
	src, err := os.ReadFile(testdata("orders/main.go"))
	if err != nil {
		t.Fatal(err)
	}
	const anchor = `"servedBy": cfg.Pod`
	if !bytes.Contains(src, []byte(anchor)) {
		t.Fatalf("orders/main.go no longer has %s; update the test", anchor)
	}
	return strings.Replace(string(src), anchor, anchor+`, "build": "`+marker+`"`, 1)
}

// New starts the fixture; opts change how the stand-ins run (a registry
// to pull the agent image from, say).
func New(t testing.TB, kloopBin string, opts ...cluster.StandInOption) *Fixture {
	t.Helper()
	env := cluster.New(t)
	si := env.StartStandIns(t, cluster.DefaultImages(), opts...)
	env.Apply(t, testdata("users.yaml"), testdata("orders.yaml"))
	for _, pod := range env.WaitPodsRunning(t, "app=orders", 2) {
		si.Wait(t, pod.Name, "orders")
	}
	for _, pod := range env.WaitPodsRunning(t, "app=users", 1) {
		si.Wait(t, pod.Name, "users")
	}

	warmAgent(t, env, si)
	f := &Fixture{Env: env, StandIns: si, LocalPort: FreePort(t), PF: portforward.NewDialer(env.Config)}
	f.WS = t.TempDir()
	f.Main = filepath.Join(f.WS, "main.go")
	kloopYAML := fmt.Sprintf(`kubeconfig: %s
intercepts:
  - workload: orders
    program: .
    port: "8080:%d"
    env:
      HTTP_ADDR: "127.0.0.1:%d"
      ADMIN_ADDR: "127.0.0.1:0"
`, env.Kubeconfig, f.LocalPort, f.LocalPort)
	files := map[string]string{
		"go.mod":      "module example.com/orders\n\ngo 1.26\n",
		"main.go":     Source(t, "laptop-v1"),
		".kloop.yaml": kloopYAML,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(f.WS, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.Daemon = editor.NewEnv(t, kloopBin)
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(f.Daemon.State, "daemon.log")); err == nil {
				t.Logf("daemon log:\n%s", log)
			}
		}
	})
	return f
}

func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type Result struct {
	Stdout, Stderr string
	Code           int
}

// kloop runs the CLI in the workspace. The timeout only turns a hang into
// a failure.
func (f *Fixture) Kloop(t testing.TB, args ...string) Result {
	t.Helper()
	return f.KloopIn(t, f.WS, args...)
}

// KloopIn runs the CLI in dir with the fixture's daemon.
func (f *Fixture) KloopIn(t testing.TB, dir string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cluster.WaitTimeout)
	defer cancel()
	cmd := f.Daemon.Command(ctx, args...)
	cmd.Dir = dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errOut.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run kloop %v: %v", args, err)
	}
	return r
}

func (f *Fixture) MustKloop(t testing.TB, args ...string) Result {
	t.Helper()
	r := f.Kloop(t, args...)
	if r.Code != 0 {
		t.Fatalf("kloop %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r
}

func (f *Fixture) Status(t testing.TB) session.Status {
	t.Helper()
	r := f.MustKloop(t, "status", "-o", "json")
	var st session.Status
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, r.Stdout)
	}
	return st
}

// Answer is what GET /orders/1 returns.
type Answer struct {
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
func (f *Fixture) GetOrder(t testing.TB, header ...string) (int, Answer, string) {
	t.Helper()
	var lastErr error
	var code int
	var a Answer
	var body string
	Eventually(t, "an answer from the orders Service", func() bool {
		code, a, body, lastErr = f.TryGetOrder(t, header...)
		if lastErr != nil {
			t.Logf("GET /orders/1: %v (retrying)", lastErr)
		}
		return lastErr == nil
	})
	return code, a, body
}

func (f *Fixture) TryGetOrder(t testing.TB, header ...string) (int, Answer, string, error) {
	t.Helper()
	ctx := context.Background()
	svc, err := f.Env.Client.CoreV1().Services(f.Env.Namespace).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		return 0, Answer{}, "", err
	}
	var tp intstr.IntOrString
	for _, sp := range svc.Spec.Ports {
		if sp.Port == 8080 {
			tp = sp.TargetPort
		}
	}
	pod := f.ReadyPod(t, labels.SelectorFromSet(svc.Spec.Selector).String())
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
			return f.PF.Dial(ctx, f.Env.Namespace, pod.Name, target)
		},
	}}
	req, _ := http.NewRequest(http.MethodGet, "http://orders/orders/1", nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, Answer{}, "", fmt.Errorf("via Service orders (pod %s port %d): %w", pod.Name, target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, Answer{}, "", err
	}
	var a Answer
	_ = json.Unmarshal(data, &a)
	return resp.StatusCode, a, string(data), nil
}

func (f *Fixture) ReadyPod(t testing.TB, selector string) corev1.Pod {
	t.Helper()
	var found corev1.Pod
	Eventually(t, "a ready pod for "+selector, func() bool {
		pods, err := f.Env.Client.CoreV1().Pods(f.Env.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
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
func (f *Fixture) Specs(t testing.TB) (any, any) {
	t.Helper()
	ctx := context.Background()
	d, err := f.Env.Client.AppsV1().Deployments(f.Env.Namespace).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.Env.Client.CoreV1().Services(f.Env.Namespace).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template, s.Spec.Ports
}

// eventually polls cond; the harness's generous bound only turns a hang
// into a failure that names what was awaited.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(cluster.WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not the case after %s", what, cluster.WaitTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func PidAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && !strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}

var warmed sync.Once

// WarmAgent is warmAgent for the suites' other samples.
func WarmAgent(t testing.TB, env *cluster.Env, si *cluster.StandIns) { warmAgent(t, env, si) }

// warmAgent has the stand-ins build the kloop binary that stands in for
// the agent image, once per test binary, by running `kloop version` in a
// pod. Otherwise the first intercept of the run waits for that build (a
// minute or more on a loaded 2-core machine) inside its own deadline.
func warmAgent(t testing.TB, env *cluster.Env, si *cluster.StandIns) {
	t.Helper()
	warmed.Do(func() {
		const name = "kloop-warm-agent"
		manifest := `apiVersion: v1
kind: Pod
metadata:
  name: ` + name + `
spec:
  restartPolicy: Never
  containers:
    - name: kloop
      image: ` + standin.AgentImage + `:warm-up
      args: ["version"]
`
		if err := env.ApplyYAML(context.Background(), []byte(manifest)); err != nil {
			t.Fatalf("apply the warm-up pod: %v", err)
		}
		Eventually(t, "the kloop agent stand-in built", func() bool {
			for _, p := range si.Processes() {
				if p.Pod == name {
					return true
				}
			}
			return false
		})
		if err := env.Client.CoreV1().Pods(env.Namespace).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})
}

// testdata names a file of test/testdata, wherever the test runs from.
func testdata(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", name)
}
