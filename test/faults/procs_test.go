package faults_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/retry"

	"github.com/kloop/kloop/kube/intercept"
	"github.com/kloop/kloop/session"
	"github.com/kloop/kloop/test/cluster"
)

// procArgs is the argv of pid, nil when it is gone.
func procArgs(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(data) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
}

// ppid is the parent of pid, 0 when it is gone.
func ppid(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// allPIDs lists the processes of the machine.
func allPIDs() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// descendants lists the living processes below pid (children,
// grandchildren, ...).
func descendants(pid int) []int {
	parent := map[int]int{}
	for _, p := range allPIDs() {
		if pidAlive(p) {
			parent[p] = ppid(p)
		}
	}
	var out []int
	for p := range parent {
		for a := parent[p]; a > 1; a = parent[a] {
			if a == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// kill9 sends SIGKILL to pid, as `kill -9` does.
func kill9(t testing.TB, what string, pid int) {
	t.Helper()
	t.Logf("kill -9 %s (pid %d: %s)", what, pid, strings.Join(procArgs(pid), " "))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %s (pid %d): %v", what, pid, err)
	}
}

// netns is the network namespace identity of pid ("net:[inode]").
func netns(pid int) string {
	l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	return l
}

// record is the intercept record kloop stored on the orders Deployment.
func (f *fixture) record(t testing.TB) intercept.Record {
	t.Helper()
	d, err := f.Env.Client.AppsV1().Deployments(f.Env.Namespace).Get(context.Background(), "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var rec intercept.Record
	raw := d.Annotations[intercept.AnnotationIntercept]
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		t.Fatalf("orders has no intercept record (%q): %v", raw, err)
	}
	return rec
}

// token is the tunnel token of the intercept, from its Secret.
func (f *fixture) token(t testing.TB) string {
	t.Helper()
	rec := f.record(t)
	s, err := f.Env.Client.CoreV1().Secrets(f.Env.Namespace).Get(context.Background(), rec.Secret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tok := string(s.Data[intercept.TokenKey])
	if tok == "" {
		t.Fatalf("secret %s has no token", rec.Secret)
	}
	return tok
}

// agentOf is the running agent stand-in of pod.
func (f *fixture) agentOf(t testing.TB, pod string) *cluster.Process {
	t.Helper()
	return f.StandIns.Wait(t, pod, intercept.AgentContainer)
}

// interceptedPods lists the live orders pods that carry the intercept's
// agent (rec.ID), waiting until want of them are ready and their agents
// serve.
func (f *fixture) interceptedPods(t testing.TB, id string, want int) []string {
	t.Helper()
	var names []string
	eventually(t, fmt.Sprintf("%d ready orders pods with the agent of intercept %s", want, id), func() bool {
		pods, err := f.Env.Client.CoreV1().Pods(f.Env.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: "app=orders"})
		if err != nil {
			return false
		}
		names = names[:0]
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil || p.Annotations[intercept.AnnotationInterceptID] != id {
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == "Ready" && c.Status == "True" {
					names = append(names, p.Name)
				}
			}
		}
		return len(names) == want
	})
	for _, n := range names {
		f.agentOf(t, n)
	}
	return names
}

// tryGetVia sends GET /orders/1 to pod's port through a real port-forward,
// as the Service would route it there.
func (f *fixture) tryGetVia(pod string, port int) (int, ordersAnswer, string, error) {
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return f.PF.Dial(ctx, f.Env.Namespace, pod, port)
		},
	}}
	resp, err := client.Get("http://orders/orders/1")
	if err != nil {
		return 0, ordersAnswer{}, "", err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return 0, ordersAnswer{}, "", err
	}
	var a ordersAnswer
	_ = json.Unmarshal(buf.Bytes(), &a)
	return resp.StatusCode, a, buf.String(), nil
}

