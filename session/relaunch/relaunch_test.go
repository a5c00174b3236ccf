package relaunch

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kloop/kloop/session/build"
	"github.com/kloop/kloop/session/run"
	"github.com/kloop/kloop/session/watch"
)

func TestRelaunchUnderLoadDropsNothing(t *testing.T) {
	f := newGoFixture(t, nil)
	c := client(f.loop)
	waitBody(t, c, "v1")

	// Four clients at about 50 requests per second each, through the same
	// DialLocal the tunnel uses, for the whole test. Two of them open a new
	// connection per request, so no HTTP client retry of a reused
	// connection can hide a failed dial.
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		requests atomic.Int64
		failMu   sync.Mutex
		failures []string
	)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lc := client(f.loop)
			lc.Transport.(*http.Transport).DisableKeepAlives = g%2 == 1
			last := 1
			for !stop.Load() {
				body, err := get(lc)
				requests.Add(1)
				if err != nil {
					failMu.Lock()
					failures = append(failures, fmt.Sprintf("client %d: %v", g, err))
					failMu.Unlock()
				} else if n, _ := strconv.Atoi(strings.TrimPrefix(body, "v")); n < last {
					failMu.Lock()
					failures = append(failures, fmt.Sprintf("client %d: got %s after v%d: the old process still served", g, body, last))
					failMu.Unlock()
				} else {
					last = n
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}

	for v := 2; v <= 6; v++ {
		want := fmt.Sprintf("v%d", v)
		setVersion(t, f.src, want)
		f.loop.Trigger()
		waitBody(t, c, want)
	}
	stop.Store(true)
	wg.Wait()

	failMu.Lock()
	defer failMu.Unlock()
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed across 5 relaunches:\n%s", len(failures), requests.Load(), strings.Join(failures, "\n"))
	}
	s := f.loop.Status()
	if s.Relaunches != 5 || s.Launches != 6 || s.State != StateRunning || !s.Serving {
		t.Errorf("status after 5 relaunches: %+v", s)
	}
	if s.Connections == 0 || s.LastBuild <= 0 || s.LastRelaunch <= 0 || s.LastRelaunchAt.IsZero() {
		t.Errorf("counters not kept: %+v", s)
	}
	t.Logf("%d requests, %d connections (%d held during swaps), 0 failed", requests.Load(), s.Connections, s.Held)
}

func TestBuildErrorKeepsOldProcessAndPublishesDiagnostics(t *testing.T) {
	f := newGoFixture(t, nil)
	c := client(f.loop)
	waitBody(t, c, "v1")
	mainGo := filepath.Join(f.src, "main.go")

	// Replace the handler's body with an undefined name at column 3.
	b, _ := os.ReadFile(mainGo)
	lines := strings.Split(string(b), "\n")
	at := slices.Index(lines, "\t\t\tfmt.Fprint(w, version)")
	if at < 0 {
		t.Fatalf("fixture changed: no handler line in\n%s", b)
	}
	lines[at] = "\t\tundefinedHandler(w)"
	os.WriteFile(mainGo, []byte(strings.Join(lines, "\n")), 0o644)
	f.loop.Trigger()
	s := waitStatus(t, f.loop, "build failure", func(s Status) bool { return s.State == StateBuildFailed })
	if !s.Serving || s.BuildFailures != 1 || !strings.Contains(s.LastError, "undefined: undefinedHandler") {
		t.Errorf("status after a bad build: %+v", s)
	}
	diags := f.diags.all()
	if len(diags) != 1 {
		t.Fatalf("diagnostics published %d times, want once: %v", len(diags), diags)
	}
	want := build.Diagnostic{File: mainGo, Line: at + 1, Column: 3, Message: "undefined: undefinedHandler"}
	if got := diags[0][mainGo]; len(got) != 1 || got[0] != want {
		t.Errorf("diagnostics = %v, want %v", diags[0], want)
	}
	if body, err := get(c); body != "v1" || err != nil {
		t.Errorf("during the broken build the program answered %q, %v; want the old v1", body, err)
	}

	lines[at] = "\t\t\tfmt.Fprint(w, version)"
	os.WriteFile(mainGo, []byte(strings.Join(lines, "\n")), 0o644)
	setVersion(t, f.src, "v2")
	f.loop.Trigger()
	waitBody(t, c, "v2")
	diags = f.diags.all()
	if len(diags) != 2 || len(diags[1]) != 1 || diags[1][mainGo] == nil || len(diags[1][mainGo]) != 0 {
		t.Errorf("after the fix want one publication clearing %s, got %v", mainGo, diags)
	}
	if s := f.loop.Status(); s.LastError != "" || s.State != StateRunning {
		t.Errorf("status after the fix: %+v", s)
	}
}

