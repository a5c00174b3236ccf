package faults_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kloop/kloop/agent/tunnel"
	"github.com/kloop/kloop/test/cluster"
)

// TestDebugWorkerKilledDuringSession: kill -9 the `kloop debug-worker` of a
// debug session that intercepts orders. The editor is told, in an output
// event, that the debugger ended, and its session stays open (no
// terminated event); the cluster's requests are still answered and the
// intercept stays; the next save relaunches the program under a new worker,
// the killed worker's program is gone and the cluster's traffic reaches the
// new build; ending the session and `leave --all` restore the workload.
func TestDebugWorkerKilledDuringSession(t *testing.T) {
	f := newFixture(t)
	origTemplate, origPorts := f.Specs(t)
	c := startDAP(t, f)
	seq := c.Send(&godap.InitializeRequest{Request: c.Req("initialize"), Arguments: godap.InitializeRequestArguments{AdapterID: "kloop", PathFormat: "path", LinesStartAt1: true, ColumnsStartAt1: true}})
	c.Response(seq)
	launch := map[string]any{
		"workload": "orders", "program": ".", "port": fmt.Sprintf("8080:%d", f.LocalPort),
		"env": map[string]string{"HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", f.LocalPort), "ADMIN_ADDR": "127.0.0.1:0"},
	}
	args, _ := json.Marshal(launch)
	seq = c.Send(&godap.LaunchRequest{Request: c.Req("launch"), Arguments: args})
	if r := c.Response(seq).GetResponse(); !r.Success {
		t.Fatalf("launch failed: %s", r.Message)
	}
	f.servedBy(t, "the debugged laptop-v1 serving the cluster", onLaptop("laptop-v1"))

	t.Logf("status before the kill: %+v", f.Status(t))
	var worker int
	eventually(t, "the debug worker of kloop dap", func() bool {
		for _, p := range descendants(c.Process().Process.Pid) {
			if a := procArgs(p); len(a) >= 2 && a[1] == "debug-worker" {
				worker = p
				return true
			}
		}
		return false
	})
	debuggees := descendants(worker)
	t.Logf("debug worker %d, its children %v", worker, debuggees)

	since := c.Mark()
	kill9(t, "the debug worker", worker)
	c.Wait(since, "an output event telling the editor the debugger ended", func(m godap.Message) bool {
		o, ok := m.(*godap.OutputEvent)
		return ok && strings.Contains(o.Body.Output, "debugger process ended unexpectedly")
	})
	// Delve gives its debuggee no parent-death signal, so the bridge ends
	// it: a program nothing can stop at a breakpoint must not keep taking
	// the cluster's traffic.
	for _, p := range debuggees {
		eventually(t, fmt.Sprintf("the program %d of the killed worker gone", p), func() bool { return !pidAlive(p) })
	}
	// The session stays open: no terminated event, the adapter still runs.
	for _, m := range c.Since(since) {
		if _, ok := m.(*godap.TerminatedEvent); ok {
			t.Errorf("the editor got a terminated event after the worker died; the session should stay open for the next save")
		}
	}
	closed := c.Closed()
	if closed {
		t.Fatalf("kloop dap closed the editor's connection when its worker died")
	}
	// The intercept is still there, and status says so.
	if st := f.Status(t); len(st.Intercepts) != 1 || st.Intercepts[0].Workload != "deployment/orders" {
		t.Errorf("status after the worker died = %+v, want the orders intercept", st)
	} else {
		t.Logf("status after the kill: %+v", st)
	}
	// Whatever serves now (the orphaned program, or the app when nothing
	// listens on the laptop), the cluster's requests are answered rather
	// than failing or hanging.
	a := f.servedBy(t, "an answer to the cluster's request after the worker died", func(code int, _ ordersAnswer) bool { return code == 200 })
	t.Logf("after the worker died, served by build %q of %q", a.Build, a.ServedBy)

	// A save brings the program back under a new worker.
	since = c.Mark()
	if err := os.WriteFile(f.Main, []byte(ordersSource(t, "laptop-v2")), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Wait(since, "the relaunch after the save", func(m godap.Message) bool {
		o, ok := m.(*godap.OutputEvent)
		return ok && strings.Contains(o.Body.Output, "kloop: relaunched")
	})
	f.servedBy(t, "the relaunched laptop-v2 serving the cluster", onLaptop("laptop-v2"))
	for _, p := range debuggees {
		if pidAlive(p) {
			t.Errorf("the program %d of the killed worker still runs after the relaunch", p)
		}
	}

	seq = c.Send(&godap.DisconnectRequest{Request: c.Req("disconnect"), Arguments: &godap.DisconnectArguments{TerminateDebuggee: true}})
	c.Response(seq)
	eventually(t, "the workload restored when the debug session ended", func() bool {
		template, ports := f.Specs(t)
		return reflect.DeepEqual(template, origTemplate) && reflect.DeepEqual(ports, origPorts)
	})
	f.leaveAllRestores(t, origTemplate, origPorts)
}

