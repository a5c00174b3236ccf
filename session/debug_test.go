package session

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kloop/kloop/session/relaunch"
	"github.com/kloop/kloop/session/run"
)

// fakeDebugProcess stands in for the debug adapter's Delve-backed program
// (tested with real Delve in debugadapter's end-to-end suites, test/dap and
// test/intercept); here the session's part is under test: the build, the
// relaunch loop, the intercept it makes or joins, and the env it layers.
type fakeDebugProcess struct {
	spec    DebugProcessSpec
	onEvent func(run.Event)

	mu      sync.Mutex
	starts  int
	running bool
	ln      net.Listener
}

func (p *fakeDebugProcess) Start(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starts++
	p.running = true
	p.onEvent(run.Event{State: run.StateRunning, Process: run.Started{Pid: os.Getpid()}})
	return nil
}

func (p *fakeDebugProcess) Stop(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running = false
	if p.ln != nil {
		p.ln.Close()
	}
	return nil
}

func (p *fakeDebugProcess) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running
}

type fakeDebugger struct {
	mu    sync.Mutex
	procs []*fakeDebugProcess
}

func (d *fakeDebugger) hooks() DebugHooks {
	return DebugHooks{NewProcess: func(spec DebugProcessSpec, onEvent func(run.Event)) relaunch.Program {
		p := &fakeDebugProcess{spec: spec, onEvent: onEvent}
		d.mu.Lock()
		d.procs = append(d.procs, p)
		d.mu.Unlock()
		return p
	}}
}

func (d *fakeDebugger) last(t *testing.T) *fakeDebugProcess {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.procs) == 0 {
		t.Fatal("no debug process was made")
	}
	return d.procs[len(d.procs)-1]
}

// helloProgram copies the small main package of session/build's tests.
func helloProgram(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"go.mod", "main.go"} {
		data, err := os.ReadFile(filepath.Join("build", "testdata", "hello", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func newDebugSession(t *testing.T) (*Session, *fakeInterceptEngine, string) {
	t.Helper()
	f := &fakeInterceptEngine{}
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "kubeconfig"))
	store := NewStore(filepath.Join(t.TempDir(), "state.json"))
	m := NewManager(Options{Store: store, Engines: Engines{Intercepts: f}})
	t.Cleanup(func() { m.Close(context.Background()) })
	dir := helloProgram(t)
	return m.Open(dir), f, dir
}

func debugArgs(dir, workload string) DebugArgs {
	return DebugArgs{
		Workload: workload, Port: "8080:18080", Dir: dir, Package: ".", Display: ".", Cwd: dir,
		Env: map[string]string{"FROM_LAUNCH": "launch", "SHARED": "launch"}, BaseEnv: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "SHARED=editor"},
	}
}

func TestDebugLocally(t *testing.T) {
	s, f, dir := newDebugSession(t)
	var dbg fakeDebugger
	d, err := s.Debug(t.Context(), debugArgs(dir, ""), dbg.hooks(), NoProgress{})
	if err != nil {
		t.Fatal(err)
	}
	p := dbg.last(t)
	if f.count() != 0 || d.Workload() != "" {
		t.Errorf("a local debug session made %d intercepts (workload %q)", f.count(), d.Workload())
	}
	if p.starts != 1 || !strings.HasPrefix(filepath.Base(p.spec.Binary), "debug-") || p.spec.Dir != dir {
		t.Errorf("debug process %+v after %d starts", p.spec, p.starts)
	}
	if !slices.Contains(p.spec.Env, "FROM_LAUNCH=launch") {
		t.Errorf("the launch configuration's env is missing: %v", p.spec.Env)
	}
	if st := s.Status(); st.Process == nil || !st.Process.Debug || st.Process.State != "running" || st.LastBuild == nil || !st.LastBuild.OK {
		t.Errorf("status while debugging: process %+v, build %+v", st.Process, st.LastBuild)
	}
	// An explicit relaunch restarts the process even though nothing changed.
	st, err := d.Relaunch(t.Context())
	if err != nil || st.Relaunches != 1 || p.starts != 2 {
		t.Errorf("relaunch: %+v, %v after %d starts", st, err, p.starts)
	}
	// A broken build: the process is kept, the status says why.
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { undefinedCall() }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err = d.Relaunch(t.Context())
	if err != nil || st.State != relaunch.StateBuildFailed || !p.Running() || p.starts != 2 {
		t.Errorf("relaunch of a broken build: %+v, %v; running %v after %d starts", st, err, p.Running(), p.starts)
	}
	if b := s.Status().LastBuild; b == nil || b.OK || !strings.Contains(b.Error, "undefinedCall") {
		t.Errorf("status after the broken build: %+v", b)
	}
	if err := d.End(t.Context(), NoProgress{}); err != nil {
		t.Fatal(err)
	}
	if p.Running() || s.Status().Holds() {
		t.Errorf("after End: running %v, status %+v", p.Running(), s.Status())
	}
}