func TestFirstBuildFailsDialRefusesAtOnce(t *testing.T) {
	f := newGoFixture(t, func(c *Config) {
		c.Builder.(*build.GoBuild).Package = "./nope"
	})
	waitStatus(t, f.loop, "build failure", func(s Status) bool { return s.State == StateBuildFailed })
	_, err := f.loop.DialLocal(context.Background())
	if err == nil || !strings.Contains(err.Error(), "build failed") || !strings.Contains(err.Error(), "./nope") {
		t.Errorf("DialLocal = %v, want an error naming the failed build", err)
	}
	if s := f.loop.Status(); s.DialFailures != 1 || s.Serving {
		t.Errorf("status: %+v", s)
	}
}

// shellConfig is a loop over a non-Go program: a shell build command and a
// shell run command.
func shellConfig(t *testing.T, port int, runScript string) Config {
	dir := t.TempDir()
	return Config{
		Builder: &build.Command{Dir: dir, Argv: []string{"sh", "-c", "true"}},
		Run: run.Spec{
			Argv: []string{"sh", "-c", runScript}, Dir: dir, Port: port,
			Env: append(os.Environ(), fmt.Sprintf("PORT=%d", port), "GORACE=atexit_sleep_ms=0"),
		},
		Backoff:     run.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond},
		HoldTimeout: 500 * time.Millisecond,
	}
}

