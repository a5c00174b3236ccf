package intercept_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kloop/kloop/kube/portforward"
	"github.com/kloop/kloop/session"
	"github.com/kloop/kloop/test/cluster"
	"github.com/kloop/kloop/test/editor"
	"github.com/kloop/kloop/test/orders"
)

// The users sample as a StatefulSet of two replicas, listening on PORT.
const mirrorLedger = `
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: ledger}
spec:
  serviceName: ledger
  replicas: 2
  selector: {matchLabels: {app: ledger}}
  template:
    metadata: {labels: {app: ledger}}
    spec:
      containers:
        - name: users
          image: ko://github.com/kloop/kloop/test/testdata/users
          ports: [{name: web, containerPort: PORT}]
          env:
            - {name: HTTP_ADDR, value: ":PORT"}
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
---
apiVersion: v1
kind: Service
metadata: {name: ledger}
spec:
  selector: {app: ledger}
  ports: [{name: web, port: PORT, targetPort: web}]
`

// TestMirrorLeavesAnswersToThePods types a mirror intercept of a
// StatefulSet of two pods, with a server of the developer's own:
//
//	kloop intercept statefulset/ledger --port P:LOCAL --traffic mirror
//
// Every caller, on either pod, gets the pod's answer (a 404 stays a 404),
// while the local server sees every request, marked with the status the
// pod answered; kloop requests lists them as mirrored, with the cluster's
// status beside the local one; leave restores the StatefulSet and its
// Service.
func TestMirrorLeavesAnswersToThePods(t *testing.T) {
	env := cluster.New(t)
	si := env.StartStandIns(t, cluster.DefaultImages())
	port := orders.FreePort(t)
	if err := env.ApplyYAML(context.Background(), []byte(strings.ReplaceAll(mirrorLedger, "PORT", strconv.Itoa(port)))); err != nil {
		t.Fatalf("apply the ledger StatefulSet: %v", err)
	}
	pods := env.WaitPodsRunning(t, "app=ledger", 2)
	for _, pod := range pods {
		si.Wait(t, pod.Name, "users")
	}
	orders.WarmAgent(t, env, si)
	origTemplate, origService := ledgerSpecs(t, env)

	// The developer's server answers everything 200 "laptop", which no
	// caller may see.
	type copyOf struct{ path, clusterStatus string }
	var mu sync.Mutex
	var seen []copyOf
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, copyOf{r.URL.Path, r.Header.Get("Kloop-Mirror")})
		mu.Unlock()
		fmt.Fprint(w, "laptop")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	local := ln.Addr().(*net.TCPAddr).Port

	ws := t.TempDir()
	daemon := editor.NewEnv(t, binary(t))
	daemon.Extra = []string{"KUBECONFIG=" + env.Kubeconfig}
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(daemon.State, "daemon.log")); err == nil {
				t.Logf("daemon log:\n%s", log)
			}
		}
	})
	kloop := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), cluster.WaitTimeout)
		defer cancel()
		cmd := daemon.Command(ctx, args...)
		cmd.Dir = ws
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := kloop("intercept", "statefulset/ledger", "--port", fmt.Sprintf("%d:%d", port, local), "--traffic", "mirror"); err != nil {
		t.Fatalf("kloop intercept statefulset/ledger --traffic mirror: %v\n%s", err, out)
	}

	pf := portforward.NewDialer(env.Config)
	ready := readyPods(t, env, "app=ledger")
	if len(ready) != 2 {
		t.Fatalf("%d ready ledger pods after the intercept; want 2", len(ready))
	}
	want := map[string]int{"/users/1": 200, "/users/2": 200, "/users/9": 404}
	sent := 0
	for _, pod := range ready {
		for path, status := range want {
			got, body := getFromPod(t, env, pf, pod, path)
			sent++
			if got != status || strings.Contains(body, "laptop") {
				t.Errorf("GET %s on pod %s: the caller got %d %q; want the pod's %d", path, pod, got, body, status)
			}
			if status == 200 && !strings.Contains(body, `"servedBy":"`+pod+`"`) {
				t.Errorf("GET %s on pod %s: %q was not served by that pod", path, pod, body)
			}
		}
	}
	deadline := time.Now().Add(cluster.WaitTimeout)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= sent || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	counts := map[copyOf]int{}
	for _, c := range seen {
		counts[c]++
	}
	mu.Unlock()
	for path, status := range want {
		if got := counts[copyOf{path, strconv.Itoa(status)}]; got != len(ready) {
			t.Errorf("the local server got %d copies of %s marked %d; want %d (one per pod); all copies: %v", got, path, status, len(ready), counts)
		}
	}

	if st := statusOf(t, daemon, ws); len(st.Intercepts) != 1 || st.Intercepts[0].Traffic != string(session.TrafficMirror) {
		t.Errorf("status intercepts = %+v; want statefulset/ledger in mirror mode", st.Intercepts)
	}
	out, err := kloop("requests", "-o", "json")
	if err != nil {
		t.Fatalf("kloop requests: %v\n%s", err, out)
	}
	var res session.RequestsResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("kloop requests -o json: %v\n%s", err, out)
	}
	mirrored404, listed := 0, 0
	for _, e := range res.Requests {
		if strings.HasPrefix(e.Target, "/users/") {
			listed++
		}
		if !e.Mirrored || e.Response == nil || e.Response.Status != 200 {
			t.Errorf("kloop requests lists %s %s as mirrored=%v response=%+v; want mirrored with the local 200", e.Method, e.Target, e.Mirrored, e.Response)
		}
		if e.Target == "/users/9" && e.ClusterStatus == 404 {
			mirrored404++
		}
	}
	if listed != sent || mirrored404 != len(ready) {
		t.Errorf("kloop requests lists %d exchanges of /users/, %d of /users/9 with cluster status 404; want %d and %d", listed, mirrored404, sent, len(ready))
	}
	if text, err := kloop("requests"); err != nil || !strings.Contains(text, "200 (mirror; cluster 404)") {
		t.Errorf("kloop requests: %v\n%s\nwant the local and the cluster's status side by side", err, text)
	}

	if out, err := kloop("leave", "statefulset/ledger"); err != nil {
		t.Fatalf("kloop leave statefulset/ledger: %v\n%s", err, out)
	}
	template, service := ledgerSpecs(t, env)
	if !reflect.DeepEqual(template, origTemplate) || !reflect.DeepEqual(service, origService) {
		t.Errorf("after leave ledger is not restored:\ntemplate %+v\nwant     %+v\nports %+v\nwant  %+v", template, origTemplate, service, origService)
	}
}

