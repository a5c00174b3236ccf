package relaunch

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kloop/kloop/session/build"
	"github.com/kloop/kloop/session/watch"
)

// BenchmarkSaveToServing measures, per iteration and interleaved so that
// both see the same machine load:
//   - save: a source change written to disk and reported by didSave
//     (watcher Notify; the file event and the notification coalesce, with
//     the default 100 ms debounce) until the first request answered by the
//     new process, with the loop's whole relaunch (build, stop old, start
//     new, readiness, gate) in between;
//   - floor: `go build` of a change plus exec plus the first answer, with
//     nothing to debounce, nothing to stop and nothing held;
//   - swap: the loop's own share of a relaunch (trigger to ready, minus the
//     build): stopping the old process, starting the new one, readiness.
//
// Both compile a fresh change (different constants), so each pays one
// compile of the main package and a link with a warm build cache. A
// background client sends about 100 requests per second through DialLocal
// the whole time; failed requests are reported as dropped.
func BenchmarkSaveToServing(b *testing.B) {
	src := copyDir(b, filepath.Join("testdata", "server"))
	port := freePort(b)
	cfg := goConfig(b, src, port)
	cfg.Run.Argv = []string{cfg.Builder.(*build.GoBuild).Output}
	loop, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- loop.Run(ctx) }()
	defer func() { cancel(); <-done }()
	w, err := watch.Start(ctx, watch.Config{Root: src}, func([]string) { loop.Trigger() })
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	c := client(loop)
	waitBody(b, c, "v1")

	var dropped, sent atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		lc := client(loop)
		for !stop.Load() {
			if _, err := get(lc); err != nil {
				dropped.Add(1)
			}
			sent.Add(1)
			time.Sleep(10 * time.Millisecond)
		}
	}()

	floorSrc := copyDir(b, filepath.Join("testdata", "server"))
	floorBin := filepath.Join(b.TempDir(), "floor")
	floorPort := freePort(b)
	floorClient := &http.Client{Timeout: time.Minute, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

	var save, floor, swap, loopBuild, floorBuild []time.Duration
	b.ResetTimer()
	for i := range b.N {
		v := fmt.Sprintf("save%d", i)
		setVersion(b, src, v)
		t0 := time.Now()
		w.Notify(filepath.Join(src, "main.go"))
		// Watch the loop in-process until the new process is up, then ask
		// over HTTP: polling HTTP through the whole build would load the
		// machine more than the floor's measurement does.
		for loop.Status().Launches < i+2 {
			time.Sleep(time.Millisecond)
		}
		pollBody(b, c, "http://program/", v)
		save = append(save, time.Since(t0))

		st := waitStatus(b, loop, "relaunch counted", func(s Status) bool { return s.Launches == i+2 && s.State == StateRunning })
		swap = append(swap, st.LastRelaunch-st.LastBuild)
		loopBuild = append(loopBuild, st.LastBuild)

		v = fmt.Sprintf("floor%d", i)
		setVersion(b, floorSrc, v)
		t0 = time.Now()
		total, built := floorOnce(b, floorSrc, floorBin, floorPort, floorClient, v, t0)
		floor = append(floor, total)
		floorBuild = append(floorBuild, built)
	}
	b.StopTimer()
	stop.Store(true)
	wg.Wait()

	p50s, p95s := percentiles(save)
	p50f, p95f := percentiles(floor)
	p50w, p95w := percentiles(swap)
	b.ReportMetric(ms(p50s), "save-p50-ms")
	b.ReportMetric(ms(p95s), "save-p95-ms")
	b.ReportMetric(ms(p50f), "floor-p50-ms")
	b.ReportMetric(ms(p95f), "floor-p95-ms")
	b.ReportMetric(ms(p50w), "swap-p50-ms")
	b.ReportMetric(ms(p95w), "swap-p95-ms")
	p50lb, _ := percentiles(loopBuild)
	p50fb, _ := percentiles(floorBuild)
	b.ReportMetric(ms(p50lb), "loop-build-p50-ms")
	b.ReportMetric(ms(p50fb), "floor-build-p50-ms")
	b.ReportMetric(float64(p50s)/float64(p50f), "ratio-p50")
	b.ReportMetric(float64(p95s)/float64(p95f), "ratio-p95")
	b.ReportMetric(float64(dropped.Load()), "dropped")
	b.ReportMetric(float64(sent.Load()), "requests")
}

// floorOnce is the raw floor: build, exec, first answer; then it stops the
// process outside the measurement.
func floorOnce(b *testing.B, src, bin string, port int, c *http.Client, want string, t0 time.Time) (total, built time.Duration) {
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("floor build: %v\n%s", err, out)
	}
	built = time.Since(t0)
	p := exec.Command(bin)
	p.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port))
	if err := p.Start(); err != nil {
		b.Fatal(err)
	}
	pollBody(b, c, fmt.Sprintf("http://127.0.0.1:%d/", port), want)
	total = time.Since(t0)
	p.Process.Signal(syscall.SIGTERM)
	p.Wait()
	return total, built
}

func pollBody(b *testing.B, c *http.Client, url, want string) {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		resp, err := c.Get(url)
		if err == nil {
			var buf [64]byte
			n, _ := resp.Body.Read(buf[:])
			resp.Body.Close()
			if string(buf[:n]) == want {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s never answered %q (last error %v)", url, want, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func percentiles(ds []time.Duration) (p50, p95 time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.5), at(0.95)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
