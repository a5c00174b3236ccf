package intercept_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kloop/kloop/kube/intercept"
	"github.com/kloop/kloop/kube/portforward"
	"github.com/kloop/kloop/kube/workload"
	"github.com/kloop/kloop/test/cluster"
)

func TestMain(m *testing.M) { cluster.Main(m) }

const (
	usersManifest  = "../../test/testdata/users.yaml"
	ordersManifest = "../../test/testdata/orders.yaml"
)

var orders = workload.Workload{Kind: workload.Deployment, Name: "orders"}

// fixture is a namespace with users and orders running as stand-ins.
type fixture struct {
	env *cluster.Env
	si  *cluster.StandIns
	pf  *portforward.Dialer
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureWith(t, cluster.DefaultImages())
}

// newFixtureWith runs the pods' containers from images.
func newFixtureWith(t testing.TB, images cluster.Images) *fixture {
	t.Helper()
	env := cluster.New(t)
	si := env.StartStandIns(t, images)
	env.Apply(t, usersManifest, ordersManifest)
	for _, pod := range env.WaitPodsRunning(t, "app=orders", 2) {
		si.Wait(t, pod.Name, "orders")
	}
	return &fixture{env: env, si: si, pf: portforward.NewDialer(env.Config)}
}

// laptop is the developer's local process: it answers "laptop PATH" and
// counts requests.
type laptop struct {
	srv *httptest.Server
	mu  sync.Mutex
	n   int
}

func newLaptop(t testing.TB) *laptop { return newNamedLaptop(t, "laptop") }

// newNamedLaptop is another developer's machine: it answers "NAME PATH".
func newNamedLaptop(t testing.TB, name string) *laptop {
	l := &laptop{}
	l.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.n++
		l.mu.Unlock()
		fmt.Fprintf(w, "%s %s", name, r.URL.Path)
	}))
	t.Cleanup(l.srv.Close)
	return l
}

func (l *laptop) dial(ctx context.Context, port int) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", l.srv.Listener.Addr().String())
}

func (l *laptop) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func (f *fixture) config(l *laptop, t testing.TB) intercept.Config {
	return intercept.Config{
		Rest: f.env.Config, Client: f.env.Client, Namespace: f.env.Namespace, Local: l.dial,
		Progress: func(p intercept.Progress) { t.Logf("progress: %s: %s", p.Stage, p.Message) },
	}
}

// get sends GET path with the headers to port of pod through a Kubernetes
// port-forward, retrying (new port-forward) until a response arrives, and
// returns its status and body.
func (f *fixture) get(t testing.TB, pod string, port int, path string, header ...string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return f.pf.Dial(ctx, f.env.Namespace, pod, port)
		},
	}}
	deadline := time.Now().Add(cluster.WaitTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+pod+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		if err == nil {
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				return resp.StatusCode, string(body)
			}
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("GET %s on %s:%d: no response: %v", path, pod, port, lastErr)
	return 0, ""
}

// getService does what `kubectl port-forward svc/NAME PORT` does: picks a
// ready pod the Service selects, resolves the Service port's targetPort in
// it, and GETs path there through a port-forward.
func (f *fixture) getService(t testing.TB, svc string, port int, path string, header ...string) (string, int, string) {
	t.Helper()
	ctx := context.Background()
	s, err := f.env.Client.CoreV1().Services(f.env.Namespace).Get(ctx, svc, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var tp *intstr.IntOrString
	for _, sp := range s.Spec.Ports {
		if int(sp.Port) == port {
			tp = &sp.TargetPort
		}
	}
	if tp == nil {
		t.Fatalf("Service %s has no port %d", svc, port)
	}
	pod := f.readyPod(t, labels.SelectorFromSet(s.Spec.Selector).String())
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
	status, body := f.get(t, pod.Name, target, path, header...)
	return pod.Name, status, body
}

// readyPod waits for a ready, not terminating pod matching selector.
func (f *fixture) readyPod(t testing.TB, selector string) corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(cluster.WaitTimeout)
	for time.Now().Before(deadline) {
		pods, err := f.env.Client.CoreV1().Pods(f.env.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err == nil {
			for _, p := range pods.Items {
				if p.DeletionTimestamp == nil && podReady(&p) {
					return p
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no ready pod for %s", selector)
	return corev1.Pod{}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// snapshot is what leave must restore.
type snapshot struct {
	deploy  any
	service any
}

func (f *fixture) snapshot(t testing.TB) snapshot {
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
	return snapshot{deploy: d.Spec, service: s.Spec}
}

// waitFor polls cond until it holds or the harness's wait runs out.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(cluster.WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func isLaptop(body string) bool { return strings.HasPrefix(body, "laptop ") }

func mustClient(t testing.TB, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
