package intercept_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TestRelaunchUnderLoadDropsNothing keeps cluster traffic flowing through
// the intercept, paced at 150 requests per second (each a new connection
// through a real port-forward, which bounds the rate this machine reaches;
// the log says what it was), while the program is changed and relaunched 20
// times: every request must be answered by the laptop, by the old build or
// the new one.
func TestRelaunchUnderLoadDropsNothing(t *testing.T) {
	const relaunches = 20
	f := newFixture(t)
	f.MustKloop(t, "intercept", "orders", "--detach")
	if _, a, body := f.GetOrder(t); a.Build != "laptop-v1" {
		t.Fatalf("through the intercept: %s", body)
	}

	// Requests go where the Service sends them: the agent's port in a pod.
	svc, err := f.Env.Client.CoreV1().Services(f.Env.Namespace).Get(context.Background(), "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := f.ReadyPod(t, labels.SelectorFromSet(svc.Spec.Selector).String())
	target := svc.Spec.Ports[0].TargetPort.IntValue()
	// Four clients, a connection per request, share a pace of 150
	// requests/s; each is warmed up first.
	newClient := func() *http.Client {
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
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
	clients := []*http.Client{newClient(), newClient(), newClient(), newClient()}
	for _, client := range clients {
		if err := getOnce(client); err != nil {
			t.Fatalf("warm-up request: %v", err)
		}
	}
	for _, client := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range tokens {
				sent.Add(1)
				if err := getOnce(client); err != nil {
					failed.Add(1)
					failMu.Lock()
					failures = append(failures, err.Error())
					failMu.Unlock()
				}
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
	t.Logf("%d requests in %s (%.0f/s) across %d relaunches, %d failed", sent.Load(), elapsed.Round(time.Millisecond), rate, relaunches, failed.Load())
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
