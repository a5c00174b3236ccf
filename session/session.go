// Package session holds one dev session per workspace: what is claimed,
// intercepted and running for it, the status editors draw, and the state file
// that lets a restarted daemon find what an earlier one left behind. The
// handlers and the CLI reach every capability through a Session, so an editor
// and a terminal on the same workspace see one state.
package session

import (
	"context"
	"errors"
	"fmt"
	"github.com/kloop/kloop/session/capture"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// Progress receives reports of long work: claim, intercept, build. The LSP
// turns them into $/progress, the CLI into a progress line.
type Progress interface {
	Report(message string, percentage int)
}

// NoProgress discards reports.
type NoProgress struct{}

// Report implements Progress.
func (NoProgress) Report(string, int) {}

// Options configure a Manager.
type Options struct {
	Logger *slog.Logger
	// Store records what must survive a daemon crash; nil keeps nothing.
	Store *Store
	// Engines do the cluster work (package engines implements them on
	// kube/*; tests pass fakes for the ones they use).
	Engines Engines
	// RuntimeDir is the user's runtime directory ($XDG_RUNTIME_DIR): a
	// tmpfs of the user's that is emptied at logout. The ConfigMap and
	// Secret volumes an intercept materializes go under
	// RuntimeDir/kloop/root when it is a directory of the user's that no
	// one else can enter; otherwise (or when empty) under the state
	// directory's root, 0700. Either way they are removed when the
	// intercept ends.
	RuntimeDir string
	// Health checks the daemon serving the sessions (its socket, the peer
	// check) for kloop.doctor; nil when kloop serves in-process.
	Health func() []Finding
	// DebuggerWait is how long an intercept made for debugging (--debug,
	// a "& debug" lens) may go without a debug session before the user is
	// told that its traffic reaches nothing; 0 means DefaultDebuggerWait,
	// a negative value never tells.
	DebuggerWait time.Duration
}

// DefaultDebuggerWait is Options.DebuggerWait when unset: long enough for
// an editor to start the debug session it promised, short enough that a
// user without one learns why requests fail before they go looking.
const DefaultDebuggerWait = 5 * time.Second

// Engines are what the session drives in the cluster.
type Engines struct {
	Claims     ClaimEngine
	Intercepts InterceptEngine
	Env        EnvEngine
	Doctor     DoctorEngine
	// Agents installs and removes resident agents (kloop agent install).
	Agents AgentEngine
	// Workloads lists a namespace's workloads for pickers.
	Workloads WorkloadEngine
}

// errNoEngine is what a command answers when the Manager was made without
// the engine it needs (a test's partial wiring; the daemon wires all).
func errNoEngine(what string) error {
	return fmt.Errorf("this kloop daemon has no %s engine", what)
}

// Manager owns every Session of the daemon.
type Manager struct {
	opts Options
	log  *slog.Logger
	// roots is where intercepts materialize volumes (see roots.go).
	roots string

	mu       sync.Mutex
	sessions map[string]*Session
}

// NewManager returns a Manager with no sessions.
func NewManager(opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{opts: opts, log: opts.Logger, sessions: map[string]*Session{}}
	m.initRoots()
	m.adoptClaims()
	m.recoverLeftovers()
	return m
}

// Open returns the session for the workspace root, creating it on first use.
// Roots are cleaned so that two editors naming the same folder share it.
func (m *Manager) Open(root string) *Session {
	root = filepath.Clean(root)
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.sessions[root]; ok {
		return s
	}
	s := &Session{root: root, mgr: m, subs: map[int]func(Status){}, captures: capture.NewStore(0)}
	s.status = Status{Workspace: root, Updated: time.Now().UTC()}
	m.sessions[root] = s
	return s
}

// Sessions lists the open sessions, ordered by workspace.
func (m *Manager) Sessions() []*Session {
	m.mu.Lock()
	out := make([]*Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		out = append(out, s)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].root < out[j].root })
	return out
}

