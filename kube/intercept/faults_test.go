package intercept_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/kloop/kloop/agent/tunnel"
	"github.com/kloop/kloop/kube/intercept"
	"github.com/kloop/kloop/kube/workload"
)

// A client with a forged token is refused by the agent, and the real
// intercept keeps working.
func TestForgedTokenIsRefused(t *testing.T) {
	f := newFixture(t)
	ic, err := intercept.Start(context.Background(), f.config(newLaptop(t), t), intercept.Spec{Workload: orders, Holder: "alice@laptop"})
	if err != nil {
		t.Fatalf("intercept: %v", err)
	}
	defer ic.Leave(context.Background())
	pod := ic.Tunnels().Pods()[0].Pod
	for _, forged := range []string{"not-the-token", strings.Repeat("0", 64)} {
		conn, err := f.pf.Dial(context.Background(), f.env.Namespace, pod, ic.Record().ControlPort)
		if err != nil {
			t.Fatalf("port-forward to the control port: %v", err)
		}
		c, err := tunnel.Dial(context.Background(), conn, forged)
		if err == nil {
			c.Close()
			t.Fatalf("the agent accepted a forged token")
		}
		// The agent proves itself first; a client that cannot check the
		// proof stops before it sends anything.
		if !errors.Is(err, tunnel.ErrAgentUnproven) {
			t.Errorf("forged token: %v, want ErrAgentUnproven", err)
		}
	}
	agentPort, _ := ic.Record().AgentPort(8080)
	if _, body := f.get(t, pod, agentPort, "/orders/1"); body != "laptop /orders/1" {
		t.Errorf("after the forged attempts: %q, want the laptop", body)
	}
}

