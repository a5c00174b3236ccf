package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kloop/kloop/session/build"
	"github.com/kloop/kloop/session/relaunch"
	"github.com/kloop/kloop/session/run"
	"github.com/kloop/kloop/session/watch"
)

// program is the local process behind an intercept, or a debug session's
// program: built, run with the pod's env (plainly or under the debugger),
// and rebuilt and relaunched on every save by one relaunch loop.
type program struct {
	name    string
	key     string // the workload, or the debug session's key, in state.json
	debug   bool
	loop    *relaunch.Loop
	watcher *watch.Watcher
	cancel  context.CancelFunc
	done    chan struct{}

	mu      sync.Mutex
	last    relaunch.Status
	changed chan struct{} // closed and replaced on every status change
	// firstStart is the first launch's time from a good build to the
	// program running (for a debug session's breakdown).
	firstStart time.Duration
}

// OutputLine is a line of output of a program the session runs, for the
// editors' output channels and Session.ProgramOutput. It never goes to the
// daemon log (see output.go).
type OutputLine struct {
	Program string `json:"program"`
	Stream  string `json:"stream"`
	Line    string `json:"line"`
}

func programName(plan *interceptPlan) string {
	if plan.program != "" {
		return plan.program
	}
	return strings.Join(plan.run, " ")
}

// programSpec is what startProgram needs, for either mode.
type programSpec struct {
	name    string
	key     string
	builder build.Builder
	run     run.Spec
	// newProcess, when set, runs each build under the debugger instead of
	// as a plain process (run.Spec then only names the port).
	newProcess func(onEvent func(run.Event)) relaunch.Program
	watchRoot  string
	watch      []string
	noWatch    bool
	ignoreDirs []string
	onStatus   func(relaunch.Status)
	// progress, when set, hears the first launch's steps after the build
	// (the build itself is reported by the caller).
	progress Progress
}

// binDir is where this workspace's programs are built.
func (s *Session) binDir() (string, error) {
	dir := filepath.Join(s.mgr.stateDir(), "bin", sanitize(s.root))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create build directory: %w", err)
	}
	return dir, nil
}

// runSpec is the run-mode program of an intercept plan.
func (s *Session) runSpec(plan *interceptPlan, port int, podEnv []string) (programSpec, error) {
	binDir, err := s.binDir()
	if err != nil {
		return programSpec{}, err
	}
	// The pod's env wins over the daemon's; PATH, HOME and the Go
	// toolchain's settings come from the daemon so builds and tools work.
	env := append(os.Environ(), podEnv...)

	var builder build.Builder
	var argv []string
	switch {
	case plan.program != "":
		out := filepath.Join(binDir, sanitize(plan.workload))
		builder = &build.GoBuild{Dir: s.root, Package: plan.program, Output: out, Flags: plan.buildFlags}
		argv = append([]string{out}, plan.args...)
	case len(plan.build) > 0:
		builder = &build.Command{Argv: plan.build, Dir: s.root}
		argv = append(append([]string(nil), plan.run...), plan.args...)
	default:
		// A run command with nothing to build: "building" is a no-op.
		builder = &build.Command{Argv: []string{"true"}, Dir: s.root}
		argv = append(append([]string(nil), plan.run...), plan.args...)
	}
	return programSpec{
		name:       programName(plan),
		key:        plan.workload,
		builder:    builder,
		run:        run.Spec{Argv: argv, Dir: s.root, Env: env, Port: port, ReadyPath: plan.readyPath},
		watchRoot:  s.root,
		watch:      plan.watch,
		ignoreDirs: []string{binDir},
	}, nil
}

// startProgram builds and starts a program and returns once the first
// build ran: with the program serving, or with the reason it is not (a
// build error comes with its diagnostics already published).
func (s *Session) startProgram(ctx context.Context, spec programSpec) (*program, error) {
	prog := &program{name: spec.name, key: spec.key, debug: spec.newProcess != nil, done: make(chan struct{}), changed: make(chan struct{})}
	first := make(chan relaunch.Status, 1)
	var once sync.Once
	// Reports stop with the first launch: the caller's progress ends then.
	var launched, startShown atomic.Bool
	runSpec := spec.run
	// Recorded before readiness: a daemon that dies now leaves a pid the
	// next one can kill.
	runSpec.OnStart = func(st run.Started) error {
		return s.recordProcess(ProcessRecord{Workload: spec.key, Pid: st.Pid, Pgid: st.Pgid, StartTime: st.StartTime})
	}
	runSpec.OnLine = func(stream run.Stream, line string) { s.programLine(prog.name, stream, line) }
	cfg := relaunch.Config{
		Builder:       spec.builder,
		Run:           runSpec,
		OnDiagnostics: func(byFile map[string][]build.Diagnostic) { s.diagnose(byFile) },
		OnStatus: func(st relaunch.Status) {
			prog.mu.Lock()
			prog.last = st
			prog.mu.Unlock()
			s.publishProgram(prog)
			// Waiters (relaunchNow) wake once the session's status says it too.
			prog.mu.Lock()
			close(prog.changed)
			prog.changed = make(chan struct{})
			prog.mu.Unlock()
			if spec.onStatus != nil {
				spec.onStatus(st)
			}
			// The loop publishes Starting more than once while the port is
			// awaited; one line says it.
			if spec.progress != nil && st.State == relaunch.StateStarting && !launched.Load() && startShown.CompareAndSwap(false, true) {
				spec.progress.Report(fmt.Sprintf("starting %s (built in %.1fs); waiting until it accepts on port %d", prog.name, st.LastBuild.Seconds(), spec.run.Port), 90)
			}
			switch st.State {
			case relaunch.StateRunning, relaunch.StateBuildFailed, relaunch.StateFailed, relaunch.StateCrashed:
				once.Do(func() {
					launched.Store(true)
					if st.State == relaunch.StateRunning {
						prog.mu.Lock()
						prog.firstStart = st.LastRelaunch - st.LastBuild
						prog.mu.Unlock()
					}
					first <- st
				})
			}
		},
		Logger: s.mgr.log.With("program", prog.name),
	}
	if spec.newProcess != nil {
		cfg.NewProgram = spec.newProcess
	}
	loop, err := relaunch.New(cfg)
	if err != nil {
		return nil, err
	}
	prog.loop = loop
	runCtx, cancel := context.WithCancel(context.Background())
	prog.cancel = cancel
	go func() {
		defer close(prog.done)
		if err := loop.Run(runCtx); err != nil {
			s.mgr.log.Warn("run loop ended", "program", prog.name, "err", err)
		}
	}()
	if !spec.noWatch {
		w, err := watch.Start(runCtx, watch.Config{
			Root:       spec.watchRoot,
			Patterns:   spec.watch,
			IgnoreDirs: spec.ignoreDirs,
			Logger:     s.mgr.log,
		}, func([]string) { loop.Trigger() })
		if err != nil {
			cancel()
			<-prog.done
			return nil, fmt.Errorf("watch %s for changes: %w", spec.watchRoot, err)
		}
		prog.watcher = w
	}

	var st relaunch.Status
	select {
	case st = <-first:
	case <-ctx.Done():
		prog.stop(context.WithoutCancel(ctx))
		return nil, ctx.Err()
	}
	if st.State != relaunch.StateRunning {
		prog.stop(context.WithoutCancel(ctx))
		if err := s.forgetProcesses(spec.key); err != nil {
			s.mgr.log.Error("record program end", "program", prog.name, "err", err)
		}
		return nil, &StartError{Program: prog.name, BuildFailed: st.State == relaunch.StateBuildFailed, Reason: st.LastError}
	}
	return prog, nil
}

