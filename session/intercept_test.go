package session

import (
	"context"
	"sync"
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
}

func (f *fakeInterceptEngine) Intercept(_ context.Context, req InterceptRequest, _ Progress) (Interception, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.intercepts++
	return &fakeInterception{engine: f, port: req.Port}, nil
}

func (f *fakeInterceptEngine) Restore(context.Context, Target, string, Progress) ([]string, error) {
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

func (i *fakeInterception) Env() []string       { return nil }
func (i *fakeInterception) Port() int           { return i.port }
func (i *fakeInterception) Requests() int64     { return 0 }
func (i *fakeInterception) Tunnels() (int, int) { return 1, 1 }
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
