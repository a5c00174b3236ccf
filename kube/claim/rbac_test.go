package claim

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/kloop/kloop/test/cluster"
)

// serviceAccountConfig creates ServiceAccount name in ns and returns a
// rest.Config that authenticates as it with a token from the TokenRequest
// API, and nothing else of the admin's credentials.
func serviceAccountConfig(t *testing.T, admin *rest.Config, cs kubernetes.Interface, ns, name string) *rest.Config {
	t.Helper()
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secs := int64(3600)
	tok, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	cfg := rest.AnonymousClientConfig(admin)
	cfg.BearerToken = tok.Status.Token
	return cfg
}

// addClaimer makes the ServiceAccount a claimer the way a cluster admin
// does: a subject of RoleBinding kloop-claimers from deploy/.
func addClaimer(t *testing.T, cs kubernetes.Interface, ns, sa string) {
	t.Helper()
	subject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}
	rbs := cs.RbacV1().RoleBindings(DefaultNamespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		rb, err := rbs.Get(t.Context(), ClaimersRoleBinding, metav1.GetOptions{})
		if err != nil {
			return err
		}
		rb.Subjects = append(rb.Subjects, subject)
		_, err = rbs.Update(t.Context(), rb, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			rb, err := rbs.Get(t.Context(), ClaimersRoleBinding, metav1.GetOptions{})
			if err != nil {
				return err
			}
			rb.Subjects = slices.DeleteFunc(rb.Subjects, func(s rbacv1.Subject) bool { return s == subject })
			_, err = rbs.Update(t.Context(), rb, metav1.UpdateOptions{})
			return err
		})
	})
}

// testNamespace is a fresh namespace, deleted when the test ends.
func testNamespace(t *testing.T, _ kubernetes.Interface) string {
	t.Helper()
	return cluster.New(t).Namespace
}

func TestRestrictedServiceAccountCanClaimAndNothingElse(t *testing.T) {
	adminCfg, cs := testCluster(t)
	applyDeploy(t, adminCfg)
	ns := testNamespace(t, cs)
	saCfg := serviceAccountConfig(t, adminCfg, cs, ns, "claimer")
	addClaimer(t, cs, ns, "claimer")
	pool := createPool(t, adminCfg, func(a *PoolAdmin, name string) error {
		_, err := a.CreateNamespacePool(t.Context(), name, 1, CreateOptions{})
		return err
	})
	sa := kubernetes.NewForConfigOrDie(saCfg)

	c := newClaimer(t, saCfg, "claimer@ci")
	held, err := c.Claim(t.Context(), pool, time.Hour, nil)
	if err != nil {
		t.Fatalf("claim as restricted service account: %v", err)
	}
	// The claimer works in its slot: deploys, configures, intercepts.
	one := int32(1)
	labels := map[string]string{"app": "web"}
	if _, err := sa.AppsV1().Deployments(held.Namespace).Create(t.Context(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web"}}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Errorf("deploy into the slot: %v", err)
	}
	if _, err := sa.CoreV1().Secrets(held.Namespace).Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tok"}}, metav1.CreateOptions{}); err != nil {
		t.Errorf("create a secret in the slot: %v", err)
	}
	if err := c.Renew(t.Context(), held); err != nil {
		t.Errorf("renew: %v", err)
	}

	// Everything else is refused.
	refused := []struct {
		what string
		do   func() error
	}{
		{"list secrets in kube-system", func() error {
			_, err := sa.CoreV1().Secrets("kube-system").List(t.Context(), metav1.ListOptions{})
			return err
		}},
		{"list secrets in kloop-system", func() error {
			_, err := sa.CoreV1().Secrets(DefaultNamespace).List(t.Context(), metav1.ListOptions{})
			return err
		}},
		{"delete the pool", func() error {
			return sa.CoreV1().ConfigMaps(DefaultNamespace).Delete(t.Context(), PoolConfigMapPrefix+pool, metav1.DeleteOptions{})
		}},
		{"edit the pool", func() error {
			cm, err := sa.CoreV1().ConfigMaps(DefaultNamespace).Get(t.Context(), PoolConfigMapPrefix+pool, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cm.Data[PoolDataKey] = "slots: []"
			_, err = sa.CoreV1().ConfigMaps(DefaultNamespace).Update(t.Context(), cm, metav1.UpdateOptions{})
			return err
		}},
		{"create a namespace", func() error {
			_, err := sa.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testName(t)}}, metav1.CreateOptions{})
			return err
		}},
		{"create pods in another namespace", func() error {
			_, err := sa.CoreV1().Pods("default").Create(t.Context(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}}}, metav1.CreateOptions{})
			return err
		}},
		{"grant itself more in the slot", func() error {
			_, err := sa.RbacV1().RoleBindings(held.Namespace).Create(t.Context(), &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "more"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "claimer", Namespace: ns}},
			}, metav1.CreateOptions{})
			return err
		}},
		{"create a pool", func() error {
			a, err := NewPoolAdmin(saCfg)
			if err != nil {
				return err
			}
			_, err = a.CreateNamespacePool(t.Context(), testName(t), 1, CreateOptions{})
			return err
		}},
	}
	for _, r := range refused {
		err := r.do()
		if !apierrors.IsForbidden(err) && !errors.Is(err, ErrForbidden) {
			t.Errorf("%s: %v; want forbidden", r.what, err)
		}
	}

	if err := c.Release(t.Context(), held, nil); err != nil {
		t.Fatalf("release as restricted service account: %v", err)
	}
	assertClean(t, cs, held.Namespace)
}

