package intercept_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kloop/kloop/kube/intercept"
	"github.com/kloop/kloop/kube/portforward"
)

// BenchmarkInterceptSetup measures, per iteration, a global intercept of
// the two-replica orders from the call to intercept.Start until the first
// request through a port-forward to the Service reaches the laptop
// (s/setup), and the part of it until the rollout finished (s/rollout).
// Leave runs outside the timer, and a first intercept before it (the
// run's first agent stand-in builds the kloop binary).
func BenchmarkInterceptSetup(b *testing.B) {
	f := newFixture(b)
	l := newLaptop(b)
	// Warm up: the first agent stand-in of a run builds kloop.
	warm, err := intercept.Start(context.Background(), f.config(l, b), intercept.Spec{Workload: orders, Ports: []string{"8080"}, Holder: "bench@laptop"})
	if err != nil {
		b.Fatal(err)
	}
	if err := warm.Leave(context.Background()); err != nil {
		b.Fatal(err)
	}
	var total, rollout time.Duration
	for b.Loop() {
		start := time.Now()
		var rolled time.Duration
		cfg := f.config(l, b)
		cfg.Progress = func(p intercept.Progress) {
			b.Logf("%6dms %s: %s", time.Since(start).Milliseconds(), p.Stage, p.Message)
			if p.Stage == "service" && rolled == 0 {
				rolled = time.Since(start)
			}
		}
		ic, err := intercept.Start(context.Background(), cfg, intercept.Spec{Workload: orders, Ports: []string{"8080"}, Holder: "bench@laptop"})
		if err != nil {
			b.Fatal(err)
		}
		if _, _, body := f.getService(b, "orders", 8080, "/orders/1"); body != "laptop /orders/1" {
			b.Fatalf("first request: %q", body)
		}
		b.Logf("%6dms first request tunneled", time.Since(start).Milliseconds())
		total += time.Since(start)
		rollout += rolled
		b.StopTimer()
		if err := ic.Leave(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/setup")
	b.ReportMetric(rollout.Seconds()/float64(b.N), "s/rollout")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkRequestLatency sends GETs one at a time on a keep-alive
// connection and reports p50/p99:
//
//   - direct: to the laptop's server;
//   - agent+tunnel: to the agent's port in the pod (host -> pod network ->
//     agent -> tunnel over Kubernetes port-forward -> laptop), with the
//     tunnel's port-forward over WebSocket (the default) and over SPDY;
//   - portforward+agent+tunnel: the same through the client's own
//     port-forward to the pod, as a developer's curl would;
//   - portforward-to-app: a port-forward to the app's port with no agent,
//     the cost of one port-forward round trip in this cluster.
//
// The parallel8 cases report throughput with 8 concurrent clients.
func BenchmarkRequestLatency(b *testing.B) {
	f := newFixture(b)
	l := newLaptop(b)
	ic, err := intercept.Start(context.Background(), f.config(l, b), intercept.Spec{Workload: orders, Ports: []string{"8080"}, Holder: "bench@laptop"})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { ic.Leave(context.Background()) }()
	pod := ic.Tunnels().Pods()[0].Pod
	agentPort, _ := ic.Record().AgentPort(8080)
	agentAddr := f.si.Wait(b, pod, intercept.AgentContainer).Addr(int32(agentPort))
	direct := l.srv.Listener.Addr().String()
	dialAddr := func(addr string) func(context.Context, string, string) (net.Conn, error) {
		return func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	dialPod := func(port int) func(context.Context, string, string) (net.Conn, error) {
		return func(ctx context.Context, _, _ string) (net.Conn, error) {
			return f.pf.Dial(ctx, f.env.Namespace, pod, port)
		}
	}
	type bcase struct {
		name, path, want string
		dial             func(context.Context, string, string) (net.Conn, error)
		parallel         bool
	}
	laptopCase := func(name string, dial func(context.Context, string, string) (net.Conn, error), parallel bool) bcase {
		return bcase{name, "/orders/1", "laptop /orders/1", dial, parallel}
	}
	run := func(c bcase) {
		get := func(b *testing.B, client *http.Client) {
			resp, err := client.Get("http://orders" + c.path)
			if err != nil {
				b.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != c.want {
				b.Fatalf("answer %q, want %q", body, c.want)
			}
		}
		b.Run(c.name, func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{DialContext: c.dial, MaxIdleConnsPerHost: 8}}
			get(b, client) // connect outside the measurement
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				t0 := time.Now()
				get(b, client)
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
		if !c.parallel {
			return
		}
		b.Run(c.name+"/parallel8", func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{DialContext: c.dial, MaxIdleConnsPerHost: 8}}
			work := make(chan struct{}, b.N)
			for range b.N {
				work <- struct{}{}
			}
			close(work)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for range work {
						get(b, client)
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
	run(laptopCase("direct", dialAddr(direct), true))
	run(laptopCase("agent+tunnel", dialAddr(agentAddr), true))
	run(laptopCase("portforward+agent+tunnel", dialPod(agentPort), false))
	run(bcase{"portforward-to-app", "/healthz", "ok\n", dialPod(8080), false})

	// The same intercept, adopted with tunnels whose port-forward is SPDY.
	ic.Close()
	cfg := f.config(l, b)
	cfg.Progress = nil
	cfg.PortForward = portforward.NewDialer(f.env.Config)
	cfg.PortForward.NoWebsocket = true
	ic, err = intercept.Start(context.Background(), cfg, intercept.Spec{Workload: orders, Ports: []string{"8080"}, Holder: "bench@laptop"})
	if err != nil {
		b.Fatal(err)
	}
	run(laptopCase("agent+tunnel-spdy", dialAddr(agentAddr), true))
}
