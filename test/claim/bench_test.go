package claim_test

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkClaimReleaseCLI measures `kloop claim` and `kloop release` as a
// user runs them: a CLI process each, through the running daemon, against
// the sandbox cluster.
func BenchmarkClaimReleaseCLI(b *testing.B) {
	pool := newPool(b, 1)
	env := daemonEnv(b)
	ws := workspace(b, map[string]string{})
	mustKloop(b, env, ws, "status") // start the daemon outside the timing
	var claims, releases []time.Duration
	for b.Loop() {
		claims = append(claims, mustKloop(b, env, ws, "claim", "--pool", pool).took)
		releases = append(releases, mustKloop(b, env, ws, "release").took)
	}
	b.ReportMetric(p(claims, 50), "claim-p50-ms")
	b.ReportMetric(p(claims, 99), "claim-p99-ms")
	b.ReportMetric(p(releases, 50), "release-p50-ms")
}

func p(ds []time.Duration, pct int) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[(len(s)-1)*pct/100]) / float64(time.Millisecond)
}
