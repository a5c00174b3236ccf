package intercept_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kloop/kloop/agent/tunnel"
	"github.com/kloop/kloop/kube/intercept"
)

// A resident agent is installed once (one rollout); intercepts, personal
// and global, then join it and leave it without replacing a pod, and the
// dormant agent passes the Service's traffic to the app in between. Leave
// --all keeps it; uninstall refuses while someone intercepts, then
// restores the Deployment and Service exactly.
func TestResidentAgentStaysUntilUninstalled(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	before := f.snapshot(t)
	inj := &intercept.Injector{Client: f.env.Client, Namespace: f.env.Namespace,
		Progress: func(p intercept.Progress) { t.Logf("progress: %s: %s", p.Stage, p.Message) }}

	installed, err := inj.Install(ctx, intercept.Spec{Workload: orders, Ports: []string{"http"}, Holder: "admin@box"})
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	if installed.Existing || !installed.Record.Resident || len(installed.Record.Holders) != 0 {
		t.Fatalf("install: existing=%v record %+v; want a new resident agent nobody holds", installed.Existing, installed.Record)
	}
	pods := f.podUIDs(t)
	if _, status, body := f.getService(t, "orders", 8080, "/orders/1"); status != 200 || isLaptop(body) {
		t.Fatalf("through the dormant agent: %d %q; want the app's answer", status, body)
	}

	// A personal intercept joins: no rollout; only its header goes to the laptop.
	l := newLaptop(t)
	hdr := tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}
	alice, err := intercept.Start(ctx, f.config(l, t), intercept.Spec{Workload: orders, Ports: []string{"http"}, Header: &hdr, Holder: "alice@laptop", HolderID: "id-alice"})
	if err != nil {
		t.Fatalf("intercept of the resident agent: %v", err)
	}
	if !alice.Joined() || alice.Record().ID != installed.Record.ID {
		t.Errorf("intercept: joined=%v id %s; want it to join the resident agent %s", alice.Joined(), alice.Record().ID, installed.Record.ID)
	}
	if _, _, body := f.getService(t, "orders", 8080, "/orders/1", "X-Dev", "alice"); body != "laptop /orders/1" {
		t.Errorf("alice's request: %q; want the laptop's answer", body)
	}
	if _, _, body := f.getService(t, "orders", 8080, "/orders/1"); isLaptop(body) {
		t.Errorf("a request without the header reached the laptop: %q", body)
	}
	if err := inj.Uninstall(ctx, orders, 0); !errors.Is(err, intercept.ErrResidentInUse) || !strings.Contains(err.Error(), "alice@laptop") {
		t.Errorf("uninstall while alice intercepts: %v; want a refusal naming her", err)
	}
	if err := alice.Leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if got := f.podUIDs(t); !reflect.DeepEqual(got, pods) {
		t.Errorf("intercept and leave replaced pods %v with %v; a resident agent must not restart any", pods, got)
	}
	if _, _, body := f.getService(t, "orders", 8080, "/orders/1", "X-Dev", "alice"); isLaptop(body) {
		t.Errorf("after leave alice's request still reached the laptop: %q", body)
	}

	// A global intercept, then leave --all from the cluster alone: the
	// agent, its Secret and the Service's pointing all stay.
	bob, err := intercept.Start(ctx, f.config(newNamedLaptop(t, "laptop"), t), intercept.Spec{Workload: orders, Holder: "bob@desk"})
	if err != nil {
		t.Fatalf("global intercept of the resident agent: %v", err)
	}
	if _, _, body := f.getService(t, "orders", 8080, "/orders/2"); body != "laptop /orders/2" {
		t.Errorf("global intercept: %q; want the laptop's answer", body)
	}
	bob.Close()
	left, err := intercept.LeaveAll(ctx, f.env.Client, f.env.Namespace, intercept.Holder{}, nil)
	if err != nil || len(left) != 1 {
		t.Fatalf("leave --all: left %v, %v; want bob's intercept of orders left", left, err)
	}
	recs, err := inj.List(ctx)
	if err != nil || len(recs) != 1 || !recs[0].Record.Resident || len(recs[0].Record.Holders) != 0 {
		t.Fatalf("after leave --all: %+v, %v; want the resident agent, held by nobody", recs, err)
	}
	if _, err := f.env.Client.CoreV1().Secrets(f.env.Namespace).Get(ctx, installed.Record.Secret, metav1.GetOptions{}); err != nil {
		t.Errorf("leave --all deleted the resident agent's Secret: %v", err)
	}
	if _, _, body := f.getService(t, "orders", 8080, "/orders/3"); isLaptop(body) {
		t.Errorf("after leave --all: %q; want the app's answer", body)
	}
	if got := f.podUIDs(t); !reflect.DeepEqual(got, pods) {
		t.Errorf("leave --all replaced pods %v with %v", pods, got)
	}

	if err := inj.Uninstall(ctx, orders, 0); err != nil {
		t.Fatalf("uninstall: %v", err)
	}
	if after := f.snapshot(t); !reflect.DeepEqual(before, after) {
		t.Errorf("uninstall left orders changed:\n got %+v\nwant %+v", after, before)
	}
	if err := inj.Uninstall(ctx, orders, 0); !errors.Is(err, intercept.ErrNotIntercepted) || !strings.Contains(err.Error(), "kloop agent install") {
		t.Errorf("a second uninstall: %v; want an error saying there is no agent and how to install one", err)
	}
}
