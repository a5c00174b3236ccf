package session

import (
	"context"
	"errors"
	"fmt"
	"github.com/kloop/kloop/session/capture"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kloop/kloop/agent/tunnel"
	"github.com/kloop/kloop/config"
	"github.com/kloop/kloop/kube/outbound"
	"github.com/kloop/kloop/kube/workload"
)

// Target is where a session acts in the cluster: the claimed slot when
// there is one, else the workspace's kubeconfig context.
type Target struct {
	// Kubeconfig is the file to use; "" means $KUBECONFIG or ~/.kube/config.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// Context is the kubeconfig context; "" means its current context.
	Context string `json:"context,omitempty"`
	// Namespace overrides the context's namespace.
	Namespace string `json:"namespace,omitempty"`
	// ResidentAgents: a slot of a pool whose agents stay after the last
	// leave (kloop pool create --resident-agents).
	ResidentAgents bool `json:"residentAgents,omitempty"`
}

// InterceptEngine puts the traffic agent into workloads and tunnels their
// traffic to this machine. engines.Intercepts implements it on
// kube/intercept.
type InterceptEngine interface {
	// Intercept injects the agent into req.Workload, waits for the rollout,
	// and keeps a tunnel to every ready pod; each tunneled connection is
	// handed to req.Dial.
	Intercept(ctx context.Context, req InterceptRequest, p Progress) (Interception, error)
	// Restore puts back workloads of target's namespace that carry kloop's
	// annotations, from the cluster alone: the named one, or all when
	// workload is "". It returns the workloads it restored.
	Restore(ctx context.Context, target Target, workload string, p Progress) ([]string, error)
}

// InterceptRequest is one intercept to set up.
type InterceptRequest struct {
	Target   Target
	Workload string // deployment/NAME or statefulset/NAME
	// Port is the container port to intercept; 0 means the only one.
	Port int
	// NeedPort: a program will listen on one port, so with Port 0 the
	// engine must pick exactly one (or fail saying which to name); without
	// a program every port a Service targets is intercepted.
	NeedPort bool
	// Filter is the personal rule; nil is a global intercept.
	Filter *tunnel.Filter
	// Traffic is the intercept's mode; never "".
	Traffic Traffic
	// AgentImage is the workspace's agentImage (.kloop.yaml); "" leaves
	// the choice to the engine (KLOOP_AGENT_IMAGE, the cluster's setting,
	// the default).
	AgentImage string
	// Root is the directory where the pod's volumes are materialized
	// (KLOOP_ROOT).
	Root string
	// Dial connects one tunneled connection for container port to the
	// local side. It may wait (bounded) while the program is replaced.
	Dial func(ctx context.Context, port int) (net.Conn, error)
	// Outbound, when set, wraps each connection the outbound proxy dials
	// into the cluster for the local process (capture records the calls).
	Outbound func(net.Conn) net.Conn
	// OutboundRules choose which of the program's outbound connections
	// go through the cluster; checked by the session (outbound.New).
	OutboundRules OutboundRules
	// ExtraPorts are container ports intercepted besides Port (which is
	// then set); Dial gets their connections too.
	ExtraPorts []int
}

// Interception is a live intercept.
type Interception interface {
	// Env is the program's environment as KEY=VALUE: the container's env,
	// KLOOP_ROOT and the outbound proxy variables.
	Env() []string
	// Port is the container port intercepted.
	Port() int
	// Requests counts the requests (connections, for TCP ports) the
	// agents sent to this machine so far.
	Requests() int64
	// Tunnels says how many of the workload's pods have a connected
	// tunnel; with none, the agents send the traffic to the app.
	Tunnels() (connected, pods int)
	// Leave restores the workload and closes the tunnels.
	Leave(ctx context.Context, p Progress) error
}

