package intercept_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kloop/kloop/kube/intercept"
	"github.com/kloop/kloop/kube/workload"
)

// latencyRequests is how many GETs each latency figure takes its p50 from:
// enough for a stable median, few enough for 50 replicas on 2 cores.
const latencyRequests = 200

// BenchmarkScale measures a global intercept of a users-like Deployment of
// 1, 10 and 50 replicas, each figure beside its baseline from the same run:
//
//   - setup: intercept.Start to the first request through a port-forward to
//     the Service reaching the laptop (p50-ms/setup; Start returns once
//     every pod it follows is tunneled, so this covers all N replicas), and
//     the part of it until the agents rolled out and tunneling began
//     (p50-ms/rollout); the baseline is a rollout of the same workload
//     without kloop (a no-op template annotation) to every replica ready
//     and a first request answered (ms/rollout-baseline);
//   - latency: p50 of GETs one at a time through a port-forward to one
//     pod's agent port (agent+tunnel to the laptop, pf-agent-p50-µs), and
//     from the host over the pod network to the agent (agent-p50-µs),
//     beside a bare port-forward to the app's port in the same pod
//     (pf-app-p50-µs, the baseline);
//   - daemon-side memory: the Tunnels live in this test process, so the
//     figures are this process's runtime.MemStats HeapInuse after a GC
//     with the intercept's tunnels up minus before Start (heap-delta-KiB),
//     and the goroutine count delta (goroutines-delta). They include the
//     intercept's informers and client-go's port-forward streams.
//
// Each replica is a real stand-in process and, once intercepted, a real
// agent process; with 50 replicas the 2-core machine runs 100 of them plus
// 50 port-forwards: that case runs (about a minute of the run here) but its
// figures are the noisiest. Indicative, one loaded run (Dec 2026): setup
// 1.6/8.0/31.7s vs rollout baseline 1.2/5.0/19.8s for 1/10/50 replicas, the
// agents' rollout most of it and the tunnels ~0.7/1.2/7.8s (in parallel, so
// CPU-bound here); about 1.1 MiB of heap and 21 goroutines per tunneled
// pod; p50 per request flat in N (2.0ms through port-forward+agent+tunnel
// vs 1.0ms for a bare port-forward).
//
//	go test ./kube/intercept -run '^$' -bench Scale -benchtime 1x
func BenchmarkScale(b *testing.B) {
	f := newFixture(b)
	l := newLaptop(b)
	f.warmUp(b, l)
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			w := f.makeWorkload(b, fmt.Sprintf("scale%d", n), n)
			spec := intercept.Spec{Workload: w, Ports: []string{"8080"}, Holder: "bench@laptop"}
			var rollouts, setups, rolledOut []time.Duration
			var heap, gor []float64
			var pfAgent, agent, pfApp []time.Duration
			for b.Loop() {
				rollouts = append(rollouts, f.noopRollout(b, w.Name, n))

				before := memNow()
				start := time.Now()
				// Progress may come from the tunnels' goroutines.
				var rolled atomic.Int64
				cfg := f.config(l, b)
				cfg.Progress = func(p intercept.Progress) {
					if p.Stage == "tunnel" {
						rolled.CompareAndSwap(0, int64(time.Since(start)))
					}
				}
				ic, err := intercept.Start(context.Background(), cfg, spec)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, body := f.getService(b, w.Name, 8080, "/users/1"); !isLaptop(body) {
					b.Fatalf("first request: %q, want the laptop's answer", body)
				}
				setups = append(setups, time.Since(start))
				rolledOut = append(rolledOut, time.Duration(rolled.Load()))
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				if err := ic.Tunnels().WaitConnected(ctx, n); err != nil {
					cancel()
					b.Fatalf("wait for %d tunnels: %v", n, err)
				}
				cancel()
				after := memNow()
				heap = append(heap, float64(int64(after.heap)-int64(before.heap))/1024)
				gor = append(gor, float64(after.goroutines-before.goroutines))

				b.StopTimer()
				pod := ic.Tunnels().Pods()[0].Pod
				agentPort, _ := ic.Record().AgentPort(8080)
				agentAddr := f.si.Wait(b, pod, intercept.AgentContainer).Addr(int32(agentPort))
				pa, a, pp := f.latencies(b, pod, agentPort, agentAddr)
				pfAgent, agent, pfApp = append(pfAgent, pa), append(agent, a), append(pfApp, pp)
				if err := ic.Leave(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(p50(setups).Milliseconds()), "p50-ms/setup")
			b.ReportMetric(float64(p50(rolledOut).Milliseconds()), "p50-ms/rollout")
			b.ReportMetric(float64(p50(rollouts).Milliseconds()), "ms/rollout-baseline")
			b.ReportMetric(float64(p50(pfAgent).Microseconds()), "pf-agent-p50-µs")
			b.ReportMetric(float64(p50(agent).Microseconds()), "agent-p50-µs")
			b.ReportMetric(float64(p50(pfApp).Microseconds()), "pf-app-p50-µs")
			b.ReportMetric(median(heap), "heap-delta-KiB")
			b.ReportMetric(median(gor), "goroutines-delta")
			b.ReportMetric(0, "ns/op")
			f.deleteWorkload(b, w.Name)
		})
	}
}

