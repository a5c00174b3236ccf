// Package relaunch is the save-to-new-code loop of an intercept: on each
// trigger it builds the program, and only when the build is good swaps the
// running process for a new one, while DialLocal holds the connections that
// arrive mid-swap so that none fails. A failed build publishes diagnostics
// and leaves the old process serving.
package relaunch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kloop/kloop/session/build"
	"github.com/kloop/kloop/session/run"
)

// State is what the loop is doing.
type State string

const (
	StateIdle     State = "idle"
	StateBuilding State = "building"
	// StateStarting: the old process is being replaced; connections wait.
	StateStarting State = "starting"
	StateRunning  State = "running"
	// StateCrashed: the program exited on its own; a restart is scheduled.
	StateCrashed State = "crashed"
	// StateBuildFailed: the last build failed; the previous process, if
	// any, still serves.
	StateBuildFailed State = "build-failed"
	// StateFailed: the new process could not be made ready.
	StateFailed  State = "failed"
	StateStopped State = "stopped"
)

// Defaults for zero Config fields.
const (
	DefaultHoldTimeout  = 10 * time.Second
	DefaultBuildTimeout = 5 * time.Minute
	// acceptDrainMax bounds the wait for the old process to accept the
	// connections already queued for it before it is told to stop.
	acceptDrainMax = 250 * time.Millisecond
	redialPause    = 10 * time.Millisecond
)

// Program is what the loop starts after each good build. The default is a
// *run.Supervisor over Config.Run; the debug adapter can supply one that
// restarts the program under Delve instead.
type Program interface {
	// Start replaces the running process (if any) with a new one and
	// returns once it is ready.
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	// Running reports whether a started process is still up. The loop calls
	// it with its own lock held: it must not call back into the Loop.
	Running() bool
}

// Config wires a Loop.
type Config struct {
	// Builder builds the program; a *build.GoBuild or a *build.Command.
	Builder build.Builder
	// Run starts the program. Run.Port is where DialLocal connects. Run.OnStart
	// is where the daemon records the process in its state file.
	Run     run.Spec
	Backoff run.Backoff
	// NewProgram, when set, builds the Program instead of a run.Supervisor.
	// It must report the program's state changes to onEvent.
	NewProgram func(onEvent func(run.Event)) Program
	// HoldTimeout bounds how long DialLocal waits for a process to become
	// ready; DefaultHoldTimeout if 0.
	HoldTimeout time.Duration
	// BuildTimeout bounds one build; DefaultBuildTimeout if 0.
	BuildTimeout time.Duration
	// OnDiagnostics gets the compile errors per file after each build. A
	// file that had diagnostics and has none now maps to an empty list, so
	// the editor can clear it. Called only when something changed.
	OnDiagnostics func(map[string][]build.Diagnostic)
	// OnStatus gets the status after every state change, one call at a time.
	OnStatus func(Status)
	Logger   *slog.Logger
}

// Status is the loop's state and counters, for kloop/status and code lenses.
type Status struct {
	State State
	// Serving is true while a ready process takes connections.
	Serving bool
	Pid     int
	// Builds counts builds; BuildFailures the failed ones among them.
	Builds        int
	BuildFailures int
	LastBuild     time.Duration
	LastBuildAt   time.Time
	// Launches counts processes started after a good build (the first one
	// included); Relaunches the ones among them that replaced an earlier
	// build. LastRelaunch is the time from trigger to the new process being
	// ready.
	Launches   int
	Relaunches int
	// Unchanged counts good builds that produced the very program already
	// running (a save without changes): no relaunch was needed.
	Unchanged      int
	LastRelaunch   time.Duration
	LastRelaunchAt time.Time
	// Connections counts connections handed out by DialLocal; Held the ones
	// among them that had to wait for a process; DialFailures the ones that
	// could not be served within the hold timeout.
	Connections  int64
	Held         int64
	DialFailures int64
	// Crashes counts consecutive crashes; RetryIn is the back-off before the
	// next restart.
	Crashes int
	RetryIn time.Duration
	// LastError says why the last build or start failed; "" after success.
	LastError string
}

