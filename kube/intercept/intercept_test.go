package intercept_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kloop/kloop/agent/tunnel"
	"github.com/kloop/kloop/kube/intercept"
)

// A global intercept sends every request, through the Service and to each
// replica, to the laptop; leave restores a spec deep-equal to the original
// and traffic reaches the app again.
func TestGlobalInterceptTunnelsEveryReplicaAndLeaveRestoresExactly(t *testing.T) {
	f := newFixture(t)
	before := f.snapshot(t)
	l := newLaptop(t)
	var mu sync.Mutex
	var stages []string
	cfg := f.config(l, t)
	cfg.Progress = func(p intercept.Progress) {
		mu.Lock()
		stages = append(stages, p.Stage)
		mu.Unlock()
	}
	ic, err := intercept.Start(context.Background(), cfg, intercept.Spec{Workload: orders, Holder: "alice@laptop"})
	if err != nil {
		t.Fatalf("intercept: %v", err)
	}
	defer ic.Close()
	rec := ic.Record()
	if got := rec.AppPorts(); !slices.Equal(got, []int{8080, 9090}) {
		t.Errorf("intercepted ports %v, want the two ports the Service targets [8080 9090]", got)
	}
	mu.Lock()
	for _, want := range []string{"inject", "rollout", "service", "tunnel"} {
		if !slices.Contains(stages, want) {
			t.Errorf("no %q progress reported; got %v", want, stages)
		}
	}
	mu.Unlock()

	// The Service's targetPort now points at the agent.
	svc, err := f.env.Client.CoreV1().Services(f.env.Namespace).Get(context.Background(), "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	agent8080, _ := rec.AgentPort(8080)
	if svc.Spec.Ports[0].TargetPort != intstr.FromInt(agent8080) {
		t.Errorf("Service targetPort %v, want the agent's port %d", svc.Spec.Ports[0].TargetPort, agent8080)
	}

	// Through the Service (as kubectl port-forward svc/orders resolves it).
	pod, status, body := f.getService(t, "orders", 8080, "/orders/1")
	if status != http.StatusOK || body != "laptop /orders/1" {
		t.Errorf("GET svc/orders:8080 (pod %s): %d %q, want the laptop's answer", pod, status, body)
	}
	_, status, body = f.getService(t, "orders", 9090, "/config")
	if status != http.StatusOK || body != "laptop /config" {
		t.Errorf("GET svc/orders:9090: %d %q, want the laptop's answer", status, body)
	}

	// Both replicas carry the agent and tunnel to the laptop.
	pods := f.env.WaitPodsRunning(t, "app=orders", 2)
	tunneled := ic.Tunnels().Pods()
	if len(tunneled) != 2 {
		t.Errorf("tunnels to %d pods (%+v), want 2", len(tunneled), tunneled)
	}
	for _, p := range tunneled {
		if !p.Connected {
			t.Errorf("tunnel to %s is down: %s", p.Pod, p.Err)
		}
	}
	for _, p := range pods {
		if p.Annotations[intercept.AnnotationInterceptID] != rec.ID {
			continue
		}
		status, body := f.get(t, p.Name, agent8080, "/orders/2")
		if body != "laptop /orders/2" {
			t.Errorf("replica %s: %d %q, want the laptop's answer", p.Name, status, body)
		}
	}
	st, err := ic.Tunnels().Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Ports) == 0 || st.Ports[0].Port != 8080 || st.Ports[0].ToLaptop < 3 {
		t.Errorf("agent stats %+v, want at least 3 requests on 8080 to the laptop", st)
	}

	if err := ic.Leave(context.Background()); err != nil {
		t.Fatalf("leave: %v", err)
	}
	after := f.snapshot(t)
	if !reflect.DeepEqual(before.deploy, after.deploy) {
		t.Errorf("Deployment spec after leave differs from the original:\nbefore %+v\nafter  %+v", before.deploy, after.deploy)
	}
	if !reflect.DeepEqual(before.service, after.service) {
		t.Errorf("Service spec after leave differs from the original:\nbefore %+v\nafter  %+v", before.service, after.service)
	}
	d, _ := f.env.Client.AppsV1().Deployments(f.env.Namespace).Get(context.Background(), "orders", metav1.GetOptions{})
	for k := range d.Annotations {
		if strings.HasPrefix(k, "kloop.dev/") {
			t.Errorf("annotation %s left on the Deployment", k)
		}
	}
	if _, err := f.env.Client.CoreV1().Secrets(f.env.Namespace).Get(context.Background(), rec.Secret, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("token Secret %s still there after leave (err %v)", rec.Secret, err)
	}
	n := l.count()
	pod, status, body = f.getService(t, "orders", 8080, "/orders/1")
	if status != http.StatusOK || !strings.Contains(body, "keyboard") || !strings.Contains(body, pod) {
		t.Errorf("after leave GET svc/orders:8080: %d %q, want the app's answer from %s", status, body, pod)
	}
	if l.count() != n {
		t.Errorf("the laptop got a request after leave")
	}
}

