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
)

// TestRelaunchWhilePaused is the common case of saving while stopped at a breakpoint:
// the editor is told the old threads continued, and the new code stops next time.
func TestRelaunchWhilePaused(t *testing.T) {
	fx := newFixture(t)
	e := startEditor(t, fx.dir)
	e.setBreakpoints(fx.main, []godap.SourceBreakpoint{{Line: fx.line(t, "reply")}})
	e.initializeAndLaunch(launchConfig(nil))
	addr := e.serverAddr(0)
	since := e.mark()
	inFlight := get(addr, "/?name=paused")
	e.waitStopped(since, fx.main, fx.line(t, "reply"))

	fx.write(t, "welcome", 5)
	newLine := fx.line(t, "reply")
	e.setBreakpoints(fx.main, []godap.SourceBreakpoint{{Line: newLine}})
	since = e.mark()
	e.relaunch()
	e.waitEvent(since, "continued event for the old, paused threads", eventNamed("continued"))
	if got := recv(t, inFlight, "the request that was paused"); !strings.HasPrefix(got, "error:") {
		t.Errorf("the paused request got %q; its process was replaced, so it should have failed", got)
	}
	addr = e.serverAddr(since)
	since = e.mark()
	answer := get(addr, "/?name=dan")
	thread, frame := e.waitStopped(since, fx.main, newLine)
	if got := e.local(frame, "greeting"); got != `"welcome dan"` {
		t.Errorf("greeting = %s", got)
	}
	e.request("continue", godap.ContinueArguments{ThreadId: thread})
	if got := recv(t, answer, "request after relaunch"); got != "welcome dan" {
		t.Errorf("answer %q", got)
	}
	for _, ev := range []string{"terminated", "exited"} {
		if e.sawEvent(0, ev) {
			t.Errorf("%s event during relaunch", ev)
		}
	}
	e.checkSeqs()
}

// TestSteppingAndFunctionBreakpoints checks requests the bridge only relays.
func TestSteppingAndFunctionBreakpoints(t *testing.T) {
	fx := newFixture(t)
	e := startEditor(t, fx.dir)
	e.mu.Lock()
	e.funcBPs = []godap.FunctionBreakpoint{{Name: "main.handler"}}
	e.mu.Unlock()
	e.initializeAndLaunch(launchConfig(nil))
	addr := e.serverAddr(0)
	since := e.mark()
	answer := get(addr, "/?name=eve")
	ev := e.waitEvent(since, "function breakpoint", eventNamed("stopped"))
	var stopped godap.StoppedEventBody
	must(t, json.Unmarshal(ev.Body, &stopped))
	if stopped.Reason != "function breakpoint" {
		t.Errorf("stop reason %q, want function breakpoint", stopped.Reason)
	}
	threads := e.request("threads", nil).decode(t).(*godap.ThreadsResponse).Body.Threads
	if len(threads) < 2 {
		t.Errorf("threads (goroutines): %d, want several", len(threads))
	}
	// Step until the greeting line has run, then read it.
	greetLine := fx.line(t, "reply")
	for i := 0; i < 10; i++ {
		since = e.mark()
		e.request("next", godap.NextArguments{ThreadId: stopped.ThreadId})
		e.waitEvent(since, "step", eventNamed("stopped"))
		st := e.request("stackTrace", godap.StackTraceArguments{ThreadId: stopped.ThreadId, Levels: 1}).decode(t).(*godap.StackTraceResponse)
		if st.Body.StackFrames[0].Line == greetLine {
			if got := e.local(st.Body.StackFrames[0].Id, "greeting"); got != `"hello eve"` {
				t.Errorf("greeting after stepping = %s", got)
			}
			break
		}
		if i == 9 {
			t.Fatalf("stepping never reached line %d", greetLine)
		}
	}
	e.request("continue", godap.ContinueArguments{ThreadId: stopped.ThreadId})
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
	env := append(os.Environ(), "KLOOP_SOCKET="+filepath.Join(dir, "d.sock"), "KLOOP_STATE_DIR="+filepath.Join(dir, "state"))
	cmd := exec.Command(kloopBin, "dap")
	cmd.Env = env
	e := startEditorCmd(t, cmd, fx.dir)
	e.initializeAndLaunch(launchConfig(nil))
	addr := e.serverAddr(0)

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
	e.setBreakpoints(fx.main, []godap.SourceBreakpoint{{Line: fx.line(t, "reply")}})
	e.initializeAndLaunch(launchConfig(map[string]any{"cwd": wd}))
	e.serverAddr(0)

	must(t, os.Remove(wd))
	since := e.mark()
	r := e.await(e.send("kloop/relaunch", nil), "relaunch without a working directory")
	if r.Success {
		t.Fatal("relaunch succeeded although the working directory is gone")
	}
	e.waitEvent(since, "an explanation of the failed relaunch", outputContaining("relaunch failed"))
	if !strings.Contains(r.Message, "working directory "+wd+" no longer exists") {
		t.Errorf("relaunch error %q does not name the missing working directory", r.Message)
	}

	must(t, os.Mkdir(wd, 0o755))
	fx.write(t, "back", 2)
	line := fx.line(t, "reply")
	e.setBreakpoints(fx.main, []godap.SourceBreakpoint{{Line: line}})
	since = e.mark()
	e.relaunch()
	addr := e.serverAddr(since)
	since = e.mark()
	answer := get(addr, "/?name=again")
	thread, _ := e.waitStopped(since, fx.main, line)
	e.request("continue", godap.ContinueArguments{ThreadId: thread})
	if got := recv(t, answer, "request after recovery"); got != "back again" {
		t.Errorf("answer %q", got)
	}
	if e.sawEvent(0, "terminated") {
		t.Error("terminated event during a failed relaunch")
	}
	e.checkSeqs()
}
