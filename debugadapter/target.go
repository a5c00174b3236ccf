package debugadapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// restartTimeout bounds one Delve restart or launch on the relaunch path.
const restartTimeout = 2 * time.Minute

// startTarget starts a fresh worker and has Delve launch the built binary. With own,
// the `initialized` Delve answers with is the bridge's: it sets the editor's
// breakpoints itself and resumes the program, and the editor never sees it (a new
// worker after a failed restart). Without, `initialized` goes to the editor (the first
// launch).
func (b *Bridge) startTarget(ctx context.Context, p *debugProcess, launchArgs json.RawMessage, own bool) error {
	command := b.opts.WorkerCommand
	if len(command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find the kloop executable to start a debug worker: %w", err)
		}
		command = []string{exe, "debug-worker"}
	}
	w, err := startWorker(b.ctx, command, p.spec.Env, b.log)
	if err != nil {
		return err
	}
	if err := p.spec.Record("debugger", processStarted(w.cmd.Process.Pid)); err != nil {
		b.log.Warn("record debug worker", "err", err)
	}
	wc := newWorkerConn(w)
	var initCh chan struct{}
	b.mu.Lock()
	old := b.wc
	b.wc = wc
	b.running = false
	b.ownInit = own
	if own {
		initCh = make(chan struct{})
		b.initWaiters = append(b.initWaiters, initCh)
	}
	initArgs := b.initArgs
	b.mu.Unlock()
	if old != nil {
		old.w.stop(2 * time.Second)
	}
	go b.pumpOutput(w.stdout, "stdout", p)
	go b.pumpOutput(w.stderr, "stderr", p)
	go b.readWorker(wc)

	// A worker that failed is dropped before it is stopped, so its end is not taken
	// for a debugger that died under a running program.
	abandon := func(err error) error {
		b.mu.Lock()
		if b.wc == wc {
			b.wc = nil
		}
		b.mu.Unlock()
		w.stop(2 * time.Second)
		return err
	}
	reply, err := wc.call(ctx, "initialize", initArgs)
	if err == nil && !reply.Success {
		err = fmt.Errorf("the debugger refused initialize: %s", reply.errorText())
	}
	if err != nil {
		return abandon(err)
	}
	reply, err = wc.call(ctx, "launch", launchArgs)
	if err == nil && !reply.Success {
		err = errors.New(explainLaunchFailure(reply.errorText()))
	}
	if err != nil {
		return abandon(err)
	}
	if own {
		if err := b.awaitInitialized(ctx, wc, initCh); err != nil {
			return abandon(err)
		}
		b.resume(ctx, wc)
	}
	w.refreshDebuggees()
	return nil
}