// Loop builds and relaunches one program.
type Loop struct {
	cfg  Config
	log  *slog.Logger
	addr string
	sup  Program
	trig chan struct{}

	triggeredAt            atomic.Int64 // unix nanos of the oldest unserved trigger
	forced                 atomic.Bool  // the next cycle relaunches even an unchanged build
	dialing                atomic.Int64 // dials past the gate, not yet connected
	conns, held, dialFails atomic.Int64

	mu        sync.Mutex
	status    Status
	ready     chan struct{} // closed while connections may pass
	down      error         // non-nil: no process is coming until the next good build
	published map[string]bool
	runningID string // build ID of the program the running process came from

	statusMu sync.Mutex // orders OnStatus calls
}

// New checks cfg and returns a Loop; Run starts it.
func New(cfg Config) (*Loop, error) {
	if cfg.Builder == nil {
		return nil, errors.New("relaunch: no builder; give a Go package or a build command")
	}
	if len(cfg.Run.Argv) == 0 && cfg.NewProgram == nil {
		return nil, errors.New("relaunch: no command to run")
	}
	if cfg.Run.Port < 0 || cfg.Run.Port > 65535 {
		return nil, fmt.Errorf("relaunch: local port %d is out of range 1..65535", cfg.Run.Port)
	}
	if cfg.HoldTimeout <= 0 {
		cfg.HoldTimeout = DefaultHoldTimeout
	}
	if cfg.BuildTimeout <= 0 {
		cfg.BuildTimeout = DefaultBuildTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Loop{
		cfg:       cfg,
		log:       cfg.Logger,
		addr:      net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Run.Port)),
		trig:      make(chan struct{}, 1),
		ready:     make(chan struct{}),
		published: map[string]bool{},
		status:    Status{State: StateIdle},
	}
	if cfg.NewProgram != nil {
		l.sup = cfg.NewProgram(l.onProcessEvent)
	} else {
		l.sup = run.NewSupervisor(cfg.Run, cfg.Backoff, l.onProcessEvent)
	}
	return l, nil
}

// Trigger asks for a rebuild. Triggers that arrive while a build runs
// coalesce into one follow-up build.
func (l *Loop) Trigger() {
	l.triggeredAt.CompareAndSwap(0, time.Now().UnixNano())
	select {
	case l.trig <- struct{}{}:
	default:
	}
}

// Restart asks for a rebuild that relaunches the program even when the build
// is unchanged: what a user who asks for a restart expects.
func (l *Loop) Restart() {
	l.forced.Store(true)
	l.Trigger()
}

// Run builds and starts the program, then rebuilds and relaunches on every
// trigger until ctx ends; then it stops the program and returns.
func (l *Loop) Run(ctx context.Context) error {
	l.Trigger()
	for {
		select {
		case <-ctx.Done():
			l.mu.Lock()
			l.closeGate(errors.New("the run loop was stopped"))
			l.status.State = StateStopped
			l.status.Serving = false
			l.status.Pid = 0
			l.mu.Unlock()
			// A fresh context: ctx is already over, but the stop must finish.
			err := l.sup.Stop(context.Background())
			l.notify()
			if err != nil {
				return fmt.Errorf("stop program: %w", err)
			}
			return nil
		case <-l.trig:
			l.cycle(ctx)
		}
	}
}

// Status returns the current status with live counters.
func (l *Loop) Status() Status {
	l.mu.Lock()
	s := l.status
	l.mu.Unlock()
	s.Connections, s.Held, s.DialFailures = l.conns.Load(), l.held.Load(), l.dialFails.Load()
	return s
}

