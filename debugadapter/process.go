package debugadapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/kloop/kloop/session"
	"github.com/kloop/kloop/session/relaunch"
	"github.com/kloop/kloop/session/run"
)

// readyWait bounds how long a relaunch waits for the new process to accept on its port
// before the session's gate lets traffic through anyway.
const readyWait = 10 * time.Second

// debugProcess is the session loop's relaunch.Program in a debug session: the loop
// builds, and each good build is started here, under Delve. The first start launches a
// worker; later ones ask Delve to restart onto the new binary, so the editor's session
// and its breakpoints carry over.
type debugProcess struct {
	b       *Bridge
	spec    session.DebugProcessSpec
	onEvent func(run.Event)

	mu       sync.Mutex
	launched bool
	stopped  bool
	debuggee int
}

// newProcess is the session's DebugHooks.NewProcess.
func (b *Bridge) newProcess(spec session.DebugProcessSpec, onEvent func(run.Event)) relaunch.Program {
	p := &debugProcess{b: b, spec: spec, onEvent: onEvent}
	b.mu.Lock()
	b.proc = p
	b.mu.Unlock()
	return p
}

// Start launches the program under Delve, or relaunches it onto the new build. It
// returns once Delve runs it (for a relaunch: once it accepts on its port, it stopped
// at a breakpoint, or readyWait passed).
func (p *debugProcess) Start(ctx context.Context) error {
	b := p.b
	p.mu.Lock()
	first := !p.launched
	p.launched = true
	p.stopped = false
	p.mu.Unlock()
	launchArgs, err := p.launchArgs()
	if err != nil {
		return err
	}
	if first {
		// The editor's `initialized` comes from Delve: it sets the breakpoints and
		// sends configurationDone itself.
		if err := b.startTarget(ctx, p, launchArgs, false); err != nil {
			p.failed(err)
			return err
		}
		p.started()
		return nil
	}

	b.setRelaunching(true)
	defer b.setRelaunching(false)
	b.mu.Lock()
	wc := b.wc
	b.mu.Unlock()
	restarted := false
	if wc != nil && wc.alive() {
		if err := b.restart(ctx, wc, launchArgs); err != nil {
			b.log.Warn("Delve restart failed; starting a new debugger", "err", err)
			b.output("console", "kloop: the debugger could not restart the program ("+err.Error()+"); starting a new debugger\n")
			wc.w.stop(2 * time.Second)
		} else {
			restarted = true
		}
	}
	if !restarted {
		if err := b.startTarget(ctx, p, launchArgs, true); err != nil {
			err = withWorkingDirHint(err, p.spec.Dir)
			b.output("important", "kloop: relaunch failed: "+err.Error()+"\n")
			p.failed(err)
			return err
		}
	}
	p.started()
	p.waitReady(ctx)
	return nil
}

func (p *debugProcess) launchArgs() (json.RawMessage, error) {
	p.b.mu.Lock()
	pass := p.b.passThrough
	p.b.mu.Unlock()
	return delveLaunchArgs(pass, p.spec.Binary, p.spec.Dir, p.spec.Args)
}

// started records the debuggee for the state file and tells the loop.
func (p *debugProcess) started() {
	b := p.b
	b.mu.Lock()
	wc := b.wc
	b.mu.Unlock()
	var st run.Started
	if wc != nil {
		if kids := wc.w.refreshDebuggees(); len(kids) > 0 {
			st = processStarted(kids[0])
			if err := p.spec.Record("debuggee", st); err != nil {
				b.log.Warn("record debuggee", "err", err)
			}
		}
	}
	p.mu.Lock()
	p.debuggee = st.Pid
	p.mu.Unlock()
	p.onEvent(run.Event{State: run.StateRunning, Process: st})
}

func (p *debugProcess) failed(err error) {
	p.onEvent(run.Event{State: run.StateFailed, Err: err})
}

// exited tells the loop the program is gone while the session goes on: traffic is
// refused at once instead of held, until a save relaunches it.
func (p *debugProcess) exited(why string) {
	p.mu.Lock()
	stopped := p.stopped
	p.debuggee = 0
	p.mu.Unlock()
	if !stopped {
		p.failed(errors.New(why))
	}
}

// waitReady waits until the relaunched program accepts on its port. A program that
// stops at a breakpoint first is ready as far as the gate goes: connections queue in
// its listen backlog, or are resent when it is replaced.
func (p *debugProcess) waitReady(ctx context.Context) {
	if p.spec.Port <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.spec.Port))
	var d net.Dialer
	for ctx.Err() == nil {
		if c, err := d.DialContext(ctx, "tcp", addr); err == nil {
			c.Close()
			return
		}
		p.b.mu.Lock()
		running, wc := p.b.running, p.b.wc
		p.b.mu.Unlock()
		if !running || wc == nil || !wc.alive() {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Stop ends the worker and with it the program. Outside the editor's own end of the
// session (a `kloop leave` from the terminal), the editor is told the session is over.
func (p *debugProcess) Stop(context.Context) error {
	b := p.b
	p.mu.Lock()
	p.stopped = true
	p.debuggee = 0
	p.mu.Unlock()
	b.mu.Lock()
	wc, closing := b.wc, b.closing
	b.mu.Unlock()
	if wc != nil {
		wc.w.stop(5 * time.Second)
	}
	if !closing {
		b.output("important", "kloop: the program was stopped from outside the debug session (`kloop leave`?); the debug session ends\n")
		b.event("terminated", nil)
	}
	p.onEvent(run.Event{State: run.StateStopped})
	return nil
}

// Running reports whether the debuggee is alive. The loop calls it under its own lock.
func (p *debugProcess) Running() bool {
	p.mu.Lock()
	pid, stopped := p.debuggee, p.stopped
	p.mu.Unlock()
	if stopped || pid == 0 {
		return false
	}
	st := processState(pid)
	return st != 0 && st != 'Z' && st != 'X'
}

// processStarted identifies pid for the state file; Delve starts each debuggee in a
// process group of its own.
func processStarted(pid int) run.Started {
	start, _ := run.ProcStartTime(pid)
	return run.Started{Pid: pid, Pgid: pid, StartTime: start}
}

// withWorkingDirHint names the real cause when the program's working directory was
// deleted: exec then blames the binary ("fork/exec ...: no such file or directory").
func withWorkingDirHint(err error, wd string) error {
	if _, statErr := os.Stat(wd); wd != "" && errors.Is(statErr, os.ErrNotExist) {
		return fmt.Errorf("%w (the program's working directory %s no longer exists)", err, wd)
	}
	return err
}
