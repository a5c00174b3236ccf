package run

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) add(s Stream, line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s.String()+": "+line)
}

func (l *lineLog) has(want string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.lines, want)
}

func TestStartServesWithEnvOutputAndStops(t *testing.T) {
	ctx := context.Background()
	port := freePort(t)
	var out lineLog
	var written strings.Builder
	spec := helperSpec(t, "serve", port, "FOO=from-the-pod")
	toWriter := WriteLines(&written)
	spec.OnLine = func(s Stream, line string) { out.add(s, line); toWriter(s, line) }
	var hooked Started
	spec.OnStart = func(s Started) error {
		hooked = s
		// The hook runs before readiness: the port must not answer yet or
		// the daemon could not persist the pid before traffic flows.
		return nil
	}
	p, err := Start(ctx, spec)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	info := p.Info()
	if hooked != info || info.Pid <= 0 || info.Pgid != info.Pid || info.StartTime == 0 {
		t.Errorf("hook got %+v, process info %+v: want the same pid, its own group and a start time", hooked, info)
	}
	if st, _ := ProcStartTime(info.Pid); st != info.StartTime {
		t.Errorf("ProcStartTime = %d, want %d", st, info.StartTime)
	}
	body, err := get(t, port, "/")
	if err != nil || body != fmt.Sprintf("pid %d", info.Pid) {
		t.Errorf("GET / = %q, %v; want an answer from pid %d", body, err, info.Pid)
	}
	waitFor(t, "output lines", func() bool {
		return out.has("stdout: env FOO=from-the-pod") && out.has(fmt.Sprintf("stderr: listening on %d", port))
	})

	if err := p.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Stop returned")
	}
	if !gone(info.Pid) {
		t.Errorf("pid %d still running after Stop", info.Pid)
	}
	// A graceful program exits on SIGTERM by itself, cleanly.
	if e := p.Exited(); e.State.ExitCode() != 0 {
		t.Errorf("exit after SIGTERM: %v", e)
	}
	waitFor(t, "shutdown line", func() bool { return out.has("stdout: shutting down") })
	out.mu.Lock()
	if !strings.Contains(written.String(), "env FOO=from-the-pod\n") || !strings.HasSuffix(written.String(), "shutting down\n") {
		t.Errorf("WriteLines wrote %q", written.String())
	}
	out.mu.Unlock()
	if err := CheckPortFree(port); err != nil {
		t.Errorf("port still taken after stop: %v", err)
	}
	if err := p.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStartFaults(t *testing.T) {
	tests := []struct {
		name  string
		mode  string
		path  string
		check func(t *testing.T, err error, port int)
	}{
		{
			name: "exits at once",
			mode: "exit",
			check: func(t *testing.T, err error, port int) {
				var e *ExitError
				if !errors.As(err, &e) {
					t.Fatalf("error = %v, want *ExitError", err)
				}
				if !e.Early || e.State.ExitCode() != 3 {
					t.Errorf("early=%v status=%v, want early exit with status 3", e.Early, e.State)
				}
				if !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "DATABASE_URL is not set") {
					t.Errorf("message %q lacks the status or the last stderr line", err)
				}
			},
		},
		{
			name: "never opens its port",
			mode: "sleep",
			check: func(t *testing.T, err error, port int) {
				var e *NotReadyError
				if !errors.As(err, &e) {
					t.Fatalf("error = %v, want *NotReadyError", err)
				}
				if !strings.Contains(err.Error(), fmt.Sprintf("open port %d", port)) || !strings.Contains(err.Error(), "stopped") {
					t.Errorf("message %q does not name the port or say it stopped the program", err)
				}
				if !slices.Contains(e.Tail, "doing something else than listening") {
					t.Errorf("tail = %q, want the program's output", e.Tail)
				}
			},
		},
		{
			// As a Kubernetes httpGet probe: a 404 is not ready.
			name: "HTTP readiness path answering 404",
			mode: "serve",
			path: "/missing",
			check: func(t *testing.T, err error, port int) {
				if !strings.Contains(fmt.Sprint(err), fmt.Sprintf("answer HTTP on http://127.0.0.1:%d/missing", port)) {
					t.Errorf("error = %v, want not-ready on the HTTP path", err)
				}
			},
		},
		{
			name: "HTTP readiness path answering 5xx",
			mode: "unhealthy",
			path: "/healthz",
			check: func(t *testing.T, err error, port int) {
				if !strings.Contains(fmt.Sprint(err), fmt.Sprintf("answer HTTP on http://127.0.0.1:%d/healthz", port)) {
					t.Errorf("error = %v, want not-ready on the HTTP path", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := freePort(t)
			spec := helperSpec(t, tt.mode, port)
			spec.ReadyPath = tt.path
			spec.ReadyTimeout = 2 * time.Second
			var pid int
			spec.OnStart = func(s Started) error { pid = s.Pid; return nil }
			p, err := Start(context.Background(), spec)
			if err == nil {
				p.Stop(context.Background())
				t.Fatal("Start succeeded")
			}
			tt.check(t, err, port)
			if pid == 0 || !gone(pid) {
				t.Errorf("pid %d left running after a failed start", pid)
			}
			if err := CheckPortFree(port); err != nil {
				t.Errorf("port left taken: %v", err)
			}
		})
	}
}

func TestReadyPathAcceptsASuccessfulAnswer(t *testing.T) {
	port := freePort(t)
	spec := helperSpec(t, "serve", port)
	spec.ReadyPath = "/"
	p, err := Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer p.Stop(context.Background())
	if _, err := get(t, port, "/"); err != nil {
		t.Errorf("not serving after readiness: %v", err)
	}
}

func TestStartRefusesTakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	spec := helperSpec(t, "serve", port)
	started := false
	spec.OnStart = func(Started) error { started = true; return nil }
	_, err = Start(context.Background(), spec)
	var e *PortInUseError
	if !errors.As(err, &e) {
		t.Fatalf("error = %v, want *PortInUseError", err)
	}
	if started {
		t.Error("the program was started although its port was taken")
	}
	msg := err.Error()
	for _, want := range []string{strconv.Itoa(port), fmt.Sprintf("pid %d", os.Getpid()), "--port"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

func TestStopKillsWholeGroupAndEscalates(t *testing.T) {
	var out lineLog
	// The shell ignores SIGTERM and its background child does too: only
	// SIGKILL of the group ends them.
	spec := Spec{
		Argv:      []string{"sh", "-c", "trap '' TERM; sleep 1000 & echo child $!; while :; do sleep 1; done"},
		StopGrace: 300 * time.Millisecond,
		OnLine:    out.add,
	}
	p, err := Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	var child int
	waitFor(t, "child pid", func() bool {
		out.mu.Lock()
		defer out.mu.Unlock()
		for _, l := range out.lines {
			if n, ok := strings.CutPrefix(l, "stdout: child "); ok {
				child, _ = strconv.Atoi(n)
				return true
			}
		}
		return false
	})
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if ws := p.Exited().State.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("leader ended with %v, want SIGKILL after the grace period", p.Exited().State)
	}
	waitFor(t, "background child gone", func() bool { return gone(child) })
}

func TestLeaderExitTakesItsChildren(t *testing.T) {
	var out lineLog
	p, err := Start(context.Background(), Spec{Argv: []string{"sh", "-c", "sleep 1000 & echo child $!; exit 4"}, OnLine: out.add, StopGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if code := p.Exited().State.ExitCode(); code != 4 {
		t.Errorf("exit code %d, want 4", code)
	}
	var child int
	for _, l := range out.lines {
		if n, ok := strings.CutPrefix(l, "stdout: child "); ok {
			child, _ = strconv.Atoi(n)
		}
	}
	if child == 0 || !gone(child) {
		t.Errorf("child %d outlived its group's leader", child)
	}
}

func TestKillOrphanAfterDaemonCrash(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	daemon := exec.Command(exe)
	daemon.Env = append(os.Environ(), "KLOOP_RUN_HELPER=daemon")
	daemon.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, _ := daemon.StdoutPipe()
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	var info Started
	if err := json.NewDecoder(bufio.NewReader(stdout)).Decode(&info); err != nil {
		daemon.Process.Kill()
		t.Fatalf("read started process from fake daemon: %v", err)
	}
	// The daemon dies without cleaning up: its program group lives on.
	daemon.Process.Kill()
	daemon.Wait()
	members := liveGroupMembers(info.Pgid)
	if len(members) != 2 {
		t.Fatalf("orphan group %d has %d live members, want the shell's two sleeps", info.Pgid, len(members))
	}
	t.Cleanup(func() { syscall.Kill(-info.Pgid, syscall.SIGKILL) })

	ctx := context.Background()
	if killed, err := KillOrphan(ctx, info.Pid, info.Pgid, info.StartTime+1, time.Second); killed || err != nil {
		t.Errorf("with another start time: killed=%v err=%v, want it left alone", killed, err)
	}
	if len(liveGroupMembers(info.Pgid)) != 2 {
		t.Fatal("a process that is not provably ours was killed")
	}
	killed, err := KillOrphan(ctx, info.Pid, info.Pgid, info.StartTime, time.Second)
	if !killed || err != nil {
		t.Fatalf("KillOrphan = %v, %v; want killed", killed, err)
	}
	for _, m := range members {
		if !gone(m.pid) {
			t.Errorf("orphan pid %d still running", m.pid)
		}
	}
	if killed, err := KillOrphan(ctx, info.Pid, info.Pgid, info.StartTime, time.Second); killed || err != nil {
		t.Errorf("second KillOrphan = %v, %v; want nothing to do", killed, err)
	}
}

func TestParseProcStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "4242 (my (odd) prog) S 1 4240 4240 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	st, err := parseProcStat(4242, []byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.state != 'S' || st.pgrp != 4240 || st.startTime != 987654 {
		t.Errorf("parsed %+v", st)
	}
	if _, err := parseProcStat(1, []byte("1 (x) S 0")); err == nil {
		t.Error("short stat line accepted")
	}
}

func TestAcceptQueueLen(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if n, ok := AcceptQueueLen(port); !ok || n != 0 {
		t.Fatalf("fresh listener: %d, %v", n, ok)
	}
	for range 3 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	if n, _ := AcceptQueueLen(port); n != 3 {
		t.Errorf("queue = %d with three connections not accepted, want 3", n)
	}
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n, _ := AcceptQueueLen(port); n != 2 {
		t.Errorf("queue = %d after one accept, want 2", n)
	}
	if _, ok := AcceptQueueLen(freePort(t)); ok {
		t.Error("found a listener on a free port")
	}
}