// TestAgentKilled: kill -9 the `kloop agent` stand-in of one intercepted
// pod. The other pod keeps sending traffic to the laptop and status keeps
// the intercept; when the pod is replaced (what the kubelet and the
// ReplicaSet do for a dead container), the daemon's tunnel follows the new
// pod and its traffic reaches the laptop too.
func TestAgentKilled(t *testing.T) {
	f := newFixture(t)
	origTemplate, origPorts := f.Specs(t)
	f.MustKloop(t, "intercept", "orders", "--detach")
	f.servedBy(t, "laptop-v1 through the intercept", onLaptop("laptop-v1"))
	rec := f.record(t)
	agentPort, ok := rec.AgentPort(8080)
	if !ok {
		t.Fatalf("record has no agent port for 8080: %+v", rec)
	}
	pods := f.interceptedPods(t, rec.ID, 2)
	victim, other := pods[0], pods[1]
	pid := f.Status(t).Process.PID
	viaPod := func(what string, pod string) {
		t.Helper()
		eventually(t, what, func() bool {
			code, a, body, err := f.tryGetVia(pod, agentPort)
			if err != nil || code != 200 || a.Build != "laptop-v1" {
				t.Logf("via %s: %d %s %v", pod, code, strings.TrimSpace(body), err)
				return false
			}
			return true
		})
	}
	for _, p := range pods {
		viaPod("the tunnel of "+p+" up", p)
	}

	kill9(t, "the agent of "+victim, f.agentOf(t, victim).PID())

	// The other pod's tunnel is not disturbed: its next request still
	// reaches the laptop.
	if code, a, body, err := f.tryGetVia(other, agentPort); err != nil || code != 200 || a.Build != "laptop-v1" {
		t.Errorf("via the surviving pod %s right after the kill: %d %s %v, want laptop-v1", other, code, body, err)
	}
	st := f.Status(t)
	if len(st.Intercepts) != 1 || st.Intercepts[0].Workload != "deployment/orders" || st.Process == nil || st.Process.PID != pid || st.Process.State != "running" {
		t.Errorf("status after the agent died = %+v, want the intercept and the same running program %d", st, pid)
	}

	// The pod is replaced; the new pod gets the agent and a tunnel.
	if err := f.Env.Client.CoreV1().Pods(f.Env.Namespace).Delete(t.Context(), victim, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var replacement string
	eventually(t, "a replacement pod", func() bool {
		for _, p := range f.interceptedPods(t, rec.ID, 2) {
			if p != other && p != victim {
				replacement = p
				return true
			}
		}
		return false
	})
	viaPod("the replacement pod sending traffic to the laptop", replacement)
	viaPod("the surviving pod still sending traffic to the laptop", other)
	if st := f.Status(t); len(st.Intercepts) != 1 || st.Process == nil || st.Process.PID != pid {
		t.Errorf("status after the replacement = %+v, want the intercept and program %d", st, pid)
	}
	f.leaveAllRestores(t, origTemplate, origPorts)
	if pidAlive(pid) {
		t.Errorf("the program %d still runs after leave --all", pid)
	}
}

// TestPortForwardCut: cut the port-forwards that carry the daemon's tunnels:
// kwok (the sandbox's kubelet for port-forward) stops forwarding the agents'
// control port, and the pipe processes it runs into the pods' network for
// the open tunnels are killed. The agents send traffic back to the app; when the network comes
// back, the tunnels reconnect by themselves and traffic reaches the laptop.
func TestPortForwardCut(t *testing.T) {
	f := newFixture(t)
	origTemplate, origPorts := f.Specs(t)
	f.MustKloop(t, "intercept", "orders", "--detach")
	f.servedBy(t, "laptop-v1 through the intercept", onLaptop("laptop-v1"))
	rec := f.record(t)
	agentPort, _ := rec.AgentPort(8080)
	pods := f.interceptedPods(t, rec.ID, 2)
	nets := map[string]bool{}
	for _, p := range pods {
		nets[netns(f.agentOf(t, p).PID())] = true
	}
	pid := f.Status(t).Process.PID
	for _, p := range pods {
		eventually(t, "the tunnel of "+p+" up", func() bool {
			code, a, _, err := f.tryGetVia(p, agentPort)
			return err == nil && code == 200 && a.Build == "laptop-v1"
		})
	}
	// Status counts the requests the laptop served.
	var before int64
	eventually(t, "status counting the requests served by the laptop", func() bool {
		st := f.Status(t)
		if len(st.Intercepts) == 1 {
			before = st.Intercepts[0].Requests
		}
		return before >= 3
	})

	control := fmt.Sprintf("127.0.0.1:%d", rec.ControlPort)
	var kills atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			for _, p := range allPIDs() {
				a := procArgs(p)
				if len(a) == 3 && a[1] == "-kloop-sandbox-dial" && a[2] == control && nets[netns(p)] {
					if err := killPID(p); err == nil {
						kills.Add(1)
					}
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	// kwok, which answers Kubernetes port-forwards here, stops forwarding
	// the control port: the tunnels cannot come back while the cut lasts.
	restore := f.dropPortForwards(t, pods, rec.ControlPort)
	cutting := true
	endCut := func() {
		if cutting {
			cutting = false
			restore()
			close(stop)
			wg.Wait()
		}
	}
	defer endCut()
	// The cut is in effect when a client no longer reaches the agent: a
	// probe with a wrong token gets no answer from it, not a handshake.
	for _, p := range pods {
		eventually(t, "the control port of "+p+" cut off", func() bool {
			conn, err := f.PF.Dial(context.Background(), f.Env.Namespace, p, rec.ControlPort)
			if err != nil {
				return true
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := tunnel.Dial(ctx, conn, "cut-probe")
			if err == nil {
				c.Close()
				t.Fatalf("the agent of %s accepted a wrong token", p)
			}
			// An agent that answers proves itself first, which a client
			// with another token cannot check.
			return !errors.Is(err, tunnel.ErrTokenRefused) && !errors.Is(err, tunnel.ErrAgentUnproven)
		})
	}

	for _, p := range pods {
		eventually(t, "traffic at "+p+" back on the app during the cut", func() bool {
			code, a, body, err := f.tryGetVia(p, agentPort)
			if err != nil || !onApp(code, a) {
				t.Logf("via %s: %d %s %v", p, code, strings.TrimSpace(body), err)
				return false
			}
			return true
		})
	}
	if kills.Load() == 0 {
		t.Fatalf("no tunnel port-forward was cut")
	}
	st := f.Status(t)
	if len(st.Intercepts) != 1 || st.Process == nil || st.Process.PID != pid || st.Process.State != "running" {
		t.Errorf("status during the cut = %+v, want the intercept kept and program %d running", st, pid)
	}
	// Status tells the truth: the tunnels are down and traffic is on the
	// app; the count of what the laptop served does not fall back to 0.
	eventually(t, "status saying the tunnels are down", func() bool {
		st := f.Status(t)
		return len(st.Intercepts) == 1 && strings.Contains(st.Intercepts[0].State, "tunnels down")
	})
	if st := f.Status(t); st.Intercepts[0].Requests < before {
		t.Errorf("status counts %d requests during the cut, fewer than the %d before it", st.Intercepts[0].Requests, before)
	}
	t.Logf("status during the cut (%d requests counted before it): %s", before, strings.TrimSpace(f.MustKloop(t, "status").Stdout))
	// Hold the cut for a while: fallback must last, not flap back.
	for range 5 {
		if code, a, body, err := f.tryGetVia(pods[0], agentPort); err != nil || !onApp(code, a) {
			t.Errorf("during the cut: %d %s %v, want the app", code, body, err)
		}
	}
	endCut()
	t.Logf("cut %d port-forward connections", kills.Load())

	for _, p := range pods {
		eventually(t, "traffic at "+p+" back on the laptop after the cut", func() bool {
			code, a, _, err := f.tryGetVia(p, agentPort)
			return err == nil && code == 200 && a.Build == "laptop-v1"
		})
	}
	if st := f.Status(t); len(st.Intercepts) != 1 || st.Process == nil || st.Process.PID != pid {
		t.Errorf("status after the cut = %+v, want the intercept and program %d", st, pid)
	}
	f.leaveAllRestores(t, origTemplate, origPorts)
}

// TestDaemonKilledDuringRelaunch: save a change and kill -9 the daemon
// while it builds the new version. The agents send traffic back to the
// app; the next daemon kills the orphaned program, restores the workload,
// and status says nothing is intercepted or running.
func TestDaemonKilledDuringRelaunch(t *testing.T) {
	f := newFixture(t)
	origTemplate, origPorts := f.Specs(t)
	f.MustKloop(t, "intercept", "orders", "--detach")
	f.servedBy(t, "laptop-v1 through the intercept", onLaptop("laptop-v1"))
	pids := f.Daemon.DaemonPIDs()
	if len(pids) != 1 {
		t.Fatalf("daemons: %v, want one", pids)
	}
	daemon := pids[0]

	var program int
	var build []string
	for i := 2; build == nil; i++ {
		if i > 30 {
			t.Fatalf("never caught the daemon building in %d saves", i-2)
		}
		program = f.Status(t).Process.PID
		if err := os.WriteFile(f.Main, []byte(ordersSource(t, fmt.Sprintf("laptop-v%d", i))), 0o644); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(cluster.WaitTimeout)
		saved := time.Now()
		for build == nil && time.Now().Before(deadline) {
			for _, p := range descendants(daemon) {
				if a := procArgs(p); len(a) >= 2 && strings.HasSuffix(a[0], "go") && a[1] == "build" {
					build = a
					kill9(t, "the daemon while it runs `"+strings.Join(a, " ")+"`", daemon)
					break
				}
			}
			if build == nil && time.Since(saved) > 500*time.Millisecond {
				saved = time.Now()
				if st, ok := f.tryStatus(); ok && st.Process != nil && st.Process.PID != program && st.Process.State == "running" {
					break // the relaunch finished before we saw the build; save again
				}
			}
		}
	}
	eventually(t, "the killed daemon gone", func() bool { return len(f.Daemon.DaemonPIDs()) == 0 })
	f.servedBy(t, "traffic back on the app after the daemon died", onApp)

	// Any command starts a new daemon, which cleans up.
	f.MustKloop(t, "status")
	eventually(t, "the orphaned program killed", func() bool { return !pidAlive(program) })
	eventually(t, "the workload restored", func() bool {
		template, ports := f.Specs(t)
		return reflect.DeepEqual(template, origTemplate) && reflect.DeepEqual(ports, origPorts)
	})
	if st := f.Status(t); len(st.Intercepts) != 0 || st.Process != nil {
		t.Errorf("status after the new daemon cleaned up = %+v, want nothing intercepted or running", st)
	}
	// Neither the interrupted build's output nor anything else kloop built
	// was started by the new daemon.
	eventually(t, "no program built by kloop running", func() bool {
		for _, p := range allPIDs() {
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p)); err == nil && strings.HasPrefix(exe, f.Daemon.State+"/") && pidAlive(p) {
				t.Logf("still running: pid %d %s", p, exe)
				return false
			}
		}
		return true
	})
	f.servedBy(t, "the app answering", onApp)
	f.leaveAllRestores(t, origTemplate, origPorts)
}
