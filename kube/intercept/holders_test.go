package intercept_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"

	"github.com/kloop/kloop/agent/tunnel"
	"github.com/kloop/kloop/kube/intercept"
	"github.com/kloop/kloop/sandbox/standin"
	"github.com/kloop/kloop/test/cluster"
)

// Two developers intercept orders (2 replicas) with headers of their own
// under steady traffic: every request reaches the right laptop or the app;
// joining and leaving restart no pod; one leaves and the other keeps
// working; edits made meanwhile (a new image, an env var, a Service port)
// survive the last leave, which otherwise restores the Deployment and
// Service specs exactly.
func TestTwoHoldersShareAWorkloadAndLeaveUndoesOnlyKloop(t *testing.T) {
	// The image CI "deploys" during the intercept.
	const newImage = "registry.example/orders:build-2"
	images := cluster.DefaultImages()
	images[newImage] = standin.Image{Package: "github.com/kloop/kloop/test/testdata/orders"}
	f := newFixtureWith(t, images)
	ctx := context.Background()
	before := f.snapshot(t)
	alicePC, bobPC := newNamedLaptop(t, "alice"), newNamedLaptop(t, "bob")
	aliceHdr := tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}
	bobHdr := tunnel.HeaderMatch{Name: "X-Dev", Value: "bob"}
	alice, err := intercept.Start(ctx, f.config(alicePC, t), intercept.Spec{Workload: orders, Ports: []string{"http"}, Header: &aliceHdr, Holder: "alice@laptop", HolderID: "id-alice"})
	if err != nil {
		t.Fatalf("alice's intercept: %v", err)
	}
	podsBefore := f.podUIDs(t)
	// Same user@host on another machine: a holder of its own, by ID.
	bob, err := intercept.Start(ctx, f.config(bobPC, t), intercept.Spec{Workload: orders, Ports: []string{"http"}, Header: &bobHdr, Holder: "alice@laptop", HolderID: "id-bob"})
	if err != nil {
		t.Fatalf("bob's intercept beside alice's: %v", err)
	}
	if !bob.Joined() || bob.Record().ID != alice.Record().ID {
		t.Errorf("bob's intercept: joined=%v id %s; want it to join alice's agent %s", bob.Joined(), bob.Record().ID, alice.Record().ID)
	}
	if got := f.podUIDs(t); !reflect.DeepEqual(got, podsBefore) {
		t.Errorf("joining replaced pods %v with %v; it must not restart any", podsBefore, got)
	}
	// A third rule with bob's header is refused, naming the holder.
	if _, err := intercept.Start(ctx, f.config(newLaptop(t), t), intercept.Spec{Workload: orders, Header: &tunnel.HeaderMatch{Name: "x-dev", Value: "bob"}, Holder: "carol@box"}); !errors.Is(err, intercept.ErrInterceptedOther) || !strings.Contains(err.Error(), "pick a --header value") {
		t.Errorf("carol with bob's header: %v; want a refusal that says to pick another value", err)
	}

	agentPort, _ := alice.Record().AgentPort(8080)
	pods := f.env.WaitPodsRunning(t, "app=orders", 2)
	traffic := f.steadyTraffic(t, pods, agentPort, map[string][]string{"alice": {"alice /orders/1"}, "bob": {"bob /orders/1"}, "": {""}})
	traffic.waitFor(t, 20)
	bad, n := traffic.stop()
	if len(bad) > 0 || n == 0 {
		t.Fatalf("%d of %d requests misrouted or failed with two holders, first: %v", len(bad), n, bad)
	}
	t.Logf("two holders: %d requests, 0 misrouted", n)

	// Alice leaves under traffic: no rollout, bob's requests still reach
	// him, and hers reach her laptop until her rule goes, then the app.
	traffic = f.steadyTraffic(t, pods, agentPort, map[string][]string{"alice": {"alice /orders/1", ""}, "bob": {"bob /orders/1"}, "": {""}})
	if err := alice.Leave(ctx); err != nil {
		t.Fatalf("alice's leave: %v", err)
	}
	if got := f.podUIDs(t); !reflect.DeepEqual(got, podsBefore) {
		t.Errorf("alice's leave (bob still in) replaced pods %v with %v", podsBefore, got)
	}
	traffic.waitFor(t, 20)
	if bad, n = traffic.stop(); len(bad) > 0 {
		t.Fatalf("%d of %d requests misrouted or failed while alice left, first: %v", len(bad), n, bad)
	}
	traffic = f.steadyTraffic(t, pods, agentPort, map[string][]string{"alice": {""}, "bob": {"bob /orders/1"}, "": {""}})
	traffic.waitFor(t, 20)
	if bad, n = traffic.stop(); len(bad) > 0 {
		t.Fatalf("%d of %d requests misrouted or failed after alice left, first: %v", len(bad), n, bad)
	}

	// Meanwhile CI changes the workload: a new image, an env var, and a
	// Service port. Leave must keep all of it.
	f.updateDeployment(t, func(d *appsv1.Deployment) {
		c := &d.Spec.Template.Spec.Containers[0]
		c.Image = newImage
		c.Env = append(c.Env, corev1.EnvVar{Name: "ADDED_BY_CI", Value: "1"})
	})
	f.updateService(t, func(s *corev1.Service) {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "extra", Port: 9191, TargetPort: intstr.FromString("admin")})
	})
	waitFor(t, "the edited rollout", func() bool {
		d, err := f.env.Client.AppsV1().Deployments(f.env.Namespace).Get(ctx, "orders", metav1.GetOptions{})
		return err == nil && d.Status.ObservedGeneration == d.Generation && d.Status.UpdatedReplicas == 2 && d.Status.ReadyReplicas == 2 && d.Status.Replicas == 2
	})
	if err := bob.Leave(ctx); err != nil {
		t.Fatalf("bob's leave (the last): %v", err)
	}
	want := before
	wd := want.deploy.(appsv1.DeploymentSpec)
	wd = *wd.DeepCopy()
	c := &wd.Template.Spec.Containers[0]
	c.Image = newImage
	c.Env = append(c.Env, corev1.EnvVar{Name: "ADDED_BY_CI", Value: "1"})
	ws := want.service.(corev1.ServiceSpec)
	ws = *ws.DeepCopy()
	ws.Ports = append(ws.Ports, corev1.ServicePort{Name: "extra", Port: 9191, TargetPort: intstr.FromString("admin"), Protocol: corev1.ProtocolTCP})
	after := f.snapshot(t)
	if !reflect.DeepEqual(wd, after.deploy) {
		t.Errorf("Deployment spec after the last leave:\n got %+v\nwant %+v", after.deploy, wd)
	}
	if !reflect.DeepEqual(ws, after.service) {
		t.Errorf("Service spec after the last leave:\n got %+v\nwant %+v", after.service, ws)
	}
	d, _ := f.env.Client.AppsV1().Deployments(f.env.Namespace).Get(ctx, "orders", metav1.GetOptions{})
	for k := range d.Annotations {
		if strings.HasPrefix(k, "kloop.dev/") {
			t.Errorf("annotation %s left on the Deployment", k)
		}
	}
}

