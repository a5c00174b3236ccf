package intercept_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kloop/kloop/kube/intercept"
	"github.com/kloop/kloop/kube/portforward"
)

// BenchmarkInterceptSetup measures, per iteration, a global intercept of
// the two-replica orders from the call to intercept.Start until the first
// request through a port-forward to the Service reaches the laptop
// (p50-ms/setup), and the part of it until the Services pointed at the
// agent (p50-ms/rollout):
//
//   - inject: the agent goes in with the intercept and out with the leave
//     (a rollout each way; the baseline);
//   - resident: the agent was installed once (kloop agent install), so
//     the intercept joins it and the leave keeps it.
//
// Leave runs outside the timer, and a first intercept before both (the
// run's first agent stand-in builds the kloop binary).
//
//	go test ./kube/intercept -run '^$' -bench InterceptSetup -benchtime 5x
func BenchmarkInterceptSetup(b *testing.B) {
	f := newFixture(b)
	l := newLaptop(b)
	spec := intercept.Spec{Workload: orders, Ports: []string{"8080"}, Holder: "bench@laptop"}
	// Warm up: the first agent stand-in of a run builds kloop.
	warm, err := intercept.Start(context.Background(), f.config(l, b), spec)
	if err != nil {
		b.Fatal(err)
	}
	if err := warm.Leave(context.Background()); err != nil {
		b.Fatal(err)
	}
	measure := func(b *testing.B) {
		var total, rollout []time.Duration
		for b.Loop() {
			start := time.Now()
			var rolled time.Duration
			cfg := f.config(l, b)
			cfg.Progress = func(p intercept.Progress) {
				b.Logf("%6dms %s: %s", time.Since(start).Milliseconds(), p.Stage, p.Message)
				if p.Stage == "tunnel" && rolled == 0 {
					rolled = time.Since(start)
				}
			}
			ic, err := intercept.Start(context.Background(), cfg, spec)
			if err != nil {
				b.Fatal(err)
			}
			if _, _, body := f.getService(b, "orders", 8080, "/orders/1"); body != "laptop /orders/1" {
				b.Fatalf("first request: %q", body)
			}
			total = append(total, time.Since(start))
			rollout = append(rollout, rolled)
			b.StopTimer()
			if err := ic.Leave(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(p50(total).Milliseconds()), "p50-ms/setup")
		b.ReportMetric(float64(p50(rollout).Milliseconds()), "p50-ms/rollout")
		b.ReportMetric(0, "ns/op")
	}
	b.Run("inject", measure)
	inj := &intercept.Injector{Client: f.env.Client, Namespace: f.env.Namespace}
	if _, err := inj.Install(context.Background(), spec); err != nil {
		b.Fatal(err)
	}
	b.Run("resident", measure)
	if err := inj.Uninstall(context.Background(), orders, 0); err != nil {
		b.Fatal(err)
	}
}

// p50 is the median of ds (which it sorts).
func p50(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
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

// BenchmarkDormantAgent measures what a resident agent costs while nobody
// intercepts: GETs one at a time on keep-alive connections, alternating
// between the app's own port in the pod (the baseline) and the dormant
// agent's port in front of it, both from the host over the pod network;
// and the agent process's resident memory (VmRSS) after the requests.
//
//	go test ./kube/intercept -run '^$' -bench DormantAgent -benchtime 2000x
func BenchmarkDormantAgent(b *testing.B) {
	f := newFixture(b)
	inj := &intercept.Injector{Client: f.env.Client, Namespace: f.env.Namespace}
	got, err := inj.Install(context.Background(), intercept.Spec{Workload: orders, Ports: []string{"8080"}, Holder: "bench@laptop"})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { inj.Uninstall(context.Background(), orders, 0) }()
	pod := f.readyPod(b, "app=orders")
	agentPort, _ := got.Record.AgentPort(8080)
	agent := f.si.Wait(b, pod.Name, intercept.AgentContainer)
	app := f.si.Wait(b, pod.Name, "orders").Addr(8080)
	through := agent.Addr(int32(agentPort))
	client := func(addr string) *http.Client {
		return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}}}
	}
	get := func(c *http.Client) time.Duration {
		t0 := time.Now()
		resp, err := c.Get("http://orders/healthz")
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "ok\n" {
			b.Fatalf("answer %q, want the app's ok", body)
		}
		return time.Since(t0)
	}
	direct, viaAgent := client(app), client(through)
	get(direct)
	get(viaAgent)
	var dl, al []time.Duration
	for b.Loop() {
		dl = append(dl, get(direct))
		al = append(al, get(viaAgent))
	}
	d, a := p50(dl), p50(al)
	b.ReportMetric(float64(d.Microseconds()), "app-p50-µs")
	b.ReportMetric(float64(a.Microseconds()), "agent-p50-µs")
	b.ReportMetric(float64((a - d).Microseconds()), "added-p50-µs")
	b.ReportMetric(rssMiB(b, agent.PID()), "agent-rss-MiB")
	b.ReportMetric(0, "ns/op")
}

// rssMiB reads VmRSS of pid (the stand-in runs the agent as that process,
// through `ip netns exec`, which execs into it).
func rssMiB(b *testing.B, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