// Pauser is an Interception whose agents keep a global intercept's
// Service answering while the local process is paused at a breakpoint:
// they hold each new request briefly, then the cluster's pods answer it.
type Pauser interface {
	// SetPaused says the process stopped (true) or runs again; hold is
	// how long a request waits for it (0: the agents' default, 2 s).
	SetPaused(ctx context.Context, paused bool, hold time.Duration) error
	// PausedToPods counts the requests the pods answered since the
	// current pause began.
	PausedToPods() int64
}

// EnvEngine resolves a workload container's environment.
type EnvEngine interface {
	// Env renders the env of workload in format (dotenv, json or shell).
	Env(ctx context.Context, target Target, workload, format string) (string, error)
	// Render renders KEY=VALUE pairs in format, as Env does.
	Render(vars []string, format string) (string, error)
}

// localDialRetry bounds how long a tunneled connection waits for a local
// program that the user runs themselves (no --program) to accept.
const localDialRetry = 5 * time.Second

// activeIntercept is one workload intercepted by this session.
type activeIntercept struct {
	workload  string
	filter    *tunnel.Filter
	remote    int // the container port asked for; 0 means the only one
	localPort int
	live      Interception
	plan      *interceptPlan
	// root is where the pod's volumes are materialized (KLOOP_ROOT),
	// removed when the intercept ends.
	root string

	// Tunneled connections can arrive before Intercept returns. When kloop
	// runs the program they wait on ready (closed once the first start is
	// over) and then go to prog's gate, or to the local port when none
	// runs. A debug session may join later and set prog.
	wantsProgram bool
	ready        chan struct{}
	prog         atomic.Pointer[program]
	program      *program // set with prog; read under opMu/imu only

	pmu   sync.Mutex
	pause pauseState

	// portsMu guards remote and localPort while Intercept fills in the
	// ports the engine inferred: tunneled connections (dialLocal) read
	// them meanwhile.
	portsMu sync.Mutex

	// An intercept made for debugging (plan.debug) arms debuggerTimer;
	// when it fires with no debug session behind the intercept,
	// noDebugger is set and the status carries the notice.
	debuggerMu    sync.Mutex
	debuggerTimer *time.Timer
	noDebugger    atomic.Bool
}

// ports are the container port intercepted and the local one it goes to
// (0 until known).
func (ai *activeIntercept) ports() (remote, local int) {
	ai.portsMu.Lock()
	defer ai.portsMu.Unlock()
	return ai.remote, ai.localPort
}

// startWait bounds how long an early connection waits for the first build
// and start of the program.
const startWait = 2 * time.Minute

// target is where this session's cluster work goes: the claimed slot, else
// the workspace's kubeconfig and context.
func (s *Session) target(cfg *config.Config) (Target, error) {
	if s.claim != nil {
		st, _ := s.claim.current()
		return Target{Kubeconfig: st.Kubeconfig, Namespace: st.Namespace, ResidentAgents: st.ResidentAgents}, nil
	}
	kc, err := cfg.KubeconfigPath(s.root)
	if err != nil {
		return Target{}, err
	}
	return Target{Kubeconfig: kc, Context: cfg.Context}, nil
}

// loadConfig reads the workspace's .kloop.yaml (defaults when absent).
func (s *Session) loadConfig() (*config.Config, error) {
	cfg, path, err := config.Load(s.root)
	if err != nil {
		if path != "" {
			return nil, fmt.Errorf("%s has errors (see the editor's diagnostics, or fix and retry): %w", path, err)
		}
		return nil, err
	}
	return cfg, nil
}

// interceptPlan merges the command's arguments over the .kloop.yaml entry.
type interceptPlan struct {
	workload   string
	remote     int
	local      int
	rule       tunnel.RuleSpec
	filter     *tunnel.Filter // rule, checked
	program    string
	args       []string
	env        map[string]string
	buildFlags []string
	readyPath  string
	build      []string
	run        []string
	watch      []string
	pauseHold  time.Duration // 0: the agents' default
	// replayOnSave is .kloop.yaml's (the command's flag adds to it).
	replayOnSave bool
	traffic      Traffic
	// debug: the intercept waits for a debug session to run the program
	// (--debug); debugProgram is the program it would have run, for the
	// notice that tells how to run it without one.
	debug        bool
	debugProgram string
	outbound     OutboundRules
	extra        map[int]int // more container ports -> local ports
}

