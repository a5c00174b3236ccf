package intercept_test

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kloop/kloop/kube/intercept"
	"github.com/kloop/kloop/kube/workload"
)

const ledger = `
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
          ports: [{name: web, containerPort: 8080}]
          env:
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
---
apiVersion: v1
kind: Service
metadata: {name: ledger}
spec:
  selector: {app: ledger}
  ports: [{name: web, port: 8080, targetPort: web}]
`

// A StatefulSet is intercepted and restored like a Deployment; a named
// targetPort is restored by name.
func TestStatefulSetIntercept(t *testing.T) {
	f := newFixture(t)
	if err := f.env.ApplyYAML(context.Background(), []byte(ledger)); err != nil {
		t.Fatal(err)
	}
	for _, p := range f.env.WaitPodsRunning(t, "app=ledger", 2) {
		f.si.Wait(t, p.Name, "users")
	}
	ctx := context.Background()
	sts0, err := f.env.Client.AppsV1().StatefulSets(f.env.Namespace).Get(ctx, "ledger", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc0, err := f.env.Client.CoreV1().Services(f.env.Namespace).Get(ctx, "ledger", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := workload.Parse("sts/ledger")
	if err != nil {
		t.Fatal(err)
	}
	ic, err := intercept.Start(ctx, f.config(newLaptop(t), t), intercept.Spec{Workload: w, Holder: "alice@laptop"})
	if err != nil {
		t.Fatalf("intercept: %v", err)
	}
	if n := len(ic.Tunnels().Pods()); n != 2 {
		t.Errorf("tunnels to %d pods, want 2", n)
	}
	if _, status, body := f.getService(t, "ledger", 8080, "/users/1"); status != http.StatusOK || body != "laptop /users/1" {
		t.Errorf("GET svc/ledger: %d %q, want the laptop", status, body)
	}
	if err := ic.Leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	sts1, _ := f.env.Client.AppsV1().StatefulSets(f.env.Namespace).Get(ctx, "ledger", metav1.GetOptions{})
	svc1, _ := f.env.Client.CoreV1().Services(f.env.Namespace).Get(ctx, "ledger", metav1.GetOptions{})
	if !reflect.DeepEqual(sts0.Spec, sts1.Spec) {
		t.Errorf("StatefulSet spec after leave differs:\nbefore %+v\nafter  %+v", sts0.Spec, sts1.Spec)
	}
	if !reflect.DeepEqual(svc0.Spec, svc1.Spec) {
		t.Errorf("Service spec after leave differs:\nbefore %+v\nafter  %+v", svc0.Spec, svc1.Spec)
	}
	pod, status, body := f.getService(t, "ledger", 8080, "/users/1")
	if status != http.StatusOK || !strings.Contains(body, "Ada Lovelace") || !strings.Contains(body, pod) {
		t.Errorf("after leave: %d %q, want the app in %s", status, body, pod)
	}
}
