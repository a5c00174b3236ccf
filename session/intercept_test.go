package session

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
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

func TestInterceptWithReuse(t *testing.T) {
	newSession := func(t *testing.T) (*Session, *fakeInterceptEngine) {
		f := &fakeInterceptEngine{}
		t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "kubeconfig"))
		store := NewStore(filepath.Join(t.TempDir(), "state.json"))
		m := NewManager(Options{Store: store, Capabilities: Capabilities{Intercepts: f}})
		t.Cleanup(func() { m.Close(context.Background()) })
		return m.Open(t.TempDir()), f
	}
	debug := InterceptArgs{Workload: "orders", Port: "8080:18080", Debug: true, Reuse: true}

	t.Run("joins the intercept the workspace holds", func(t *testing.T) {
		s, f := newSession(t)
		if _, err := s.Intercept(t.Context(), InterceptArgs{Workload: "orders", Port: "8080:18080"}, NoProgress{}); err != nil {
			t.Fatal(err)
		}
		st, err := s.Intercept(t.Context(), debug, NoProgress{})
		if err != nil {
			t.Fatal(err)
		}
		if !st.Reused || st.Workload != "deployment/orders" || f.count() != 1 {
			t.Errorf("second intercept with Reuse: %+v after %d engine intercepts; want the first one, reused", st, f.count())
		}
		if _, err := s.Intercept(t.Context(), InterceptArgs{Workload: "orders"}, NoProgress{}); err == nil {
			t.Error("a second intercept without Reuse was not refused")
		}
	})

	// A debug session that starts while the previous one's leave is still
	// restoring the workload must not join the intercept that is going
	// away: it waits for the leave and intercepts anew.
	t.Run("waits for a leave in flight and intercepts anew", func(t *testing.T) {
		s, f := newSession(t)
		if _, err := s.Intercept(t.Context(), debug, NoProgress{}); err != nil {
			t.Fatal(err)
		}
		f.leaveGate, f.leaving = make(chan struct{}), make(chan struct{})
		left := make(chan error, 1)
		go func() { left <- s.Leave(context.Background(), LeaveArgs{Workload: "orders"}, NoProgress{}) }()
		<-f.leaving
		got := make(chan *InterceptStatus, 1)
		go func() {
			st, err := s.Intercept(context.Background(), debug, NoProgress{})
			if err != nil {
				t.Error(err)
			}
			got <- st
		}()
		select {
		case st := <-got:
			t.Fatalf("intercept answered %+v while the leave was in flight", st)
		case <-time.After(100 * time.Millisecond):
		}
		close(f.leaveGate)
		if err := <-left; err != nil {
			t.Fatal(err)
		}
		st := <-got
		if st == nil || st.Reused || f.count() != 2 {
			t.Fatalf("intercept after the leave: %+v after %d engine intercepts; want a new one", st, f.count())
		}
		if in := s.Status().Intercepts; len(in) != 1 || in[0].Workload != "deployment/orders" {
			t.Errorf("status after the new intercept: %+v", in)
		}
	})
}
