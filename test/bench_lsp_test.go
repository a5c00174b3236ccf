package test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kloop/kloop/test/editor"
)

// The benchmarks run the real binary through the fake editor, so each
// figure is what an editor waits for, pipes and process start included.
// Goals (issue 2): cold start ≤ 300 ms, warm initialize ≤ 20 ms, codeLens
// p99 ≤ 10 ms on a 5,000-line file, idle daemon RSS ≤ 40 MiB.
//
//	go test ./test -run '^$' -bench . -benchtime 20x

// BenchmarkColdStart is `kloop lsp` with no daemon running, from process
// start to the initialize result: the forwarder finds no daemon, starts
// one, waits for its socket and relays initialize.
func BenchmarkColdStart(b *testing.B) {
	env := editor.NewEnv(b, kloopBin)
	root := benchWorkspace(b)
	var took []time.Duration
	for range b.N {
		start := time.Now()
		ed := editor.Start(b, env, editor.Forwarded)
		ed.Initialize(root, true)
		took = append(took, time.Since(start))

		b.StopTimer()
		ed.Shutdown()
		ed.Wait()
		stopDaemons(b, env)
		b.StartTimer()
	}
	reportPercentiles(b, took)
}

// BenchmarkWarmInitialize is `kloop lsp` while a daemon runs (another
// editor window is open): process start to initialize result.
func BenchmarkWarmInitialize(b *testing.B) {
	env := editor.NewEnv(b, kloopBin)
	root := benchWorkspace(b)
	keeper := editor.Start(b, env, editor.Forwarded)
	keeper.Initialize(root, true)
	var took []time.Duration
	for range b.N {
		start := time.Now()
		ed := editor.Start(b, env, editor.Forwarded)
		ed.Initialize(root, true)
		took = append(took, time.Since(start))

		b.StopTimer()
		ed.Shutdown()
		ed.Wait()
		b.StartTimer()
	}
	reportPercentiles(b, took)
}

// BenchmarkCodeLens5000Lines times textDocument/codeLens on a 5,000-line Go
// main package right after each edit, so lenses are computed afresh every
// time (an unchanged document would be answered from the cache).
func BenchmarkCodeLens5000Lines(b *testing.B) {
	for _, mode := range editor.Modes {
		b.Run(string(mode), func(b *testing.B) {
			env := editor.NewEnv(b, kloopBin)
			root := benchWorkspace(b)
			path := filepath.Join(root, "cmd/big/main.go")
			text := bigMain(5000)
			ed := editor.Start(b, env, mode)
			ed.Initialize(root, true)
			ed.Open(path, "go", text)
			params := map[string]any{"textDocument": map[string]any{"uri": editor.URI(path)}}
			var took []time.Duration
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				// Same length, different content: a new version to parse.
				ed.Change(path, i+2, strings.Replace(text, "// edit 0000", fmt.Sprintf("// edit %04d", i%10000), 1))
				b.StartTimer()
				start := time.Now()
				m := ed.Await(ed.Send("textDocument/codeLens", params))
				took = append(took, time.Since(start))
				if m.Error != nil || !strings.Contains(string(m.Result), "& run") {
					b.Fatalf("codeLens = %s %v, want the lenses above func main", m.Result, m.Error)
				}
			}
			reportPercentiles(b, took)
		})
	}
}

// BenchmarkDaemonIdleRSS is the resident memory of a daemon that served an
// editor (initialize, a 5,000-line file, its lenses) and now has no client.
func BenchmarkDaemonIdleRSS(b *testing.B) {
	env := editor.NewEnv(b, kloopBin)
	env.Extra = append(env.Extra, "KLOOP_IDLE_TIMEOUT=1h")
	root := benchWorkspace(b)
	path := filepath.Join(root, "cmd/big/main.go")
	ed := editor.Start(b, env, editor.Forwarded)
	ed.Initialize(root, true)
	ed.Open(path, "go", bigMain(5000))
	ed.CodeLens(path)
	ed.Shutdown()
	ed.Wait()
	daemons := env.DaemonPIDs()
	if len(daemons) != 1 {
		b.Fatalf("daemons = %v, want one", daemons)
	}
	// Give the daemon a moment to notice the editor left: idle is the
	// state after that.
	time.Sleep(200 * time.Millisecond)
	b.ResetTimer()
	var rss float64
	for range b.N {
		rss = vmRSSMiB(b, daemons[0])
	}
	b.ReportMetric(rss, "MiB-rss")
}

// reportPercentiles adds p50 and p99 in milliseconds to the benchmark line.
func reportPercentiles(b *testing.B, took []time.Duration) {
	if len(took) == 0 {
		return
	}
	slices.Sort(took)
	at := func(p float64) float64 {
		i := min(len(took)-1, int(p*float64(len(took))))
		return float64(took[i]) / float64(time.Millisecond)
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

// stopDaemons ends env's daemon the way `kloop daemon stop` would and waits
// until it is gone, so the next iteration starts cold.
func stopDaemons(b *testing.B, env *editor.Env) {
	b.Helper()
	for _, pid := range env.DaemonPIDs() {
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			b.Fatalf("stop daemon %d: %v", pid, err)
		}
		deadline := time.Now().Add(editor.WaitTimeout)
		for !editor.Exited(pid) {
			if time.Now().After(deadline) {
				b.Fatalf("daemon %d still running %s after SIGTERM", pid, editor.WaitTimeout)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// vmRSSMiB reads the resident set size of pid.
func vmRSSMiB(b *testing.B, pid int) float64 {
	b.Helper()
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		b.Fatalf("read the daemon's memory: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				b.Fatalf("VmRSS %q: %v", v, err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// benchWorkspace is a workspace with a go.mod; the 5,000-line file is sent
// by the editor, as an unsaved buffer would be.
func benchWorkspace(b *testing.B) string {
	b.Helper()
	root := b.TempDir()
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module bench\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	return root
}

// bigMain is a main package of n lines with func main near the end, so
// finding it means parsing the whole file.
func bigMain(n int) string {
	var sb strings.Builder
	sb.WriteString("package main\n\nimport \"fmt\"\n\n// edit 0000\n")
	lines := 5
	for i := 0; lines+8 <= n-3; i++ {
		fmt.Fprintf(&sb, "// handler%d serves route %d.\nfunc handler%d(x int) int {\n\tif x > %d {\n\t\treturn x - %d\n\t}\n\treturn x + %d\n}\n\n", i, i, i, i, i, i)
		lines += 8
	}
	for ; lines < n-3; lines++ {
		sb.WriteString("\n")
	}
	sb.WriteString("func main() {\n\tfmt.Println(handler0(1))\n}\n")
	return sb.String()
}
