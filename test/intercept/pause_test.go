package intercept_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	godap "github.com/google/go-dap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kloop/kloop/session"
	"github.com/kloop/kloop/test/dapclient"
)

// TestPausedAtABreakpointTheServiceStaysUp: a request from the cluster
// stops at a breakpoint in the debugged program. While it is stopped,
// another caller sends about 50 requests/s for a few seconds through the
// Service (a real port-forward to a pod) and sees no failure, every
// answer from the cluster's pods (the app container, whose answer carries
// no build marker), and kloop status says how many the pods answered. The
// stopped request is not cut: after continue it gets the laptop's answer,
// and traffic reaches the laptop again. `kloop requests` marks the request
// that stopped, and `kloop replay --last` picks it over newer ones.
func TestPausedAtABreakpointTheServiceStaysUp(t *testing.T) {
	f := newFixture(t)
	c := startDAP(t, f)
	const marker = `"servedBy": cfg.Pod`
	line := dapclient.LineOf(t, f.Main, marker)
	c.SetBreakpoint(f.Main, line)
	launchOrders(t, c, f)

	// The other caller: the Service's targetPort on a ready pod, through a
	// real port-forward, with connections kept alive as a client pool does.
	svc, err := f.Env.Client.CoreV1().Services(f.Env.Namespace).Get(context.Background(), "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := f.ReadyPod(t, labels.SelectorFromSet(svc.Spec.Selector).String())
	target := svc.Spec.Ports[0].TargetPort.IntValue()
	const rate, seconds = 50, 4
	// Each request is held up to 2 s, so about 100 are in flight at once,
	// each on a connection of its own. The connections are dialed before
	// the load, one after another: the sandbox's port-forward backend
	// (kwok) refuses some of a burst of that many new port-forwards
	// ("error dialing backend: EOF") before any byte reaches the pod,
	// which is the sandbox's limit, not the Service's.
	ready := make(chan net.Conn, 2*rate+30)
	for len(ready) < cap(ready) {
		conn, err := f.PF.Dial(context.Background(), f.Env.Namespace, pod.Name, target)
		if err != nil {
			t.Logf("port-forward before the load: %v (retrying)", err)
			continue
		}
		ready <- conn
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: 200,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			select {
			case conn := <-ready:
				return conn, nil
			default:
				return f.PF.Dial(ctx, f.Env.Namespace, pod.Name, target)
			}
		},
	}}
	type answer struct {
		a    ordersAnswer
		body string
	}
	stopped := make(chan answer, 1)
	since := c.Mark()
	go func() {
		_, a, body := f.GetOrder(t)
		stopped <- answer{a, body}
	}()
	thread := c.StoppedAt(since, f.Main, line)
	eventually(t, "kloop status to show the intercept paused", func() bool {
		st := f.Status(t)
		return len(st.Intercepts) == 1 && st.Intercepts[0].Paused
	})

	var sent, failed, fromPods atomic.Int64
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / rate)
	for range rate * seconds {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent.Add(1)
			a, err := getAnswer(client)
			switch {
			case err != nil:
				failed.Add(1)
				mu.Lock()
				failures = append(failures, err.Error())
				mu.Unlock()
			case a.Build == "" && a.ServedBy != "":
				fromPods.Add(1)
			}
		}()
	}
	tick.Stop()
	wg.Wait()
	t.Logf("while paused: %d requests, %d failed, %d answered by the cluster's pods", sent.Load(), failed.Load(), fromPods.Load())
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed while the program was paused; first: %v", failed.Load(), sent.Load(), failures[:min(5, len(failures))])
	}
	if fromPods.Load() != sent.Load() {
		t.Errorf("%d of %d requests were answered by the cluster's pods; want all, the laptop's process is stopped", fromPods.Load(), sent.Load())
	}
	select {
	case got := <-stopped:
		t.Fatalf("the request at the breakpoint ended while paused: %s", got.body)
	default:
	}
	eventually(t, "kloop status to count the requests the pods answered", func() bool {
		st := f.Status(t)
		return len(st.Intercepts) == 1 && st.Intercepts[0].PausedToPods >= sent.Load() && strings.HasPrefix(st.Intercepts[0].State, "paused: ")
	})
	if text := f.MustKloop(t, "status").Stdout; !strings.Contains(text, "paused: ") || !strings.Contains(text, "requests sent to the cluster's pods") {
		t.Errorf("kloop status printed %q; want \"paused: N requests sent to the cluster's pods\"", text)
	}

	// Continue: the stopped request gets the laptop's answer; with the
	// breakpoint gone, traffic reaches the laptop again, on the caller's
	// kept-alive connections too.
	c.SetBreakpoints(f.Main, nil)
	c.Request("setBreakpoints", godap.SetBreakpointsArguments{Source: godap.Source{Path: f.Main}})
	c.Send(&godap.ContinueRequest{Request: c.Req("continue"), Arguments: godap.ContinueArguments{ThreadId: thread}})
	if got := <-stopped; got.a.Build != "laptop-v1" {
		t.Fatalf("the request that stopped at the breakpoint, after continue: %s; want the laptop's answer", got.body)
	}
	eventually(t, "kloop status to show the intercept running again", func() bool {
		st := f.Status(t)
		return len(st.Intercepts) == 1 && !st.Intercepts[0].Paused && !strings.HasPrefix(st.Intercepts[0].State, "paused")
	})
	for i := range 5 {
		if a, err := getAnswer(client); err != nil || a.Build != "laptop-v1" {
			t.Fatalf("request %d after continue: %+v, %v; want the laptop's answer", i, a, err)
		}
	}

	// The request that stopped is marked, and replay without an ID picks
	// it over the newer ones.
	r := f.MustKloop(t, "requests", "-o", "json")
	var list session.RequestsResult
	if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil {
		t.Fatalf("requests -o json: %v\n%s", err, r.Stdout)
	}
	stoppedID, newer := 0, 0
	for _, e := range list.Requests {
		if e.Stopped {
			stoppedID = e.ID
		} else if stoppedID != 0 {
			newer++
		}
	}
	if stoppedID == 0 || newer == 0 {
		t.Fatalf("kloop requests lists %+v; want the request that stopped marked, with newer ones after it", list.Requests)
	}
	r = f.MustKloop(t, "replay", "--last", "-o", "json")
	var res session.ReplayResult
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
		t.Fatalf("replay -o json: %v\n%s", err, r.Stdout)
	}
	if res.Request.ID != stoppedID {
		t.Errorf("kloop replay --last sent #%d; want #%d, the request that stopped at the breakpoint", res.Request.ID, stoppedID)
	}
}

// getAnswer is GET /orders/1 with client; any failure or non-200 is an
// error.
func getAnswer(client *http.Client) (ordersAnswer, error) {
	var a ordersAnswer
	resp, err := client.Get("http://orders/orders/1")
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return a, err
	}
	if resp.StatusCode != http.StatusOK {
		return a, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return a, fmt.Errorf("not an orders answer: %s", body)
	}
	return a, nil
}