// Holds reports whether any session holds a claim, an intercept or a
// process: the daemon must not exit on idle while one does.
func (m *Manager) Holds() bool {
	for _, s := range m.Sessions() {
		if s.Status().Holds() {
			return true
		}
	}
	return false
}

// Close ends every session's background work (claim renewal, processes)
// and removes the volumes its intercepts materialized: their secrets do not
// outlive the daemon. The intercepts stay recorded, for the next daemon.
func (m *Manager) Close(ctx context.Context) error {
	var errs []error
	for _, s := range m.Sessions() {
		if err := s.close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Session is one workspace's dev session.
type Session struct {
	root string
	mgr  *Manager

	mu      sync.Mutex
	status  Status
	subs    map[int]func(Status)
	nextSub int

	// opMu serialises state-changing commands so that a claim from the CLI
	// and one from an editor cannot interleave.
	opMu sync.Mutex

	claim *activeClaim

	// intercepts are guarded by opMu for changes and by imu for reads
	// that must not wait for a long command (a save, a status refresh).
	imu        sync.Mutex
	intercepts map[string]*activeIntercept
	// captures are the last HTTP exchanges intercepted traffic carried to
	// the local process, in memory only (kloop requests, kloop replay).
	captures *capture.Store
	polling  bool // pollRequests runs
	// locals are programs debugged without an intercept.
	locals    map[*program]bool
	nextLocal int
	eventSubs map[int]func(Event)

	// clients are the editors that connected, by name (kloop.doctor).
	clients map[string]ClientInfo

	// outputs keep the last lines of each program's output, by name.
	outMu   sync.Mutex
	outputs map[string]*outputRing
}

// Root is the workspace directory.
func (s *Session) Root() string { return s.root }

// Status returns a copy of the current status.
func (s *Session) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status.clone()
}

// Subscribe calls fn after every state change until cancel is called. fn
// runs on the goroutine that made the change and must not block.
func (s *Session) Subscribe(fn func(Status)) (cancel func()) {
	s.mu.Lock()
	id := s.nextSub
	s.nextSub++
	s.subs[id] = fn
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.subs, id)
		s.mu.Unlock()
	}
}

// update applies change to the status and tells subscribers.
func (s *Session) update(change func(*Status)) {
	s.mu.Lock()
	change(&s.status)
	s.status.Updated = time.Now().UTC()
	st := s.status.clone()
	subs := make([]func(Status), 0, len(s.subs))
	for _, fn := range s.subs {
		subs = append(subs, fn)
	}
	s.mu.Unlock()
	for _, fn := range subs {
		fn(st)
	}
}

func (s *Session) close(ctx context.Context) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.claim != nil {
		s.claim.stopRenewal()
	}
	s.imu.Lock()
	ais := make([]*activeIntercept, 0, len(s.intercepts))
	for _, ai := range s.intercepts {
		ais = append(ais, ai)
	}
	s.imu.Unlock()
	for _, ai := range ais {
		s.mgr.removeRootOf(ai.root, s.root, ai.workload)
	}
	return nil
}

// Saved tells the session that the editor saved path. The run loop uses it
// as a relaunch trigger for the intercepted program's Go files.
func (s *Session) Saved(ctx context.Context, path string) {
	s.mgr.log.Debug("saved", "workspace", s.root, "path", path)
	s.savedProgram(path)
}

// FindRoot names the workspace a directory belongs to: the nearest
// ancestor holding .kloop.yaml, go.mod or .git, else dir itself. The CLI
// run from a subdirectory and an editor opened on the root then share one
// session.
func FindRoot(dir string) string {
	dir = filepath.Clean(dir)
	for d := dir; ; d = filepath.Dir(d) {
		for _, marker := range []string{".kloop.yaml", ".kloop.yml", "go.mod", ".git"} {
			if _, err := os.Stat(filepath.Join(d, marker)); err == nil {
				return d
			}
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}
