package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeEngine is a ClaimEngine over an in-memory pool of one cluster.
type fakeEngine struct {
	mu       sync.Mutex
	held     map[string]string // slot -> holder
	renewErr error
	relErr   error
	renewals int
	releases int
	adopts   int
}

func newFakeEngine() *fakeEngine { return &fakeEngine{held: map[string]string{}} }

func (f *fakeEngine) Plan(_ context.Context, req ClaimRequest) (*ClaimPlan, error) {
	pool := req.Pool
	if pool == "" {
		pool = "default"
	}
	return &ClaimPlan{Workspace: req.Workspace, Pool: pool, For: time.Hour, Engine: json.RawMessage(`{"cluster":"fake"}`)}, nil
}

func (f *fakeEngine) grant(pool, slot string) *Grant {
	return &Grant{
		Status: ClaimStatus{Pool: pool, Slot: slot, Namespace: slot, Holder: "me@here", Until: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), Kubeconfig: "/k/" + slot},
		Handle: slot,
		Record: json.RawMessage(fmt.Sprintf(`{"slot":%q}`, slot)),
	}
}

func (f *fakeEngine) Claim(_ context.Context, plan *ClaimPlan, p Progress) (*Grant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	slot := plan.Pool + "-1"
	if h, ok := f.held[slot]; ok {
		return nil, fmt.Errorf("pool %s is full: %s held by %s", plan.Pool, slot, h)
	}
	f.held[slot] = "me@here"
	p.Report("claimed slot "+slot, -1)
	return f.grant(plan.Pool, slot), nil
}

func (f *fakeEngine) Renew(_ context.Context, g *Grant) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.renewals++
	if f.held[g.Handle.(string)] != "me@here" {
		return fmt.Errorf("%w: taken over", ErrClaimLost)
	}
	return f.renewErr
}

func (f *fakeEngine) Release(_ context.Context, g *Grant, _ Progress) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.relErr != nil {
		return f.relErr
	}
	slot := g.Handle.(string)
	if f.held[slot] != "me@here" {
		return fmt.Errorf("%w: %s is held by %s", ErrClaimLost, slot, f.held[slot])
	}
	delete(f.held, slot)
	f.releases++
	return nil
}

func (f *fakeEngine) Adopt(_ context.Context, plan *ClaimPlan, _ json.RawMessage) (*Grant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adopts++
	slot := plan.Pool + "-1"
	if f.held[slot] != "me@here" {
		return nil, fmt.Errorf("%w: not held", ErrClaimLost)
	}
	return f.grant(plan.Pool, slot), nil
}

func (f *fakeEngine) RenewInterval() time.Duration { return 5 * time.Millisecond }

