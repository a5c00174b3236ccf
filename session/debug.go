package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kloop/kloop/config"
	"github.com/kloop/kloop/session/build"
	"github.com/kloop/kloop/session/relaunch"
	"github.com/kloop/kloop/session/run"
)

// debugLDFlags leaves DWARF uncompressed: the linker skips zlib and Delve
// skips inflating it on every (re)launch, most of the relaunch's cost. A
// user's own -ldflags in BuildFlags comes later and wins.
const debugLDFlags = "-ldflags=-compressdwarf=false"

// DebugArgs say what a debug session runs. Debugging is one more way the
// session runs a program: the same build, watcher, relaunch loop, gate and
// state file as `kloop intercept --program`, with the debugger starting
// each good build instead of a plain exec.
type DebugArgs struct {
	// Workload, when set, is intercepted (or joined, when this workspace
	// already intercepts it) so its traffic reaches the program; "" debugs
	// locally.
	Workload string
	Port     string
	// Header, Path, PathRegex, Method and Match are the personal rule, as
	// InterceptArgs has them.
	Header    map[string]string
	Path      string
	PathRegex string
	Method    []string
	Match     string
	// Dir is the package's directory (absolute) and Package what `go build`
	// builds there: "." or a .go file.
	Dir     string
	Package string
	// Display is the program as the user named it, for messages.
	Display string
	Args    []string
	// Cwd is where the program runs.
	Cwd string
	// Env is layered over the pod's env (the launch configuration's env).
	Env map[string]string
	// BaseEnv is the editor's environment, under everything else; nil
	// means the daemon's.
	BaseEnv    []string
	BuildFlags []string
	// RelaunchOnSave rebuilds on every change of a Go file of the
	// program's module.
	RelaunchOnSave bool
	// ReplayOnSave replays the last safe request after each relaunch, as
	// InterceptArgs.ReplayOnSave does (also set by .kloop.yaml).
	ReplayOnSave bool
	// Traffic is the launch configuration's traffic mode; "" takes
	// .kloop.yaml's, else steal.
	Traffic string
	// Outbound adds to .kloop.yaml's outbound rules, as kloop intercept
	// --outbound-include and --outbound-exclude.
	Outbound OutboundRules
}

// DebugProcessSpec is what the debugger starts after each good build.
type DebugProcessSpec struct {
	Binary string
	Dir    string
	Args   []string
	// Env is the program's whole environment.
	Env []string
	// Port is where the program listens (0: unknown); a relaunch waits
	// for it before traffic is let through.
	Port int
	// Record writes a started process to state.json before it takes
	// traffic; role is "debugger" or "debuggee".
	Record func(role string, st run.Started) error
	// OnLine passes a line of the program's output to the editors.
	OnLine func(run.Stream, string)
}

// DebugHooks connect the debug adapter to the session's loop.
type DebugHooks struct {
	// NewProcess returns the relaunch.Program that runs each build under
	// the debugger; it must report state changes to onEvent.
	NewProcess func(spec DebugProcessSpec, onEvent func(run.Event)) relaunch.Program
	// OnStatus sees every status of the loop (builds, relaunches).
	OnStatus func(relaunch.Status)
}

// DebugSession is a program the session runs under the debugger.
type DebugSession struct {
	s        *Session
	key      string
	workload string
	prog     *program
	ai       *activeIntercept // nil when debugging locally
	made     bool             // the intercept was made for this session
	runPlan  *interceptPlan   // the run-mode program it replaced, to restart
	// intercept is how long making the intercept took (0 when joined or local).
	intercept time.Duration
}

// LaunchTimings break the launch down for the user: the intercept, the
// first build, and the time from a good build to the program running under
// the debugger.
type LaunchTimings struct {
	Intercept time.Duration
	Build     time.Duration
	Start     time.Duration
}

// Timings says what the launch cost, step by step.
func (d *DebugSession) Timings() LaunchTimings {
	d.prog.mu.Lock()
	defer d.prog.mu.Unlock()
	return LaunchTimings{Intercept: d.intercept, Build: d.prog.last.LastBuild, Start: d.prog.firstStart}
}

// Workload is the intercepted workload, or "" when debugging locally.
func (d *DebugSession) Workload() string { return d.workload }

// Relaunch rebuilds and relaunches now and returns the loop's status
// after it.
func (d *DebugSession) Relaunch(ctx context.Context) (relaunch.Status, error) {
	return d.prog.relaunchNow(ctx)
}

