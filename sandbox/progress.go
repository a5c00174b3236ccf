package sandbox

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Progress is one line of news about a long step (building the cache,
// starting a cluster), so a user never stares at a silent terminal.
type Progress struct {
	// Step and Steps number the step ("[2/3]"); both 0 when unnumbered.
	Step, Steps int
	Message     string
	// Elapsed is the time spent in this step so far.
	Elapsed time.Duration
	// Done marks the last line of a step.
	Done bool
}

func (p Progress) String() string {
	prefix := "sandbox:"
	if p.Steps > 0 {
		prefix = fmt.Sprintf("sandbox [%d/%d]", p.Step, p.Steps)
	}
	if p.Elapsed == 0 && !p.Done {
		return prefix + " " + p.Message
	}
	state := "…"
	if p.Done {
		state = " done in"
	}
	return fmt.Sprintf("%s %s%s %s", prefix, p.Message, state, p.Elapsed.Round(time.Second))
}

// ProgressFunc receives progress lines. It may be called from several
// goroutines but never concurrently.
type ProgressFunc func(Progress)

// ProgressTo writes each progress line to w; a nil w discards them.
func ProgressTo(w io.Writer) ProgressFunc {
	if w == nil {
		return nil
	}
	var mu sync.Mutex
	return func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(w, p.String())
	}
}

// tick reports p every interval with the elapsed time until stop is called,
// and once more, Done, when stop is called with done true.
func (f ProgressFunc) tick(p Progress, interval time.Duration) (stop func(done bool)) {
	start := time.Now()
	if f == nil {
		return func(bool) {}
	}
	f(p)
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				q := p
				q.Elapsed = time.Since(start)
				f(q)
			}
		}
	}()
	return func(done bool) {
		close(quit)
		<-finished
		if done {
			q := p
			q.Elapsed = time.Since(start)
			q.Done = true
			f(q)
		}
	}
}

func (f ProgressFunc) say(p Progress) {
	if f != nil {
		f(p)
	}
}