// A personal intercept sends only requests with the header to the laptop.
func TestHeaderInterceptRoutesOnlyMatchingRequests(t *testing.T) {
	f := newFixture(t)
	l := newLaptop(t)
	h := tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}
	ic, err := intercept.Start(context.Background(), f.config(l, t), intercept.Spec{
		Workload: orders, Ports: []string{"http"}, Header: &h, Holder: "alice@laptop",
	})
	if err != nil {
		t.Fatalf("intercept: %v", err)
	}
	defer ic.Leave(context.Background())
	if got := ic.Record().AppPorts(); !slices.Equal(got, []int{8080}) {
		t.Errorf("ports %v, want [8080]", got)
	}
	for i := 0; i < 3; i++ {
		_, status, body := f.getService(t, "orders", 8080, "/orders/3", "X-Dev", "alice")
		if status != http.StatusOK || body != "laptop /orders/3" {
			t.Errorf("with header: %d %q, want the laptop", status, body)
		}
		pod, status, body := f.getService(t, "orders", 8080, "/orders/3", "X-Dev", "bob")
		if status != http.StatusOK || !strings.Contains(body, "mouse") || !strings.Contains(body, pod) {
			t.Errorf("other header value: %d %q, want the app in %s", status, body, pod)
		}
		pod, status, body = f.getService(t, "orders", 8080, "/orders/3")
		if status != http.StatusOK || !strings.Contains(body, "mouse") || !strings.Contains(body, pod) {
			t.Errorf("without header: %d %q, want the app in %s", status, body, pod)
		}
	}
	// Port 9090 is not intercepted: the Service still targets the app.
	_, status, body := f.getService(t, "orders", 9090, "/config", "X-Dev", "alice")
	if status != http.StatusOK || isLaptop(body) {
		t.Errorf("admin port: %d %q, want the app", status, body)
	}

	// Outbound: the local process reaches users by its Service name,
	// dialed from inside an orders pod through the tunnel.
	client := &http.Client{Transport: &http.Transport{DialContext: ic.Tunnels().DialCluster}}
	resp, err := client.Get("http://users:8080/users/1")
	if err != nil {
		t.Fatalf("outbound to users:8080: %v", err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(out), "Ada Lovelace") {
		t.Errorf("outbound GET http://users:8080/users/1: %d %q", resp.StatusCode, out)
	}
}