// servedBy polls the Service until an answer satisfies ok; answers are
// logged so a failure shows what came instead.
func (f *fixture) servedBy(t testing.TB, what string, ok func(code int, a ordersAnswer) bool) ordersAnswer {
	t.Helper()
	var last string
	deadline := time.Now().Add(cluster.WaitTimeout)
	for {
		code, a, body, err := f.TryGetOrder(t)
		if err == nil && ok(code, a) {
			return a
		}
		now := fmt.Sprintf("%d %s %v", code, strings.TrimSpace(body), err)
		if now != last {
			t.Logf("waiting for %s: got %s", what, now)
			last = now
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not the case after %s; last answer: %s", what, cluster.WaitTimeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func onApp(code int, a ordersAnswer) bool { return code == 200 && a.Build == "" && a.ServedBy != "" }

func onLaptop(build string) func(int, ordersAnswer) bool {
	return func(code int, a ordersAnswer) bool { return code == 200 && a.Build == build }
}

// leaveAllRestores runs `kloop leave --all` and checks the workload and
// Service are exactly as they were, that status shows nothing intercepted
// and that the app answers.
func (f *fixture) leaveAllRestores(t testing.TB, origTemplate, origPorts any) {
	t.Helper()
	f.MustKloop(t, "leave", "--all")
	template, ports := f.Specs(t)
	if !reflect.DeepEqual(template, origTemplate) {
		t.Errorf("pod template after leave --all differs from the original:\n got %+v\nwant %+v", template, origTemplate)
	}
	if !reflect.DeepEqual(ports, origPorts) {
		t.Errorf("service ports after leave --all = %+v, want %+v", ports, origPorts)
	}
	if st := f.Status(t); len(st.Intercepts) != 0 || st.Process != nil {
		t.Errorf("status after leave --all = %+v, want nothing intercepted or running", st)
	}
	f.servedBy(t, "the app answering after leave --all", onApp)
}

// daemonLog is the daemon's log so far.
func (f *fixture) daemonLog() string {
	data, _ := os.ReadFile(filepath.Join(f.Daemon.State, "daemon.log"))
	return string(data)
}

// killPID sends SIGKILL to pid.
func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// tryStatus is `kloop status -o json` for polls that may fail.
func (f *fixture) tryStatus() (session.Status, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), cluster.WaitTimeout)
	defer cancel()
	cmd := f.Daemon.Command(ctx, "status", "-o", "json")
	cmd.Dir = f.WS
	out, err := cmd.Output()
	var st session.Status
	if err != nil || json.Unmarshal(out, &st) != nil {
		return st, false
	}
	return st, true
}

var portForwardGVR = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "portforwards"}

// dropPortForwards removes port from the kwok PortForwards of pods, so
// Kubernetes port-forwards to it fail as over a cut network; the returned
// func puts them back.
func (f *fixture) dropPortForwards(t testing.TB, pods []string, port int) func() {
	t.Helper()
	ri := f.Env.Dynamic.Resource(portForwardGVR).Namespace(f.Env.Namespace)
	saved := map[string][]any{}
	for _, pod := range pods {
		pf, err := ri.Get(context.Background(), pod, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("kwok PortForward of %s: %v", pod, err)
		}
		forwards, _, _ := unstructured.NestedSlice(pf.Object, "spec", "forwards")
		saved[pod] = forwards
		var kept []any
		for _, fw := range forwards {
			ports, _, _ := unstructured.NestedSlice(fw.(map[string]any), "ports")
			if len(ports) == 1 && ports[0] == int64(port) {
				continue
			}
			kept = append(kept, fw)
		}
		if len(kept) == len(forwards) {
			t.Fatalf("the PortForward of %s does not forward port %d: %v", pod, port, forwards)
		}
		if err := unstructured.SetNestedSlice(pf.Object, kept, "spec", "forwards"); err != nil {
			t.Fatal(err)
		}
		if _, err := ri.Update(context.Background(), pf, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("cut port %d of %s: %v", port, pod, err)
		}
	}
	return func() {
		for pod, forwards := range saved {
			err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				pf, err := ri.Get(context.Background(), pod, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if err := unstructured.SetNestedSlice(pf.Object, forwards, "spec", "forwards"); err != nil {
					return err
				}
				_, err = ri.Update(context.Background(), pf, metav1.UpdateOptions{})
				return err
			})
			if err != nil {
				t.Errorf("restore the PortForward of %s: %v", pod, err)
			}
		}
	}
}
