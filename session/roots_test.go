package session

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// rootTest is a manager with the fake intercept engine materializing a
// Secret volume, a private runtime directory and a state directory.
type rootTest struct {
	engine     *fakeInterceptEngine
	runtimeDir string
	stateDir   string
	store      *Store
	workspace  string
}

func newRootTest(t *testing.T) *rootTest {
	t.Helper()
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "kubeconfig"))
	rt := &rootTest{
		engine:     &fakeInterceptEngine{materialize: true},
		runtimeDir: t.TempDir(), // 0700, ours: a private runtime directory
		stateDir:   t.TempDir(),
		workspace:  t.TempDir(),
	}
	// t.TempDir's directories are open to others (0777 less the umask).
	if err := os.Chmod(rt.runtimeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	rt.store = NewStore(filepath.Join(rt.stateDir, "state.json"))
	return rt
}

// base is where the roots are expected: under the runtime directory, or the
// state directory's when that is not private.
func (rt *rootTest) base(t *testing.T) string {
	t.Helper()
	if checkPrivate(rt.runtimeDir) != nil {
		return filepath.Join(rt.stateDir, "root")
	}
	return filepath.Join(rt.runtimeDir, "kloop", "root")
}

func (rt *rootTest) manager(t *testing.T) *Manager {
	t.Helper()
	return NewManager(Options{Store: rt.store, Engines: Engines{Intercepts: rt.engine}, RuntimeDir: rt.runtimeDir})
}

func (rt *rootTest) intercept(t *testing.T, s *Session) string {
	t.Helper()
	if _, err := s.Intercept(t.Context(), InterceptArgs{Workload: "deployment/orders"}, NoProgress{}); err != nil {
		t.Fatal(err)
	}
	root := rt.engine.lastRoot()
	if base := rt.base(t); !strings.HasPrefix(root, base+string(filepath.Separator)) {
		t.Fatalf("root %s is not under %s", root, base)
	}
	if _, err := os.Stat(filepath.Join(root, "etc", "secrets", "password")); err != nil {
		t.Fatalf("the fake engine did not materialize the volume: %v", err)
	}
	return root
}

// noFiles fails when anything but directories is left under dir.
func noFiles(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == dir {
			return nil
		}
		if err != nil {
			return err
		}
		if !d.IsDir() {
			t.Errorf("%s is left behind", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestInterceptRootIsPrivateInTheRuntimeDirAndRemovedOnLeave(t *testing.T) {
	rt := newRootTest(t)
	m := rt.manager(t)
	defer m.Close(context.Background())
	s := m.Open(rt.workspace)
	root := rt.intercept(t, s)

	base := filepath.Join(rt.runtimeDir, "kloop", "root")
	if !strings.HasPrefix(root, base+string(filepath.Separator)) {
		t.Fatalf("root %s is not under the runtime directory's %s", root, base)
	}
	for d := root; d != rt.runtimeDir; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %#o, want 0700", d, fi.Mode().Perm())
		}
	}
	noFiles(t, filepath.Join(rt.stateDir, "root"))

	if err := s.Leave(t.Context(), LeaveArgs{Workload: "deployment/orders"}, NoProgress{}); err != nil {
		t.Fatal(err)
	}
	noFiles(t, rt.runtimeDir)
	if _, err := os.Stat(root); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("root %s is still there after leave (%v)", root, err)
	}
	if _, err := os.Stat(filepath.Dir(root)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the workspace's directory %s is left empty after leave (%v)", filepath.Dir(root), err)
	}
}

func TestInterceptRootRemovedOnManagerClose(t *testing.T) {
	rt := newRootTest(t)
	m := rt.manager(t)
	root := rt.intercept(t, m.Open(rt.workspace))
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	noFiles(t, rt.runtimeDir)
	if _, err := os.Stat(root); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("root %s is still there after Close (%v)", root, err)
	}
	// The intercept itself stays recorded for the next daemon to restore.
	st, err := rt.store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if ss := st.Sessions[rt.workspace]; ss == nil || len(ss.Intercepts) != 1 {
		t.Errorf("state after Close: %+v, want the intercept still recorded", st.Sessions)
	}
}

