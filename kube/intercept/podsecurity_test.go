package intercept_test

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kloop/kloop/kube/intercept"
	"github.com/kloop/kloop/kube/workload"
)

const secure = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: secure}
spec:
  replicas: 1
  selector: {matchLabels: {app: secure}}
  template:
    metadata: {labels: {app: secure}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: users
          image: ko://github.com/kloop/kloop/test/testdata/users
          ports: [{containerPort: 8080}]
          securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
---
apiVersion: v1
kind: Service
metadata: {name: secure}
spec:
  selector: {app: secure}
  ports: [{port: 8080}]
`

// The injected agent passes the "restricted" Pod Security level, so
// intercepting works in namespaces that enforce it.
func TestInterceptUnderRestrictedPodSecurity(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ns, err := f.env.Client.CoreV1().Namespaces().Get(ctx, f.env.Namespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	if _, err := f.env.Client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.env.ApplyYAML(ctx, []byte(secure)); err != nil {
		t.Fatal(err)
	}
	f.si.Wait(t, f.env.WaitPodsRunning(t, "app=secure", 1)[0].Name, "users")
	ic, err := intercept.Start(ctx, f.config(newLaptop(t), t), intercept.Spec{
		Workload: workload.Workload{Kind: workload.Deployment, Name: "secure"}, Holder: "alice@laptop",
	})
	if err != nil {
		t.Fatalf("intercept in a restricted namespace: %v", err)
	}
	defer ic.Leave(ctx)
	if _, _, body := f.getService(t, "secure", 8080, "/users/1"); body != "laptop /users/1" {
		t.Errorf("GET svc/secure: %q, want the laptop", body)
	}
}