func planIntercept(cfg *config.Config, args InterceptArgs) (*interceptPlan, error) {
	p := &interceptPlan{}
	if ic, ok := cfg.Intercept(args.Workload); ok {
		p.workload = ic.Workload.String()
		p.remote, p.local = ic.Port.Remote, ic.Port.Local
		p.rule = tunnel.RuleSpec{Header: ic.Header, Path: ic.Path, PathRegex: ic.PathRegex, Method: ic.Method, Match: ic.Match}
		p.program = ic.Program
		p.args = ic.Args
		p.env = ic.Env
		p.buildFlags = ic.BuildFlags
		p.pauseHold = ic.PauseHold
		p.replayOnSave = ic.ReplayOnSave
		p.traffic = Traffic(ic.Traffic)
		if ic.Readiness != nil {
			p.readyPath = ic.Readiness.HTTPPath
		}
		if ic.Build != nil {
			p.build = ic.Build.Command
		}
		if ic.Run != nil {
			p.run = ic.Run.Command
		}
		p.watch = ic.Watch
		if ic.Outbound != nil {
			p.outbound = OutboundRules{Include: slices.Clone(ic.Outbound.Include), Exclude: slices.Clone(ic.Outbound.Exclude)}
		}
	} else {
		w, err := workload.Parse(args.Workload)
		if err != nil {
			return nil, err
		}
		p.workload = w.String()
	}
	if args.Port != "" {
		remote, local, err := config.ParsePort(args.Port)
		if err != nil {
			return nil, err
		}
		p.remote, p.local = remote, local
	}
	if p.local == 0 {
		p.local = p.remote
	}
	for _, spec := range args.Ports {
		remote, local, err := config.ParsePort(spec)
		if err != nil {
			return nil, err
		}
		if p.remote == 0 {
			return nil, fmt.Errorf("intercept %s: port %q is a second port but there is no first: give the main port first, as --port 8080 --port %s", p.workload, spec, spec)
		}
		if _, dup := p.extra[remote]; dup || remote == p.remote {
			return nil, fmt.Errorf("intercept %s: container port %d is given twice; name each port once", p.workload, remote)
		}
		if p.extra == nil {
			p.extra = map[int]int{}
		}
		p.extra[remote] = local
	}
	// A rule given with the command replaces the file's whole rule, so
	// that --path does not silently add to a header the file names.
	if r := args.Rule(); !r.Empty() {
		p.rule = r
	}
	f, err := tunnel.NewFilter(p.rule)
	if err != nil {
		return nil, fmt.Errorf("intercept %s: %w", p.workload, err)
	}
	p.filter = f
	if args.Program != "" {
		p.program = args.Program
		p.run = nil
	}
	if len(args.Args) > 0 {
		p.args = args.Args
	}
	if args.Traffic != "" {
		p.traffic = Traffic(args.Traffic)
	}
	mode, err := ParseTraffic(string(p.traffic))
	if err != nil {
		return nil, fmt.Errorf("intercept %s: %w", p.workload, err)
	}
	p.traffic = mode
	if !mode.Inbound() {
		if err := p.checkNoTraffic(args); err != nil {
			return nil, fmt.Errorf("intercept %s: %w", p.workload, err)
		}
	}
	// The command's rules add to the file's: both are lists, and exclude
	// wins whichever side names a host.
	p.outbound.Include = append(p.outbound.Include, args.Outbound.Include...)
	p.outbound.Exclude = append(p.outbound.Exclude, args.Outbound.Exclude...)
	if _, err := outbound.New(p.outbound.Include, p.outbound.Exclude, outbound.Options{}); err != nil {
		return nil, fmt.Errorf("intercept %s: outbound %w", p.workload, err)
	}
	if !mode.Inbound() && len(p.outbound.Include)+len(p.outbound.Exclude) > 0 {
		return nil, fmt.Errorf("intercept %s: outbound rules choose between the pod's network and this machine, and traffic none has no agent in a pod: every connection goes to a Service by name through the API server; remove outbound (--outbound-include, --outbound-exclude), or use traffic steal", p.workload)
	}
	// Without a port the engine chooses one from the workload (its only
	// port, else the one a Service targets) before a program starts, and
	// the local port is that one too.
	return p, nil
}