// A Service that also selects another workload's pods is not pointed at
// the agent (those pods have no agent and would refuse their share): the
// intercept is refused naming the workload, and nothing changes.
func TestServiceSharedWithACanaryIsRefused(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	canary, err := f.env.Client.AppsV1().Deployments(f.env.Namespace).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	canary = &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "orders-canary"},
		Spec:       *canary.Spec.DeepCopy(),
	}
	one := int32(1)
	canary.Spec.Replicas = &one
	canary.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "orders", "track": "canary"}}
	canary.Spec.Template.Labels = map[string]string{"app": "orders", "track": "canary"}
	if _, err := f.env.Client.AppsV1().Deployments(f.env.Namespace).Create(ctx, canary, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := f.snapshot(t)
	_, err = intercept.Start(ctx, f.config(newLaptop(t), t), intercept.Spec{Workload: orders, Holder: "alice@laptop"})
	var se *intercept.SharedServiceError
	if !errors.Is(err, intercept.ErrSharedService) || !errors.As(err, &se) || !strings.Contains(err.Error(), "deployment/orders-canary") {
		t.Fatalf("intercept of orders beside its canary: %v; want a refusal naming deployment/orders-canary", err)
	}
	if after := f.snapshot(t); !reflect.DeepEqual(before, after) {
		t.Errorf("the refused intercept changed orders or its Service")
	}
}