// restart asks Delve to restart the program onto the binary the session just built
// (rebuild off). Success is the `initialized` event Delve sends once the new process
// is up; a failure is a second response to the same request.
func (b *Bridge) restart(ctx context.Context, wc *workerConn, launchArgs json.RawMessage) error {
	args, err := restartArgs(launchArgs)
	if err != nil {
		return err
	}
	initCh := make(chan struct{})
	b.mu.Lock()
	b.ownInit = true
	b.initWaiters = append(b.initWaiters, initCh)
	b.mu.Unlock()
	b.pauseForRestart(ctx, wc)
	replies, err := wc.start("restart", args)
	if err != nil {
		return err
	}
	timeout := time.NewTimer(restartTimeout)
	defer timeout.Stop()
	for {
		select {
		case r := <-replies:
			if !r.Success {
				return errors.New(r.errorText())
			}
		case <-initCh:
			b.resume(ctx, wc)
			wc.w.refreshDebuggees()
			return nil
		case <-wc.readerDone:
			return errors.New("the debug worker exited during restart")
		case <-timeout.C:
			return fmt.Errorf("no answer from the debugger within %s", restartTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (b *Bridge) awaitInitialized(ctx context.Context, wc *workerConn, initCh chan struct{}) error {
	select {
	case <-initCh:
		return nil
	case <-wc.readerDone:
		return errWorkerGone
	case <-time.After(restartTimeout):
		return fmt.Errorf("the debugger did not initialize within %s", restartTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// editorConfigWait bounds how long a relaunch waits for the editor to answer
// `initialized` with its breakpoints and configurationDone; an editor that does not is
// then served by the bridge alone from then on.
const editorConfigWait = 2 * time.Second

// resume is the bridge's part of a relaunch once Delve holds the new process stopped.
// It tells the editor the old process is gone (it may show it paused at a breakpoint),
// sets the editor's breakpoints on the new process itself and reports those whose
// verification changed, then lets the editor re-send its breakpoints (moved by its
// edits) on `initialized`, as VS Code and nvim-dap do, and resume the program with
// configurationDone. An editor that ignores a second `initialized` still stops at its
// breakpoints: the bridge resumes the program itself after editorConfigWait.
func (b *Bridge) resume(ctx context.Context, wc *workerConn) {
	b.event("continued", map[string]any{"threadId": 1, "allThreadsContinued": true})
	for _, set := range b.bps.all() {
		reply, err := wc.call(ctx, set.command, set.args)
		if err != nil {
			b.log.Warn("set breakpoints on the new process", "command", set.command, "err", err)
			continue
		}
		for _, bp := range b.bps.replaced(set.command, set.args, reply.body) {
			b.event("breakpoint", map[string]any{"reason": "changed", "breakpoint": bp})
		}
	}
	b.mu.Lock()
	configured, ignores := b.configured, b.ignoresInitialized
	var editorDone chan struct{}
	if configured && !ignores {
		editorDone = make(chan struct{})
		b.editorConfigured = editorDone
	}
	b.mu.Unlock()
	if !configured {
		return // the editor's own configurationDone is still to come
	}
	if editorDone != nil {
		b.event("initialized", nil)
		select {
		case <-editorDone:
			return
		case <-wc.readerDone:
			return
		case <-ctx.Done():
			return
		case <-time.After(editorConfigWait):
		}
		b.mu.Lock()
		late := b.editorConfigured == nil // it came just now
		b.editorConfigured = nil
		if !late {
			b.ignoresInitialized = true
		}
		b.mu.Unlock()
		if late {
			select {
			case <-editorDone:
			case <-time.After(editorConfigWait):
			}
			return
		}
		b.log.Info("the editor does not answer a second initialized; the bridge resumes relaunched programs itself")
	}
	reply, err := wc.call(ctx, "configurationDone", nil)
	if err == nil && !reply.Success {
		err = errors.New(reply.errorText())
	}
	if err != nil {
		b.log.Warn("resume the relaunched program", "err", err)
	}
}

// runCommands are the requests after whose success Delve resumes the program.
var runCommands = map[string]bool{
	"configurationDone": true, "continue": true, "next": true, "stepIn": true,
	"stepOut": true, "stepBack": true, "reverseContinue": true,
}

// pauseForRestart stops a running program through Delve and waits for the stop, which
// the editor does not see: a process dying under Delve's continue while restart halts
// it races inside Delve. A program already stopped is left alone.
func (b *Bridge) pauseForRestart(ctx context.Context, wc *workerConn) {
	b.mu.Lock()
	running := b.running
	if running {
		b.swallowStops = true
	}
	b.mu.Unlock()
	if !running {
		return
	}
	defer func() {
		b.mu.Lock()
		b.swallowStops = false
		b.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := wc.call(ctx, "pause", nil); err != nil {
		b.log.Debug("pause before restart", "err", err)
		return
	}
	for ctx.Err() == nil {
		b.mu.Lock()
		running = b.running
		b.mu.Unlock()
		if !running {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func (b *Bridge) setRunning(v bool) {
	b.mu.Lock()
	b.running = v
	b.mu.Unlock()
}

func (b *Bridge) setRelaunching(v bool) {
	b.mu.Lock()
	b.relaunching = v
	b.mu.Unlock()
	if v {
		// The gate holds requests during the swap; the old process's
		// stop at a breakpoint is over.
		b.notePaused(false)
	}
}

// notePaused tells the session that Delve stopped the program or let it
// run: while it is stopped, the cluster's pods answer for it.
func (b *Bridge) notePaused(paused bool) {
	b.mu.Lock()
	dbg := b.dbg
	b.mu.Unlock()
	if dbg != nil {
		dbg.SetPaused(paused)
	}
}