// checkNoTraffic refuses what shapes inbound traffic on an intercept that
// receives none, wherever it was set (flags, .kloop.yaml, launch), rather
// than accept a rule that would silently do nothing.
func (p *interceptPlan) checkNoTraffic(args InterceptArgs) error {
	// Each as .kloop.yaml and launch configurations spell it, then the flag.
	var set []string
	add := func(on bool, key, flag string) {
		switch {
		case on && flag == "":
			set = append(set, key)
		case on:
			set = append(set, key+" (--"+flag+")")
		}
	}
	add(len(p.rule.Header) > 0, "header", "header")
	add(p.rule.Path != "", "path", "path")
	add(p.rule.PathRegex != "", "pathRegex", "path-regex")
	add(len(p.rule.Method) > 0, "method", "method")
	add(p.rule.Match != "", "match", "match")
	add(p.replayOnSave || args.ReplayOnSave, "replayOnSave", "replay-on-save")
	add(p.pauseHold != 0, "pauseHold", "")
	if len(set) == 0 {
		return nil
	}
	return fmt.Errorf("traffic none receives no requests, so %s would do nothing: remove it, or use traffic steal",
		strings.Join(set, ", "))
}

// Intercept routes a workload's traffic to this machine and, when a
// program is given, builds and runs it there with the pod's environment,
// relaunching it on every save.
func (s *Session) Intercept(ctx context.Context, args InterceptArgs, p Progress) (*InterceptStatus, error) {
	engine := s.mgr.opts.Engines.Intercepts
	if engine == nil {
		return nil, errNoEngine("intercept")
	}
	cfg, err := s.loadConfig()
	if err != nil {
		return nil, err
	}
	plan, err := planIntercept(cfg, args)
	if err != nil {
		return nil, err
	}
	if args.Debug {
		// A debug session (`kloop dap`) runs the program under Delve
		// and joins this intercept; until then traffic goes to the port.
		plan.debug, plan.debugProgram = true, plan.program
		plan.program, plan.run, plan.build = "", nil, nil
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if _, ok := s.intercepts[plan.workload]; ok {
		return nil, fmt.Errorf("%s is already intercepted by this workspace; `kloop leave %s` first", plan.workload, plan.workload)
	}
	var start func(*activeIntercept, []string) (*program, error)
	if plan.program != "" || len(plan.run) > 0 {
		start = func(ai *activeIntercept, podEnv []string) (*program, error) {
			p.Report("building "+programName(plan), 80)
			spec, err := s.runSpec(plan, ai.localPort, append(podEnv, envList(plan.env)...))
			if err != nil {
				return nil, err
			}
			if args.ReplayOnSave || plan.replayOnSave {
				s.withReplayOnSave(&spec, plan.workload)
			}
			spec.progress = p
			return s.startProgram(ctx, spec)
		}
	}
	ai, err := s.interceptLocked(ctx, engine, cfg, plan, start, p)
	if err != nil {
		return nil, err
	}
	// Without inbound traffic nothing waits for an answer, so a missing
	// debugger is nothing to warn about.
	if plan.debug && plan.traffic.Inbound() {
		s.watchForDebugger(ai)
	}
	st := ai.status()
	return &st, nil
}

// interceptLocked makes the intercept of plan and, with start, the program
// behind it; a program that does not start undoes the intercept. The
// caller holds opMu.
func (s *Session) interceptLocked(ctx context.Context, engine InterceptEngine, cfg *config.Config, plan *interceptPlan,
	start func(ai *activeIntercept, podEnv []string) (*program, error), p Progress) (*activeIntercept, error) {
	target, err := s.target(cfg)
	if err != nil {
		return nil, err
	}
	ai := &activeIntercept{workload: plan.workload, filter: plan.filter, remote: plan.remote, localPort: plan.local,
		plan: plan, wantsProgram: start != nil, ready: make(chan struct{}), pause: pauseState{hold: plan.pauseHold}}
	defer close(ai.ready)
	// Recorded before acting: a daemon that dies mid-intercept leaves a
	// record the next one restores the workload from.
	if err := s.recordIntercept(InterceptRecord{Workload: plan.workload, Target: target, Traffic: plan.traffic}); err != nil {
		return nil, fmt.Errorf("record the intercept before making it: %w", err)
	}
	root, err := s.mgr.makeRoot(s.root, plan.workload)
	if err != nil {
		if ferr := s.forgetIntercept(plan.workload); ferr != nil {
			s.mgr.log.Error("record failed intercept", "workspace", s.root, "err", ferr)
		}
		return nil, err
	}
	ai.root = root
	live, err := engine.Intercept(ctx, InterceptRequest{
		Target:     target,
		Workload:   plan.workload,
		Port:       plan.remote,
		NeedPort:   start != nil,
		Filter:     plan.filter,
		Traffic:    plan.traffic,
		AgentImage: cfg.AgentImage,
		Root:       root,
		Dial: func(ctx context.Context, port int) (net.Conn, error) {
			c, err := s.dialLocal(ctx, ai, port)
			if err != nil {
				return nil, err
			}
			return capture.Wrap(c, s.captures, ai.workload, ai.pid), nil
		},
		Outbound:      func(c net.Conn) net.Conn { return capture.WrapOutbound(c, s.captures, ai.workload) },
		OutboundRules: plan.outbound,
		ExtraPorts:    slices.Sorted(maps.Keys(plan.extra)),
	}, p)
	if err != nil {
		// The engine may have materialized the volumes before it failed.
		s.mgr.removeRootOf(root, s.root, plan.workload)
		if ferr := s.forgetIntercept(plan.workload); ferr != nil {
			s.mgr.log.Error("record failed intercept", "workspace", s.root, "err", ferr)
		}
		return nil, err
	}
	ai.live = live
	ai.portsMu.Lock()
	if ai.remote == 0 {
		ai.remote = live.Port()
	}
	if ai.localPort == 0 {
		ai.localPort = live.Port()
	}
	ai.portsMu.Unlock()
	if start != nil {
		prog, err := start(ai, live.Env())
		if err != nil {
			// Nothing uses the volumes any more, whether or not the
			// workload is restored (a failed restore stays recorded).
			s.mgr.removeRootOf(root, s.root, plan.workload)
			if lerr := live.Leave(context.WithoutCancel(ctx), NoProgress{}); lerr != nil {
				err = errors.Join(err, fmt.Errorf("and restoring %s failed too (run `kloop leave --all`): %w", plan.workload, lerr))
			} else if ferr := s.forgetIntercept(plan.workload); ferr != nil {
				s.mgr.log.Error("record restore", "workspace", s.root, "err", ferr)
			}
			return nil, err
		}
		ai.program = prog
		ai.prog.Store(prog)
	}
	s.imu.Lock()
	if s.intercepts == nil {
		s.intercepts = map[string]*activeIntercept{}
	}
	s.intercepts[plan.workload] = ai
	s.imu.Unlock()
	s.pollRequests()
	s.refreshIntercepts()
	s.mgr.log.Info("intercepted", "workspace", s.root, "workload", plan.workload, "port", live.Port(), "local", ai.localPort)
	return ai, nil
}

// Leave ends intercepts and restores the workloads. With All it also
// restores, from the cluster's annotations alone, workloads this daemon
// does not know (left by a crashed daemon or another machine of yours).
func (s *Session) Leave(ctx context.Context, args LeaveArgs, p Progress) error {
	engine := s.mgr.opts.Engines.Intercepts
	if engine == nil {
		return errNoEngine("intercept")
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	var names []string
	switch {
	case args.All:
		for w := range s.intercepts {
			names = append(names, w)
		}
	case args.Workload != "":
		w, err := workload.Parse(args.Workload)
		if err != nil {
			return err
		}
		names = []string{w.String()}
	default:
		if len(s.intercepts) != 1 {
			return fmt.Errorf("name the workload to leave, or --all (this workspace intercepts %d workloads)", len(s.intercepts))
		}
		for w := range s.intercepts {
			names = append(names, w)
		}
	}
	var errs []error
	var unknown []string
	for _, w := range names {
		ai, ok := s.intercepts[w]
		if !ok {
			unknown = append(unknown, w)
			continue
		}
		if err := s.leaveLocked(ctx, ai, p); err != nil {
			errs = append(errs, err)
		}
	}
	// What this daemon does not hold is restored from the cluster's
	// annotations: a crashed daemon's intercepts, or --all's leftovers.
	if args.All || len(unknown) > 0 {
		if err := s.restore(ctx, engine, args.All, unknown, p); err != nil {
			errs = append(errs, err)
		}
	}
	s.refreshIntercepts()
	return errors.Join(errs...)
}

func (s *Session) restore(ctx context.Context, engine InterceptEngine, all bool, workloads []string, p Progress) error {
	cfg, err := s.loadConfig()
	if err != nil {
		return err
	}
	target, err := s.target(cfg)
	if err != nil {
		return err
	}
	if all {
		workloads = []string{""}
	}
	var errs []error
	for _, w := range workloads {
		restored, err := engine.Restore(ctx, target, w, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if w != "" && len(restored) == 0 {
			errs = append(errs, fmt.Errorf("%s is not intercepted; `kloop status` lists what is", w))
		}
		for _, r := range restored {
			if err := s.forgetIntercept(r); err != nil {
				errs = append(errs, fmt.Errorf("record the restore of %s: %w", r, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (s *Session) leaveLocked(ctx context.Context, ai *activeIntercept, p Progress) error {
	ai.stopDebuggerTimer()
	var errs []error
	if prog := ai.prog.Load(); prog != nil {
		if err := prog.stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop the local program of %s: %w", ai.workload, err))
		}
		s.setProgram(ai, nil)
	}
	if err := ai.live.Leave(ctx, p); err != nil {
		// Still intercepted (a debug session may join it): the volumes
		// stay until a leave succeeds or the daemon exits.
		errs = append(errs, fmt.Errorf("leave %s: %w", ai.workload, err))
	} else {
		// Removed before the record is: a daemon that dies in between
		// leaves a record, and the next one removes what is left.
		if err := removeRoot(ai.root); err != nil {
			errs = append(errs, err)
		}
		s.imu.Lock()
		delete(s.intercepts, ai.workload)
		s.imu.Unlock()
		s.captures.Forget(ai.workload)
		if err := s.forgetIntercept(ai.workload); err != nil {
			errs = append(errs, fmt.Errorf("record the end of the intercept: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Relaunch rebuilds and restarts the local program now.
func (s *Session) Relaunch(ctx context.Context, args RelaunchArgs, p Progress) error {
	s.imu.Lock()
	var progs []*program
	for w, ai := range s.intercepts {
		if ai.program == nil {
			continue
		}
		if args.Workload != "" {
			if want, err := workload.Parse(args.Workload); err != nil || want.String() != w {
				continue
			}
		}
		progs = append(progs, ai.program)
	}
	s.imu.Unlock()
	if len(progs) == 0 {
		return fmt.Errorf("no local program runs for this workspace; start one with `kloop intercept WORKLOAD --program ./cmd/x`")
	}
	for _, prog := range progs {
		prog.loop.Restart()
	}
	return nil
}

// Env renders a workload container's environment.
func (s *Session) Env(ctx context.Context, args EnvArgs) (*EnvResult, error) {
	engine := s.mgr.opts.Engines.Env
	if engine == nil {
		return nil, errNoEngine("env")
	}
	format := args.Format
	if format == "" {
		format = "dotenv"
	}
	w, err := workload.Parse(args.Workload)
	if err != nil {
		return nil, err
	}
	cfg, err := s.loadConfig()
	if err != nil {
		return nil, err
	}
	// An intercepted workload's env is what its local program gets:
	// the pod's, plus KLOOP_ROOT and the outbound proxy.
	s.imu.Lock()
	ai := s.intercepts[w.String()]
	s.imu.Unlock()
	if ai != nil && ai.live != nil {
		out, err := engine.Render(ai.live.Env(), format)
		if err != nil {
			return nil, err
		}
		return &EnvResult{Format: format, Content: out}, nil
	}
	s.opMu.Lock()
	target, err := s.target(cfg)
	s.opMu.Unlock()
	if err != nil {
		return nil, err
	}
	out, err := engine.Env(ctx, target, w.String(), format)
	if err != nil {
		return nil, err
	}
	return &EnvResult{Format: format, Content: out}, nil
}

// dialLocal connects a tunneled connection for container port to the
// intercept's local side: the run loop's gate when kloop runs the program,
// else the local port with a bounded retry so connections wait out a
// restart by the user. Other ports of a multi-port intercept go to the same
// port number here.
func (s *Session) dialLocal(ctx context.Context, ai *activeIntercept, port int) (net.Conn, error) {
	remote, _ := ai.ports()
	main := remote == 0 || port == remote
	if main && ai.wantsProgram {
		select {
		case <-ai.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(startWait):
			return nil, fmt.Errorf("the program of %s did not start within %s", ai.workload, startWait)
		}
	}
	if main {
		// The gate holds connections while the program (run or under the
		// debugger) is replaced, and resends what a replaced one dropped.
		if p := ai.prog.Load(); p != nil {
			return p.loop.DialLocalReplaying(ctx)
		}
	}
	deadline := time.Now().Add(localDialRetry)
	var d net.Dialer
	for {
		// Read each time: a connection that came before Intercept learnt
		// the inferred port waits for it like for the user's program.
		local := port
		if l, ok := ai.plan.extra[port]; ok && !main {
			local = l
		}
		if main {
			if _, l := ai.ports(); l != 0 {
				local = l
			}
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(local))
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("nothing accepts on %s for the intercept of %s: start your program there: %w", addr, ai.workload, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pid is the local process that answers the intercept's traffic now (0
// when kloop runs none).
func (ai *activeIntercept) pid() int {
	if p := ai.prog.Load(); p != nil {
		return p.loop.Status().Pid
	}
	return 0
}

func (ai *activeIntercept) status() InterceptStatus {
	st := InterceptStatus{Workload: ai.workload, State: "intercepted"}
	if ai.plan != nil {
		st.Traffic = string(ai.plan.traffic)
		if !ai.plan.traffic.Inbound() {
			// No tunnels and no requests by design: "tunnels down" would be
			// an alarm about nothing.
			st.State = "none (no traffic)"
			if ai.live != nil && ai.live.Port() != 0 {
				st.Ports = []string{fmt.Sprintf("%d->%d", ai.live.Port(), ai.localPort)}
			}
			return st
		}
	}
	if ai.filter != nil {
		st.Rule = ai.filter.String()
		for _, h := range ai.filter.Headers {
			if st.Header == nil {
				st.Header = map[string]string{}
			}
			st.Header[h.Name] = h.Value
		}
	}
	if ai.live != nil {
		st.Ports = []string{fmt.Sprintf("%d->%d", ai.live.Port(), ai.localPort)}
		for _, r := range slices.Sorted(maps.Keys(ai.plan.extra)) {
			st.Ports = append(st.Ports, fmt.Sprintf("%d->%d", r, ai.plan.extra[r]))
		}
		st.Requests = ai.live.Requests()
		up, pods := ai.live.Tunnels()
		st.Pods = up
		if up == 0 {
			// The truth a status bar must show: traffic is on the app.
			st.State = fmt.Sprintf("tunnels down (0 of %d pods); traffic goes to the app", pods)
		}
		if ai.isPaused() {
			st.Paused = true
			if p, ok := ai.live.(Pauser); ok {
				st.PausedToPods = p.PausedToPods()
			}
			if st.State == "intercepted" {
				// Status bars show State: the Service is still up.
				st.State = pausedState(st.PausedToPods)
			}
		}
	}
	if ai.waitsForDebugger() {
		st.State = "waiting for a debugger"
		st.Notice = ai.noDebuggerNotice()
	}
	return st
}

// pausedState is the State of an intercept whose process is stopped at a
// breakpoint.
func pausedState(toPods int64) string {
	noun := "requests"
	if toPods == 1 {
		noun = "request"
	}
	return fmt.Sprintf("paused: %d %s sent to the cluster's pods", toPods, noun)
}

// refreshIntercepts publishes the intercepts and the program's state. The
// request counters come from the agents, so they are read without imu.
func (s *Session) refreshIntercepts() {
	s.imu.Lock()
	ais := make([]*activeIntercept, 0, len(s.intercepts))
	for _, ai := range s.intercepts {
		ais = append(ais, ai)
	}
	s.imu.Unlock()
	list := make([]InterceptStatus, 0, len(ais))
	var proc *ProcessStatus
	var build *BuildStatus
	var relaunch int64
	for _, ai := range ais {
		list = append(list, ai.status())
		if p := ai.prog.Load(); p != nil {
			proc, build, relaunch = p.status()
		}
	}
	s.imu.Lock()
	for p := range s.locals {
		proc, build, relaunch = p.status()
	}
	s.imu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].Workload < list[j].Workload })
	s.update(func(st *Status) {
		st.Intercepts = list
		st.Process, st.LastBuild = proc, build
		if relaunch > 0 {
			st.LastRelaunchMillis = relaunch
		}
	})
}

// requestsPollInterval is how often the request counters of the status
// (status bars, the status lens) are refreshed while something is
// intercepted.
const requestsPollInterval = 2 * time.Second

// pollRequests refreshes the status while the session intercepts anything
// and the counters move; it ends when the last intercept does.
func (s *Session) pollRequests() {
	s.imu.Lock()
	if s.polling {
		s.imu.Unlock()
		return
	}
	s.polling = true
	s.imu.Unlock()
	go func() {
		tick := time.NewTicker(requestsPollInterval)
		defer tick.Stop()
		type counters struct {
			requests int64
			tunnels  int
			paused   bool
			toPods   int64 // while paused
		}
		last := map[string]counters{}
		for range tick.C {
			s.imu.Lock()
			if len(s.intercepts) == 0 {
				s.polling = false
				s.imu.Unlock()
				return
			}
			ais := make([]*activeIntercept, 0, len(s.intercepts))
			for _, ai := range s.intercepts {
				ais = append(ais, ai)
			}
			s.imu.Unlock()
			changed := false
			for _, ai := range ais {
				if ai.live == nil {
					continue
				}
				up, _ := ai.live.Tunnels()
				now := counters{requests: ai.live.Requests(), tunnels: up, paused: ai.isPaused()}
				if p, ok := ai.live.(Pauser); ok && now.paused {
					now.toPods = p.PausedToPods()
				}
				if now != last[ai.workload] {
					last[ai.workload], changed = now, true
				}
			}
			if changed {
				s.refreshIntercepts()
			}
		}
	}()
}

// sanitize makes a path or workload usable as one directory name.
func sanitize(s string) string {
	return strings.NewReplacer("/", "_", string(filepath.Separator), "_", ":", "_").Replace(strings.TrimPrefix(s, "/"))
}

func envList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}