// BenchmarkConcurrentIntercepts starts 10 global intercepts, one per
// single-replica workload, one after another, each by its own Start with
// its own Tunnels, and reports the setup (Start to the first tunneled
// request through the Service) of the 1st and of the 10th, and the p50 of
// GETs from the host over the pod network through the first workload's
// agent and tunnel with only it active and with all 10 active; plus this
// process's HeapInuse and goroutine deltas with all 10 up (see
// BenchmarkScale).
//
//	go test ./kube/intercept -run '^$' -bench ConcurrentIntercepts -benchtime 1x
func BenchmarkConcurrentIntercepts(b *testing.B) {
	const n = 10
	f := newFixture(b)
	l := newLaptop(b)
	f.warmUp(b, l)
	ws := make([]workload.Workload, n)
	for i := range ws {
		ws[i] = f.makeWorkload(b, fmt.Sprintf("conc%d", i), 1)
	}
	var first, tenth, lat1, lat10 []time.Duration
	var heap, gor []float64
	for b.Loop() {
		before := memNow()
		ics := make([]*intercept.Intercept, 0, n)
		var agentAddr string
		for i, w := range ws {
			start := time.Now()
			ic, err := intercept.Start(context.Background(), f.config(l, b), intercept.Spec{Workload: w, Ports: []string{"8080"}, Holder: "bench@laptop"})
			if err != nil {
				b.Fatal(err)
			}
			ics = append(ics, ic)
			if _, _, body := f.getService(b, w.Name, 8080, "/users/1"); !isLaptop(body) {
				b.Fatalf("first request to %s: %q, want the laptop's answer", w.Name, body)
			}
			took := time.Since(start)
			switch i {
			case 0:
				first = append(first, took)
				b.StopTimer()
				pod := ic.Tunnels().Pods()[0].Pod
				agentPort, _ := ic.Record().AgentPort(8080)
				agentAddr = f.si.Wait(b, pod, intercept.AgentContainer).Addr(int32(agentPort))
				lat1 = append(lat1, p50GET(b, dialTo(agentAddr), "/users/1", isLaptop))
				b.StartTimer()
			case n - 1:
				tenth = append(tenth, took)
			}
		}
		after := memNow()
		heap = append(heap, float64(int64(after.heap)-int64(before.heap))/1024)
		gor = append(gor, float64(after.goroutines-before.goroutines))
		b.StopTimer()
		lat10 = append(lat10, p50GET(b, dialTo(agentAddr), "/users/1", isLaptop))
		for _, ic := range ics {
			if err := ic.Leave(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(p50(first).Milliseconds()), "ms/setup-1st")
	b.ReportMetric(float64(p50(tenth).Milliseconds()), "ms/setup-10th")
	b.ReportMetric(float64(p50(lat1).Microseconds()), "p50-µs/1-active")
	b.ReportMetric(float64(p50(lat10).Microseconds()), "p50-µs/10-active")
	b.ReportMetric(median(heap), "heap-delta-KiB/10-active")
	b.ReportMetric(median(gor), "goroutines-delta/10-active")
	b.ReportMetric(0, "ns/op")
}

// warmUp runs one intercept of orders and leaves it: the run's first agent
// stand-in builds the kloop binary, which is no part of any setup measured.
func (f *fixture) warmUp(b *testing.B, l *laptop) {
	b.Helper()
	ic, err := intercept.Start(context.Background(), f.config(l, b), intercept.Spec{Workload: orders, Ports: []string{"8080"}, Holder: "bench@laptop"})
	if err != nil {
		b.Fatalf("warm-up intercept: %v", err)
	}
	if err := ic.Leave(context.Background()); err != nil {
		b.Fatalf("leave the warm-up intercept: %v", err)
	}
}

type memSample struct {
	heap       uint64
	goroutines int
}

// memNow samples after a GC, so the heap figure is what is live (plus
// spans not yet returned), not garbage awaiting collection.
func memNow() memSample {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heap: ms.HeapInuse, goroutines: runtime.NumGoroutine()}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// makeWorkload creates a Deployment and Service name like users (one
// container, port 8080) with n replicas, and waits for n stand-ins serving.
func (f *fixture) makeWorkload(b *testing.B, name string, n int) workload.Workload {
	b.Helper()
	ctx := context.Background()
	apps := f.env.Client.AppsV1().Deployments(f.env.Namespace)
	users, err := apps.Get(ctx, "users", metav1.GetOptions{})
	if err != nil {
		b.Fatalf("read the users Deployment to copy: %v", err)
	}
	lbl := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbl},
		Spec:       *users.Spec.DeepCopy(),
	}
	replicas := int32(n)
	d.Spec.Replicas = &replicas
	d.Spec.Selector = &metav1.LabelSelector{MatchLabels: lbl}
	d.Spec.Template.Labels = lbl
	if _, err := apps.Create(ctx, d, metav1.CreateOptions{}); err != nil {
		b.Fatalf("create Deployment %s: %v", name, err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{Selector: lbl, Ports: []corev1.ServicePort{
			{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080)},
		}},
	}
	if _, err := f.env.Client.CoreV1().Services(f.env.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		b.Fatalf("create Service %s: %v", name, err)
	}
	for _, p := range f.env.WaitPodsRunning(b, "app="+name, n) {
		f.si.Wait(b, p.Name, "users")
	}
	f.waitAvailable(b, name, n)
	return workload.Workload{Kind: workload.Deployment, Name: name}
}

