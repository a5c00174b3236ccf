package dap

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	godap "github.com/google/go-dap"

	"github.com/kloop/kloop/test/dapclient"
)

// TestRelaunchWhilePaused is the common case of saving while stopped at a breakpoint:
// the editor is told the old threads continued, and the new code stops next time.
func TestRelaunchWhilePaused(t *testing.T) {
	fx := newFixture(t)
	e := startEditor(t, fx.dir)
	e.SetBreakpoints(fx.main, []godap.SourceBreakpoint{{Line: fx.line(t, "reply")}})
	initializeAndLaunch(t, e, launchConfig(nil))
	addr := serverAddr(t, e, 0)
	since := e.Mark()
	inFlight := get(addr, "/?name=paused")
	waitStopped(t, e, since, fx.main, fx.line(t, "reply"))

	fx.write(t, "welcome", 5)
	newLine := fx.line(t, "reply")
	e.SetBreakpoints(fx.main, []godap.SourceBreakpoint{{Line: newLine}})
	since = e.Mark()
	e.Request("kloop/relaunch", nil)
	e.WaitEvent(since, "continued event for the old, paused threads", dapclient.EventNamed("continued"))
	if got := recv(t, inFlight, "the request that was paused"); !strings.HasPrefix(got, "error:") {
		t.Errorf("the paused request got %q; its process was replaced, so it should have failed", got)
	}
	addr = serverAddr(t, e, since)
	since = e.Mark()
	answer := get(addr, "/?name=dan")
	thread, frame := waitStopped(t, e, since, fx.main, newLine)
	if got := e.Local(frame, "greeting"); got != `"welcome dan"` {
		t.Errorf("greeting = %s", got)
	}
	e.Request("continue", godap.ContinueArguments{ThreadId: thread})
	if got := recv(t, answer, "request after relaunch"); got != "welcome dan" {
		t.Errorf("answer %q", got)
	}
	for _, ev := range []string{"terminated", "exited"} {
		if e.SawEvent(0, ev) {
			t.Errorf("%s event during relaunch", ev)
		}
	}
	e.CheckSeqs()
}

// TestSteppingAndFunctionBreakpoints checks requests the bridge only relays.
func TestSteppingAndFunctionBreakpoints(t *testing.T) {
	fx := newFixture(t)
	e := startEditor(t, fx.dir)
	e.SetFunctionBreakpoints([]godap.FunctionBreakpoint{{Name: "main.handler"}})
	initializeAndLaunch(t, e, launchConfig(nil))
	addr := serverAddr(t, e, 0)
	since := e.Mark()
	answer := get(addr, "/?name=eve")
	ev := e.WaitEvent(since, "function breakpoint", dapclient.EventNamed("stopped"))
	var stopped godap.StoppedEventBody
	must(t, json.Unmarshal(ev.Body, &stopped))
	if stopped.Reason != "function breakpoint" {
		t.Errorf("stop reason %q, want function breakpoint", stopped.Reason)
	}
	threads := e.Request("threads", nil).Decode(t).(*godap.ThreadsResponse).Body.Threads
	if len(threads) < 2 {
		t.Errorf("threads (goroutines): %d, want several", len(threads))
	}
	// Step until the greeting line has run, then read it.
	greetLine := fx.line(t, "reply")
	for i := 0; i < 10; i++ {
		since = e.Mark()
		e.Request("next", godap.NextArguments{ThreadId: stopped.ThreadId})
		e.WaitEvent(since, "step", dapclient.EventNamed("stopped"))
		st := e.Request("stackTrace", godap.StackTraceArguments{ThreadId: stopped.ThreadId, Levels: 1}).Decode(t).(*godap.StackTraceResponse)
		if st.Body.StackFrames[0].Line == greetLine {
			if got := e.Local(st.Body.StackFrames[0].Id, "greeting"); got != `"hello eve"` {
				t.Errorf("greeting after stepping = %s", got)
			}
			break
		}
		if i == 9 {
			t.Fatalf("stepping never reached line %d", greetLine)
		}
	}
	e.Request("continue", godap.ContinueArguments{ThreadId: stopped.ThreadId})
	if got := recv(t, answer, "request"); got != "hello eve" {
		t.Errorf("answer %q", got)
	}
}

