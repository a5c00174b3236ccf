package demo

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
	"time"

	"github.com/kloop/kloop/server"
)

// Growth beyond these between the soak's first and last sample is a leak,
// not noise: a goroutine or a file per iteration shows well above them
// after a few minutes, while one more client connection or timer does not.
const (
	soakGoroutineSlack = 10
	soakOpenFileSlack  = 10
	// The heap may double and add this much (caches, a larger GC target).
	soakHeapSlack = 4 << 20
)

// soakTrafficRate is the steady traffic's pace, in requests per second.
const soakTrafficRate = 20

// SoakSample is the daemon's resource use after one soak iteration.
type SoakSample struct {
	Iteration int
	At        time.Duration // from the start of the soak
	Daemon    server.DaemonStats
	// Answered, Retried and Errors count the steady traffic so far (see
	// steadyTraffic).
	Answered, Retried, Errors int64
}

// SoakReport is what the soak measured.
type SoakReport struct {
	Duration time.Duration
	// Samples has the sample before the first iteration (Iteration 0) and
	// one after each iteration.
	Samples []SoakSample
	// LastTrafficError is the steady traffic's last error, if any.
	LastTrafficError string
	// Growth says what grew beyond noise; empty when nothing did.
	Growth []string
}

// First and Last are the samples the verdict compares.
func (s *SoakReport) First() SoakSample { return s.Samples[0] }

// Last is the sample after the last iteration.
func (s *SoakReport) Last() SoakSample { return s.Samples[len(s.Samples)-1] }

// soak repeats the loop (launch with workload orders, breakpoint, continue,
// edit and relaunch, breakpoint in the new code, continue, disconnect)
// until opts.Soak has passed, at least twice, under steady traffic to
// /healthz through the orders Service, and compares the daemon's resource
// use after garbage collection before the first and after the last
// iteration. The first full loop already ran, so what it warmed up (the
// build cache, client-go's caches) is in the first sample.
func (r *run) soak(ctx context.Context, v1, v2 string) (string, error) {
	rep := &SoakReport{}
	r.rep.Soak = rep
	traffic := r.startTraffic(ctx)
	defer traffic.stop()
	began := time.Now()
	sample := func(i int) error {
		st, err := r.daemonStats(ctx, i)
		if err != nil {
			return err
		}
		s := SoakSample{Iteration: i, At: time.Since(began), Daemon: st, Answered: traffic.answered.Load(), Retried: traffic.retried.Load(), Errors: traffic.errors.Load()}
		rep.Samples = append(rep.Samples, s)
		r.printf("    %s", s)
		return nil
	}
	if err := sample(0); err != nil {
		return "", err
	}
	for i := 1; i <= 2 || time.Since(began) < r.opts.Soak; i++ {
		if err := r.loopAgain(ctx, v1, v2); err != nil {
			return "", fmt.Errorf("soak iteration %d: %w", i, err)
		}
		if err := sample(i); err != nil {
			return "", err
		}
	}
	rep.Duration = time.Since(began)
	traffic.stop()
	rep.LastTrafficError = traffic.lastError()
	first, last := rep.First(), rep.Last()
	if last.Answered == 0 {
		return "", fmt.Errorf("the steady traffic got no answer in %s (last error: %s)", fmtDur(rep.Duration), rep.LastTrafficError)
	}
	a, b := first.Daemon, last.Daemon
	if b.Goroutines > a.Goroutines+soakGoroutineSlack {
		rep.Growth = append(rep.Growth, fmt.Sprintf("goroutines %d → %d", a.Goroutines, b.Goroutines))
	}
	if b.OpenFiles > a.OpenFiles+soakOpenFileSlack {
		rep.Growth = append(rep.Growth, fmt.Sprintf("open files %d → %d", a.OpenFiles, b.OpenFiles))
	}
	if b.HeapAllocBytes > 2*a.HeapAllocBytes+soakHeapSlack {
		rep.Growth = append(rep.Growth, fmt.Sprintf("live heap %s → %s", mib(a.HeapAllocBytes), mib(b.HeapAllocBytes)))
	}
	summary := fmt.Sprintf("%d iterations in %s; daemon goroutines %d → %d, live heap %s → %s, resident %s → %s, open files %d → %d; steady traffic %d answered (%d retries), %d failed",
		len(rep.Samples)-1, fmtDur(rep.Duration), a.Goroutines, b.Goroutines, mib(a.HeapAllocBytes), mib(b.HeapAllocBytes),
		mib(uint64(a.RSSBytes)), mib(uint64(b.RSSBytes)), a.OpenFiles, b.OpenFiles, last.Answered, last.Retried, last.Errors)
	if len(rep.Growth) > 0 {
		return summary, fmt.Errorf("the daemon grew beyond noise over the soak: %s", strings.Join(rep.Growth, "; "))
	}
	// No failure is allowed for: a pod is Ready only once a port-forward
	// reaches it, so a request sent again to a Ready pod must be answered.
	if last.Errors > 0 {
		return summary, fmt.Errorf("%d of the steady traffic's requests failed every attempt (last error: %s)", last.Errors, rep.LastTrafficError)
	}
	return summary, nil
}