func ledgerSpecs(t *testing.T, env *cluster.Env) (any, any) {
	t.Helper()
	ctx := context.Background()
	s, err := env.Client.AppsV1().StatefulSets(env.Namespace).Get(ctx, "ledger", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := env.Client.CoreV1().Services(env.Namespace).Get(ctx, "ledger", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Spec.Template, svc.Spec.Ports
}

func readyPods(t *testing.T, env *cluster.Env, selector string) []string {
	t.Helper()
	list, err := env.Client.CoreV1().Pods(env.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, pod := range list.Items {
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && pod.DeletionTimestamp == nil {
				out = append(out, pod.Name)
			}
		}
	}
	return out
}

// getFromPod sends GET path as an in-cluster caller of the ledger Service
// would on pod: to the port the Service targets there (the agent's, while
// intercepted), through port-forward.
func getFromPod(t *testing.T, env *cluster.Env, pf *portforward.Dialer, pod, path string) (int, string) {
	t.Helper()
	ctx := context.Background()
	svc, err := env.Client.CoreV1().Services(env.Namespace).Get(ctx, "ledger", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := env.Client.CoreV1().Pods(env.Namespace).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tp := svc.Spec.Ports[0].TargetPort
	target := tp.IntValue()
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if tp.StrVal != "" && cp.Name == tp.StrVal {
				target = int(cp.ContainerPort)
			}
		}
	}
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return pf.Dial(ctx, env.Namespace, pod, target)
		},
	}}
	resp, err := client.Get("http://ledger" + path)
	if err != nil {
		t.Fatalf("GET %s on pod %s port %d: %v", path, pod, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}
