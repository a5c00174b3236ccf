package intercept_test

import (
	"reflect"
	"sort"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/kloop/kloop/test/dapclient"
	"github.com/kloop/kloop/test/orders"
)

// BenchmarkDebugLaunchToFirstStop measures what a developer waits for when they
// start debugging a workload: from the editor's launch request (workload orders, on
// the sandbox, with a warm build cache) to the first cluster request stopping at a
// breakpoint, broken down into the intercept, the debug build and the debugger
// start, as the launch response reports them. Each iteration ends the session:
//
//   - inject: the intercept injects the agent (a rollout) and the end restores
//     the workload (the baseline);
//
//   - resident: `kloop agent install orders` ran first, so the intercept is a
//     message to the agent and the end keeps it.
//
//     go test ./test/intercept -run '^$' -bench DebugLaunchToFirstStop -benchtime 3x
func BenchmarkDebugLaunchToFirstStop(b *testing.B) {
	f := &fixture{orders.New(b, binary(b))}
	const marker = `"servedBy": cfg.Pod`
	line := dapclient.LineOf(b, f.Main, marker)
	measure := func(b *testing.B) {
		origTemplate, _ := f.Specs(b)
		var total, firstStop, intercept, build, debugger []time.Duration
		for b.Loop() {
			c := startDAP(b, f)
			c.SetBreakpoint(f.Main, line)
			start := time.Now()
			tm := launchOrders(b, c, f)
			launched := time.Since(start)
			since := c.Mark()
			done := make(chan struct{})
			go func() {
				defer close(done)
				f.GetOrder(b)
			}()
			thread := c.StoppedAt(since, f.Main, line)
			firstStop = append(firstStop, time.Since(start))
			total = append(total, launched)
			intercept = append(intercept, time.Duration(tm.InterceptMillis)*time.Millisecond)
			build = append(build, time.Duration(tm.BuildMillis)*time.Millisecond)
			debugger = append(debugger, time.Duration(tm.DebuggerMillis)*time.Millisecond)
			c.Send(&godap.ContinueRequest{Request: c.Req("continue"), Arguments: godap.ContinueArguments{ThreadId: thread}})
			<-done
			seq := c.Send(&godap.DisconnectRequest{Request: c.Req("disconnect"), Arguments: &godap.DisconnectArguments{TerminateDebuggee: true}})
			c.Response(seq)
			eventually(b, "the workload as it was before the launch", func() bool {
				template, _ := f.Specs(b)
				return reflect.DeepEqual(template, origTemplate)
			})
		}
		b.ReportMetric(p50(firstStop).Seconds(), "first-stop-s")
		b.ReportMetric(p50(total).Seconds(), "launch-s")
		b.ReportMetric(p50(intercept).Seconds(), "intercept-s")
		b.ReportMetric(p50(build).Seconds(), "build-s")
		b.ReportMetric(p50(debugger).Seconds(), "debugger-s")
	}
	b.Run("inject", measure)
	f.MustKloop(b, "agent", "install", "orders")
	b.Run("resident", measure)
	f.MustKloop(b, "agent", "uninstall", "orders")
}

func p50(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