// When the port-forward under a tunnel is cut, the agent sends traffic to
// the app; when it can be dialed again, the tunnel comes back by itself.
func TestTunnelCutFallsBackToAppAndReconnects(t *testing.T) {
	f := newFixture(t)
	inj := &intercept.Injector{Client: f.env.Client, Namespace: f.env.Namespace}
	res, err := inj.Inject(context.Background(), intercept.Spec{Workload: orders, Ports: []string{"8080"}, Holder: "alice@laptop"})
	if err != nil {
		t.Fatalf("inject: %v", err)
	}
	defer inj.Leave(context.Background(), orders, intercept.Holder{Name: "alice@laptop", ID: "alice@laptop"}, 0)

	var mu sync.Mutex
	var conns []net.Conn
	cut := false
	l := newLaptop(t)
	tuns, err := intercept.StartTunnels(context.Background(), intercept.TunnelsConfig{
		Client: f.env.Client, Namespace: f.env.Namespace, Selector: res.Selector, InterceptID: res.Record.ID,
		ControlPort: res.Record.ControlPort, Token: res.Token, Local: l.dial,
		Dial: func(ctx context.Context, pod string, port int) (net.Conn, error) {
			mu.Lock()
			defer mu.Unlock()
			if cut {
				return nil, errors.New("network cut")
			}
			c, err := f.pf.Dial(ctx, f.env.Namespace, pod, port)
			if err == nil {
				conns = append(conns, c)
			}
			return c, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tuns.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := tuns.WaitConnected(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if _, _, body := f.getService(t, "orders", 8080, "/orders/1"); body != "laptop /orders/1" {
		t.Fatalf("before the cut: %q, want the laptop", body)
	}

	mu.Lock()
	cut = true
	for _, c := range conns {
		c.Close()
	}
	mu.Unlock()
	// Every request gets an answer; once the agent noticed, it is the app's.
	var pod, body string
	var status int
	waitFor(t, "traffic back at the app after the cut", func() bool {
		pod, status, body = f.getService(t, "orders", 8080, "/orders/1")
		return !isLaptop(body)
	})
	if status != http.StatusOK || !strings.Contains(body, "keyboard") || !strings.Contains(body, pod) {
		t.Errorf("after the cut: %d %q, want the app", status, body)
	}
	for _, p := range tuns.Pods() {
		if p.Connected {
			t.Errorf("tunnel to %s reported up after the cut", p.Pod)
		}
	}

	mu.Lock()
	cut = false
	mu.Unlock()
	if err := tuns.WaitConnected(ctx, 2); err != nil {
		t.Fatalf("tunnels did not come back: %v", err)
	}
	if _, _, body := f.getService(t, "orders", 8080, "/orders/1"); body != "laptop /orders/1" {
		t.Errorf("after reconnecting: %q, want the laptop", body)
	}
}

// Tunnels follow the workload's pods: a deleted pod's tunnel goes, its
// replacement and a new replica get one.
func TestTunnelsFollowPods(t *testing.T) {
	f := newFixture(t)
	ic, err := intercept.Start(context.Background(), f.config(newLaptop(t), t), intercept.Spec{Workload: orders, Ports: []string{"8080"}, Holder: "alice@laptop"})
	if err != nil {
		t.Fatalf("intercept: %v", err)
	}
	defer ic.Leave(context.Background())
	first := ic.Tunnels().Pods()
	if err := f.env.Client.CoreV1().Pods(f.env.Namespace).Delete(context.Background(), first[0].Pod, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The deployment controller updates the object too: retry on conflict,
	// as kubectl scale does.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		scale, err := f.env.Client.AppsV1().Deployments(f.env.Namespace).GetScale(context.Background(), "orders", metav1.GetOptions{})
		if err != nil {
			return err
		}
		scale.Spec.Replicas = 3
		_, err = f.env.Client.AppsV1().Deployments(f.env.Namespace).UpdateScale(context.Background(), "orders", scale, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var now []intercept.PodTunnel
	waitFor(t, "tunnels to 3 pods, none of them the deleted one", func() bool {
		now = ic.Tunnels().Pods()
		up := 0
		for _, p := range now {
			if p.Pod == first[0].Pod {
				return false
			}
			if p.Connected {
				up++
			}
		}
		return up == 3
	})
	agentPort, _ := ic.Record().AgentPort(8080)
	for _, p := range now {
		if _, body := f.get(t, p.Pod, agentPort, "/orders/1"); body != "laptop /orders/1" {
			t.Errorf("pod %s: %q, want the laptop", p.Pod, body)
		}
	}
}

const faultyWorkloads = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: lonely}
spec:
  replicas: 1
  selector: {matchLabels: {app: lonely}}
  template:
    metadata: {labels: {app: lonely}}
    spec:
      containers:
        - name: users
          image: ko://github.com/kloop/kloop/test/testdata/users
          ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: lonely}
spec:
  selector: {app: lonly}
  ports: [{port: 8080, targetPort: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: unserved}
spec:
  replicas: 1
  selector: {matchLabels: {app: unserved}}
  template:
    metadata: {labels: {app: unserved}}
    spec:
      containers:
        - name: users
          image: ko://github.com/kloop/kloop/test/testdata/users
          ports: [{containerPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck}
spec:
  replicas: 1
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec:
      nodeSelector: {kloop.dev/no-such-node: "true"}
      containers:
        - name: users
          image: ko://github.com/kloop/kloop/test/testdata/users
          ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: stuck}
spec:
  selector: {app: stuck}
  ports: [{port: 8080}]
`

// Bad input and faults get clear errors and leave the cluster as it was.
func TestClearErrors(t *testing.T) {
	f := newFixture(t)
	if err := f.env.ApplyYAML(context.Background(), []byte(faultyWorkloads)); err != nil {
		t.Fatal(err)
	}
	inj := &intercept.Injector{Client: f.env.Client, Namespace: f.env.Namespace}
	inject := func(spec intercept.Spec) error {
		spec.Holder = "alice@laptop"
		_, err := inj.Inject(context.Background(), spec)
		return err
	}
	wantErr := func(t *testing.T, err error, sentinel error, parts ...string) {
		t.Helper()
		t.Logf("error: %v", err)
		if !errors.Is(err, sentinel) {
			t.Fatalf("error %v, want %v", err, sentinel)
		}
		for _, p := range parts {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not mention %q", err, p)
			}
		}
	}

	t.Run("no such workload", func(t *testing.T) {
		err := inject(intercept.Spec{Workload: workload.Workload{Kind: workload.Deployment, Name: "ordrs"}})
		wantErr(t, err, intercept.ErrNoWorkload, "deployment/ordrs not found", "deployment/orders")
		err = inject(intercept.Spec{Workload: workload.Workload{Kind: workload.StatefulSet, Name: "orders"}})
		wantErr(t, err, intercept.ErrNoWorkload, "statefulset/orders")
	})
	t.Run("no such port", func(t *testing.T) {
		before := f.snapshot(t)
		err := inject(intercept.Spec{Workload: orders, Ports: []string{"8081"}})
		wantErr(t, err, intercept.ErrNoPort, "no port 8081", "http 8080/TCP", "admin 9090/TCP")
		err = inject(intercept.Spec{Workload: orders, Ports: []string{"grpc"}})
		wantErr(t, err, intercept.ErrNoPort, "grpc")
		h := tunnel.HeaderMatch{Name: "x-dev", Value: "alice"}
		err = inject(intercept.Spec{Workload: orders, Ports: []string{"admin/tcp"}, Header: &h})
		wantErr(t, err, intercept.ErrNoPort, "9090", "header")
		if !reflect.DeepEqual(before, f.snapshot(t)) {
			t.Errorf("a refused intercept changed orders")
		}
	})
	t.Run("service selector matches no pod", func(t *testing.T) {
		err := inject(intercept.Spec{Workload: workload.Workload{Kind: workload.Deployment, Name: "lonely"}})
		wantErr(t, err, intercept.ErrSelectorNoPod, "Service lonely", "app=lonly", "app=lonely")
	})
	t.Run("no service", func(t *testing.T) {
		err := inject(intercept.Spec{Workload: workload.Workload{Kind: workload.Deployment, Name: "unserved"}})
		wantErr(t, err, intercept.ErrNoService, "deployment/unserved", "8080")
	})
	t.Run("pod never ready", func(t *testing.T) {
		d0, err := f.env.Client.AppsV1().Deployments(f.env.Namespace).Get(context.Background(), "stuck", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		err = inject(intercept.Spec{Workload: workload.Workload{Kind: workload.Deployment, Name: "stuck"}, RolloutTimeout: 3 * time.Second})
		wantErr(t, err, intercept.ErrPodNotReady, "deployment/stuck", "not scheduled", "restored")
		d1, err := f.env.Client.AppsV1().Deployments(f.env.Namespace).Get(context.Background(), "stuck", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(d0.Spec, d1.Spec) {
			t.Errorf("stuck was not restored:\nbefore %+v\nafter  %+v", d0.Spec, d1.Spec)
		}
		s, _ := f.env.Client.CoreV1().Services(f.env.Namespace).Get(context.Background(), "stuck", metav1.GetOptions{})
		if _, ok := s.Annotations[intercept.AnnotationOriginalPorts]; ok || s.Spec.Ports[0].TargetPort.IntValue() != 8080 {
			t.Errorf("Service stuck was changed: %+v", s.Spec.Ports)
		}
	})
	t.Run("rbac forbidden", func(t *testing.T) {
		cfg := readOnlyConfig(t, f)
		cs := mustClient(t, cfg)
		before := f.snapshot(t)
		_, err := intercept.Start(context.Background(), intercept.Config{Rest: cfg, Client: cs, Namespace: f.env.Namespace, Local: newLaptop(t).dial},
			intercept.Spec{Workload: orders, Holder: "eve@laptop"})
		wantErr(t, err, intercept.ErrForbidden, "create secrets", f.env.Namespace)
		if !reflect.DeepEqual(before, f.snapshot(t)) {
			t.Errorf("a forbidden intercept changed orders")
		}
	})
	t.Run("port-forward forbidden", func(t *testing.T) {
		// May change workloads, Services and Secrets, but not port-forward:
		// the tunnels cannot come up, and the intercept is undone.
		cfg := readOnlyConfig(t, f, rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"update"}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"update"}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create", "get", "delete"}})
		before := f.snapshot(t)
		_, err := intercept.Start(context.Background(), intercept.Config{Rest: cfg, Client: mustClient(t, cfg), Namespace: f.env.Namespace, Local: newLaptop(t).dial},
			intercept.Spec{Workload: orders, Holder: "eve@laptop"})
		wantErr(t, err, intercept.ErrForbidden, "pods/portforward", "restored")
		if !reflect.DeepEqual(before, f.snapshot(t)) {
			t.Errorf("orders was not restored after the forbidden port-forward")
		}
	})
}

// readOnlyConfig is a ServiceAccount that may read workloads, Services and
// pods in the namespace, and nothing else.
func readOnlyConfig(t *testing.T, f *fixture, extra ...rbacv1.PolicyRule) *rest.Config {
	t.Helper()
	ctx := context.Background()
	ns, cs := f.env.Namespace, f.env.Client
	name := fmt.Sprintf("viewer-%d", len(extra))
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: append([]rbacv1.PolicyRule{
			{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"services", "pods"}, Verbs: []string{"get", "list", "watch"}},
		}, extra...),
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secs := int64(3600)
	tok, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(f.env.Config)
	cfg.BearerToken = tok.Status.Token
	// The API server's RBAC authorizer learns of the new Role and binding
	// from its informers, a moment after they are created: wait until it
	// grants what every such account may do, so that a refusal the test
	// sees is the one it set up.
	sa := mustClient(t, cfg)
	deadline := time.Now().Add(time.Minute)
	for {
		r, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: "get", Group: "apps", Resource: "deployments"}},
		}, metav1.CreateOptions{})
		if err == nil && r.Status.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ServiceAccount %s is still not allowed to get deployments a minute after its Role was bound (%v)", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cfg
}
