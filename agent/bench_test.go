package agent_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kloop/kloop/agent/tunnel"
)

// BenchmarkRequests compares the same GET sent straight to the local process
// ("direct") with the paths an intercepted request takes through the agent,
// the tunnel and the daemon side to the local process: spliced per connection
// under a global intercept ("global"), routed per request by the agent's
// proxy under a personal one ("header-match"); and with a request a personal
// intercept leaves on the app ("header-miss": the agent's proxy only).
// The paths take turns in batches, so load from elsewhere on the machine hits
// them alike. Per path it reports requests per second, p50 and p99 latency,
// and for the intercepted paths the throughput as a percentage of direct and
// the p50 added to direct. Run with
//
//	go test -run '^$' -bench Requests -benchtime 20000x ./agent/
//
// Where the global path's time goes (-cpuprofile of conns=1, 20000x, on a
// loaded 2-core machine, Dec 2026; direct p50 35µs, global 85µs): 47% of
// all CPU is the read/write syscalls themselves. The tunnel's share is
// yamux's recvLoop (6%), its sendLoop (6%, nearly all of it write(2) under
// coalescingConn.Write) and Splice's io.Copy (6%); of the samples under
// yamux and agent/tunnel, 78% are syscalls, the rest scheduler wake-ups,
// allocation and locks. The global path costs one extra TCP hop each way
// (agent -> tunnel -> daemon side -> local process), so its added latency
// is those syscalls and wake-ups: there are no buffer, Nagle (Go sets
// TCP_NODELAY) or yamux window costs to tune (small requests never fill
// the window, and coalescingConn already sends a frame header with its
// body in one write).
func BenchmarkRequests(b *testing.B) {
	app := startBackend(b, "app")
	lap := startBackend(b, "laptop")
	global := startAgent(b, nil, httpForward(app.addr()))
	connect(b, global, map[int]string{app.port(): lap.addr()}, "").set(b, tunnel.Intercept{})
	personal := startAgent(b, nil, httpForward(app.addr()))
	connect(b, personal, map[int]string{app.port(): lap.addr()}, "").
		set(b, tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}})

	paths := []*benchPath{
		{name: "direct", url: "http://" + lap.addr(), want: "laptop"},
		{name: "global", url: listenURL(b, global, app.port()), want: "laptop"},
		{name: "header-match", url: listenURL(b, personal, app.port()), header: devHeader, want: "laptop"},
		{name: "header-miss", url: listenURL(b, personal, app.port()), want: "app"},
	}
	for _, workers := range []int{1, 8} {
		b.Run(fmt.Sprintf("conns=%d", workers), func(b *testing.B) {
			for _, p := range paths {
				p.reset(b, workers)
				defer p.tr.CloseIdleConnections()
			}
			const batch = 500
			for done := 0; done < b.N; done += batch {
				for _, p := range paths {
					p.run(b, min(batch, b.N-done), workers)
				}
			}
			direct := paths[0]
			for _, p := range paths {
				p.report(b)
				if p != direct {
					b.ReportMetric(100*p.rate()/direct.rate(), p.name+"-%direct")
					b.ReportMetric(p.pct(0.5)-direct.pct(0.5), p.name+"-added-p50-µs")
				}
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

type benchPath struct {
	name, url, want string
	header          http.Header
	tr              *http.Transport
	client          *http.Client
	lat             []time.Duration
	elapsed         time.Duration
	requests        int
}

func (p *benchPath) reset(b *testing.B, workers int) {
	p.tr = &http.Transport{MaxIdleConnsPerHost: workers, DisableCompression: true}
	p.client = &http.Client{Transport: p.tr}
	p.lat, p.elapsed, p.requests = nil, 0, 0
	for range workers { // open the connections before measuring
		if _, err := get(p.client, p.url, p.header); err != nil {
			b.Fatal(err)
		}
	}
}

// run sends n requests from workers keep-alive connections.
func (p *benchPath) run(b *testing.B, n, workers int) {
	req, _ := http.NewRequest(http.MethodGet, p.url, nil)
	req.Header = p.header
	var next, failed atomic.Int64
	lat := make([][]time.Duration, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				resp, err := p.client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				got, _ := io.ReadFull(resp.Body, buf[:len(p.want)])
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if string(buf[:got]) != p.want {
					failed.Add(1)
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	p.elapsed += time.Since(start)
	p.requests += n
	if f := failed.Load(); f > 0 {
		b.Fatalf("%s: %d of %d requests failed or reached the wrong side", p.name, f, n)
	}
	for _, l := range lat {
		p.lat = append(p.lat, l...)
	}
}

func (p *benchPath) rate() float64 { return float64(p.requests) / p.elapsed.Seconds() }

func (p *benchPath) pct(q float64) float64 {
	if !slices.IsSorted(p.lat) {
		slices.Sort(p.lat)
	}
	return float64(p.lat[int(float64(len(p.lat)-1)*q)].Nanoseconds()) / 1e3
}

func (p *benchPath) report(b *testing.B) {
	b.ReportMetric(p.rate(), p.name+"-req/s")
	b.ReportMetric(p.pct(0.50), p.name+"-p50-µs")
	b.ReportMetric(p.pct(0.99), p.name+"-p99-µs")
}

// BenchmarkTunnelSetup measures the agent's share of intercept setup: dial
// the control port, handshake, set a global intercept, and serve the first
// request through the tunnel from a fresh client connection. Run with
//
//	go test -run '^$' -bench TunnelSetup -benchtime 500x ./agent/
func BenchmarkTunnelSetup(b *testing.B) {
	app := startBackend(b, "app")
	lap := startBackend(b, "laptop")
	a := startAgent(b, nil, httpForward(app.addr()))
	url := listenURL(b, a, app.port())
	for b.Loop() {
		l := connect(b, a, map[int]string{app.port(): lap.addr()}, "")
		l.set(b, tunnel.Intercept{})
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		if got, err := get(c, url, nil); err != nil || got != "laptop HTTP/1.1" {
			b.Fatalf("first request: %q, %v", got, err)
		}
		l.close()
	}
}
