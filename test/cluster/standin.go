package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kloop/kloop/internal/racecheck"
	"github.com/kloop/kloop/sandbox/standin"
)

// Re-exported from package standin so tests need one import.
type (
	// Image says which local program stands in for a container image.
	Image = standin.Image
	// Images maps image references to stand-ins ("ko://PKG" needs no entry).
	Images = standin.Images
	// Network selects pod networking for stand-ins.
	Network = standin.Network
	// Process is one container's stand-in.
	Process = standin.Process
)

// Pod networking modes; see package standin.
const (
	NetworkAuto      = standin.NetworkAuto
	NetworkNamespace = standin.NetworkNamespace
	NetworkLoopback  = standin.NetworkLoopback
)

// DefaultImages is a fresh image table for the samples in test/testdata.
func DefaultImages() Images { return standin.DefaultImages() }

// StandInOption changes how StartStandIns runs containers.
type StandInOption func(*standin.Options)

// WithNetwork chooses the pod networking; the default is NetworkAuto.
func WithNetwork(n Network) StandInOption { return func(o *standin.Options) { o.Network = n } }

// StandIns runs the containers of the Running pods of the test's
// namespace as local processes until the test ends.
type StandIns struct {
	env    *Env
	runner *standin.Runner
}

// StartStandIns starts stand-ins for the pods of the test's namespace
// (existing and future); they stop when t ends, and t fails if one of them
// reported a data race. Under `go test -race` the stand-ins built from Go
// packages (the kloop agent, the samples) are built with -race too.
func (e *Env) StartStandIns(t testing.TB, images Images, opts ...StandInOption) *StandIns {
	t.Helper()
	o := standin.Options{
		Client:      e.Client,
		Dynamic:     e.Dynamic,
		Config:      e.Config,
		Namespace:   e.Namespace,
		Images:      images,
		Dir:         filepath.Join(e.Cluster.runDir, "standins", e.Namespace),
		BuildDir:    filepath.Join(e.Cluster.runDir, "bin"),
		RecordDir:   e.Cluster.runDir,
		DialCommand: e.Cluster.dialCommand,
		Logf:        t.Logf,
		Race:        racecheck.Enabled,
	}
	for _, opt := range opts {
		opt(&o)
	}
	r, err := standin.Start(context.Background(), o)
	if err != nil {
		t.Fatalf("start stand-ins: %v", err)
	}
	// The first of t's cleanup and the cluster's teardown (an interrupt)
	// stops the stand-ins and reports their races: to t when it is still
	// there, to stderr otherwise.
	var once sync.Once
	stop := func(report func(error)) {
		once.Do(func() {
			if err := r.Stop(); err != nil {
				report(err)
			}
		})
	}
	// Logf must not be called after t ends; Stop first.
	t.Cleanup(func() { stop(func(err error) { t.Error(err) }) })
	e.Cluster.onTeardown(func() { stop(func(err error) { fmt.Fprintf(os.Stderr, "sandbox: %v\n", err) }) })
	return &StandIns{env: e, runner: r}
}

// Network is the networking in use.
func (s *StandIns) Network() Network { return s.runner.Network() }

// Processes lists the running stand-ins.
func (s *StandIns) Processes() []*Process { return s.runner.Processes() }

// Wait waits until the stand-in of container in pod runs and all its
// ports accept connections, and returns it; it fails t with the reason and
// the stand-in's log otherwise.
func (s *StandIns) Wait(t testing.TB, pod, container string) *Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	p, err := s.runner.Wait(ctx, s.env.Namespace, pod, container)
	if err != nil {
		t.Fatalf("stand-in %s/%s: %v%s", pod, container, err, s.env.Cluster.health())
	}
	return p
}