// cycle is one build and, when it is good, one relaunch.
func (l *Loop) cycle(ctx context.Context) {
	since := time.Now()
	if ts := l.triggeredAt.Swap(0); ts != 0 {
		since = time.Unix(0, ts)
	}
	forced := l.forced.Swap(false)
	l.setState(StateBuilding)

	bctx, cancel := context.WithTimeout(ctx, l.cfg.BuildTimeout)
	res, err := l.cfg.Builder.Build(bctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		l.buildFailed(err)
		return
	}
	l.mu.Lock()
	l.status.Builds++
	l.status.LastBuild = res.Duration
	l.status.LastBuildAt = time.Now()
	unchanged := !forced && res.ID != "" && res.ID == l.runningID && l.sup.Running()
	if unchanged {
		l.status.Unchanged++
		l.status.LastError = ""
		l.status.State = StateRunning
	}
	l.mu.Unlock()
	l.publish(nil)
	if unchanged {
		l.notify()
		return
	}

	l.mu.Lock()
	l.status.State = StateStarting
	l.status.Serving = false
	l.closeGate(nil)
	l.mu.Unlock()
	l.notify()
	l.drainOld()

	err = l.sup.Start(ctx)
	l.mu.Lock()
	if err != nil {
		l.runningID = ""
		// The supervisor's events set the state (crashed with a retry, or
		// failed); record why for the status.
		l.status.LastError = err.Error()
		l.mu.Unlock()
		l.notify()
		l.log.Warn("program did not start", "err", err)
		return
	}
	if l.status.Launches > 0 {
		l.status.Relaunches++
	}
	l.status.Launches++
	l.status.LastRelaunch = time.Since(since)
	l.status.LastRelaunchAt = time.Now()
	l.status.LastError = ""
	l.runningID = res.ID
	// The new process may already have crashed (the supervisor clears its
	// process first, then reports); then the crash state stands.
	if l.sup.Running() {
		l.status.State = StateRunning
		l.status.Serving = true
		l.openGate()
	}
	l.mu.Unlock()
	l.notify()
}

func (l *Loop) buildFailed(err error) {
	var diags []build.Diagnostic
	var be *build.Error
	if errors.As(err, &be) {
		diags = be.Diagnostics
	}
	l.mu.Lock()
	l.status.Builds++
	l.status.BuildFailures++
	l.status.LastBuildAt = time.Now()
	if be != nil {
		l.status.LastBuild = be.Duration
	}
	l.status.LastError = err.Error()
	l.status.State = StateBuildFailed
	if !l.sup.Running() && l.status.Crashes == 0 {
		// Nothing runs and no restart is scheduled: refuse rather than hold.
		l.down = fmt.Errorf("the build failed: %w", err)
	}
	l.mu.Unlock()
	l.log.Info("build failed; the previous process keeps serving", "diagnostics", len(diags))
	l.publish(diags)
	l.notify()
}

// publish sends diagnostics per file, with empty lists for files that had
// diagnostics before and have none now.
func (l *Loop) publish(diags []build.Diagnostic) {
	byFile := build.GroupByFile(diags)
	l.mu.Lock()
	for f := range l.published {
		if _, ok := byFile[f]; !ok {
			byFile[f] = []build.Diagnostic{}
		}
	}
	l.published = map[string]bool{}
	for f, d := range byFile {
		if len(d) > 0 {
			l.published[f] = true
		}
	}
	l.mu.Unlock()
	if len(byFile) > 0 && l.cfg.OnDiagnostics != nil {
		l.cfg.OnDiagnostics(maps.Clone(byFile))
	}
}

