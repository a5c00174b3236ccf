package intercept_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// TestInterceptRunsTheProgramAndRelaunchesOnSave is the loop from the CLI:
// intercept orders with the program in the workspace, serve cluster traffic
// from it with the pod's env, files and outbound access, relaunch on save,
// and leave with the workload exactly as it was.
func TestInterceptRunsTheProgramAndRelaunchesOnSave(t *testing.T) {
	f := newFixture(t)
	origTemplate, origPorts := f.Specs(t)

	// Before: the cluster's own pods answer.
	if code, a, body := f.GetOrder(t); code != 200 || a.Build != "" {
		t.Fatalf("before the intercept: %d %s, want the app's answer", code, body)
	}

	r := f.MustKloop(t, "intercept", "orders", "--detach")
	if !strings.Contains(r.Stdout, "intercepting deployment/orders") {
		t.Errorf("intercept printed %q", r.Stdout)
	}

	// Cluster traffic reaches the local build. Its answer proves the env
	// (GREETING from the ConfigMap, API_TOKEN from the Secret, without which
	// it does not start), the mounted catalog under KLOOP_ROOT (order 1), and
	// outbound access to the users Service by name through the proxy.
	code, a, body := f.GetOrder(t)
	if code != 200 || a.Build != "laptop-v1" {
		t.Fatalf("through the intercept: %d %s, want the laptop's build laptop-v1", code, body)
	}
	if a.Greeting != "hello from orders" || a.Order["item"] != "keyboard" || a.User["name"] == "" {
		t.Errorf("answer %s lacks the ConfigMap greeting, the catalog item or the user from the users Service", body)
	}

	st := f.Status(t)
	if len(st.Intercepts) != 1 || st.Intercepts[0].Workload != "deployment/orders" || st.Process == nil || st.Process.State != "running" {
		t.Fatalf("status after intercept = %+v", st)
	}
	firstPid := st.Process.PID

	// The program's output is kept for `kloop logs`, in memory only.
	logs := f.MustKloop(t, "logs", "--tail", "50")
	if !strings.Contains(logs.Stdout+logs.Stderr, "orders listening") {
		t.Errorf("kloop logs printed %q / %q, want the program's \"orders listening\" line", logs.Stdout, logs.Stderr)
	}

	// kloop env while intercepted is the program's env.
	env := f.MustKloop(t, "env", "orders", "--format", "json")
	var vars map[string]string
	if err := json.Unmarshal([]byte(env.Stdout), &vars); err != nil {
		t.Fatalf("env -o json: %v\n%s", err, env.Stdout)
	}
	for _, k := range []string{"API_TOKEN", "KLOOP_ROOT", "HTTP_PROXY", "ALL_PROXY", "GREETING"} {
		if vars[k] == "" {
			t.Errorf("kloop env lacks %s", k)
		}
	}

	// Save a change, as an editor or git would: the next request after the
	// relaunch is served by the new code.
	if err := os.WriteFile(f.Main, []byte(ordersSource(t, "laptop-v2")), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a relaunched process", func() bool {
		st := f.Status(t)
		return st.Process != nil && st.Process.PID != firstPid && st.Process.State == "running"
	})
	if code, a, body := f.GetOrder(t); code != 200 || a.Build != "laptop-v2" {
		t.Fatalf("after the save: %d %s, want the new build laptop-v2", code, body)
	}
	if pidAlive(firstPid) {
		t.Errorf("the first process %d still runs after the relaunch", firstPid)
	}

	// Leave: the workload and Service are as they were, traffic is back on
	// the app, the local process is gone and state.json forgets it all.
	lastPid := f.Status(t).Process.PID
	f.MustKloop(t, "leave", "orders")
	template, ports := f.Specs(t)
	if !reflect.DeepEqual(template, origTemplate) {
		t.Errorf("pod template after leave differs from the original")
	}
	if !reflect.DeepEqual(ports, origPorts) {
		t.Errorf("service ports after leave = %v, want %v", ports, origPorts)
	}
	if code, a, body := f.GetOrder(t); code != 200 || a.Build != "" {
		t.Errorf("after leave: %d %s, want the app's answer", code, body)
	}
	if pidAlive(lastPid) {
		t.Errorf("the local program %d still runs after leave", lastPid)
	}
	st = f.Status(t)
	if len(st.Intercepts) != 0 || st.Process != nil {
		t.Errorf("status after leave = %+v, want nothing intercepted or running", st)
	}
	state, err := os.ReadFile(f.Daemon.State + "/state.json")
	if err == nil && strings.Contains(string(state), "orders") {
		t.Errorf("state.json still records orders after leave:\n%s", state)
	}
}