func TestProgramFaults(t *testing.T) {
	tests := []struct {
		name   string
		script string
		ready  time.Duration
		// prepare may take the port before the loop starts; it returns a
		// function that frees it.
		prepare func(t *testing.T, port int) func()
		check   func(t *testing.T, f *fixture)
	}{
		{
			name:   "exits at once",
			script: "echo 'FATAL: DATABASE_URL is not set' >&2; exit 3",
			check: func(t *testing.T, f *fixture) {
				s := waitStatus(t, f.loop, "a crash loop", func(s Status) bool { return s.State == StateCrashed && s.Crashes >= 3 })
				if !strings.Contains(s.LastError, "exit status 3") || !strings.Contains(s.LastError, "DATABASE_URL is not set") || s.RetryIn <= 0 {
					t.Errorf("status: %+v", s)
				}
				_, err := f.loop.DialLocal(context.Background())
				if err == nil || !strings.Contains(err.Error(), "crashed") {
					t.Errorf("DialLocal = %v, want a hold that ends naming the crash", err)
				}
			},
		},
		{
			name:   "never opens its port",
			script: "echo waiting for godot; exec sleep 1000",
			ready:  time.Second,
			check: func(t *testing.T, f *fixture) {
				s := waitStatus(t, f.loop, "failure", func(s Status) bool { return s.State == StateFailed })
				if !strings.Contains(s.LastError, fmt.Sprintf("did not open port %d", f.port)) || s.Pid != 0 {
					t.Errorf("status: %+v", s)
				}
				// Refused at once with the reason, not held until the timeout.
				_, err := f.loop.DialLocal(context.Background())
				if err == nil || !strings.Contains(err.Error(), "could not be started") || strings.Contains(err.Error(), "did not become ready within") {
					t.Errorf("DialLocal = %v, want a refusal naming the failed start", err)
				}
			},
		},
		{
			name:   "port already taken, then freed",
			script: `exec "$HELPER"`,
			prepare: func(t *testing.T, port int) func() {
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
				if err != nil {
					t.Fatal(err)
				}
				return func() { l.Close() }
			},
			check: func(t *testing.T, f *fixture) {
				s := waitStatus(t, f.loop, "port conflict", func(s Status) bool { return s.State == StateCrashed })
				want := fmt.Sprintf("local port %d is already in use by pid %d", f.port, os.Getpid())
				if !strings.Contains(s.LastError, want) {
					t.Errorf("LastError = %q, want it to contain %q", s.LastError, want)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := freePort(t)
			cfg := shellConfig(t, port, tt.script)
			cfg.Run.ReadyTimeout = tt.ready
			exe, _ := os.Executable()
			body := filepath.Join(cfg.Run.Dir, "body")
			os.WriteFile(body, []byte("hello"), 0o644)
			cfg.Run.Env = append(cfg.Run.Env, "HELPER="+exe, "KLOOP_RELAUNCH_HELPER=fileserver", "BODY_FILE="+body)
			var pids sync.Map
			cfg.Run.OnStart = func(s run.Started) error { pids.Store(s.Pid, true); return nil }
			var free func()
			if tt.prepare != nil {
				free = tt.prepare(t, port)
			}
			f := &fixture{t: t, port: port}
			f.start(cfg)
			tt.check(t, f)
			if free != nil {
				free()
				c := client(f.loop)
				waitBody(t, c, "hello")
			}
			f.stop()
			pids.Range(func(k, _ any) bool {
				if syscall.Kill(k.(int), 0) == nil {
					t.Errorf("pid %v still runs after the loop stopped", k)
				}
				return true
			})
		})
	}
}

func TestNonGoProgramRelaunches(t *testing.T) {
	port := freePort(t)
	exe, _ := os.Executable()
	cfg := shellConfig(t, port, `exec "$HELPER"`)
	dir := cfg.Run.Dir
	src := filepath.Join(dir, "src.txt")
	os.WriteFile(src, []byte("release 1"), 0o644)
	// The "compiler" copies the source into place and rejects a marker.
	cfg.Builder = &build.Command{Dir: dir, Argv: []string{"sh", "-c",
		`if grep -q BROKEN src.txt; then echo 'src.txt:1: BROKEN is not allowed' >&2; exit 1; fi; cp src.txt body`}}
	cfg.Run.Env = append(cfg.Run.Env, "HELPER="+exe, "KLOOP_RELAUNCH_HELPER=fileserver", "BODY_FILE="+filepath.Join(dir, "body"))
	cfg.HoldTimeout = time.Minute
	f := &fixture{t: t, port: port}
	f.start(cfg)
	c := client(f.loop)
	waitBody(t, c, "release 1")

	os.WriteFile(src, []byte("release 2"), 0o644)
	f.loop.Trigger()
	waitBody(t, c, "release 2")

	os.WriteFile(src, []byte("BROKEN"), 0o644)
	f.loop.Trigger()
	s := waitStatus(t, f.loop, "build failure", func(s Status) bool { return s.State == StateBuildFailed })
	if !strings.Contains(s.LastError, "src.txt:1: BROKEN is not allowed") {
		t.Errorf("LastError = %q, want the build command's output", s.LastError)
	}
	if body, err := get(c); body != "release 2" || err != nil {
		t.Errorf("after a failed build: %q, %v; want release 2 still served", body, err)
	}
}

func TestSaveStormBuildsFewTimes(t *testing.T) {
	f := newGoFixture(t, nil)
	c := client(f.loop)
	waitBody(t, c, "v1")
	const maxDelay = 500 * time.Millisecond
	w, err := watch.Start(context.Background(), watch.Config{Root: f.src, MaxDelay: maxDelay}, func([]string) { f.loop.Trigger() })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	before := f.loop.Status().Builds
	began := time.Now()
	for i := 2; i <= 101; i++ {
		setVersion(t, f.src, fmt.Sprintf("v%d", i))
		w.Notify(filepath.Join(f.src, "main.go"))
		time.Sleep(10 * time.Millisecond)
	}
	storm := time.Since(began)
	waitBody(t, c, "v101")
	waitStatus(t, f.loop, "the loop to settle", func(s Status) bool { return s.State == StateRunning })
	builds := f.loop.Status().Builds - before
	// One build per watcher trigger at most, and the watcher fires at most
	// once per MaxDelay during a storm plus once after it.
	if limit := int(storm/maxDelay) + 3; builds > limit {
		t.Errorf("100 saves over %v caused %d builds, want at most %d", storm, builds, limit)
	}
	t.Logf("100 saves in %v -> %d builds", storm, builds)
}

func TestFileDeletedMidBuildDoesNotWedge(t *testing.T) {
	f := newGoFixture(t, nil)
	c := client(f.loop)
	waitBody(t, c, "v1")
	mainGo := filepath.Join(f.src, "main.go")
	saved, _ := os.ReadFile(mainGo)

	setVersion(t, f.src, "v2")
	f.loop.Trigger()
	waitStatus(t, f.loop, "build start", func(s Status) bool { return s.State == StateBuilding })
	os.Remove(mainGo)
	s := waitStatus(t, f.loop, "the build to end", func(s Status) bool { return s.State != StateBuilding && s.State != StateStarting })
	t.Logf("build with main.go deleted mid-way ended in %s: %s", s.State, s.LastError)
	if body, err := get(c); err != nil || (body != "v1" && body != "v2") {
		t.Errorf("program answered %q, %v", body, err)
	}

	os.WriteFile(mainGo, saved, 0o644)
	setVersion(t, f.src, "v3")
	f.loop.Trigger()
	waitBody(t, c, "v3")
}

func TestTriggersDuringBuildCoalesce(t *testing.T) {
	// A build command that takes a while and counts its runs.
	port := freePort(t)
	exe, _ := os.Executable()
	cfg := shellConfig(t, port, `exec "$HELPER"`)
	dir := cfg.Run.Dir
	os.WriteFile(filepath.Join(dir, "body"), []byte("ok"), 0o644)
	cfg.Builder = &build.Command{Dir: dir, Argv: []string{"sh", "-c", "echo x >> runs; while [ ! -e go ]; do sleep 0.01; done; rm go"}}
	cfg.Run.Env = append(cfg.Run.Env, "HELPER="+exe, "KLOOP_RELAUNCH_HELPER=fileserver", "BODY_FILE="+filepath.Join(dir, "body"))
	f := &fixture{t: t, port: port}
	f.start(cfg)
	release := func() { os.WriteFile(filepath.Join(dir, "go"), nil, 0o644) }
	runs := func() int { b, _ := os.ReadFile(filepath.Join(dir, "runs")); return strings.Count(string(b), "x") }

	waitStatus(t, f.loop, "first build", func(s Status) bool { return s.State == StateBuilding })
	for range 20 {
		f.loop.Trigger()
	}
	release()
	waitStatus(t, f.loop, "follow-up build", func(Status) bool { return runs() == 2 })
	release()
	s := waitStatus(t, f.loop, "running", func(s Status) bool { return s.State == StateRunning && s.Builds == 2 })
	if runs() != 2 {
		t.Errorf("20 triggers during a build led to %d builds in all, want 2 (the first and one follow-up); status %+v", runs(), s)
	}
}

func TestCustomProgram(t *testing.T) {
	// A Program other than the default supervisor, as the debug adapter
	// supplies: here a supervisor that passes the program an argument.
	var starts atomic.Int64
	f := newGoFixture(t, func(c *Config) {
		spec := c.Run
		spec.Argv = append(spec.Argv, "--from-custom-program")
		spec.OnStart = func(run.Started) error { starts.Add(1); return nil }
		c.NewProgram = func(onEvent func(run.Event)) Program {
			return run.NewSupervisor(spec, run.Backoff{}, onEvent)
		}
		c.Run.Argv = nil
	})
	c := client(f.loop)
	waitBody(t, c, "v1")
	setVersion(t, f.src, "v2")
	f.loop.Trigger()
	waitBody(t, c, "v2")
	if n := starts.Load(); n != 2 {
		t.Errorf("custom program started %d times, want 2", n)
	}
	if s := f.loop.Status(); s.Relaunches != 1 || s.Pid == 0 {
		t.Errorf("status: %+v", s)
	}
}

func TestSaveWithoutChangesKeepsProcess(t *testing.T) {
	f := newGoFixture(t, nil)
	c := client(f.loop)
	waitBody(t, c, "v1")
	pid := f.loop.Status().Pid

	f.loop.Trigger() // a save that changed nothing
	s := waitStatus(t, f.loop, "second build", func(s Status) bool { return s.Builds == 2 && s.State == StateRunning })
	if s.Unchanged != 1 || s.Relaunches != 0 || s.Pid != pid {
		t.Errorf("an unchanged program was relaunched: %+v (pid was %d)", s, pid)
	}

	setVersion(t, f.src, "v2")
	f.loop.Trigger()
	waitBody(t, c, "v2")
	if s := f.loop.Status(); s.Relaunches != 1 || s.Pid == pid {
		t.Errorf("a changed program was not relaunched: %+v", s)
	}
}

// TestRestartRelaunchesAnUnchangedBuild: an explicit restart (the editor's
// restart button, `kloop.relaunch`) relaunches even when the build did not
// change, where a save that changed nothing does not.
func TestRestartRelaunchesAnUnchangedBuild(t *testing.T) {
	f := newGoFixture(t, nil)
	c := client(f.loop)
	waitBody(t, c, "v1")
	pid := f.loop.Status().Pid

	f.loop.Restart()
	s := waitStatus(t, f.loop, "the restart", func(s Status) bool { return s.Builds == 2 && s.State == StateRunning && s.Pid != pid })
	if s.Unchanged != 0 || s.Relaunches != 1 {
		t.Errorf("restart of an unchanged program: %+v (pid was %d)", s, pid)
	}
	waitBody(t, c, "v1")
}
