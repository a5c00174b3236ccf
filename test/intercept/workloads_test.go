package intercept_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kloop/kloop/session"
	"github.com/kloop/kloop/test/orders"
)

// ledgerYAML is a StatefulSet beside the fixture's Deployments, with a
// named and an unnamed port; no stand-in runs its image, so it is never
// ready.
const ledgerYAML = `apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: ledger
spec:
  replicas: 1
  serviceName: ledger
  selector:
    matchLabels: {app: ledger}
  template:
    metadata:
      labels: {app: ledger}
    spec:
      containers:
        - name: db
          image: example.com/ledger:1
          ports:
            - {name: pg, containerPort: 5432}
            - {containerPort: 9187}
`

// TestWorkloadsListsTheNamespace: `kloop workloads` as typed lists the
// namespace's Deployments and StatefulSets with replicas ready and wanted,
// their container ports (not the agent's) and who intercepts them; a user
// whom RBAC does not let list them is told so and what to do.
func TestWorkloadsListsTheNamespace(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.Env.ApplyYAML(ctx, []byte(ledgerYAML)); err != nil {
		t.Fatal(err)
	}
	// The Deployment's status catches up with its running pods on its own
	// time; the listing reports the status, so wait for it first.
	orders.Eventually(t, "deployment/orders to report 2 ready replicas", func() bool {
		d, err := f.Env.Client.AppsV1().Deployments(f.Env.Namespace).Get(ctx, "orders", metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == 2
	})

	f.MustKloop(t, "intercept", "orders", "--header", "x-dev=carol", "--detach")
	orders.Eventually(t, "deployment/orders to report 2 ready replicas with the agent", func() bool {
		d, err := f.Env.Client.AppsV1().Deployments(f.Env.Namespace).Get(ctx, "orders", metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == 2 && d.Status.UpdatedReplicas == 2 && d.Status.Replicas == 2
	})

	r := f.MustKloop(t, "workloads", "-o", "json")
	var res session.WorkloadsResult
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
		t.Fatalf("kloop workloads -o json: %v\n%s", err, r.Stdout)
	}
	if res.Namespace != f.Env.Namespace {
		t.Errorf("namespace %q, want the kubeconfig's %q", res.Namespace, f.Env.Namespace)
	}
	byName := map[string]session.WorkloadInfo{}
	var names []string
	for _, w := range res.Workloads {
		byName[w.Workload] = w
		names = append(names, w.Workload)
	}
	if want := []string{"deployment/orders", "deployment/users", "statefulset/ledger"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("workloads %v, want %v", names, want)
	}

	o := byName["deployment/orders"]
	if o.Ready != 2 || o.Replicas != 2 {
		t.Errorf("orders %d/%d ready, want 2/2", o.Ready, o.Replicas)
	}
	wantPorts := []session.WorkloadPort{{Container: "orders", Port: 8080, Name: "http", Protocol: "TCP"}, {Container: "orders", Port: 9090, Name: "admin", Protocol: "TCP"}}
	if !reflect.DeepEqual(o.Ports, wantPorts) {
		t.Errorf("orders ports %+v, want %+v (the app's, not the agent's)", o.Ports, wantPorts)
	}
	if o.Agent == nil || o.Agent.Resident || len(o.Agent.Holders) != 1 || o.Agent.Holders[0].Rule != "x-dev=carol" || !strings.Contains(o.Agent.Holders[0].Name, "@") {
		t.Errorf("orders agent %+v; want one holder (user@host) with rule x-dev=carol, not resident", o.Agent)
	}
	if u := byName["deployment/users"]; u.Agent != nil || u.Replicas != 1 {
		t.Errorf("users %+v; want 1 replica and no agent", u)
	}
	l := byName["statefulset/ledger"]
	wantLedger := []session.WorkloadPort{{Container: "db", Port: 5432, Name: "pg", Protocol: "TCP"}, {Container: "db", Port: 9187, Protocol: "TCP"}}
	if l.Kind != "statefulset" || l.Name != "ledger" || l.Replicas != 1 || l.Ready != 0 || !reflect.DeepEqual(l.Ports, wantLedger) || l.Agent != nil {
		t.Errorf("ledger %+v; want statefulset ledger 0/1 ready with ports %+v and no agent", l, wantLedger)
	}

	text := f.MustKloop(t, "workloads").Stdout
	for _, want := range []string{
		"WORKLOAD", "deployment/orders", "2/2", "8080(http),9090(admin)", "(x-dev=carol)",
		"statefulset/ledger", "0/1", "5432(pg),9187",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("kloop workloads printed\n%s\nwant it to contain %q", text, want)
		}
	}
	f.MustKloop(t, "leave", "--all")

	// A developer with no Role in the namespace.
	asUser(t, f, "nobody@example.com", "system:authenticated")
	r = f.Kloop(t, "workloads")
	if r.Code == 0 || !strings.Contains(r.Stderr, "not allowed to list deployments in namespace "+f.Env.Namespace+" (RBAC)") || !strings.Contains(r.Stderr, "kloop doctor") {
		t.Errorf("kloop workloads without RBAC: exit %d, stderr %q; want the refused verb and resource, and what to do", r.Code, r.Stderr)
	}
}

// asUser points the workspace at a kubeconfig impersonating user in groups,
// as asInterceptor does.
func asUser(t *testing.T, f *fixture, user string, groups ...string) {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(f.Env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ai := cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo]
	ai.Impersonate, ai.ImpersonateGroups = user, groups
	path := filepath.Join(t.TempDir(), "user.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	yamlPath := filepath.Join(f.WS, ".kloop.yaml")
	y, err := os.ReadFile(yamlPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(yamlPath, []byte(strings.ReplaceAll(string(y), f.Env.Kubeconfig, path)), 0o644); err != nil {
		t.Fatal(err)
	}
}
