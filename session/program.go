package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/kloop/kloop/session/build"
	"github.com/kloop/kloop/session/relaunch"
	"github.com/kloop/kloop/session/run"
	"github.com/kloop/kloop/session/watch"
)

// program is the local process behind an intercept: built, run with the
// pod's env, and rebuilt and relaunched on every save.
type program struct {
	name    string
	loop    *relaunch.Loop
	watcher *watch.Watcher
	cancel  context.CancelFunc
	done    chan struct{}

	mu   sync.Mutex
	last relaunch.Status
}

// Output of the programs a session runs, line by line, for the editors'
// output channels and the daemon log.
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

// startProgram builds and starts plan's program and returns once the first
// build ran: with the program serving, or with the reason it is not (a
// build error comes with its diagnostics already published).
func (s *Session) startProgram(ctx context.Context, plan *interceptPlan, port int, podEnv []string) (*program, error) {
	binDir := filepath.Join(s.mgr.stateDir(), "bin", sanitize(s.root))
	if err := os.MkdirAll(binDir, 0o700); err != nil {
		return nil, fmt.Errorf("create build directory: %w", err)
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

	prog := &program{name: programName(plan), done: make(chan struct{})}
	first := make(chan relaunch.Status, 1)
	var once sync.Once
	loop, err := relaunch.New(relaunch.Config{
		Builder: builder,
		Run: run.Spec{
			Argv:      argv,
			Dir:       s.root,
			Env:       env,
			Port:      port,
			ReadyPath: plan.readyPath,
			// Recorded before readiness: a daemon that dies now leaves a
			// pid the next one can kill.
			OnStart: func(st run.Started) error {
				return s.recordProcess(ProcessRecord{Workload: plan.workload, Pid: st.Pid, Pgid: st.Pgid, StartTime: st.StartTime})
			},
			OnLine: func(stream run.Stream, line string) {
				name := "stdout"
				if stream == run.Stderr {
					name = "stderr"
				}
				s.mgr.log.Info("program output", "program", prog.name, "stream", name, "line", line)
				s.output(OutputLine{Program: prog.name, Stream: name, Line: line})
			},
		},
		OnDiagnostics: func(byFile map[string][]build.Diagnostic) { s.diagnose(byFile) },
		OnStatus: func(st relaunch.Status) {
			prog.mu.Lock()
			prog.last = st
			prog.mu.Unlock()
			s.publishProgram(prog)
			switch st.State {
			case relaunch.StateRunning, relaunch.StateBuildFailed, relaunch.StateFailed, relaunch.StateCrashed:
				once.Do(func() { first <- st })
			}
		},
		Logger: s.mgr.log.With("program", prog.name),
	})
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
	w, err := watch.Start(runCtx, watch.Config{
		Root:       s.root,
		Patterns:   plan.watch,
		IgnoreDirs: []string{binDir},
		Logger:     s.mgr.log,
	}, func([]string) { loop.Trigger() })
	if err != nil {
		cancel()
		<-prog.done
		return nil, fmt.Errorf("watch %s for changes: %w", s.root, err)
	}
	prog.watcher = w

	var st relaunch.Status
	select {
	case st = <-first:
	case <-ctx.Done():
		prog.stop(context.WithoutCancel(ctx))
		return nil, ctx.Err()
	}
	if st.State != relaunch.StateRunning {
		prog.stop(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("%s did not start: %s", prog.name, st.LastError)
	}
	return prog, nil
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

func (p *program) status() (*ProcessStatus, *BuildStatus, int64) {
	p.mu.Lock()
	st := p.last
	p.mu.Unlock()
	proc := &ProcessStatus{Program: p.name, PID: st.Pid, State: string(st.State)}
	var b *BuildStatus
	if st.Builds > 0 {
		b = &BuildStatus{OK: st.State != relaunch.StateBuildFailed, Millis: st.LastBuild.Milliseconds(), At: st.LastBuildAt.UTC()}
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

// savedProgram forwards an editor's save to the watchers of the session's
// programs: a save is a stronger signal than fsnotify (the file is
// complete), so the rebuild starts at once.
func (s *Session) savedProgram(path string) {
	s.imu.Lock()
	var ws []*watch.Watcher
	for _, ai := range s.intercepts {
		if ai.program != nil && ai.program.watcher != nil {
			ws = append(ws, ai.program.watcher)
		}
	}
	s.imu.Unlock()
	for _, w := range ws {
		w.Notify(path)
	}
}