func TestInterceptRootLeftByACrashedDaemonIsRemoved(t *testing.T) {
	rt := newRootTest(t)
	crashed := rt.manager(t) // never closed: the daemon died
	root := rt.intercept(t, crashed.Open(rt.workspace))
	// An older daemon kept roots under the state directory: one left there
	// goes too.
	legacy := rootOf(filepath.Join(rt.stateDir, "root"), rt.workspace, "deployment/orders")
	if err := os.MkdirAll(legacy, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(legacy, "token"), []byte("hunter2"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := rt.store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if ss := st.Sessions[rt.workspace]; ss == nil || len(ss.Intercepts) != 1 || ss.Intercepts[0].Workload != "deployment/orders" {
		t.Fatalf("state file: %+v, want the intercept listed", st.Sessions)
	}

	next := rt.manager(t)
	defer next.Close(context.Background())
	noFiles(t, rt.runtimeDir)
	noFiles(t, filepath.Join(rt.stateDir, "root"))
	if _, err := os.Stat(root); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("root %s left by the crashed daemon is still there (%v)", root, err)
	}
	// The workload is restored (in the background) and forgotten.
	eventually(t, "the intercept forgotten", func() bool {
		st, err := rt.store.Load()
		return err == nil && st.Sessions[rt.workspace] == nil
	})
}

// An intercept of traffic none changed nothing in the cluster: the next
// daemon removes its files and forgets it, and asks the cluster to restore
// only the intercept that did change it.
func TestCrashedDaemonsNoTrafficInterceptIsNotRestoredInTheCluster(t *testing.T) {
	rt := newRootTest(t)
	crashed := rt.manager(t) // never closed: the daemon died
	s := crashed.Open(rt.workspace)
	steal := rt.intercept(t, s)
	if _, err := s.Intercept(t.Context(), InterceptArgs{Workload: "deployment/users", Traffic: "none"}, NoProgress{}); err != nil {
		t.Fatal(err)
	}
	none := rt.engine.lastRoot()
	st, err := rt.store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if ss := st.Sessions[rt.workspace]; ss == nil || len(ss.Intercepts) != 2 || ss.Intercepts[1].Traffic != TrafficNone {
		t.Fatalf("state file: %+v, want both intercepts, users recorded as traffic none", st.Sessions)
	}

	next := rt.manager(t)
	defer next.Close(context.Background())
	for _, root := range []string{steal, none} {
		if _, err := os.Stat(root); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("root %s left by the crashed daemon is still there (%v)", root, err)
		}
	}
	eventually(t, "both intercepts forgotten", func() bool {
		st, err := rt.store.Load()
		return err == nil && st.Sessions[rt.workspace] == nil
	})
	rt.engine.mu.Lock()
	restored := rt.engine.restored
	rt.engine.mu.Unlock()
	if !slices.Equal(restored, []string{"deployment/orders"}) {
		t.Errorf("restored in the cluster: %q; want only deployment/orders (users, traffic none, changed nothing there)", restored)
	}
}

func TestInterceptRootRemovedWhenTheInterceptFails(t *testing.T) {
	t.Run("engine", func(t *testing.T) {
		rt := newRootTest(t)
		rt.engine.fail = errors.New("rollout failed")
		m := rt.manager(t)
		defer m.Close(context.Background())
		_, err := m.Open(rt.workspace).Intercept(t.Context(), InterceptArgs{Workload: "deployment/orders"}, NoProgress{})
		if err == nil || !strings.Contains(err.Error(), "rollout failed") {
			t.Fatalf("Intercept: %v, want the engine's error", err)
		}
		if root := rt.engine.lastRoot(); !strings.HasPrefix(root, rt.base(t)+string(filepath.Separator)) {
			t.Fatalf("the engine was asked for root %q, want one under %s", root, rt.base(t))
		}
		noFiles(t, rt.runtimeDir)
	})
	t.Run("program", func(t *testing.T) {
		rt := newRootTest(t)
		m := rt.manager(t)
		defer m.Close(context.Background())
		// The program does not build: the intercept is undone.
		_, err := m.Open(rt.workspace).Intercept(t.Context(), InterceptArgs{Workload: "deployment/orders", Port: "18080", Program: "./missing"}, NoProgress{})
		var se *StartError
		if !errors.As(err, &se) {
			t.Fatalf("Intercept: %v, want a StartError", err)
		}
		if root := rt.engine.lastRoot(); !strings.HasPrefix(root, rt.base(t)+string(filepath.Separator)) {
			t.Fatalf("the engine was asked for root %q, want one under %s", root, rt.base(t))
		}
		noFiles(t, rt.runtimeDir)
	})
}

func TestInterceptRootFallsBackToAPrivateStateDir(t *testing.T) {
	for name, runtimeDir := range map[string]func(t *testing.T) string{
		"unset": func(*testing.T) string { return "" },
		"open to others": func(t *testing.T) string {
			d := t.TempDir()
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
			return d
		},
		"missing": func(t *testing.T) string { return filepath.Join(t.TempDir(), "gone") },
	} {
		t.Run(name, func(t *testing.T) {
			rt := newRootTest(t)
			rt.runtimeDir = runtimeDir(t)
			m := rt.manager(t)
			defer m.Close(context.Background())
			s := m.Open(rt.workspace)
			root := rt.intercept(t, s)
			base := filepath.Join(rt.stateDir, "root")
			if !strings.HasPrefix(root, base+string(filepath.Separator)) {
				t.Fatalf("root %s, want it under %s", root, base)
			}
			for _, d := range []string{base, filepath.Dir(root), root} {
				if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
					t.Errorf("%s: %v, %v: want a 0700 directory", d, fi.Mode(), err)
				}
			}
			if err := s.Leave(t.Context(), LeaveArgs{Workload: "deployment/orders"}, NoProgress{}); err != nil {
				t.Fatal(err)
			}
			noFiles(t, base)
		})
	}
}
