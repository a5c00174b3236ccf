package intercept_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kloop/kloop/kube/access"
	"github.com/kloop/kloop/session"
)

// interceptRBAC is the manifest a cluster admin applies for intercept-only
// users.
var interceptRBAC = filepath.Join("..", "..", "deploy", "intercept-rbac.yaml")

// asInterceptor points the fixture's workspace at a kubeconfig that acts
// as developer dev@example.com in group kloop:interceptors: the subject
// RoleBinding kloop-interceptors of deploy/intercept-rbac.yaml names, and
// nothing else. The admin's credentials impersonate them, as `kubectl
// --as` does, so the API server authorizes every call as that user.
func asInterceptor(t *testing.T, f *fixture) {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(f.Env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	user := cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo]
	user.Impersonate = "dev@example.com"
	user.ImpersonateGroups = []string{"kloop:interceptors", "system:authenticated"}
	path := filepath.Join(t.TempDir(), "dev.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	yamlPath := filepath.Join(f.WS, ".kloop.yaml")
	y, err := os.ReadFile(yamlPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(y), f.Env.Kubeconfig) {
		t.Fatalf(".kloop.yaml of the fixture no longer names its kubeconfig; update this test:\n%s", y)
	}
	if err := os.WriteFile(yamlPath, []byte(strings.ReplaceAll(string(y), f.Env.Kubeconfig, path)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func doctorReport(t *testing.T, f *fixture) (session.DoctorReport, int, string) {
	t.Helper()
	r := f.Kloop(t, "doctor", "-o", "json")
	var rep session.DoctorReport
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("kloop doctor -o json: %v\nstdout: %s\nstderr: %s", err, r.Stdout, r.Stderr)
	}
	text := f.Kloop(t, "doctor")
	return rep, r.Code, text.Stdout
}

func finding(t *testing.T, rep session.DoctorReport, check string) session.Finding {
	t.Helper()
	for _, fd := range rep.Findings {
		if fd.Check == check {
			return fd
		}
	}
	t.Fatalf("kloop doctor reported no %s check: %+v", check, rep.Findings)
	return session.Finding{}
}

// TestDoctorNamesTheMissingPermission: a developer whose Role lacks one
// verb gets a doctor report naming exactly that verb and the Role file, an
// intercept refused with the same list of verbs, and nothing changed.
func TestDoctorNamesTheMissingPermission(t *testing.T) {
	f := newFixture(t)
	f.Env.Apply(t, interceptRBAC)
	// An admin's older copy of the Role: without update on deployments.
	ctx := context.Background()
	roles := f.Env.Client.RbacV1().Roles(f.Env.Namespace)
	role, err := roles.Get(ctx, access.InterceptRole.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range role.Rules {
		if slices.Contains(r.Resources, "deployments") {
			role.Rules[i].Verbs = slices.DeleteFunc(slices.Clone(r.Verbs), func(v string) bool { return v == "update" })
		}
	}
	if _, err := roles.Update(ctx, role, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	asInterceptor(t, f)

	rep, code, text := doctorReport(t, f)
	perm := finding(t, rep, "permissions/intercept")
	if perm.Status != "fail" || !reflect.DeepEqual(perm.Missing, []string{"update deployments.apps"}) || perm.Role != access.InterceptRole.File {
		t.Errorf("permissions/intercept = %+v; want a failure missing exactly update deployments.apps, fixed by %s", perm, access.InterceptRole.File)
	}
	if code != 1 || rep.Healthy {
		t.Errorf("doctor exited %d (healthy %v) with a permission missing; want exit 1", code, rep.Healthy)
	}
	for _, want := range []string{"missing: update deployments.apps", access.InterceptRole.File, "API server", "Kubernetes v"} {
		if !strings.Contains(text, want) {
			t.Errorf("kloop doctor printed\n%s\nwithout %q", text, want)
		}
	}
	if pf := finding(t, rep, "port-forward"); pf.Status != "ok" {
		t.Errorf("port-forward = %+v; the Role allows it", pf)
	}
	if d := finding(t, rep, "daemon"); d.Status != "ok" {
		t.Errorf("daemon = %+v", d)
	}

	before, beforePorts := f.Specs(t)
	r := f.Kloop(t, "intercept", "orders", "--detach")
	if r.Code == 0 {
		t.Fatalf("intercept without update on deployments succeeded:\n%s", r.Stdout)
	}
	for _, want := range []string{"not allowed to update deployments", access.Intercept().Summary(), access.InterceptRole.File, "kloop doctor"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("the refused intercept said\n%s\nwithout %q", r.Stderr, want)
		}
	}
	after, afterPorts := f.Specs(t)
	if !reflect.DeepEqual(before, after) || !reflect.DeepEqual(beforePorts, afterPorts) {
		t.Errorf("a refused intercept changed orders")
	}
}

// TestInterceptOnlyRoleRunsTheLoop: a developer bound to exactly
// deploy/intercept-rbac.yaml, with no other right in the cluster, runs the
// README's loop: intercept, traffic to their build, leave with the workload
// as it was; and doctor finds nothing failing.
func TestInterceptOnlyRoleRunsTheLoop(t *testing.T) {
	f := newFixture(t)
	f.Env.Apply(t, interceptRBAC)
	asInterceptor(t, f)
	origTemplate, origPorts := f.Specs(t)

	rep, code, text := doctorReport(t, f)
	if code != 0 || !rep.Healthy {
		t.Fatalf("doctor for a user with the intercept Role exited %d:\n%s", code, text)
	}
	if perm := finding(t, rep, "permissions/intercept"); perm.Status != "ok" {
		t.Errorf("permissions/intercept = %+v", perm)
	}
	// Claims need the claimer Role, which this user lacks: a warning only.
	if c := finding(t, rep, "permissions/claim"); c.Status != "warn" || !strings.Contains(c.Fix, "deploy/claimer-rbac.yaml") {
		t.Errorf("permissions/claim = %+v; want a warning naming deploy/claimer-rbac.yaml", c)
	}

	f.MustKloop(t, "intercept", "orders", "--detach")
	if code, a, body := f.GetOrder(t); code != 200 || a.Build != "laptop-v1" {
		t.Fatalf("through the intercept: %d %s, want the laptop's build", code, body)
	}
	f.MustKloop(t, "env", "orders", "--format", "json")
	f.MustKloop(t, "requests", "-o", "json")
	f.MustKloop(t, "leave", "orders")
	tmpl, ports := f.Specs(t)
	if !reflect.DeepEqual(origTemplate, tmpl) || !reflect.DeepEqual(origPorts, ports) {
		t.Errorf("leave did not restore orders as it was")
	}
}
