package dap

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	godap "github.com/google/go-dap"
)

// BenchmarkRelaunchUnderDebug measures save-to-breakpoint under the debugger: rewrite
// the handler, relaunch through the same DAP session, send a request and wait for the
// stop at the (moved) breakpoint. In the same iteration it measures the floor without
// a debugger: the same edit, `go build -gcflags=all=-N -l`, exec, first HTTP answer.
//
//	go test ./test/dap -run '^$' -bench RelaunchUnderDebug -benchtime 10x
func BenchmarkRelaunchUnderDebug(b *testing.B) {
	fx := newFixture(b)
	e := startEditor(b, fx.dir)
	e.SetBreakpoints(fx.main, []godap.SourceBreakpoint{{Line: fx.line(b, "reply")}})
	initializeAndLaunch(b, e, launchConfig(nil))
	addr := serverAddr(b, e, 0)
	warm := get(addr, "/?name=warm")
	thread, _ := waitStopped(b, e, 0, fx.main, fx.line(b, "reply"))
	e.Request("continue", godap.ContinueArguments{ThreadId: thread})
	if got := recv(b, warm, "warm-up"); got != "hello warm" {
		b.Fatalf("warm-up answer %q", got)
	}

	var debug, raw, build, restart []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		// Floor: edit, build with debug flags, run, first answer.
		fx.write(b, fmt.Sprintf("raw%d", i), i%3)
		raw = append(raw, rawLoop(b, fx))

		// Under the debugger, in the live session.
		greeting := fmt.Sprintf("dbg%d", i)
		start := time.Now()
		fx.write(b, greeting, (i+1)%3)
		line := fx.line(b, "reply")
		e.SetBreakpoints(fx.main, []godap.SourceBreakpoint{{Line: line}})
		since := e.Mark()
		resp := e.Request("kloop/relaunch", nil)
		addr = serverAddr(b, e, since)
		since = e.Mark()
		answer := get(addr, "/?name=x")
		thread, _ := waitStopped(b, e, since, fx.main, line)
		debug = append(debug, time.Since(start))
		e.Request("continue", godap.ContinueArguments{ThreadId: thread})
		if got := recv(b, answer, "request"); got != greeting+" x" {
			b.Fatalf("answer %q, want %q", got, greeting+" x")
		}
		// Build, then save (here: the relaunch request) to the program running again.
		var split struct{ BuildMillis, RelaunchMillis int64 }
		_ = json.Unmarshal(resp.Body, &split)
		build = append(build, time.Duration(split.BuildMillis)*time.Millisecond)
		restart = append(restart, time.Duration(split.RelaunchMillis-split.BuildMillis)*time.Millisecond)
	}
	b.StopTimer()
	if e.SawEvent(0, "terminated") {
		b.Error("the session was terminated during the benchmark")
	}
	b.ReportMetric(median(debug).Seconds(), "debug-s")
	b.ReportMetric(median(raw).Seconds(), "raw-s")
	b.ReportMetric(median(debug).Seconds()/median(raw).Seconds(), "ratio")
	b.ReportMetric(median(build).Seconds(), "build-s")
	b.ReportMetric(median(restart).Seconds(), "restart-s")
}

// rawLoop is the no-debugger floor: build, start, wait for the first answer.
func rawLoop(b *testing.B, fx *fixture) time.Duration {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "server")
	start := time.Now()
	build := exec.Command("go", "build", "-gcflags=all=-N -l", "-o", bin, "./server")
	build.Dir = fx.dir
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	run := exec.Command(bin)
	stdout, err := run.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := run.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = run.Process.Kill()
		_ = run.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("read listening line: %v", err)
	}
	m := listeningRE.FindStringSubmatch(line)
	if m == nil {
		b.Fatalf("unexpected first line %q", line)
	}
	if got := recv(b, get(m[1], "/?name=x"), "raw request"); got == "" || got[:5] == "error" {
		b.Fatalf("raw answer %q", got)
	}
	elapsed := time.Since(start)
	_ = os.Remove(bin)
	return elapsed
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