func TestUnboundUserIsToldWhichPermissionIsMissing(t *testing.T) {
	adminCfg, cs := testCluster(t)
	pool := newPool(t, adminCfg, 1)
	ns := testNamespace(t, cs)
	outsider := serviceAccountConfig(t, adminCfg, cs, ns, "outsider")
	_, err := newClaimer(t, outsider, "outsider@x").Claim(t.Context(), pool, time.Hour, nil)
	var fe *ForbiddenError
	if !errors.As(err, &fe) {
		t.Fatalf("claim without RBAC: %v; want ForbiddenError", err)
	}
	if fe.Verb != "get" || fe.Resource != "configmaps" || fe.Namespace != DefaultNamespace {
		t.Errorf("forbidden names %s %s in %s; want get configmaps in %s", fe.Verb, fe.Resource, fe.Namespace, DefaultNamespace)
	}
	if !strings.Contains(err.Error(), "system:serviceaccount:"+ns+":outsider") || !strings.Contains(err.Error(), "deploy/") {
		t.Errorf("message should name the user and the fix: %v", err)
	}
}

func TestKubeconfigSlotPool(t *testing.T) {
	adminCfg, cs := testCluster(t)
	applyDeploy(t, adminCfg)
	// The "other cluster" is this one, reached through a kubeconfig whose
	// context namespace is the slot.
	target := testNamespace(t, cs)
	data, err := KubeconfigFromREST(adminCfg, "other", target)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ns := testNamespace(t, cs)
	saCfg := serviceAccountConfig(t, adminCfg, cs, ns, "claimer")
	addClaimer(t, cs, ns, "claimer")
	pool := createPool(t, adminCfg, func(a *PoolAdmin, name string) error {
		_, err := a.CreateKubeconfigPool(t.Context(), name, []KubeconfigSlot{{Path: path}}, CreateOptions{})
		return err
	})

	// A restricted claimer can read exactly the pool's kubeconfig Secret.
	c := newClaimer(t, saCfg, "claimer@ci")
	held, err := c.Claim(t.Context(), pool, time.Hour, nil)
	if err != nil {
		t.Fatalf("claim kubeconfig slot: %v", err)
	}
	if held.Kind != KindKubeconfig || held.Namespace != target || held.Server != adminCfg.Host {
		t.Errorf("claim %+v: want a kubeconfig slot on %s namespace %s", held, adminCfg.Host, target)
	}
	kc, err := c.Kubeconfig(t.Context(), held)
	if err != nil {
		t.Fatal(err)
	}
	tgt, err := newKubeconfigTarget(kc, "claim")
	if err != nil || tgt.namespace() != target {
		t.Fatalf("written kubeconfig: %v, namespace %q", err, tgt.namespace())
	}
	fillNamespace(t, cs, target)
	if err := c.Release(t.Context(), held, nil); err != nil {
		t.Fatalf("release kubeconfig slot: %v", err)
	}
	assertClean(t, cs, target)
}
