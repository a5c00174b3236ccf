package intercept_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestInterceptRunsTheProgramAndRelaunchesOnSave is the loop from the CLI:
// intercept orders with the program in the workspace, serve cluster traffic
// from it with the pod's env, files and outbound access, relaunch on save,
// and leave with the workload exactly as it was.
func TestInterceptRunsTheProgramAndRelaunchesOnSave(t *testing.T) {
	f := newFixture(t)
	origTemplate, origPorts := f.specs(t)

	// Before: the cluster's own pods answer.
	if code, a, body := f.getOrder(t); code != 200 || a.Build != "" {
		t.Fatalf("before the intercept: %d %s, want the app's answer", code, body)
	}

	r := f.mustKloop(t, "intercept", "orders", "--detach")
	if !strings.Contains(r.stdout, "intercepting deployment/orders") {
		t.Errorf("intercept printed %q", r.stdout)
	}

	// Cluster traffic reaches the local build. Its answer proves the env
	// (GREETING from the ConfigMap, API_TOKEN from the Secret, without which
	// it does not start), the mounted catalog under KLOOP_ROOT (order 1), and
	// outbound access to the users Service by name through the proxy.
	code, a, body := f.getOrder(t)
	if code != 200 || a.Build != "laptop-v1" {
		t.Fatalf("through the intercept: %d %s, want the laptop's build laptop-v1", code, body)
	}
	if a.Greeting != "hello from orders" || a.Order["item"] != "keyboard" || a.User["name"] == "" {
		t.Errorf("answer %s lacks the ConfigMap greeting, the catalog item or the user from the users Service", body)
	}

	st := f.status(t)
	if len(st.Intercepts) != 1 || st.Intercepts[0].Workload != "deployment/orders" || st.Process == nil || st.Process.State != "running" {
		t.Fatalf("status after intercept = %+v", st)
	}
	firstPid := st.Process.PID

	// kloop env while intercepted is the program's env.
	env := f.mustKloop(t, "env", "orders", "--format", "json")
	var vars map[string]string
	if err := json.Unmarshal([]byte(env.stdout), &vars); err != nil {
		t.Fatalf("env -o json: %v\n%s", err, env.stdout)
	}
	for _, k := range []string{"API_TOKEN", "KLOOP_ROOT", "HTTP_PROXY", "ALL_PROXY", "GREETING"} {
		if vars[k] == "" {
			t.Errorf("kloop env lacks %s", k)
		}
	}

	// Save a change, as an editor or git would: the next request after the
	// relaunch is served by the new code.
	if err := os.WriteFile(f.main, []byte(ordersSource(t, "laptop-v2")), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a relaunched process", func() bool {
		st := f.status(t)
		return st.Process != nil && st.Process.PID != firstPid && st.Process.State == "running"
	})
	if code, a, body := f.getOrder(t); code != 200 || a.Build != "laptop-v2" {
		t.Fatalf("after the save: %d %s, want the new build laptop-v2", code, body)
	}
	if pidAlive(firstPid) {
		t.Errorf("the first process %d still runs after the relaunch", firstPid)
	}

	// Leave: the workload and Service are as they were, traffic is back on
	// the app, the local process is gone and state.json forgets it all.
	lastPid := f.status(t).Process.PID
	f.mustKloop(t, "leave", "orders")
	template, ports := f.specs(t)
	if !reflect.DeepEqual(template, origTemplate) {
		t.Errorf("pod template after leave differs from the original")
	}
	if !reflect.DeepEqual(ports, origPorts) {
		t.Errorf("service ports after leave = %v, want %v", ports, origPorts)
	}
	if code, a, body := f.getOrder(t); code != 200 || a.Build != "" {
		t.Errorf("after leave: %d %s, want the app's answer", code, body)
	}
	if pidAlive(lastPid) {
		t.Errorf("the local program %d still runs after leave", lastPid)
	}
	st = f.status(t)
	if len(st.Intercepts) != 0 || st.Process != nil {
		t.Errorf("status after leave = %+v, want nothing intercepted or running", st)
	}
	state, err := os.ReadFile(f.daemon.State + "/state.json")
	if err == nil && strings.Contains(string(state), "orders") {
		t.Errorf("state.json still records orders after leave:\n%s", state)
	}
}

// TestHeaderInterceptRoutesOnlyMatchingRequests is a personal intercept:
// requests with the header reach the laptop, everyone else's stay on the
// app.
func TestHeaderInterceptRoutesOnlyMatchingRequests(t *testing.T) {
	f := newFixture(t)
	f.mustKloop(t, "intercept", "orders", "--header", "x-dev=alice", "--detach")
	if _, a, body := f.getOrder(t, "x-dev", "alice"); a.Build != "laptop-v1" {
		t.Errorf("with the header: %s, want the laptop", body)
	}
	for _, h := range [][]string{nil, {"x-dev", "bob"}} {
		if _, a, body := f.getOrder(t, h...); a.Build != "" {
			t.Errorf("with header %v: %s, want the app", h, body)
		}
	}
	st := f.status(t)
	if len(st.Intercepts) != 1 || st.Intercepts[0].Header["x-dev"] != "alice" {
		t.Errorf("status = %+v, want the personal intercept with its header", st.Intercepts)
	}
	f.mustKloop(t, "leave", "orders")
}

// TestInterceptRunsACommandWithThePodEnv: without a program, `-- CMD`
// runs CMD here with the pod's env and ends the intercept when it exits.
func TestInterceptRunsACommandWithThePodEnv(t *testing.T) {
	f := newFixture(t)
	origTemplate, _ := f.specs(t)
	// This workspace names no program for orders.
	cfg := "kubeconfig: " + f.env.Kubeconfig + "\n"
	if err := os.WriteFile(filepath.Join(f.ws, ".kloop.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(t.TempDir(), "env")
	r := f.mustKloop(t, "intercept", "orders", "--", "sh", "-c", "env > "+envFile)
	if !strings.Contains(r.stderr, "left deployment/orders") {
		t.Errorf("intercept did not say it left after the command: %s", r.stderr)
	}
	data, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatalf("the command did not run: %v", err)
	}
	for _, want := range []string{"API_TOKEN=sample-token-not-a-real-secret", "GREETING=hello from orders", "KLOOP_ROOT=", "HTTP_PROXY=http://kloop:", "ALL_PROXY=socks5h://kloop:"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("the command's env lacks %q", want)
		}
	}
	if st := f.status(t); len(st.Intercepts) != 0 {
		t.Errorf("status after the command = %+v, want the intercept ended", st.Intercepts)
	}
	if template, _ := f.specs(t); !reflect.DeepEqual(template, origTemplate) {
		t.Errorf("orders not restored after the command")
	}
}