// A Deployment with the longest name a Service can carry (63) intercepts
// and restores: everything kloop names after it fits the API's limits.
func TestLongestWorkloadName(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	name := "users-" + strings.Repeat("long", 13) + "-abcd" // 63
	if len(name) != 63 {
		t.Fatalf("name is %d long", len(name))
	}
	src, err := f.env.Client.AppsV1().Deployments(f.env.Namespace).Get(ctx, "users", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: *src.Spec.DeepCopy()}
	d.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
	d.Spec.Template.Labels = map[string]string{"app": name}
	if _, err := f.env.Client.AppsV1().Deployments(f.env.Namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": name},
		Ports:    []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080)}},
	}}
	if _, err := f.env.Client.CoreV1().Services(f.env.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.env.WaitPodsRunning(t, "app="+name, 1)
	l := newLaptop(t)
	w := orders
	w.Name = name
	ic, err := intercept.Start(ctx, f.config(l, t), intercept.Spec{Workload: w, Holder: "alice@laptop"})
	if err != nil {
		t.Fatalf("intercept of a 63-character Deployment: %v", err)
	}
	if _, _, body := f.getService(t, name, 8080, "/users/1"); body != "laptop /users/1" {
		t.Errorf("through the Service: %q; want the laptop", body)
	}
	if err := ic.Leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	secs, _ := f.env.Client.CoreV1().Secrets(f.env.Namespace).List(ctx, metav1.ListOptions{LabelSelector: intercept.LabelIntercept})
	if len(secs.Items) != 0 {
		t.Errorf("token Secrets left after leave: %d", len(secs.Items))
	}
}

// podUIDs are the orders pods that exist, by name.
func (f *fixture) podUIDs(t testing.TB) map[string]string {
	t.Helper()
	pods, err := f.env.Client.CoreV1().Pods(f.env.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app=orders"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range pods.Items {
		out[p.Name] = string(p.UID)
	}
	return out
}

func (f *fixture) updateDeployment(t testing.TB, edit func(*appsv1.Deployment)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := f.env.Client.AppsV1().Deployments(f.env.Namespace).Get(context.Background(), "orders", metav1.GetOptions{})
		if err != nil {
			return err
		}
		edit(d)
		_, err = f.env.Client.AppsV1().Deployments(f.env.Namespace).Update(context.Background(), d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) updateService(t testing.TB, edit func(*corev1.Service)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := f.env.Client.CoreV1().Services(f.env.Namespace).Get(context.Background(), "orders", metav1.GetOptions{})
		if err != nil {
			return err
		}
		edit(s)
		_, err = f.env.Client.CoreV1().Services(f.env.Namespace).Update(context.Background(), s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// traffic sends requests with each X-Dev value (and none) to the agent
// port of every pod, over keep-alive port-forwards, and records each
// answer that is not the expected one ("" expects the app).
type traffic struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	n      atomic.Int64
	mu     sync.Mutex
	bad    []string
}

func (f *fixture) steadyTraffic(t testing.TB, pods []corev1.Pod, port int, want map[string][]string) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &traffic{cancel: cancel}
	for _, pod := range pods {
		client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return f.pf.Dial(ctx, f.env.Namespace, pod.Name, port)
			},
		}}
		for dev, bodies := range want {
			tr.wg.Add(1)
			go func() {
				defer tr.wg.Done()
				for ctx.Err() == nil {
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+pod.Name+"/orders/1", nil)
					if dev != "" {
						req.Header.Set("X-Dev", dev)
					}
					got, err := roundTrip(client, req)
					if ctx.Err() != nil {
						return
					}
					ok := false
					for _, body := range bodies {
						ok = ok || err == nil && (body == got || body == "" && strings.Contains(got, "keyboard") && strings.Contains(got, pod.Name))
					}
					tr.n.Add(1)
					if !ok {
						tr.mu.Lock()
						tr.bad = append(tr.bad, fmt.Sprintf("pod %s X-Dev=%q: got %q, %v; want one of %q (\"\" is the app)", pod.Name, dev, got, err, bodies))
						tr.mu.Unlock()
					}
				}
			}()
		}
	}
	return tr
}

func roundTrip(c *http.Client, req *http.Request) (string, error) {
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %s", resp.Status)
	}
	return string(b), err
}

// waitFor waits until at least n more requests were answered.
func (tr *traffic) waitFor(t testing.TB, n int64) {
	t.Helper()
	start := tr.n.Load()
	waitFor(t, "steady traffic", func() bool { return tr.n.Load()-start >= n })
}

func (tr *traffic) stop() ([]string, int64) {
	tr.cancel()
	tr.wg.Wait()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.bad, tr.n.Load()
}
