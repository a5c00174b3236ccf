package intercept_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kloop/kloop/test/dapclient"
)

// TestRelaunchUnderLoadDropsNothing keeps cluster traffic flowing through
// the intercept and a real port-forward while the program is changed and
// relaunched 20 times, back to back: every request must be answered by the
// laptop, by the old build or the new one. Eight clients keep their
// connections alive across relaunches and share a pace of 150 requests/s:
// seven call the pod as in-cluster callers do (a Service's traffic reaches
// the pod's address directly), one comes through a real port-forward. Two
// more come through port-forward with a connection per request, as fast as
// they can. So every way a relaunch can meet a request is covered. The log
// says the rate reached.
func TestRelaunchUnderLoadDropsNothing(t *testing.T) {
	f := newFixture(t)
	f.MustKloop(t, "intercept", "orders", "--detach")
	loadAcrossRelaunches(t, f, 20)
}

// TestDebugRelaunchUnderLoadDropsNothing is the same load with the program
// under the debugger (a breakpoint set on a path the load does not take):
// the relaunch gate holds and resends for a debugged program as it does for
// a run one, and every relaunch is Delve's restart, never the fallback of a
// new debugger.
func TestDebugRelaunchUnderLoadDropsNothing(t *testing.T) {
	f := newFixture(t)
	c := startDAP(t, f)
	// The admin /config handler: neither the load nor the cluster's probes call it.
	c.SetBreakpoint(f.Main, dapclient.LineOf(t, f.Main, `json.NewEncoder(w).Encode(cfg)`))
	launchOrders(t, c, f)
	loadAcrossRelaunches(t, f, 20)
	if st := f.Status(t); st.Process == nil || !st.Process.Debug {
		t.Errorf("after the relaunches the program is not under the debugger: %+v", st.Process)
	}
	if c.Closed() {
		t.Error("the debug session ended during the relaunches")
	}
	log, err := os.ReadFile(filepath.Join(f.Daemon.State, "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "Delve restart failed"); n != 0 {
		t.Errorf("%d of 20 relaunches fell back to a new debugger; the daemon log says why:\n%s", n, log)
	}
}

// loadAcrossRelaunches runs the load while the intercepted program is
// relaunched n times.
func loadAcrossRelaunches(t *testing.T, f *fixture, relaunches int) {
	t.Helper()
	if _, a, body := f.GetOrder(t); a.Build != "laptop-v1" {
		log, _ := os.ReadFile(filepath.Join(f.Daemon.State, "daemon.log"))
		t.Fatalf("through the intercept: %s\nstatus %+v\n%s", body, f.Status(t), log)
	}

	// Requests go where the Service sends them: the agent's port in a pod.
	svc, err := f.Env.Client.CoreV1().Services(f.Env.Namespace).Get(context.Background(), "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := f.ReadyPod(t, labels.SelectorFromSet(svc.Spec.Selector).String())
	target := svc.Spec.Ports[0].TargetPort.IntValue()
	agent := f.StandIns.Wait(t, pod.Name, "kloop-agent").Addr(int32(target))
	newClient := func(inCluster, keepAlive bool) *http.Client {
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			DisableKeepAlives: !keepAlive,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				if inCluster {
					var d net.Dialer
					return d.DialContext(ctx, "tcp", agent)
				}
				return f.PF.Dial(ctx, f.Env.Namespace, pod.Name, target)
			},
		}}
	}
	var sent, failed atomic.Int64
	var failMu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	tokens := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(tokens)
		tick := time.NewTicker(time.Second / 150)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			select {
			case tokens <- struct{}{}:
			case <-stop:
				return
			}
		}
	}()
	var viaPortForward atomic.Int64
	send := func(client *http.Client) {
		sent.Add(1)
		if err := getOnce(client); err != nil {
			failed.Add(1)
			failMu.Lock()
			failures = append(failures, err.Error())
			failMu.Unlock()
		}
	}
	var clients []*http.Client
	for i := range 10 {
		clients = append(clients, newClient(i < 7, i < 8))
	}
	for _, client := range clients {
		if err := getOnce(client); err != nil {
			t.Fatalf("warm-up request: %v", err)
		}
	}
	for _, client := range clients[:8] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range tokens {
				send(client)
			}
		}()
	}
	for _, client := range clients[8:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				viaPortForward.Add(1)
				send(client)
			}
		}()
	}

	pid := f.Status(t).Process.PID
	for i := 2; i <= relaunches+1; i++ {
		if err := os.WriteFile(f.Main, []byte(ordersSource(t, fmt.Sprintf("laptop-v%d", i))), 0o644); err != nil {
			t.Fatal(err)
		}
		eventually(t, fmt.Sprintf("relaunch %d", i-1), func() bool {
			st := f.Status(t)
			return st.Process != nil && st.Process.PID != pid && st.Process.State == "running"
		})
		pid = f.Status(t).Process.PID
	}
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)
	rate := float64(sent.Load()) / elapsed.Seconds()
	t.Logf("%d requests (%d on a port-forward of their own) in %s (%.0f/s) across %d relaunches, %d failed", sent.Load(), viaPortForward.Load(), elapsed.Round(time.Millisecond), rate, relaunches, failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed during relaunches; first: %v", failed.Load(), sent.Load(), failures[:min(5, len(failures))])
	}
	if _, a, body := f.GetOrder(t); a.Build != fmt.Sprintf("laptop-v%d", relaunches+1) {
		t.Errorf("after the last relaunch: %s", body)
	}
}

func getOnce(client *http.Client) error {
	resp, err := client.Get("http://orders/orders/1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	var a ordersAnswer
	if err := json.Unmarshal(body, &a); err != nil || a.Build == "" {
		return fmt.Errorf("not the laptop's answer: %s", body)
	}
	return nil
}