func TestListenMode(t *testing.T) {
	t.Run("refuses a non-loopback address", func(t *testing.T) {
		out, err := exec.Command(kloopBin, "dap", "--listen", "0.0.0.0:0").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "loopback") {
			t.Errorf("kloop dap --listen 0.0.0.0:0: err %v, output %q", err, out)
		}
	})
	t.Run("prints its port and serves one client", func(t *testing.T) {
		cmd := exec.Command(kloopBin, "dap", "--listen", "127.0.0.1:0")
		stdout, err := cmd.StdoutPipe()
		must(t, err)
		must(t, cmd.Start())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		line, err := bufio.NewReader(stdout).ReadString('\n')
		must(t, err)
		addr := strings.TrimSpace(strings.TrimPrefix(line, "DAP server listening at: "))
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %q (from %q): %v", addr, line, err)
		}
		defer conn.Close()
		must(t, godap.WriteProtocolMessage(conn, &godap.InitializeRequest{
			Request:   godap.Request{ProtocolMessage: godap.ProtocolMessage{Seq: 1, Type: "request"}, Command: "initialize"},
			Arguments: godap.InitializeRequestArguments{AdapterID: "kloop", PathFormat: "path", LinesStartAt1: true, ColumnsStartAt1: true},
		}))
		msg, err := godap.ReadProtocolMessage(bufio.NewReader(conn))
		must(t, err)
		resp, ok := msg.(*godap.InitializeResponse)
		if !ok || !resp.Success || resp.RequestSeq != 1 || !resp.Body.SupportsLogPoints {
			t.Fatalf("initialize answer %#v", msg)
		}
		conn.Close()
		select {
		case <-done:
		case <-time.After(waitLong):
			t.Fatal("kloop dap --listen did not exit after its client left")
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestOrphanedDebuggeeIsReaped kills the daemon and its debug worker at once, as an OOM
// kill or `kill -9` of the group would: Delve's debuggee survives that and keeps its
// port. The next daemon finds it in the state file (where the dead one recorded it
// before it took traffic) and kills it. The test runs on a daemon of its own.
func TestOrphanedDebuggeeIsReaped(t *testing.T) {
	fx := newFixture(t)
	dir := t.TempDir()
	env := append(os.Environ(), "KLOOP_SOCKET="+filepath.Join(dir, "run", "d.sock"), "KLOOP_STATE_DIR="+filepath.Join(dir, "state"))
	cmd := exec.Command(kloopBin, "dap")
	cmd.Env = env
	e := startEditorCmd(t, cmd, fx.dir)
	initializeAndLaunch(t, e, launchConfig(nil))
	addr := serverAddr(t, e, 0)

	stats := exec.Command(kloopBin, "daemon", "stats", "-o", "json")
	stats.Env = env
	out, err := stats.Output()
	if err != nil {
		t.Fatalf("kloop daemon stats: %v", err)
	}
	var st struct {
		PID int `json:"pid"`
	}
	must(t, json.Unmarshal(out, &st))
	procs := descendants(st.PID)
	var debuggee int
	others := []int{st.PID}
	for _, p := range procs {
		if isDebuggeeProcess(p) {
			debuggee = p
		} else {
			others = append(others, p)
		}
	}
	if debuggee == 0 || len(others) < 2 {
		t.Fatalf("want the daemon, a worker and a debuggee, found daemon %d and %v", st.PID, procs)
	}
	for _, p := range others {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	waitGone(t, others, "the daemon and its worker after SIGKILL")
	// Its tracer is gone, yet it lives on (running, or frozen in a stop if Delve was
	// mid-stop) and holds its port: nothing but a reaper will end it.
	if !pidAlive(debuggee) {
		t.Fatalf("the debuggee %d died with its worker; nothing to reap", debuggee)
	}
	// Any command starts the next daemon, which cleans up what the state file lists.
	status := exec.Command(kloopBin, "status")
	status.Env, status.Dir = env, fx.dir
	if out, err := status.CombinedOutput(); err != nil {
		t.Fatalf("kloop status: %v\n%s", err, out)
	}
	waitGone(t, []int{debuggee}, "the orphaned debuggee")
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after the orphan was reaped", addr)
	}
	stop := exec.Command(kloopBin, "daemon", "stop")
	stop.Env = env
	_ = stop.Run()
}

func isDebuggeeProcess(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && strings.Contains(filepath.Base(exe), "debug-")
}

// TestRelaunchRecoversFromFailedRestart makes Delve's restart fail (the program's working
// directory vanished), then brings it back: the session survives both, and the next
// relaunch works with a fresh debugger.
func TestRelaunchRecoversFromFailedRestart(t *testing.T) {
	fx := newFixture(t)
	wd := t.TempDir() + "/wd"
	must(t, os.Mkdir(wd, 0o755))
	e := startEditor(t, fx.dir)
	e.SetBreakpoints(fx.main, []godap.SourceBreakpoint{{Line: fx.line(t, "reply")}})
	initializeAndLaunch(t, e, launchConfig(map[string]any{"cwd": wd}))
	serverAddr(t, e, 0)

	must(t, os.Remove(wd))
	since := e.Mark()
	r := e.Await(e.SendRequest("kloop/relaunch", nil), "relaunch without a working directory")
	if r.Success {
		t.Fatal("relaunch succeeded although the working directory is gone")
	}
	e.WaitEvent(since, "an explanation of the failed relaunch", dapclient.OutputContaining("relaunch failed"))
	if !strings.Contains(r.Message, "working directory "+wd+" no longer exists") {
		t.Errorf("relaunch error %q does not name the missing working directory", r.Message)
	}

	must(t, os.Mkdir(wd, 0o755))
	fx.write(t, "back", 2)
	line := fx.line(t, "reply")
	e.SetBreakpoints(fx.main, []godap.SourceBreakpoint{{Line: line}})
	since = e.Mark()
	e.Request("kloop/relaunch", nil)
	addr := serverAddr(t, e, since)
	since = e.Mark()
	answer := get(addr, "/?name=again")
	thread, _ := waitStopped(t, e, since, fx.main, line)
	e.Request("continue", godap.ContinueArguments{ThreadId: thread})
	if got := recv(t, answer, "request after recovery"); got != "back again" {
		t.Errorf("answer %q", got)
	}
	if e.SawEvent(0, "terminated") {
		t.Error("terminated event during a failed relaunch")
	}
	e.CheckSeqs()
}

// TestClientThatIgnoresInitializedStillStops: some clients set breakpoints and send
// configurationDone once, on the first `initialized`, and ignore the one a relaunch
// sends. The adapter keeps their breakpoints and sets them on every new process itself,
// so a relaunched program still stops, and resumes it without the client's help.
func TestClientThatIgnoresInitializedStillStops(t *testing.T) {
	fx := newFixture(t)
	cmd := exec.Command(kloopBin, "dap")
	cmd.Dir = fx.dir
	e := dapclient.Start(t, cmd, dapclient.Options{Wait: waitLong, ConfigureOnce: true})
	line := fx.line(t, "reply")
	e.SetBreakpoint(fx.main, line)
	initializeAndLaunch(t, e, launchConfig(nil))
	addr := serverAddr(t, e, 0)
	since := e.Mark()
	answer := get(addr, "/?name=one")
	thread, _ := waitStopped(t, e, since, fx.main, line)
	e.Request("continue", godap.ContinueArguments{ThreadId: thread})
	recv(t, answer, "the first request")

	for round, greeting := range []string{"second", "third"} {
		// The edit keeps the breakpoint's line: only the greeting changes.
		fx.write(t, greeting, 0)
		if got := fx.line(t, "reply"); got != line {
			t.Fatalf("the edit moved the handler to line %d", got)
		}
		since = e.Mark()
		if r := e.Request("kloop/relaunch", nil); !r.Success {
			t.Fatalf("relaunch %d: %s", round+1, r.Message)
		}
		addr = serverAddr(t, e, since)
		since = e.Mark()
		answer = get(addr, "/?name=x")
		thread, frame := waitStopped(t, e, since, fx.main, line)
		if got := e.Local(frame, "greeting"); got != fmt.Sprintf("%q", greeting+" x") {
			t.Errorf("relaunch %d: greeting = %s, want the new code's", round+1, got)
		}
		e.Request("continue", godap.ContinueArguments{ThreadId: thread})
		if got := recv(t, answer, "the request after the relaunch"); got != greeting+" x" {
			t.Errorf("relaunch %d: answer %q", round+1, got)
		}
	}
}