func (f *fixture) deleteWorkload(b *testing.B, name string) {
	b.Helper()
	ctx := context.Background()
	fg := metav1.DeletePropagationForeground
	if err := f.env.Client.AppsV1().Deployments(f.env.Namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil {
		b.Fatalf("delete Deployment %s: %v", name, err)
	}
	if err := f.env.Client.CoreV1().Services(f.env.Namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		b.Fatalf("delete Service %s: %v", name, err)
	}
	// The next case's pods should not share the cores with these.
	waitFor(b, "pods of "+name+" gone", func() bool {
		pods, err := f.env.Client.CoreV1().Pods(f.env.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		return err == nil && len(pods.Items) == 0
	})
}

// noopRollout is what a rollout of the workload costs without kloop: a
// template annotation change, until every replica of the new template is
// ready, the old ones gone, and a request through the Service answered.
func (f *fixture) noopRollout(b *testing.B, name string, n int) time.Duration {
	b.Helper()
	start := time.Now()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"bench.kloop.dev/noop":%q}}}}}`, start.Format(time.RFC3339Nano))
	if _, err := f.env.Client.AppsV1().Deployments(f.env.Namespace).Patch(context.Background(), name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		b.Fatalf("patch Deployment %s: %v", name, err)
	}
	f.waitAvailable(b, name, n)
	if _, _, body := f.getService(b, name, 8080, "/healthz"); body != "ok\n" {
		b.Fatalf("after the rollout: %q, want the app's ok", body)
	}
	return time.Since(start)
}

// waitAvailable waits until the Deployment's current template runs on n
// ready replicas and no old one is left.
func (f *fixture) waitAvailable(b *testing.B, name string, n int) {
	b.Helper()
	waitFor(b, fmt.Sprintf("Deployment %s rolled out to %d ready replicas", name, n), func() bool {
		d, err := f.env.Client.AppsV1().Deployments(f.env.Namespace).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		s := d.Status
		w := int32(n)
		return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == w && s.ReadyReplicas == w && s.AvailableReplicas == w && s.Replicas == w
	})
}

// latencies takes, alternating so the machine's load hits them alike, the
// p50 of GETs through a port-forward to the agent's port of pod, from the
// host to the agent's address, and through a port-forward to the app's
// port 8080 of the same pod.
func (f *fixture) latencies(b *testing.B, pod string, agentPort int, agentAddr string) (pfAgent, agent, pfApp time.Duration) {
	b.Helper()
	dialPod := func(port int) func(context.Context, string, string) (net.Conn, error) {
		return func(ctx context.Context, _, _ string) (net.Conn, error) {
			return f.pf.Dial(ctx, f.env.Namespace, pod, port)
		}
	}
	okApp := func(s string) bool { return s == "ok\n" }
	gs := []*getter{
		newGetter(b, dialPod(agentPort), "/users/1", isLaptop),
		newGetter(b, dialTo(agentAddr), "/users/1", isLaptop),
		newGetter(b, dialPod(8080), "/healthz", okApp),
	}
	for range latencyRequests {
		for _, g := range gs {
			g.get(b)
		}
	}
	return p50(gs[0].lat), p50(gs[1].lat), p50(gs[2].lat)
}

func dialTo(addr string) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// p50GET is the p50 of latencyRequests GETs one at a time on a keep-alive
// connection made by dial.
func p50GET(b *testing.B, dial func(context.Context, string, string) (net.Conn, error), path string, ok func(string) bool) time.Duration {
	g := newGetter(b, dial, path, ok)
	for range latencyRequests {
		g.get(b)
	}
	return p50(g.lat)
}

// getter sends GETs on one keep-alive connection, connected outside the
// measurement, and keeps their latencies.
type getter struct {
	client *http.Client
	path   string
	ok     func(string) bool
	lat    []time.Duration
}

func newGetter(b *testing.B, dial func(context.Context, string, string) (net.Conn, error), path string, ok func(string) bool) *getter {
	g := &getter{client: &http.Client{Transport: &http.Transport{DialContext: dial}}, path: path, ok: ok}
	b.Cleanup(g.client.CloseIdleConnections)
	g.get(b)
	g.lat = g.lat[:0]
	return g
}

func (g *getter) get(b *testing.B) {
	t0 := time.Now()
	resp, err := g.client.Get("http://bench" + g.path)
	if err != nil {
		b.Fatalf("GET %s: %v", g.path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !g.ok(string(body)) {
		b.Fatalf("GET %s: answer %q", g.path, strings.TrimSpace(string(body)))
	}
	g.lat = append(g.lat, time.Since(t0))
}