func (s SoakSample) String() string {
	return fmt.Sprintf("iteration %d at %s: daemon %d goroutines, live heap %s, resident %s, %d open files; traffic %d answered (%d retries), %d failed",
		s.Iteration, fmtDur(s.At), s.Daemon.Goroutines, mib(s.Daemon.HeapAllocBytes), mib(uint64(s.Daemon.RSSBytes)), s.Daemon.OpenFiles, s.Answered, s.Retried, s.Errors)
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// loopAgain is the loop of the demo's steps once more, without a step per
// part (the soak prints one line per iteration).
func (r *run) loopAgain(ctx context.Context, v1, v2 string) error {
	r.setQuiet(true)
	defer r.setQuiet(false)
	if err := os.WriteFile(r.main, []byte(v1), 0o644); err != nil {
		return err
	}
	origTemplate, origPorts, err := r.specs(ctx)
	if err != nil {
		return err
	}
	if _, err := r.launch(ctx); err != nil {
		return fmt.Errorf("launch: %w", err)
	}
	for _, want := range []struct {
		line  int
		build string
	}{{r.rep.Breakpoint, "laptop-v1"}, {r.rep.EditedBreakpoint, "laptop-v2"}} {
		if want.build == "laptop-v2" {
			if _, err := r.edit(ctx, v2); err != nil {
				return fmt.Errorf("edit: %w", err)
			}
		}
		since := r.dap.Mark()
		pending := r.request(ctx, nil)
		s, err := r.stopAt(ctx, since, want.line)
		if err != nil {
			return fmt.Errorf("breakpoint of %s: %w", want.build, err)
		}
		a, err := r.continueAndAnswer(ctx, s, pending)
		if err != nil {
			return fmt.Errorf("answer of %s: %w", want.build, err)
		}
		if a.Build != want.build {
			return fmt.Errorf("answer %s, want one from %s", a.Body, want.build)
		}
	}
	if _, err := r.leave(ctx, origTemplate, origPorts); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	if _, err := r.clusterAnswers(ctx); err != nil {
		return fmt.Errorf("the cluster's pods after the leave: %w", err)
	}
	return nil
}

// daemonStats asks the daemon for its stats after garbage collection, with
// a heap profile for sample i when opts.HeapProfiles names a directory.
func (r *run) daemonStats(ctx context.Context, i int) (server.DaemonStats, error) {
	var st server.DaemonStats
	args := []string{"daemon", "stats", "-o", "json", "--gc"}
	if r.opts.HeapProfiles != "" {
		if err := os.MkdirAll(r.opts.HeapProfiles, 0o700); err != nil {
			return st, err
		}
		args = append(args, "--heap-profile", filepath.Join(r.opts.HeapProfiles, fmt.Sprintf("daemon-heap-%02d.pprof", i)))
	}
	out, err := r.kloopRun(ctx, r.ws, args...)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("kloop daemon stats -o json: %w\n%s", err, out)
	}
	return st, nil
}

// steadyTraffic is a client calling GET /healthz through the orders
// Service at a steady pace, on a kept-alive connection through a
// port-forward to one of its pods. Each intercept and leave replaces the
// pods, which ends a port-forward to the old one: like a client with
// retries, a request that fails so is sent again (up to 3 times) to
// whichever pod is ready then. Retried counts those; Errors counts requests
// that failed every attempt, and any fails the soak.
type steadyTraffic struct {
	answered, retried, errors atomic.Int64
	mu                        sync.Mutex
	lastErr                   string
	cancel                    context.CancelFunc
	done                      chan struct{}
	once                      sync.Once
}

const trafficAttempts = 3

func (r *run) startTraffic(ctx context.Context) *steadyTraffic {
	ctx, cancel := context.WithCancel(ctx)
	t := &steadyTraffic{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		tick := time.NewTicker(time.Second / soakTrafficRate)
		defer tick.Stop()
		var client *http.Client
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			var err error
			for attempt := 1; attempt <= trafficAttempts; attempt++ {
				if attempt > 1 {
					t.retried.Add(1)
					select {
					case <-ctx.Done():
						return
					case <-time.After(100 * time.Millisecond):
					}
				}
				if client == nil {
					if client, err = r.call.keptAliveClient(ctx); err != nil {
						continue
					}
				}
				if err = getHealthz(ctx, client); err == nil {
					break
				}
				client.CloseIdleConnections()
				client = nil
			}
			if err != nil {
				t.fail(ctx, err)
				continue
			}
			t.answered.Add(1)
		}
	}()
	return t
}

func (t *steadyTraffic) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return // stopping, not an error of the traffic
	}
	t.errors.Add(1)
	t.mu.Lock()
	t.lastErr = err.Error()
	t.mu.Unlock()
}

func (t *steadyTraffic) lastError() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastErr
}

func (t *steadyTraffic) stop() {
	t.once.Do(func() {
		t.cancel()
		<-t.done
	})
}

// keptAliveClient is an HTTP client whose connections go to the pod the
// orders Service would pick now.
func (c *caller) keptAliveClient(ctx context.Context) (*http.Client, error) {
	pod, target, err := c.target(ctx)
	if err != nil {
		return nil, err
	}
	// A request may wait while the debugger holds the process.
	return &http.Client{Timeout: c.wait, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return c.pf.Dial(ctx, c.namespace, pod.Name, target)
		},
	}}, nil
}

func getHealthz(ctx context.Context, client *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://orders/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /healthz: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}