// Debug builds args' program with debug flags and starts it under the
// debugger hooks provide, intercepting args.Workload first when given. It
// returns once the first build ran and the debugger holds the program.
func (s *Session) Debug(ctx context.Context, args DebugArgs, hooks DebugHooks, p Progress) (*DebugSession, error) {
	if hooks.NewProcess == nil {
		return nil, errors.New("debug: no debugger to run the program")
	}
	if args.Workload == "" {
		return s.debugLocally(ctx, args, hooks, p)
	}
	engine := s.mgr.opts.Engines.Intercepts
	if engine == nil {
		return nil, errNoEngine("intercept")
	}
	cfg, err := s.loadConfig()
	if err != nil {
		return nil, err
	}
	plan, err := planIntercept(cfg, InterceptArgs{Workload: args.Workload, Port: args.Port, Header: args.Header,
		Path: args.Path, PathRegex: args.PathRegex, Method: args.Method, Match: args.Match, Traffic: args.Traffic, ReplayOnSave: args.ReplayOnSave,
		Outbound: args.Outbound})
	if err != nil {
		return nil, err
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if held, ok := s.intercepts[plan.workload]; ok {
		return s.joinLocked(ctx, held, args, hooks, p)
	}
	d, err := s.debugInterceptLocked(ctx, engine, cfg, plan, args, hooks, p)
	if err != nil {
		var se *StartError
		if errors.As(err, &se) {
			return nil, err
		}
		return nil, fmt.Errorf("intercept %s: %w", plan.workload, err)
	}
	return d, nil
}

func (s *Session) debugInterceptLocked(ctx context.Context, engine InterceptEngine, cfg *config.Config, plan *interceptPlan,
	args DebugArgs, hooks DebugHooks, p Progress) (*DebugSession, error) {
	d := &DebugSession{s: s, key: plan.workload, workload: plan.workload, made: true}
	start := func(ai *activeIntercept, podEnv []string) (*program, error) {
		p.Report("building "+args.Display+" with debug flags", 80)
		spec, err := s.debugSpec(args, hooks, d.key, ai.localPort, podEnv)
		if err != nil {
			return nil, err
		}
		if args.ReplayOnSave || plan.replayOnSave {
			s.withReplayOnSave(&spec, plan.workload)
		}
		return s.startProgram(ctx, spec)
	}
	began := time.Now()
	var built time.Duration
	ai, err := s.interceptLocked(ctx, engine, cfg, plan, func(ai *activeIntercept, podEnv []string) (*program, error) {
		built = time.Since(began)
		return start(ai, podEnv)
	}, p)
	if err != nil {
		return nil, err
	}
	d.ai, d.prog, d.intercept = ai, ai.program, built
	return d, nil
}

// joinLocked runs the debug program behind an intercept this workspace
// already holds: one the CLI made (with or without a program of its own).
// A program kloop runs there is stopped and started again when debugging
// ends.
func (s *Session) joinLocked(ctx context.Context, ai *activeIntercept, args DebugArgs, hooks DebugHooks, p Progress) (*DebugSession, error) {
	if cur := ai.prog.Load(); cur != nil && cur.debug {
		return nil, fmt.Errorf("%s is already being debugged from this workspace; end that debug session first", ai.workload)
	}
	d := &DebugSession{s: s, key: ai.workload, workload: ai.workload, ai: ai}
	if ai.program != nil {
		if err := ai.program.stop(ctx); err != nil {
			return nil, fmt.Errorf("stop the program of %s to debug it: %w", ai.workload, err)
		}
		d.runPlan = ai.plan
		s.setProgram(ai, nil)
	}
	p.Report("building "+args.Display+" with debug flags", 80)
	spec, err := s.debugSpec(args, hooks, d.key, ai.localPort, ai.live.Env())
	if err != nil {
		return nil, err
	}
	if args.ReplayOnSave || ai.plan.replayOnSave {
		s.withReplayOnSave(&spec, ai.workload)
	}
	prog, err := s.startProgram(ctx, spec)
	if err != nil {
		s.restartRunProgram(ctx, ai, d.runPlan)
		return nil, err
	}
	s.setProgram(ai, prog)
	d.prog = prog
	s.refreshIntercepts()
	return d, nil
}

func (s *Session) debugLocally(ctx context.Context, args DebugArgs, hooks DebugHooks, p Progress) (*DebugSession, error) {
	s.imu.Lock()
	s.nextLocal++
	key := fmt.Sprintf("debug:%s#%d", args.Display, s.nextLocal)
	s.imu.Unlock()
	p.Report("building "+args.Display+" with debug flags", 50)
	spec, err := s.debugSpec(args, hooks, key, 0, nil)
	if err != nil {
		return nil, err
	}
	prog, err := s.startProgram(ctx, spec)
	if err != nil {
		return nil, err
	}
	s.imu.Lock()
	if s.locals == nil {
		s.locals = map[*program]bool{}
	}
	s.locals[prog] = true
	s.imu.Unlock()
	return &DebugSession{s: s, key: key, prog: prog}, nil
}

// debugSpec is the debug-mode program of args.
func (s *Session) debugSpec(args DebugArgs, hooks DebugHooks, key string, port int, podEnv []string) (programSpec, error) {
	binDir, err := s.binDir()
	if err != nil {
		return programSpec{}, err
	}
	base := args.BaseEnv
	if base == nil {
		base = os.Environ()
	}
	env := append(append(append([]string(nil), base...), podEnv...), envList(args.Env)...)
	out := filepath.Join(binDir, "debug-"+sanitize(key))
	flags := append([]string{debugLDFlags}, args.BuildFlags...)
	builder := &build.GoBuild{Dir: args.Dir, Package: args.Package, Output: out, Flags: flags, Debug: true, Env: base}
	proc := DebugProcessSpec{
		Binary: out, Dir: args.Cwd, Args: args.Args, Env: env, Port: port,
		Record: func(role string, st run.Started) error {
			return s.recordProcess(ProcessRecord{Workload: key, Role: role, Pid: st.Pid, Pgid: st.Pgid, StartTime: st.StartTime})
		},
		OnLine: func(stream run.Stream, line string) { s.programLine(args.Display, stream, line) },
	}
	return programSpec{
		name:    args.Display,
		key:     key,
		builder: builder,
		run:     run.Spec{Port: port},
		newProcess: func(onEvent func(run.Event)) relaunch.Program {
			return hooks.NewProcess(proc, onEvent)
		},
		watchRoot:  moduleRoot(args.Dir),
		noWatch:    !args.RelaunchOnSave,
		ignoreDirs: []string{binDir},
		onStatus:   hooks.OnStatus,
	}, nil
}

// End stops the debugged program and undoes what the session did for it:
// the intercept it made is left; a program it replaced runs again.
func (d *DebugSession) End(ctx context.Context, p Progress) error {
	s := d.s
	d.SetPaused(false)
	if d.ai == nil {
		err := d.prog.stop(ctx)
		s.imu.Lock()
		delete(s.locals, d.prog)
		s.imu.Unlock()
		if ferr := s.forgetProcesses(d.key); ferr != nil {
			err = errors.Join(err, fmt.Errorf("record the end of the debug session: %w", ferr))
		}
		s.refreshIntercepts()
		return err
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if cur, ok := s.intercepts[d.workload]; !ok || cur != d.ai {
		// Left meanwhile (`kloop leave`): the program went with it.
		return d.prog.stop(ctx)
	}
	if d.made {
		err := s.leaveLocked(ctx, d.ai, p)
		s.refreshIntercepts()
		return err
	}
	err := d.prog.stop(ctx)
	s.setProgram(d.ai, nil)
	if ferr := s.forgetProcesses(d.key); ferr != nil {
		err = errors.Join(err, fmt.Errorf("record the end of the debug session: %w", ferr))
	}
	s.restartRunProgram(ctx, d.ai, d.runPlan)
	if d.ai.plan.debug && d.ai.plan.traffic.Inbound() && d.ai.prog.Load() == nil {
		// Made with --debug: without this debug session its traffic
		// reaches nothing again, so the wait for the next one starts over.
		s.watchForDebugger(d.ai)
	}
	s.refreshIntercepts()
	return err
}

// restartRunProgram starts the run-mode program of plan behind ai again,
// after a debug session that replaced it.
func (s *Session) restartRunProgram(ctx context.Context, ai *activeIntercept, plan *interceptPlan) {
	if plan == nil || (plan.program == "" && len(plan.run) == 0) {
		return
	}
	env := append(ai.live.Env(), envList(plan.env)...)
	spec, err := s.runSpec(plan, ai.localPort, env)
	if err == nil {
		var prog *program
		if prog, err = s.startProgram(ctx, spec); err == nil {
			s.setProgram(ai, prog)
			return
		}
	}
	s.mgr.log.Warn("start the program again after debugging", "workload", ai.workload, "err", err)
}

// setProgram changes the program behind ai; a nil program sends its
// traffic to the local port, where the user may run one.
func (s *Session) setProgram(ai *activeIntercept, p *program) {
	s.imu.Lock()
	ai.program = p
	s.imu.Unlock()
	ai.prog.Store(p)
}

// moduleRoot is the nearest directory at or above dir holding go.mod,
// else dir.
func moduleRoot(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}
