package session

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// fakeInterceptEngine stands in for the cluster (kube/intercept is tested
// against the sandbox in its own package and in test/intercept); here only
// the session's bookkeeping and locking are under test. Leave blocks while
// leaveGate is open, so a test can act while a leave is in flight.
type fakeInterceptEngine struct {
	mu         sync.Mutex
	intercepts int
	leaveGate  chan struct{}
	leaving    chan struct{}
	// materialize writes a Secret volume's file under req.Root, as the env
	// resolution does; fail then fails the intercept (after that write).
	materialize bool
	fail        error
	roots       []string
	// inferred is the port the engine chooses when the request names none
	// (as engines.Intercepts does from the workload); env is the pod's env.
	inferred int
	env      []string
	// pauses are the pause states the agents were told, in order;
	// toPods is what PausedToPods reports.
	pauses []bool
	holds  []time.Duration
	toPods int64
	// restored lists the workloads Restore was asked to put back.
	restored []string
}

func (f *fakeInterceptEngine) Intercept(_ context.Context, req InterceptRequest, _ Progress) (Interception, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.roots = append(f.roots, req.Root)
	if f.materialize {
		dir := filepath.Join(req.Root, "etc", "secrets")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "password"), []byte("hunter2"), 0o400); err != nil {
			return nil, err
		}
		// A volume mounted read-only: its directory keeps no write bit.
		if err := os.Chmod(dir, 0o500); err != nil {
			return nil, err
		}
	}
	if f.fail != nil {
		return nil, f.fail
	}
	f.intercepts++
	port := req.Port
	if port == 0 {
		port = f.inferred
	}
	return &fakeInterception{engine: f, port: port}, nil
}

func (f *fakeInterceptEngine) lastRoot() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.roots) == 0 {
		return ""
	}
	return f.roots[len(f.roots)-1]
}

func (f *fakeInterceptEngine) Restore(_ context.Context, _ Target, workload string, _ Progress) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restored = append(f.restored, workload)
	return nil, nil
}

func (f *fakeInterceptEngine) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.intercepts
}

type fakeInterception struct {
	engine *fakeInterceptEngine
	port   int
}

func (i *fakeInterception) Env() []string       { return i.engine.env }
func (i *fakeInterception) Port() int           { return i.port }
func (i *fakeInterception) Requests() int64     { return 0 }
func (i *fakeInterception) Tunnels() (int, int) { return 1, 1 }

func (i *fakeInterception) SetPaused(_ context.Context, paused bool, hold time.Duration) error {
	i.engine.mu.Lock()
	defer i.engine.mu.Unlock()
	i.engine.pauses = append(i.engine.pauses, paused)
	i.engine.holds = append(i.engine.holds, hold)
	return nil
}

func (i *fakeInterception) PausedToPods() int64 {
	i.engine.mu.Lock()
	defer i.engine.mu.Unlock()
	return i.engine.toPods
}

func (f *fakeInterceptEngine) pausesSent() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bool(nil), f.pauses...)
}
func (i *fakeInterception) Leave(ctx context.Context, _ Progress) error {
	if i.engine.leaving != nil {
		close(i.engine.leaving)
	}
	if i.engine.leaveGate != nil {
		select {
		case <-i.engine.leaveGate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
