package sandbox

import (
	"context"
	"testing"
	"time"
)

// BenchmarkUpCachedToReady measures a cluster start with built binaries:
// from Up to apiserver ready and the node Ready (the goal is ≤ 10 s).
// Stopping is not timed. Run with -benchtime=3x: one start takes seconds.
func BenchmarkUpCachedToReady(b *testing.B) {
	ctx := context.Background()
	binDir, err := EnsureBinaries(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	opts := Options{Name: "bench", StateDir: b.TempDir(), BinDir: binDir}
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := Up(ctx, opts); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		if err := Down(ctx, opts); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/up")
}

// BenchmarkCacheCheck measures the check every test binary pays before it
// starts a cluster (manifest, sizes, mtimes).
func BenchmarkCacheCheck(b *testing.B) {
	c, err := DefaultCache()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := EnsureBinaries(context.Background(), nil); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if st := c.Check(); !st.Ready {
			b.Fatal(st.Problems)
		}
	}
}
