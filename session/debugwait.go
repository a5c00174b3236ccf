package session

import (
	"fmt"
	"strings"
	"time"
)

// watchForDebugger starts (or starts over) the wait for a debug session to
// join ai, an intercept made for debugging: its traffic comes to this
// machine and nothing answers it until a debugger runs the program, so a
// user whose editor starts no debug session must be told what to start.
func (s *Session) watchForDebugger(ai *activeIntercept) {
	wait := s.mgr.opts.DebuggerWait
	if wait == 0 {
		wait = DefaultDebuggerWait
	}
	ai.noDebugger.Store(false)
	if wait < 0 || ai.plan != nil && ai.plan.traffic == TrafficMirror {
		// The pods answer a mirror's callers: nothing waits on a debugger.
		return
	}
	ai.debuggerMu.Lock()
	defer ai.debuggerMu.Unlock()
	if ai.debuggerTimer != nil {
		ai.debuggerTimer.Stop()
	}
	ai.debuggerTimer = time.AfterFunc(wait, func() { s.noDebuggerAttached(ai) })
}

// noDebuggerAttached runs when the wait is over. It takes opMu so that a
// debug session joining or a leave in flight decides first: either leaves
// nothing to tell.
func (s *Session) noDebuggerAttached(ai *activeIntercept) {
	s.opMu.Lock()
	s.imu.Lock()
	current := s.intercepts[ai.workload] == ai
	s.imu.Unlock()
	if !current || ai.prog.Load() != nil {
		s.opMu.Unlock()
		return
	}
	ai.noDebugger.Store(true)
	s.opMu.Unlock()
	msg := ai.noDebuggerNotice()
	s.mgr.log.Warn("no debugger attached", "workspace", s.root, "workload", ai.workload)
	s.refreshIntercepts()
	s.emit(Event{Notice: &Notice{Workload: ai.workload, Message: msg}})
}

func (ai *activeIntercept) stopDebuggerTimer() {
	ai.debuggerMu.Lock()
	defer ai.debuggerMu.Unlock()
	if ai.debuggerTimer != nil {
		ai.debuggerTimer.Stop()
		ai.debuggerTimer = nil
	}
}

// waitsForDebugger: made for debugging, the wait is over, and no debug
// session runs the program behind it (one that attaches clears it).
func (ai *activeIntercept) waitsForDebugger() bool {
	return ai.plan != nil && ai.plan.debug && ai.noDebugger.Load() && ai.prog.Load() == nil
}

// noDebuggerNotice says what is wrong and both ways out: start the debug
// session the intercept waits for, or run the program without Delve.
func (ai *activeIntercept) noDebuggerNotice() string {
	name := strings.TrimPrefix(ai.workload, "deployment/")
	run := "kloop intercept " + name
	if p := ai.plan.debugProgram; p != "" {
		run += " --program " + p
	}
	return fmt.Sprintf("%s is intercepted for debugging but no debugger is attached: its traffic comes to this machine and nothing answers it. "+
		"Start the 'kloop' debug configuration for %s, or run the program without the debugger: kloop leave %s, then %s",
		name, ai.workload, name, run)
}