// TestHeaderInterceptRoutesOnlyMatchingRequests is a personal intercept:
// requests with the header reach the laptop, everyone else's stay on the
// app.
func TestHeaderInterceptRoutesOnlyMatchingRequests(t *testing.T) {
	f := newFixture(t)
	f.MustKloop(t, "intercept", "orders", "--header", "x-dev=alice", "--detach")
	if _, a, body := f.GetOrder(t, "x-dev", "alice"); a.Build != "laptop-v1" {
		t.Errorf("with the header: %s, want the laptop", body)
	}
	for _, h := range [][]string{nil, {"x-dev", "bob"}} {
		if _, a, body := f.GetOrder(t, h...); a.Build != "" {
			t.Errorf("with header %v: %s, want the app", h, body)
		}
	}
	st := f.Status(t)
	if len(st.Intercepts) != 1 || st.Intercepts[0].Header["x-dev"] != "alice" {
		t.Errorf("status = %+v, want the personal intercept with its header", st.Intercepts)
	}
	f.MustKloop(t, "leave", "orders")
}

// TestInterceptRunsACommandWithThePodEnv: without a program, `-- CMD`
// runs CMD here with the pod's env and ends the intercept when it exits.
func TestInterceptRunsACommandWithThePodEnv(t *testing.T) {
	f := newFixture(t)
	origTemplate, _ := f.Specs(t)
	// This workspace names no program for orders.
	cfg := "kubeconfig: " + f.Env.Kubeconfig + "\n"
	if err := os.WriteFile(filepath.Join(f.WS, ".kloop.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	envFile := filepath.Join(t.TempDir(), "env")
	r := f.MustKloop(t, "intercept", "orders", "--", "sh", "-c", "env > "+envFile)
	if !strings.Contains(r.Stderr, "left deployment/orders") {
		t.Errorf("intercept did not say it left after the command: %s", r.Stderr)
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
	if st := f.Status(t); len(st.Intercepts) != 0 {
		t.Errorf("status after the command = %+v, want the intercept ended", st.Intercepts)
	}
	if template, _ := f.Specs(t); !reflect.DeepEqual(template, origTemplate) {
		t.Errorf("orders not restored after the command")
	}
}

// TestInterceptInTheForegroundStreamsOutputAndLeavesOnInterrupt: without
// --detach the command shows the program's output until Ctrl-C, then ends
// the intercept.
func TestInterceptInTheForegroundStreamsOutputAndLeavesOnInterrupt(t *testing.T) {
	f := newFixture(t)
	origTemplate, _ := f.Specs(t)
	cmd := f.Daemon.Command(context.Background(), "intercept", "orders")
	cmd.Dir = f.WS
	var out safeBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	eventually(t, "the program's output in the terminal", func() bool { return strings.Contains(out.String(), "orders listening") })
	if _, a, body := f.GetOrder(t); a.Build != "laptop-v1" {
		t.Fatalf("through the intercept: %s", body)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("kloop intercept after Ctrl-C: %v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "relaunched") {
		t.Errorf("the first launch was reported as a relaunch:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "left deployment/orders") {
		t.Errorf("no word of leaving after Ctrl-C:\n%s", out.String())
	}
	if template, _ := f.Specs(t); !reflect.DeepEqual(template, origTemplate) {
		t.Errorf("orders not restored after Ctrl-C:\n%+v\nwant\n%+v\noutput:\n%s", template, origTemplate, out.String())
	}
}

type safeBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