// drainOld lets the old process take the connections already handed to it
// before it is told to stop: dials in flight finish, and the kernel's accept
// queue empties. A connection still queued when the old listener closes
// would be reset, a failed request for the client.
func (l *Loop) drainOld() {
	for l.dialing.Load() > 0 {
		time.Sleep(100 * time.Microsecond)
	}
	if l.cfg.Run.Port == 0 || !l.sup.Running() {
		return
	}
	deadline := time.Now().Add(acceptDrainMax)
	for time.Now().Before(deadline) {
		if n, ok := run.AcceptQueueLen(l.cfg.Run.Port); !ok || n == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func (l *Loop) onProcessEvent(e run.Event) {
	l.mu.Lock()
	switch e.State {
	case run.StateStarting:
		l.status.Pid = e.Process.Pid
	case run.StateRunning:
		l.status.Pid = e.Process.Pid
		l.status.Crashes, l.status.RetryIn = 0, 0
		if l.status.State == StateCrashed {
			// A scheduled restart came up; an explicit relaunch opens the
			// gate itself once it has counted the relaunch.
			l.status.State = StateRunning
			l.status.Serving = true
			l.status.LastError = ""
			l.openGate()
		}
	case run.StateCrashed:
		l.status.State = StateCrashed
		l.status.Serving = false
		l.status.Pid = 0
		l.status.Crashes, l.status.RetryIn = e.Crashes, e.RetryIn
		l.status.LastError = fmt.Sprint(e.Err)
		// Hold, do not refuse: a restart is on its way.
		l.closeGate(nil)
	case run.StateFailed:
		l.status.State = StateFailed
		l.status.Serving = false
		l.status.Pid = 0
		l.status.LastError = fmt.Sprint(e.Err)
		l.closeGate(fmt.Errorf("the program could not be started: %w", e.Err))
	case run.StateStopped:
		l.status.Pid = 0
		l.status.Serving = false
	}
	l.mu.Unlock()
	l.notify()
}

func (l *Loop) setState(s State) {
	l.mu.Lock()
	l.status.State = s
	l.mu.Unlock()
	l.notify()
}

func (l *Loop) notify() {
	if l.cfg.OnStatus == nil {
		return
	}
	l.statusMu.Lock()
	defer l.statusMu.Unlock()
	l.cfg.OnStatus(l.Status())
}

// openGate lets connections through; the caller holds mu.
func (l *Loop) openGate() {
	l.down = nil
	select {
	case <-l.ready:
	default:
		close(l.ready)
	}
}

// closeGate makes new connections wait (down == nil) or fail at once (down
// says why no process is coming); the caller holds mu.
func (l *Loop) closeGate(down error) {
	l.down = down
	select {
	case <-l.ready:
		l.ready = make(chan struct{})
	default:
	}
}

// DialLocal connects to the local program for a tunneled connection. While a
// swap or a crash restart is under way it waits, up to the hold timeout, for
// the new process to be ready instead of failing. It fails at once when no
// process is coming (the program was never built, could not start, or the
// loop stopped).
func (l *Loop) DialLocal(ctx context.Context) (net.Conn, error) {
	if l.cfg.Run.Port == 0 {
		return nil, errors.New("dial local program: it has no port configured")
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.HoldTimeout)
	defer cancel()
	wasHeld := false
	var lastErr error
	for {
		l.mu.Lock()
		ready, down := l.ready, l.down
		l.mu.Unlock()
		if down != nil {
			l.dialFails.Add(1)
			return nil, fmt.Errorf("dial local program on %s: %w", l.addr, down)
		}
		select {
		case <-ready:
		default:
			wasHeld = true
			select {
			case <-ready:
			case <-ctx.Done():
				return nil, l.dialFailed(ctx, lastErr)
			}
		}
		conn, err := l.dialOnce(ctx, ready)
		if err == nil {
			l.conns.Add(1)
			if wasHeld {
				l.held.Add(1)
			}
			return conn, nil
		}
		lastErr = err
		// Refused with the gate open: the process just died and the
		// supervisor has not said so yet. Try again shortly.
		wasHeld = true
		select {
		case <-time.After(redialPause):
		case <-ctx.Done():
			return nil, l.dialFailed(ctx, lastErr)
		}
	}
}

// dialOnce dials unless the gate closed in the meantime; a swap waits for
// dials in flight before stopping the old process (see drainOld).
func (l *Loop) dialOnce(ctx context.Context, ready chan struct{}) (net.Conn, error) {
	l.mu.Lock()
	if l.ready != ready {
		l.mu.Unlock()
		return nil, errors.New("a relaunch began")
	}
	l.dialing.Add(1)
	l.mu.Unlock()
	defer l.dialing.Add(-1)
	var d net.Dialer
	return d.DialContext(ctx, "tcp", l.addr)
}

func (l *Loop) dialFailed(ctx context.Context, lastErr error) error {
	l.dialFails.Add(1)
	l.mu.Lock()
	st := l.status
	l.mu.Unlock()
	why := fmt.Sprintf("the program did not become ready within %s (state %s", l.cfg.HoldTimeout, st.State)
	if st.LastError != "" {
		why += ": " + st.LastError
	}
	why += ")"
	if lastErr != nil {
		why += "; last dial: " + lastErr.Error()
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("dial local program on %s: %w", l.addr, ctx.Err())
	}
	return fmt.Errorf("dial local program on %s: %s", l.addr, why)
}
