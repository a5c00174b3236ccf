package agent

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPauseHold is how long a request of a global intercept waits for a
// paused laptop process before the app answers it: long enough to ride out
// a step in the debugger, short enough that callers never time out.
const DefaultPauseHold = 2 * time.Second

// maxPauseHold bounds the hold a client may ask for, so that a paused
// laptop never makes the Service look down.
const maxPauseHold = 30 * time.Second

// pauseGate is one tunnel's paused state: while its holder's process is
// stopped (at a breakpoint), new requests of the holder's global intercept
// wait a bounded time for it to run again, then go to the app. Requests
// already on the laptop are left alone: one of them is the request the
// developer is looking at.
type pauseGate struct {
	mu      sync.Mutex
	paused  bool
	hold    time.Duration
	resumed chan struct{} // closed when the pause ends
	// pausedNow mirrors paused (written under mu) so that every request
	// and connection of the tunnel checks it without taking the lock.
	pausedNow atomic.Bool
}

func newPauseGate() *pauseGate { return &pauseGate{} }

// set pauses or resumes; it reports whether a new pause began.
func (g *pauseGate) set(paused bool, hold time.Duration) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !paused {
		if g.paused {
			g.paused = false
			g.pausedNow.Store(false)
			close(g.resumed)
		}
		return false
	}
	if hold <= 0 {
		hold = DefaultPauseHold
	}
	g.hold = min(hold, maxPauseHold)
	if g.paused {
		return false
	}
	g.paused, g.resumed = true, make(chan struct{})
	g.pausedNow.Store(true)
	return true
}

// isPaused reports whether the holder's process is paused now.
func (g *pauseGate) isPaused() bool {
	if g == nil {
		return false
	}
	return g.pausedNow.Load()
}

// wait returns true at once when the process runs, or as soon as it runs
// again within the hold; false when it stayed paused for the whole hold
// (or ctx ended), and then the app should answer.
func (g *pauseGate) wait(ctx context.Context) bool {
	if g == nil {
		return true
	}
	g.mu.Lock()
	paused, hold, resumed := g.paused, g.hold, g.resumed
	g.mu.Unlock()
	if !paused {
		return true
	}
	t := time.NewTimer(hold)
	defer t.Stop()
	select {
	case <-resumed:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// isProbe reports a kubelet health probe, which the app must answer: a
// probe answered by a laptop (or held while it is paused) would make the
// pod look unhealthy, or healthy when it is not.
func isProbe(h http.Header) bool {
	return strings.HasPrefix(h.Get("User-Agent"), "kube-probe/")
}