// StartError says why a program did not start: its build failed (Reason is
// the compiler's output, its diagnostics already published) or it could not
// be started.
type StartError struct {
	Program     string
	BuildFailed bool
	Reason      string
}

func (e *StartError) Error() string {
	return fmt.Sprintf("%s did not start: %s", e.Program, e.Reason)
}

// LogValue is the error without the program's output, which the user sees
// in the error but the daemon log must not keep (it may hold secrets).
func (e *StartError) LogValue() slog.Value {
	return slog.StringValue(fmt.Sprintf("%s did not start: %s", e.Program, run.OmitOutput(e.Reason)))
}

// programLine passes one line of a program's output to the editors and
// keeps it in the program's ring. It is not logged: the output may hold
// the secrets of the pod's env.
func (s *Session) programLine(name string, stream run.Stream, line string) {
	l := OutputLine{Program: name, Stream: stream.String(), Line: line}
	s.keepOutput(l)
	s.output(l)
}

// stop ends the watcher and the loop, which stops the process.
func (p *program) stop(ctx context.Context) error {
	p.cancel()
	var err error
	if p.watcher != nil {
		err = p.watcher.Close()
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return errors.Join(err, ctx.Err())
	}
	return err
}

// relaunchNow rebuilds and relaunches the program and waits for the
// outcome: the loop's status once the build and start it caused are over.
func (p *program) relaunchNow(ctx context.Context) (relaunch.Status, error) {
	p.mu.Lock()
	builds := p.last.Builds
	p.mu.Unlock()
	p.loop.Restart()
	for {
		p.mu.Lock()
		st, changed := p.last, p.changed
		p.mu.Unlock()
		if st.Builds > builds && st.State != relaunch.StateBuilding && st.State != relaunch.StateStarting {
			return st, nil
		}
		select {
		case <-changed:
		case <-p.done:
			return st, errors.New("the program was stopped")
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
}

func (p *program) status() (*ProcessStatus, *BuildStatus, int64) {
	p.mu.Lock()
	st := p.last
	p.mu.Unlock()
	proc := &ProcessStatus{Program: p.name, PID: st.Pid, State: string(st.State), Debug: p.debug}
	var b *BuildStatus
	if st.Builds > 0 {
		b = &BuildStatus{OK: st.State != relaunch.StateBuildFailed, Millis: st.LastBuild.Milliseconds(), At: st.LastBuildAt.UTC()}
		if !b.OK {
			b.Error = st.LastError
		}
	}
	return proc, b, st.LastRelaunch.Milliseconds()
}

// publishProgram updates the status from the program's loop. It runs on
// the loop's goroutine, so it touches only the status, not s.intercepts.
func (s *Session) publishProgram(p *program) {
	proc, b, relaunch := p.status()
	s.update(func(st *Status) {
		st.Process = proc
		if b != nil {
			st.LastBuild = b
		}
		if relaunch > 0 {
			st.LastRelaunchMillis = relaunch
		}
	})
}

// programs lists the programs the session runs: intercepts' and local
// debug sessions'.
func (s *Session) programs() []*program {
	s.imu.Lock()
	defer s.imu.Unlock()
	var out []*program
	for _, ai := range s.intercepts {
		if p := ai.prog.Load(); p != nil {
			out = append(out, p)
		}
	}
	for p := range s.locals {
		out = append(out, p)
	}
	return out
}

// savedProgram forwards an editor's save to the watchers of the session's
// programs: a save is a stronger signal than fsnotify (the file is
// complete), so the rebuild starts at once.
func (s *Session) savedProgram(path string) {
	for _, p := range s.programs() {
		if p.watcher != nil {
			p.watcher.Notify(path)
		}
	}
}
