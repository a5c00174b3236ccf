package demo_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kloop/kloop/internal/racecheck"
	"github.com/kloop/kloop/kube/claim"
	"github.com/kloop/kloop/test/cluster"
	"github.com/kloop/kloop/test/demo"
)

func TestMain(m *testing.M) { cluster.Main(m) }

// TestDemo is `make demo` in `make test`: the same Run, every step, on the
// test harness's cluster instead of a cluster of its own. It checks what
// the user sees: the breakpoint frames and variables, the answers before
// and after the edit, the workload restored and the slot released.
func TestDemo(t *testing.T) {
	c := cluster.Shared(t)
	rep, err := demo.Run(t.Context(), demo.Options{Cluster: c.Name, Existing: true, Out: t.Output(), Race: racecheck.Enabled})
	var table strings.Builder
	rep.WriteTable(&table)
	t.Logf("\n%s", table.String())
	if err != nil {
		t.Fatalf("demo: %v", err)
	}

	wantSteps := []string{
		"build kloop", "sandbox cluster " + c.Name, "pool create demo", "workspace", "claim", "deploy the samples",
		"kloop dap: launch workload orders", "request stops at the breakpoint", "continue: the laptop answers",
		"edit the handler", "request stops in the new code", "continue: the new code answers",
		"disconnect: kloop leaves orders", "the cluster's own pods answer again", "release",
		// cleanup
		"stop the stand-ins", "stop the daemon", "pool delete demo",
	}
	if len(rep.Steps) != len(wantSteps) {
		t.Errorf("%d steps, want %d:\n%s", len(rep.Steps), len(wantSteps), table.String())
	}
	for i, s := range rep.Steps {
		if s.Err != nil {
			t.Errorf("step %q failed: %v", s.Name, s.Err)
		}
		if i < len(wantSteps) && !strings.HasPrefix(s.Name, wantSteps[i]) {
			t.Errorf("step %d is %q, want %q…", i+1, s.Name, wantSteps[i])
		}
	}

	// The breakpoint's lines, from the sample itself: the handler's answer,
	// and one line lower after the edit inserted a statement above it.
	sample, err := os.ReadFile("../testdata/orders/main.go")
	if err != nil {
		t.Fatal(err)
	}
	bp := demo.LineOf(string(sample), `"servedBy": cfg.Pod`)
	if bp == 0 {
		t.Fatal("the orders sample has no answer line with servedBy")
	}
	for _, st := range []struct {
		name string
		stop *demo.Stop
		line int
		item string
	}{
		{"first stop", rep.FirstStop, bp, `"keyboard"`},
		{"stop after the edit", rep.SecondStop, bp + 1, `"keyboard` + demo.EditedSuffix + `"`},
	} {
		s := st.stop
		if s == nil {
			t.Errorf("%s: none", st.name)
			continue
		}
		if !strings.HasSuffix(s.File, "/main.go") || s.Line != st.line || !strings.HasPrefix(s.Function, "main.run") {
			t.Errorf("%s at %s %s:%d, want main.run… in main.go:%d (stack %q)", st.name, s.Function, s.File, s.Line, st.line, s.Stack)
		}
		if s.Variable != "o" || !strings.Contains(s.Value, `ID: "1"`) || !strings.Contains(s.Value, "Item: "+st.item) {
			t.Errorf("%s: %s = %s, want order 1 with Item %s", st.name, s.Variable, s.Value, st.item)
		}
	}

	// The answers: the cluster's pods, the laptop's build, the edited build,
	// and the cluster's pods again after the leave.
	for _, a := range []struct {
		name        string
		got         demo.Answer
		build, item string
	}{
		{"before the intercept", rep.Before, "", "keyboard"},
		{"after the first continue", rep.FirstAnswer, "laptop-v1", "keyboard"},
		{"after the edit", rep.SecondAnswer, "laptop-v2", "keyboard" + demo.EditedSuffix},
		{"after the leave", rep.After, "", "keyboard"},
	} {
		if a.got.Status != 200 || a.got.Build != a.build || a.got.Item != a.item || !strings.HasPrefix(a.got.ServedBy, "orders-") {
			t.Errorf("answer %s: %s (HTTP %d), want build %q, item %q, servedBy an orders pod", a.name, a.got.Body, a.got.Status, a.build, a.item)
		}
	}
	if !strings.Contains(rep.Relaunched, "kloop: relaunched") {
		t.Errorf("relaunch output %q", rep.Relaunched)
	}
	if !rep.Restored {
		t.Error("the workload was not restored after the debug session")
	}
	if !rep.Released {
		t.Error("the slot was not released")
	}

	// On the cluster itself: the slot's Lease is gone, and so is the pool.
	ctx := context.Background()
	if rep.Slot == "" {
		t.Fatal("no slot in the report")
	}
	if _, err := c.Client.CoordinationV1().Leases(claim.DefaultNamespace).Get(ctx, "demo."+rep.Slot, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Lease of slot %s after the demo: %v, want not found", rep.Slot, err)
	}
	admin, err := claim.NewPoolAdmin(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	pools, err := admin.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pools {
		t.Errorf("pool left after the demo: %+v", p)
	}
	noLeftovers(t, rep.Dir)
}

// TestDemoSoak is `make soak` shortened to two more loops (make soak runs
// them for ten minutes): the loop keeps working when repeated under steady
// traffic, and the daemon ends it with no more goroutines, open files or
// live heap than noise allows (Run fails otherwise).
func TestDemoSoak(t *testing.T) {
	c := cluster.Shared(t)
	rep, err := demo.Run(t.Context(), demo.Options{Cluster: c.Name, Existing: true, Pool: "demo-soak", Out: t.Output(), Soak: time.Nanosecond})
	var table strings.Builder
	rep.WriteTable(&table)
	t.Logf("\n%s", table.String())
	if err != nil {
		t.Fatalf("demo with a soak: %v", err)
	}
	s := rep.Soak
	if s == nil || len(s.Samples) != 3 {
		t.Fatalf("soak report %+v, want a sample before and after each of 2 iterations", s)
	}
	pid := s.First().Daemon.PID
	for _, sample := range s.Samples {
		if sample.Daemon.PID != pid || sample.Daemon.Goroutines == 0 {
			t.Errorf("sample %s: daemon %d, want the one daemon %d throughout", sample, sample.Daemon.PID, pid)
		}
	}
	if s.Last().Answered == 0 {
		t.Errorf("the steady traffic got no answer: %s (last error %q)", s.Last(), s.LastTrafficError)
	}
	if !rep.Released {
		t.Error("the slot was not released after the soak")
	}
	noLeftovers(t, rep.Dir)
}

// TestDemoCleansUpWhenInterrupted is Ctrl-C while the debugger holds a
// request at the breakpoint: the run stops, and the cleanup still ends the
// debug session, releases the slot, stops the stand-ins and the daemon and
// deletes the pool.
func TestDemoCleansUpWhenInterrupted(t *testing.T) {
	c := cluster.Shared(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// The user presses Ctrl-C once the stop's variable is shown.
	out := &cancelOn{w: t.Output(), substr: "    o = main.order", cancel: cancel}
	// Another pool name: the namespaces of TestDemo's pool may still be
	// terminating.
	rep, err := demo.Run(ctx, demo.Options{Cluster: c.Name, Existing: true, Pool: "demo-int", Out: out})
	var table strings.Builder
	rep.WriteTable(&table)
	t.Logf("\n%s", table.String())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("demo after the interrupt: %v, want context.Canceled", err)
	}
	if rep.FirstStop == nil {
		t.Fatal("the run was interrupted before the breakpoint hit")
	}
	var cleanup []string
	for _, s := range rep.Steps {
		if s.Cleanup {
			cleanup = append(cleanup, s.Name)
			if s.Err != nil {
				t.Errorf("cleanup step %q failed: %v", s.Name, s.Err)
			}
		}
	}
	want := []string{"end the debug session (leaves orders)", "release", "stop the stand-ins", "stop the daemon", "pool delete demo-int"}
	if strings.Join(cleanup, "|") != strings.Join(want, "|") {
		t.Errorf("cleanup steps %q, want %q", cleanup, want)
	}
	bg := context.Background()
	if _, err := c.Client.CoordinationV1().Leases(claim.DefaultNamespace).Get(bg, "demo-int."+rep.Slot, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Lease of slot %s after the interrupted demo: %v, want not found", rep.Slot, err)
	}
	admin, err := claim.NewPoolAdmin(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	pools, err := admin.List(bg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pools {
		t.Errorf("pool left after the interrupted demo: %+v", p)
	}
	noLeftovers(t, rep.Dir)
}

// cancelOn passes output through and calls cancel at the first line that
// contains substr.
type cancelOn struct {
	w      io.Writer
	substr string
	cancel func()
	once   sync.Once
}

func (c *cancelOn) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.substr) {
		c.once.Do(c.cancel)
	}
	return c.w.Write(p)
}

// noLeftovers fails t if a process of the run (the daemon, kloop dap, the
// debug worker or the debuggee, which all carry the run's directory in
// their command line or environment) outlives it. The bound only turns a
// hang into a failure.
func noLeftovers(t *testing.T, dir string) {
	t.Helper()
	if dir == "" {
		t.Fatal("no run directory in the report")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("run directory %s still there (%v)", dir, err)
	}
	var left []string
	deadline := time.Now().Add(cluster.WaitTimeout)
	for {
		left = left[:0]
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			environ, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
			stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
			if i := bytes.LastIndexByte(stat, ')'); i >= 0 && bytes.HasPrefix(bytes.TrimSpace(stat[i+1:]), []byte("Z")) {
				continue
			}
			if bytes.Contains(cmdline, []byte(dir)) || bytes.Contains(environ, []byte(dir)) {
				left = append(left, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes of the demo still running after %s:\n%s", cluster.WaitTimeout, strings.Join(left, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
