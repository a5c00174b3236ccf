package cluster

import (
	"context"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func TestMain(m *testing.M) { Main(m) }

func TestNewGivesEachTestItsOwnNamespace(t *testing.T) {
	var first string
	t.Run("a", func(t *testing.T) {
		env := New(t)
		first = env.Namespace
		ctx := context.Background()
		if _, err := env.Client.CoreV1().ConfigMaps(env.Namespace).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "x"}, Data: map[string]string{"k": "v"},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create configmap in test namespace: %v", err)
		}
	})
	t.Run("b", func(t *testing.T) {
		env := New(t)
		if env.Namespace == first {
			t.Fatalf("two tests got the same namespace %s", first)
		}
	})
	// After subtest a ended its namespace is being deleted.
	c := Shared(t)
	ns, err := c.Client.CoreV1().Namespaces().Get(context.Background(), first, metav1.GetOptions{})
	if err == nil && ns.DeletionTimestamp == nil {
		t.Errorf("namespace %s of a finished test is neither gone nor terminating", first)
	} else if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}

func TestKubeconfigIsPrivateAndNamespaced(t *testing.T) {
	env := New(t)
	fi, err := os.Stat(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode %v, want 0600", fi.Mode().Perm())
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: env.Kubeconfig}, &clientcmd.ConfigOverrides{})
	ns, _, err := cc.Namespace()
	if err != nil || ns != env.Namespace {
		t.Errorf("kubeconfig namespace %q (%v), want %q", ns, err, env.Namespace)
	}
	cfg, err := cc.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(cfg)
	if _, err := client.CoreV1().Namespaces().Get(context.Background(), env.Namespace, metav1.GetOptions{}); err != nil {
		t.Errorf("client from the test kubeconfig cannot read its namespace: %v", err)
	}
	if st, _ := os.Stat(Shared(t).Kubeconfig); st.Mode().Perm() != 0o600 {
		t.Errorf("cluster kubeconfig mode %v, want 0600", st.Mode().Perm())
	}
}

func TestClusterName(t *testing.T) {
	tests := []struct {
		arg0 string
		want string
	}{
		{"/tmp/go-build1/b001/sandbox.test", "t-sandbox-42"},
		{"/tmp/x/Claim_Pool.test", "t-claim-pool-42"},
		{"/tmp/x/a-very-long-package-name-for-tests.test", "t-a-very-long-package-name-42"},
		{"/tmp/x/..test", "t-x-42"},
	}
	for _, tt := range tests {
		if got := clusterName(tt.arg0, 42); got != tt.want {
			t.Errorf("clusterName(%q) = %q, want %q", tt.arg0, got, tt.want)
		}
	}
}
