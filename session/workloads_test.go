package session

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type workloadEngine struct{ targets []Target }

func (w *workloadEngine) Workloads(_ context.Context, t Target) (*WorkloadsResult, error) {
	w.targets = append(w.targets, t)
	return &WorkloadsResult{Namespace: t.Namespace}, nil
}

// TestWorkloadsListsTheSessionsTarget: the workloads listed are the claimed
// slot's once there is a claim, the workspace's kubeconfig context before.
func TestWorkloadsListsTheSessionsTarget(t *testing.T) {
	ws := t.TempDir()
	kc := filepath.Join(ws, "dev.kubeconfig")
	if err := os.WriteFile(filepath.Join(ws, ".kloop.yaml"), []byte("kubeconfig: dev.kubeconfig\ncontext: dev\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	we := &workloadEngine{}
	m := NewManager(Options{Store: NewStore(filepath.Join(t.TempDir(), "state.json")), Engines: Engines{Claims: newFakeEngine(), Workloads: we}})
	t.Cleanup(func() { m.Close(context.Background()) })
	s := m.Open(ws)

	if _, err := s.Workloads(t.Context(), WorkloadsArgs{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(t.Context(), ClaimArgs{Pool: "dev"}, NoProgress{}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Workloads(t.Context(), WorkloadsArgs{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{{Kubeconfig: kc, Context: "dev"}, {Kubeconfig: "/k/dev-1", Namespace: "dev-1"}}
	if len(we.targets) != 2 || we.targets[0] != want[0] || we.targets[1] != want[1] {
		t.Errorf("listed in %+v, want %+v (the kubeconfig context, then the claimed slot)", we.targets, want)
	}
	if res.Namespace != "dev-1" {
		t.Errorf("namespace %q, want the slot's", res.Namespace)
	}
}

// TestWorkloadsReportsABrokenKloopYAML: the listing needs the workspace's
// target, so a .kloop.yaml with errors is named, not guessed around.
func TestWorkloadsReportsABrokenKloopYAML(t *testing.T) {
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, ".kloop.yaml"), []byte("kubeconfig: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	we := &workloadEngine{}
	m := NewManager(Options{Engines: Engines{Workloads: we}})
	_, err := m.Open(ws).Workloads(t.Context(), WorkloadsArgs{})
	if err == nil || !strings.Contains(err.Error(), ".kloop.yaml has errors") {
		t.Errorf("err = %v; want it to name .kloop.yaml", err)
	}
	if len(we.targets) != 0 {
		t.Errorf("listed in %+v despite the broken .kloop.yaml", we.targets)
	}
}