func TestDebugMakesAndLeavesTheIntercept(t *testing.T) {
	s, f, dir := newDebugSession(t)
	var dbg fakeDebugger
	d, err := s.Debug(t.Context(), debugArgs(dir, "orders"), dbg.hooks(), NoProgress{})
	if err != nil {
		t.Fatal(err)
	}
	if f.count() != 1 || d.Workload() != "deployment/orders" || dbg.last(t).spec.Port != 18080 {
		t.Fatalf("debug of orders: %d intercepts, workload %q, port %d", f.count(), d.Workload(), dbg.last(t).spec.Port)
	}
	if err := d.End(t.Context(), NoProgress{}); err != nil {
		t.Fatal(err)
	}
	if in := s.Status().Intercepts; len(in) != 0 {
		t.Errorf("the intercept the debug session made outlived it: %+v", in)
	}
}

// TestDebugJoinsTheWorkspacesIntercept: a debug session on a workload the
// workspace intercepts already (`kloop intercept orders --debug`) runs its
// program behind that intercept: tunneled connections reach it through the
// loop's gate; when it ends the intercept stays.
func TestDebugJoinsTheWorkspacesIntercept(t *testing.T) {
	s, f, dir := newDebugSession(t)
	if _, err := s.Intercept(t.Context(), InterceptArgs{Workload: "orders", Port: fmt.Sprintf("8080:%d", freePort(t)), Debug: true}, NoProgress{}); err != nil {
		t.Fatal(err)
	}
	var dbg fakeDebugger
	d, err := s.Debug(t.Context(), debugArgs(dir, "orders"), dbg.hooks(), NoProgress{})
	if err != nil {
		t.Fatal(err)
	}
	if f.count() != 1 {
		t.Fatalf("the debug session made a second intercept (%d)", f.count())
	}
	if _, err := s.Debug(t.Context(), debugArgs(dir, "orders"), dbg.hooks(), NoProgress{}); err == nil || !strings.Contains(err.Error(), "already being debugged") {
		t.Errorf("a second debug session of orders: %v", err)
	}
	// A tunneled connection goes to the debugged program's port.
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", dbg.last(t).spec.Port))
	if err != nil {
		t.Fatal(err)
	}
	dbg.last(t).ln = ln
	go func() {
		if c, err := ln.Accept(); err == nil {
			io.WriteString(c, "debugged\n")
			c.Close()
		}
	}()
	s.imu.Lock()
	ai := s.intercepts["deployment/orders"]
	s.imu.Unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := s.dialLocal(ctx, ai, 8080)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "debugged\n" {
		t.Errorf("tunneled connection got %q", got)
	}
	if err := d.End(t.Context(), NoProgress{}); err != nil {
		t.Fatal(err)
	}
	st := s.Status()
	if len(st.Intercepts) != 1 || ai.prog.Load() != nil {
		t.Errorf("after the joined debug session ended: intercepts %+v, program %v", st.Intercepts, ai.prog.Load())
	}
}

// TestDebugWaitsForALeaveInFlight: a debug session that starts while the
// previous one's leave is still restoring the workload must not join the
// intercept that is going away: it waits for the leave and intercepts anew.
func TestDebugWaitsForALeaveInFlight(t *testing.T) {
	s, f, dir := newDebugSession(t)
	var dbg fakeDebugger
	first, err := s.Debug(t.Context(), debugArgs(dir, "orders"), dbg.hooks(), NoProgress{})
	if err != nil {
		t.Fatal(err)
	}
	f.leaveGate, f.leaving = make(chan struct{}), make(chan struct{})
	left := make(chan error, 1)
	go func() { left <- first.End(context.Background(), NoProgress{}) }()
	<-f.leaving
	got := make(chan *DebugSession, 1)
	go func() {
		d, err := s.Debug(context.Background(), debugArgs(dir, "orders"), dbg.hooks(), NoProgress{})
		if err != nil {
			t.Error(err)
		}
		got <- d
	}()
	select {
	case d := <-got:
		t.Fatalf("debug answered %+v while the leave was in flight", d)
	case <-time.After(100 * time.Millisecond):
	}
	close(f.leaveGate)
	if err := <-left; err != nil {
		t.Fatal(err)
	}
	if d := <-got; d == nil || f.count() != 2 {
		t.Fatalf("debug after the leave: %+v after %d engine intercepts; want a new one", d, f.count())
	}
}

