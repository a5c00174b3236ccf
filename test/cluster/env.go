package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kloop/kloop/sandbox"
)

// WaitTimeout bounds every wait of the harness. It is generous because a
// loaded 2-core machine is slow; a wait that runs out fails the test with
// what it was waiting for.
const WaitTimeout = 2 * time.Minute

// Env is one test's view of the shared cluster: its own namespace and
// clients.
type Env struct {
	Namespace string
	// Kubeconfig is a 0600 kubeconfig file whose context's namespace is Namespace.
	Kubeconfig string
	// Config is a copy for this test; change it freely.
	Config  *rest.Config
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	Cluster *Cluster
}

// New creates a namespace for t (named after the test, with a random
// suffix) and deletes it when t ends.
func New(t testing.TB) *Env {
	t.Helper()
	c := Shared(t)
	ns := namespaceName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"kloop.dev/test": "true"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create test namespace %s: %v", ns, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
		defer cancel()
		err := c.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete test namespace %s: %v", ns, err)
		}
	})
	env := &Env{Namespace: ns, Config: rest.CopyConfig(c.Config), Client: c.Client, Dynamic: c.Dynamic, Cluster: c}
	env.Kubeconfig = writeNamespacedKubeconfig(t, c.Kubeconfig, ns)
	return env
}

func namespaceName(testName string) string {
	base := strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(testName), "-"), "-")
	if len(base) > 40 {
		base = strings.Trim(base[:40], "-")
	}
	return base + "-" + utilrand.String(5)
}

func writeNamespacedKubeconfig(t testing.TB, src, ns string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(src)
	if err != nil {
		t.Fatalf("read sandbox kubeconfig: %v", err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		t.Fatalf("sandbox kubeconfig %s has no current context", src)
	}
	nctx := *ctx
	nctx.Namespace = ns
	cfg.Contexts = map[string]*clientcmdapi.Context{cfg.CurrentContext: &nctx}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Apply creates every object of the YAML manifests (multi-document) in the
// test's namespace, overriding the namespace of namespaced objects.
func (e *Env) Apply(t testing.TB, paths ...string) {
	t.Helper()
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("read manifest: %v", err)
		}
		if err := e.ApplyYAML(context.Background(), data); err != nil {
			t.Fatalf("apply %s: %v", path, err)
		}
	}
}

// ApplyYAML creates the objects of a (multi-document) YAML manifest in
// the test's namespace.
func (e *Env) ApplyYAML(ctx context.Context, manifest []byte) error {
	return sandbox.Apply(ctx, e.Config, e.Namespace, manifest)
}

// WaitPodsRunning waits until at least n pods matching the label selector
// are Running and not being deleted, and returns them.
func (e *Env) WaitPodsRunning(t testing.TB, selector string, n int) []corev1.Pod {
	t.Helper()
	var running []corev1.Pod
	var last string
	err := poll(context.Background(), WaitTimeout, func(ctx context.Context) (bool, error) {
		pods, err := e.Client.CoreV1().Pods(e.Namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		running = running[:0]
		var phases []string
		for _, p := range pods.Items {
			phases = append(phases, p.Name+"="+string(p.Status.Phase))
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				running = append(running, p)
			}
		}
		last = fmt.Sprintf("pods: %v", phases)
		return len(running) >= n, nil
	})
	if err != nil {
		t.Fatalf("wait for %d running pods %q in %s: %v (last seen %s)%s", n, selector, e.Namespace, err, last, e.Cluster.health())
	}
	return running
}

// poll calls f every 200ms until it returns true or an error, or timeout passes.
func poll(ctx context.Context, timeout time.Duration, f func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, err := f(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %s", timeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