func (f *fakeEngine) count(n *int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *n
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after a minute", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func newTestManager(t *testing.T, store *Store, engine ClaimEngine) *Manager {
	t.Helper()
	m := NewManager(Options{Store: store, Engines: Engines{Claims: engine}})
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

func TestClaimIsRecordedRenewedAndReleased(t *testing.T) {
	store := NewStore(filepath.Join(t.TempDir(), "state.json"))
	f := newFakeEngine()
	m := newTestManager(t, store, f)
	s := m.Open("/ws")
	var notes []Status
	var mu sync.Mutex
	s.Subscribe(func(st Status) { mu.Lock(); notes = append(notes, st); mu.Unlock() })

	cl, err := s.Claim(context.Background(), ClaimArgs{Pool: "dev"}, NoProgress{})
	if err != nil {
		t.Fatal(err)
	}
	if cl.Slot != "dev-1" || s.Status().Claim == nil || !m.Holds() {
		t.Fatalf("claim = %+v, status %+v", cl, s.Status().Claim)
	}
	mu.Lock()
	if len(notes) == 0 || notes[len(notes)-1].Claim == nil {
		t.Errorf("no status notification with the claim: %+v", notes)
	}
	mu.Unlock()
	st, _ := store.Load()
	if ss := st.Sessions["/ws"]; ss == nil || ss.ClaimPhase != phaseHeld || ss.Claim.Slot != "dev-1" || ss.ClaimPlan.Pool != "dev" || len(ss.ClaimRecord) == 0 {
		t.Fatalf("state = %+v", st.Sessions["/ws"])
	}
	eventually(t, "renewals", func() bool { return f.count(&f.renewals) >= 3 })

	if _, err := s.Claim(context.Background(), ClaimArgs{}, NoProgress{}); err == nil {
		t.Fatal("second claim succeeded")
	}

	// A failing release keeps the claim, and keeps renewing it.
	f.mu.Lock()
	f.relErr = errors.New("cluster unreachable")
	f.mu.Unlock()
	if err := s.Release(context.Background(), ReleaseArgs{}, NoProgress{}); err == nil {
		t.Fatal("release succeeded despite the engine's error")
	}
	if s.Status().Claim == nil {
		t.Fatal("a failed release dropped the claim")
	}
	if st, _ := store.Load(); st.Sessions["/ws"] == nil || st.Sessions["/ws"].ClaimPhase != phaseHeld {
		t.Fatalf("after a failed release state = %+v", st.Sessions["/ws"])
	}
	n := f.count(&f.renewals)
	eventually(t, "renewals after the failed release", func() bool { return f.count(&f.renewals) > n })
	f.mu.Lock()
	f.relErr = nil
	f.mu.Unlock()

	if err := s.Release(context.Background(), ReleaseArgs{}, NoProgress{}); err != nil {
		t.Fatal(err)
	}
	if s.Status().Claim != nil || m.Holds() {
		t.Fatal("status still shows the claim")
	}
	if st, _ := store.Load(); len(st.Sessions) != 0 {
		t.Fatalf("state after release = %+v", st.Sessions)
	}
	if err := s.Release(context.Background(), ReleaseArgs{}, NoProgress{}); err == nil {
		t.Fatal("release of nothing succeeded")
	}
}

func TestRenewalReleasesAnEndedClaimAndDropsALostOne(t *testing.T) {
	store := NewStore(filepath.Join(t.TempDir(), "state.json"))
	f := newFakeEngine()
	m := newTestManager(t, store, f)
	s := m.Open("/ws")

	if _, err := s.Claim(context.Background(), ClaimArgs{Pool: "dev"}, NoProgress{}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.renewErr = fmt.Errorf("%w: time is up", ErrClaimEnded)
	f.mu.Unlock()
	eventually(t, "the ended claim is released", func() bool { return s.Status().Claim == nil })
	if f.count(&f.releases) != 1 {
		t.Errorf("%d releases, want 1", f.releases)
	}
	if st, _ := store.Load(); len(st.Sessions) != 0 {
		t.Fatalf("state = %+v", st.Sessions)
	}

	f.mu.Lock()
	f.renewErr = nil
	f.mu.Unlock()
	if _, err := s.Claim(context.Background(), ClaimArgs{Pool: "dev"}, NoProgress{}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.held["dev-1"] = "thief@there"
	f.mu.Unlock()
	eventually(t, "the lost claim is dropped", func() bool { return s.Status().Claim == nil })
	if f.count(&f.releases) != 1 {
		t.Errorf("a lost claim was released")
	}
	if st, _ := store.Load(); len(st.Sessions) != 0 {
		t.Fatalf("state = %+v", st.Sessions)
	}
}

func TestRestartedManagerAdoptsRecordedClaims(t *testing.T) {
	dir := t.TempDir()
	f := newFakeEngine()
	store := NewStore(filepath.Join(dir, "state.json"))

	// A daemon claims for three workspaces, then dies (no Close: renewal
	// just stops when the test's manager is replaced).
	first := NewManager(Options{Store: store, Engines: Engines{Claims: f}})
	for _, ws := range []string{"/held", "/lost", "/releasing"} {
		if _, err := first.Open(ws).Claim(context.Background(), ClaimArgs{Pool: ws[1:]}, NoProgress{}); err != nil {
			t.Fatal(err)
		}
	}
	first.Close(context.Background())
	// It was releasing one when it died, and another was taken over.
	if err := store.update(func(st *State) { st.Sessions["/releasing"].ClaimPhase = phaseReleasing }); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.held["lost-1"] = "thief@there"
	f.mu.Unlock()
	// And it died while claiming for a fourth, after the lease was made.
	plan, _ := f.Plan(context.Background(), ClaimRequest{Workspace: "/claiming", Pool: "claiming"})
	if err := store.update(func(st *State) {
		ss := st.session("/claiming")
		ss.ClaimPhase, ss.ClaimPlan = phaseClaiming, plan
	}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.held["claiming-1"] = "me@here"
	f.mu.Unlock()

	m := newTestManager(t, store, f)
	if st := m.Open("/held").Status(); st.Claim == nil || st.Claim.Slot != "held-1" {
		t.Fatalf("restarted daemon does not show the held claim: %+v", st.Claim)
	}
	if !m.Holds() {
		t.Fatal("restarted daemon holding claims would exit on idle")
	}
	eventually(t, "the lost claim is dropped", func() bool { return m.Open("/lost").Status().Claim == nil })
	eventually(t, "the interrupted release is finished", func() bool { return m.Open("/releasing").Status().Claim == nil })
	eventually(t, "the interrupted claim is adopted", func() bool {
		c := m.Open("/claiming").Status().Claim
		return c != nil && c.Slot == "claiming-1"
	})
	f.mu.Lock()
	_, stillHeld := f.held["releasing-1"]
	f.mu.Unlock()
	if stillHeld {
		t.Error("the interrupted release left the slot held")
	}
	n := f.count(&f.renewals)
	eventually(t, "the adopted claim is renewed", func() bool { return f.count(&f.renewals) > n+2 })
	st, _ := store.Load()
	var roots []string
	for root, ss := range st.Sessions {
		roots = append(roots, root+":"+ss.ClaimPhase)
	}
	if len(st.Sessions) != 2 || st.Sessions["/held"].ClaimPhase != phaseHeld || st.Sessions["/claiming"].ClaimPhase != phaseHeld {
		t.Errorf("state after adoption = %v", roots)
	}
	if err := m.Open("/held").Release(context.Background(), ReleaseArgs{}, NoProgress{}); err != nil {
		t.Fatalf("release of an adopted claim: %v", err)
	}
}
