package intercept_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kloop/kloop/agent/tunnel"
	"github.com/kloop/kloop/kube/intercept"
)

// Two holders with different rules that overlap share orders (2 replicas):
// alice by one header, bob by a path and a method. Each request on every
// pod reaches the holder whose rule takes it, a request both rules take
// goes to alice (she intercepted first), the rest to the app; a third
// holder with bob's rule spelled differently is refused naming him.
func TestHoldersWithOverlappingFilters(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	alicePC, bobPC := newNamedLaptop(t, "alice"), newNamedLaptop(t, "bob")
	mk := func(s tunnel.RuleSpec) *tunnel.Filter {
		r, err := tunnel.NewFilter(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	alice, err := intercept.Start(ctx, f.config(alicePC, t), intercept.Spec{Workload: orders, Ports: []string{"http"},
		Filter: mk(tunnel.RuleSpec{Header: map[string]string{"X-Dev": "alice"}}), Holder: "alice@laptop", HolderID: "id-alice"})
	if err != nil {
		t.Fatalf("alice's intercept: %v", err)
	}
	defer alice.Leave(ctx)
	bob, err := intercept.Start(ctx, f.config(bobPC, t), intercept.Spec{Workload: orders, Ports: []string{"http"},
		Filter: mk(tunnel.RuleSpec{Path: "/orders/2", Method: []string{"GET,HEAD"}}), Holder: "bob@desk", HolderID: "id-bob"})
	if err != nil {
		t.Fatalf("bob's intercept beside alice's: %v", err)
	}
	defer bob.Leave(ctx)
	_, err = intercept.Start(ctx, f.config(newLaptop(t), t), intercept.Spec{Workload: orders,
		Filter: mk(tunnel.RuleSpec{Path: "/orders/2", Method: []string{"head", "get"}}), Holder: "carol@box", HolderID: "id-carol"})
	if !errors.Is(err, intercept.ErrInterceptedOther) || !strings.Contains(err.Error(), "bob@desk") || !strings.Contains(err.Error(), "the same rule") {
		t.Errorf("carol with bob's rule: %v; want a refusal naming bob", err)
	}

	agentPort, _ := alice.Record().AgentPort(8080)
	pods := f.env.WaitPodsRunning(t, "app=orders", 2)
	for _, pod := range pods {
		client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return f.pf.Dial(ctx, f.env.Namespace, pod.Name, agentPort)
			},
		}}
		for _, r := range []struct {
			path, dev, want string // want "" is the app
		}{
			{"/orders/1", "alice", "alice /orders/1"},
			{"/orders/2", "alice", "alice /orders/2"}, // both rules: alice was first
			{"/orders/2", "", "bob /orders/2"},
			{"/orders/2", "carol", "bob /orders/2"},
			{"/orders/1", "", ""},
			{"/orders/1", "bob", ""},
		} {
			for i := range 5 {
				req, _ := http.NewRequest(http.MethodGet, "http://"+pod.Name+r.path, nil)
				if r.dev != "" {
					req.Header.Set("X-Dev", r.dev)
				}
				got, err := roundTrip(client, req)
				ok := err == nil && got == r.want
				if r.want == "" {
					ok = err == nil && strings.Contains(got, pod.Name) && !strings.HasPrefix(got, "alice ") && !strings.HasPrefix(got, "bob ")
				}
				if !ok {
					t.Errorf("pod %s GET %s X-Dev=%q (try %d): got %q, %v; want %q (\"\" is the app)", pod.Name, r.path, r.dev, i, got, err, r.want)
				}
			}
		}
	}
}