// freePort is a loopback port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestAnInterceptForDebuggingSaysWhenNoDebuggerAttaches: `kloop intercept
// --debug` (or a "& debug" lens) sends the workload's traffic here and
// waits for a debug session to run the program. With none attached after
// DebuggerWait the user is told what to start, as an event editors show
// and in the status; a debug session that joins clears it, and when that
// session ends the wait starts over.
func TestAnInterceptForDebuggingSaysWhenNoDebuggerAttaches(t *testing.T) {
	open := func(t *testing.T, wait time.Duration) (*Session, string, chan Notice) {
		t.Helper()
		t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "kubeconfig"))
		m := NewManager(Options{Store: NewStore(filepath.Join(t.TempDir(), "state.json")), Engines: Engines{Intercepts: &fakeInterceptEngine{}}, DebuggerWait: wait})
		t.Cleanup(func() { m.Close(context.Background()) })
		dir := helloProgram(t)
		s := m.Open(dir)
		notices := make(chan Notice, 4)
		t.Cleanup(s.SubscribeEvents(func(e Event) {
			if e.Notice != nil {
				notices <- *e.Notice
			}
		}))
		return s, dir, notices
	}
	intercept := func(t *testing.T, s *Session, debug bool) {
		t.Helper()
		if _, err := s.Intercept(t.Context(), InterceptArgs{Workload: "orders", Port: fmt.Sprintf("8080:%d", freePort(t)), Program: "./cmd/orders", Debug: debug}, NoProgress{}); err != nil {
			t.Fatal(err)
		}
	}
	want := "orders is intercepted for debugging but no debugger is attached: its traffic comes to this machine and nothing answers it. " +
		"Start the 'kloop' debug configuration for deployment/orders, or run the program without the debugger: kloop leave orders, then kloop intercept orders --program ./cmd/orders"

	t.Run("within the wait nothing is said", func(t *testing.T) {
		s, _, _ := open(t, time.Hour)
		intercept(t, s, true)
		if in := s.Status().Intercepts; len(in) != 1 || in[0].Notice != "" || in[0].State != "intercepted" {
			t.Errorf("status right after the intercept: %+v", in)
		}
	})

	t.Run("no debugger, then one joins, then it ends", func(t *testing.T) {
		s, dir, notices := open(t, 10*time.Millisecond)
		intercept(t, s, true)
		n := <-notices
		if n.Workload != "deployment/orders" || n.Message != want {
			t.Errorf("notice %+v\nwant message %q", n, want)
		}
		if in := s.Status().Intercepts; len(in) != 1 || in[0].Notice != want || in[0].State != "waiting for a debugger" {
			t.Errorf("status without a debugger: %+v", in)
		}
		var dbg fakeDebugger
		d, err := s.Debug(t.Context(), debugArgs(dir, "orders"), dbg.hooks(), NoProgress{})
		if err != nil {
			t.Fatal(err)
		}
		if in := s.Status().Intercepts; len(in) != 1 || in[0].Notice != "" || in[0].State != "intercepted" {
			t.Errorf("status with the debugger attached: %+v", in)
		}
		if err := d.End(t.Context(), NoProgress{}); err != nil {
			t.Fatal(err)
		}
		if n := <-notices; n.Message != want {
			t.Errorf("notice after the debug session ended: %+v", n)
		}
		if err := s.Leave(t.Context(), LeaveArgs{Workload: "orders"}, NoProgress{}); err != nil {
			t.Fatal(err)
		}
		if in := s.Status().Intercepts; len(in) != 0 {
			t.Errorf("after leave: %+v", in)
		}
	})

	t.Run("an intercept that runs no debugger waits for none", func(t *testing.T) {
		s, _, _ := open(t, 10*time.Millisecond)
		if _, err := s.Intercept(t.Context(), InterceptArgs{Workload: "orders", Port: fmt.Sprintf("8080:%d", freePort(t))}, NoProgress{}); err != nil {
			t.Fatal(err)
		}
		s.imu.Lock()
		ai := s.intercepts["deployment/orders"]
		s.imu.Unlock()
		ai.debuggerMu.Lock()
		armed := ai.debuggerTimer != nil
		ai.debuggerMu.Unlock()
		if armed {
			t.Error("an intercept without --debug waits for a debugger")
		}
	})
}
