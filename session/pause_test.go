package session

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// The debugger's stops and resumes reach the intercept's agents in order,
// each once, and the status says the Service is answered by the pods while
// the process is paused, with the hold .kloop.yaml sets; ending the debug
// session resumes.
func TestDebugPauseReachesTheAgentsAndTheStatus(t *testing.T) {
	s, f, dir := newDebugSession(t)
	if err := os.WriteFile(filepath.Join(dir, ".kloop.yaml"), []byte("intercepts:\n- workload: orders\n  pauseHold: 500ms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var dbg fakeDebugger
	d, err := s.Debug(t.Context(), debugArgs(dir, "orders"), dbg.hooks(), NoProgress{})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.toPods = 3
	f.mu.Unlock()
	waitPauses := func(want ...bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Equal(f.pausesSent(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("the agents were told %v; want %v", f.pausesSent(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	d.SetPaused(true)
	d.SetPaused(true) // a second stop (a step) while paused changes nothing
	waitPauses(true)
	f.mu.Lock()
	hold := f.holds[0]
	f.mu.Unlock()
	if hold != 500*time.Millisecond {
		t.Errorf("the agents were asked to hold requests %s; want the 500ms of .kloop.yaml", hold)
	}
	s.refreshIntercepts()
	if in := s.Status().Intercepts; len(in) != 1 || !in[0].Paused || in[0].PausedToPods != 3 || in[0].State != "paused: 3 requests sent to the cluster's pods" {
		t.Errorf("status while paused: %+v", in)
	}
	d.SetPaused(false)
	waitPauses(true, false)
	s.refreshIntercepts()
	// Pods: the fake's one pod has its tunnel up.
	if in := s.Status().Intercepts; len(in) != 1 || in[0].Paused || in[0].State != "intercepted" || in[0].Pods != 1 {
		t.Errorf("status after the resume (want intercepted, 1 pod): %+v", in)
	}
	d.SetPaused(true)
	waitPauses(true, false, true)
	if err := d.End(t.Context(), NoProgress{}); err != nil {
		t.Fatal(err)
	}
	waitPauses(true, false, true, false)
}

func TestPausedState(t *testing.T) {
	for n, want := range map[int64]string{
		0: "paused: 0 requests sent to the cluster's pods",
		1: "paused: 1 request sent to the cluster's pods",
		7: "paused: 7 requests sent to the cluster's pods",
	} {
		if got := pausedState(n); got != want {
			t.Errorf("pausedState(%d) = %q; want %q", n, got, want)
		}
	}
}