// Another holder is refused with the holder's name; the same holder adopts.
func TestInterceptedBySomeoneElseIsRefused(t *testing.T) {
	f := newFixture(t)
	l := newLaptop(t)
	ic, err := intercept.Start(context.Background(), f.config(l, t), intercept.Spec{Workload: orders, Holder: "alice@laptop"})
	if err != nil {
		t.Fatalf("intercept: %v", err)
	}
	defer ic.Leave(context.Background())
	intercepted := f.snapshot(t)

	// Alice's intercept is global: it takes every request, so Bob can
	// share the workload neither globally nor with a header of his own.
	bobHeader := tunnel.HeaderMatch{Name: "X-Dev", Value: "bob"}
	for _, spec := range []intercept.Spec{
		{Workload: orders, Holder: "bob@desk"},
		{Workload: orders, Holder: "bob@desk", Header: &bobHeader},
	} {
		_, err = intercept.Start(context.Background(), f.config(newLaptop(t), t), spec)
		var ie *intercept.InterceptedError
		if !errors.Is(err, intercept.ErrInterceptedOther) || !errors.As(err, &ie) || ie.Holder != "alice@laptop" || !strings.Contains(err.Error(), "alice@laptop") {
			t.Fatalf("bob's intercept (header %v): %v, want refusal naming alice@laptop", spec.Header, err)
		}
	}
	if !reflect.DeepEqual(intercepted, f.snapshot(t)) {
		t.Errorf("the refused intercept changed the workload or Service")
	}
	inj := &intercept.Injector{Client: f.env.Client, Namespace: f.env.Namespace}
	if err := inj.Leave(context.Background(), orders, intercept.Holder{Name: "bob@desk", ID: "bob@desk"}, 0); !errors.Is(err, intercept.ErrInterceptedOther) {
		t.Errorf("bob's leave of alice's intercept: %v, want refusal", err)
	}
	// Another installation with alice's user@host is not alice.
	twin := intercept.Spec{Workload: orders, Holder: "alice@laptop", HolderID: "another-install"}
	if _, err := intercept.Start(context.Background(), f.config(newLaptop(t), t), twin); !errors.Is(err, intercept.ErrInterceptedOther) {
		t.Errorf("a second installation named alice@laptop: %v, want refusal, not adoption", err)
	}

	// alice's daemon restarted: the same holder adopts with no rollout.
	ic.Close()
	again, err := intercept.Start(context.Background(), f.config(l, t), intercept.Spec{Workload: orders, Holder: "alice@laptop"})
	if err != nil {
		t.Fatalf("adopt: %v", err)
	}
	defer again.Close()
	if !again.Adopted() || again.Record().ID != ic.Record().ID {
		t.Errorf("second Start by alice: adopted=%v id %s, want the same intercept %s", again.Adopted(), again.Record().ID, ic.Record().ID)
	}
	if _, _, body := f.getService(t, "orders", 8080, "/orders/1"); body != "laptop /orders/1" {
		t.Errorf("after adopt: %q, want the laptop", body)
	}
}

// leave --all restores from the cluster's annotations alone.
func TestLeaveAllRestoresFromAnnotationsAlone(t *testing.T) {
	f := newFixture(t)
	before := f.snapshot(t)
	users, err := f.env.Client.AppsV1().Deployments(f.env.Namespace).Get(context.Background(), "users", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ic, err := intercept.Start(context.Background(), f.config(newLaptop(t), t), intercept.Spec{Workload: orders, Holder: "alice@laptop"})
	if err != nil {
		t.Fatalf("intercept: %v", err)
	}
	// The daemon is gone: no handle, no local state.
	ic.Close()

	done, err := intercept.LeaveAll(context.Background(), f.env.Client, f.env.Namespace, intercept.Holder{}, nil)
	if err != nil {
		t.Fatalf("leave --all: %v", err)
	}
	if len(done) != 1 || done[0] != orders {
		t.Errorf("restored %v, want [deployment/orders]", done)
	}
	if after := f.snapshot(t); !reflect.DeepEqual(before, after) {
		t.Errorf("spec after leave --all differs:\nbefore %+v\nafter  %+v", before, after)
	}
	users2, _ := f.env.Client.AppsV1().Deployments(f.env.Namespace).Get(context.Background(), "users", metav1.GetOptions{})
	if users2.Generation != users.Generation {
		t.Errorf("users (not intercepted) was changed")
	}
	secs, _ := f.env.Client.CoreV1().Secrets(f.env.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: intercept.LabelIntercept})
	if len(secs.Items) != 0 {
		t.Errorf("token Secrets left: %d", len(secs.Items))
	}
	pod, status, body := f.getService(t, "orders", 8080, "/orders/2")
	if status != http.StatusOK || !strings.Contains(body, "monitor") || !strings.Contains(body, pod) {
		t.Errorf("after leave --all: %d %q, want the app", status, body)
	}
}
