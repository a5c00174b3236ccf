package session

import (
	"context"
	"time"
)

// pauseSendTimeout bounds telling the agents about a pause or a resume.
const pauseSendTimeout = 10 * time.Second

// pauseState is whether the process behind an intercept is paused (stopped
// at a breakpoint), and what the agents were last told. Guarded by
// activeIntercept.pmu.
type pauseState struct {
	paused  bool
	sent    bool
	pushing bool // a goroutine is telling the agents
	// hold is how long the agents hold a request for the paused process
	// (0: their default).
	hold time.Duration
}

// SetPaused tells the session that the debugger stopped the program
// (paused true: at a breakpoint, after a step) or let it run again. The
// exchange the program was serving when it stopped is marked as the one a
// breakpoint sits in (replay prefers it), and a global intercept's agents
// start sending new requests to the cluster's pods after a brief hold, so
// the Service keeps answering while the developer reads variables; the
// request at the breakpoint keeps waiting. It never blocks: the agents are
// told in the background, in order.
func (d *DebugSession) SetPaused(paused bool) {
	if paused && d.ai != nil {
		d.s.captures.MarkStopped(d.ai.workload)
	}
	if d.ai != nil {
		d.s.setPaused(d.ai, paused)
	}
}

func (s *Session) setPaused(ai *activeIntercept, paused bool) {
	ai.pmu.Lock()
	defer ai.pmu.Unlock()
	if ai.pause.paused == paused {
		return
	}
	ai.pause.paused = paused
	if ai.pause.pushing {
		return // the running push picks the new state up
	}
	ai.pause.pushing = true
	go s.pushPause(ai)
}

// pushPause tells the agents the latest pause state until they agree.
func (s *Session) pushPause(ai *activeIntercept) {
	for {
		ai.pmu.Lock()
		want, hold := ai.pause.paused, ai.pause.hold
		if want == ai.pause.sent {
			ai.pause.pushing = false
			ai.pmu.Unlock()
			s.refreshIntercepts()
			return
		}
		ai.pmu.Unlock()
		if p, ok := ai.live.(Pauser); ok {
			ctx, cancel := context.WithTimeout(context.Background(), pauseSendTimeout)
			if err := p.SetPaused(ctx, want, hold); err != nil {
				s.mgr.log.Warn("tell the agents about the paused process", "workload", ai.workload, "paused", want, "err", err)
			}
			cancel()
		}
		ai.pmu.Lock()
		ai.pause.sent = want
		ai.pmu.Unlock()
	}
}

// isPaused reports whether ai's process is paused.
func (ai *activeIntercept) isPaused() bool {
	ai.pmu.Lock()
	defer ai.pmu.Unlock()
	return ai.pause.paused
}
