package intercept_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kloop/kloop/test/cluster"
	"github.com/kloop/kloop/test/editor"
	"github.com/kloop/kloop/test/orders"
)

// A resident agent through the CLI as typed: `kloop agent install` rolls
// orders out once; a personal and then a global intercept start and end
// without replacing a pod, the dormant agent passes requests to the app in
// between, `kloop leave --all` keeps it, `kloop agent uninstall` refuses
// while someone intercepts and then restores orders exactly.
func TestResidentAgentInterceptsWithoutARollout(t *testing.T) {
	f := newFixture(t)
	origTemplate, origPorts := f.Specs(t)
	r := f.MustKloop(t, "agent", "install", "deployment/orders", "--port", "http")
	if !strings.Contains(r.Stdout, "resident agent installed in deployment/orders, ports 8080") {
		t.Errorf("kloop agent install printed %q; want what it installed and where", r.Stdout)
	}
	pods := podUIDs(t, f)
	if _, a, body := f.GetOrder(t); a.Build != "" {
		t.Errorf("through the dormant agent: %s; want the app's answer", body)
	}

	f.MustKloop(t, "intercept", "orders", "--header", "x-dev=carol", "--detach")
	if _, a, body := f.GetOrder(t, "x-dev", "carol"); a.Build != "laptop-v1" {
		t.Errorf("carol's request under a personal intercept: %s; want build laptop-v1", body)
	}
	if _, a, body := f.GetOrder(t); a.Build != "" {
		t.Errorf("a request without the header: %s; want the app's answer", body)
	}
	if r := f.Kloop(t, "agent", "uninstall", "orders"); r.Code == 0 || !strings.Contains(r.Stderr, "in use by") {
		t.Errorf("kloop agent uninstall while intercepted: exit %d, stderr %q; want a refusal naming the holder", r.Code, r.Stderr)
	}
	f.MustKloop(t, "leave", "orders")

	f.MustKloop(t, "intercept", "orders", "--detach")
	if _, a, body := f.GetOrder(t); a.Build != "laptop-v1" {
		t.Errorf("under a global intercept: %s; want build laptop-v1", body)
	}
	f.MustKloop(t, "leave", "--all")
	if _, a, body := f.GetOrder(t); a.Build != "" {
		t.Errorf("after leave --all: %s; want the app's answer", body)
	}
	if got := podUIDs(t, f); !reflect.DeepEqual(got, pods) {
		t.Errorf("intercepts of the resident agent replaced pods %v with %v; they must restart none", pods, got)
	}
	if template, _ := f.Specs(t); reflect.DeepEqual(template, origTemplate) {
		t.Errorf("leave --all removed the resident agent")
	}

	f.MustKloop(t, "agent", "uninstall", "orders")
	template, ports := f.Specs(t)
	if !reflect.DeepEqual(template, origTemplate) || !reflect.DeepEqual(ports, origPorts) {
		t.Errorf("after uninstall orders is not restored:\ntemplate %+v\nwant     %+v\nports %+v\nwant  %+v", template, origTemplate, ports, origPorts)
	}
	if r := f.Kloop(t, "agent", "uninstall", "orders"); r.Code == 0 || !strings.Contains(r.Stderr, "kloop agent install") {
		t.Errorf("a second uninstall: exit %d, stderr %q; want an error saying there is no agent", r.Code, r.Stderr)
	}
}

func podUIDs(t *testing.T, f *fixture) map[string]string {
	t.Helper()
	pods, err := f.Env.Client.CoreV1().Pods(f.Env.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app=orders"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out[p.Name] = string(p.UID)
		}
	}
	return out
}

// A pool created with --resident-agents, through the CLI as typed: in a
// namespace claimed from it, the first intercept of inventory (two
// replicas, a named port) injects the agent, and it stays after leave, so
// the next intercept restarts no pod; release then resets the namespace.
func TestPoolWithResidentAgentsKeepsTheAgent(t *testing.T) {
	shared := cluster.Shared(t)
	applyClaimerRBAC(t, shared.Config)
	ws := t.TempDir()
	daemon := editor.NewEnv(t, binary(t))
	daemon.Extra = []string{"KUBECONFIG=" + shared.Kubeconfig}

	const pool = "rdev"
	mustSucceed(t, "pool create", runKloop(t, daemon, ws, "pool", "create", pool, "--namespaces", "1", "--resident-agents"))
	t.Cleanup(func() { runKloop(t, daemon, ws, "pool", "delete", pool, "--force") })
	if r := runKloop(t, daemon, ws, "pool", "list"); !strings.Contains(r.stdout, pool+" (resident agents)") {
		t.Errorf("pool list does not say the pool keeps agents:\n%s", r.stdout)
	}
	mustSucceed(t, "claim", runKloop(t, daemon, ws, "claim", "--pool", pool))
	st := statusOf(t, daemon, ws)
	if st.Claim == nil || !st.Claim.ResidentAgents {
		t.Fatalf("claim from a --resident-agents pool: %+v; want residentAgents set", st.Claim)
	}
	slot := slotEnv(t, shared, st.Claim.Kubeconfig)
	origTemplate, _ := deployInventory(t, slot, orders.FreePort(t))
	inventoryPods := func() map[string]string {
		pods, err := slot.Client.CoreV1().Pods(slot.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app=inventory"})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				out[p.Name] = string(p.UID)
			}
		}
		return out
	}

	mustSucceed(t, "intercept", runKloop(t, daemon, ws, "intercept", "inventory", "--detach"))
	mustSucceed(t, "leave", runKloop(t, daemon, ws, "leave", "inventory"))
	if template, _ := inventorySpecs(t, slot); reflect.DeepEqual(template, origTemplate) {
		t.Fatalf("leave removed the agent in a --resident-agents pool's namespace")
	}
	pods := inventoryPods()
	mustSucceed(t, "second intercept", runKloop(t, daemon, ws, "intercept", "inventory", "--detach"))
	mustSucceed(t, "second leave", runKloop(t, daemon, ws, "leave", "inventory"))
	if got := inventoryPods(); !reflect.DeepEqual(got, pods) {
		t.Errorf("an intercept of the resident agent replaced pods %v with %v", pods, got)
	}
	mustSucceed(t, "release", runKloop(t, daemon, ws, "release"))
}
