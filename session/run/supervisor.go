package run

import (
	"context"
	"errors"
	"sync"
	"time"
)

// State is where a supervised program is in its life.
type State string

const (
	StateStarting State = "starting"
	// StateRunning: started and ready.
	StateRunning State = "running"
	// StateCrashed: it exited on its own (or exited at once); a restart is
	// scheduled after Event.RetryIn.
	StateCrashed State = "crashed"
	// StateFailed: it could not be made ready (never opened its port, the
	// start hook failed); nothing is scheduled until the next Start.
	StateFailed  State = "failed"
	StateStopped State = "stopped"
)

// Event reports a state change of a supervised program.
type Event struct {
	State   State
	Process Started // the process the event is about, when there is one
	Err     error   // why it crashed or failed
	// Crashes counts consecutive crashes; it resets on Start and after the
	// program stayed up for Backoff.ResetAfter.
	Crashes int
	RetryIn time.Duration
}

// Backoff shapes the restarts of a crash loop: Initial, doubled per
// consecutive crash, at most Max; the count resets once the program stayed
// up for ResetAfter. Zero fields mean 500ms, 30s and 10s.
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	ResetAfter time.Duration
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = 500 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 30 * time.Second
	}
	if b.ResetAfter <= 0 {
		b.ResetAfter = 10 * time.Second
	}
	return b
}

func (b Backoff) delay(crashes int) time.Duration {
	d := b.Initial
	for i := 1; i < crashes && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// Supervisor keeps one program running: Start replaces whatever runs with a
// fresh process; a crash is reported and restarted with exponential
// back-off, so a program that dies at once does not spin.
type Supervisor struct {
	spec    Spec
	backoff Backoff
	onEvent func(Event)

	// opMu lets one start or stop happen at a time; mu guards the fields.
	opMu sync.Mutex
	mu   sync.Mutex

	gen         int // bumped by Start and Stop; stale monitors and retries check it
	proc        *Process
	crashes     int
	cancelRetry context.CancelFunc

	eventMu sync.Mutex
}

// NewSupervisor returns a Supervisor for spec. onEvent (may be nil) gets every
// state change, one call at a time; it must not call back into the
// Supervisor synchronously.
func NewSupervisor(spec Spec, backoff Backoff, onEvent func(Event)) *Supervisor {
	return &Supervisor{spec: spec, backoff: backoff.withDefaults(), onEvent: onEvent}
}

// Process returns the current process, or nil.
func (s *Supervisor) Process() *Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

// Running reports whether a started process is up (not crashed, stopped or
// waiting for a restart).
func (s *Supervisor) Running() bool { return s.Process() != nil }

// Start stops the current process (if any), starts a new one and waits until
// it is ready. It resets the crash count. When the program exits at once, the
// error is returned and a restart is scheduled with back-off.
func (s *Supervisor) Start(ctx context.Context) error {
	gen := s.supersede(true)
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if err := s.stopCurrent(ctx); err != nil {
		return err
	}
	return s.launch(ctx, gen)
}

// Stop stops the program and cancels any scheduled restart.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.supersede(false)
	s.opMu.Lock()
	defer s.opMu.Unlock()
	err := s.stopCurrent(ctx)
	s.emit(Event{State: StateStopped})
	return err
}

// supersede invalidates monitors and pending restarts of earlier starts.
func (s *Supervisor) supersede(resetCrashes bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	if s.cancelRetry != nil {
		s.cancelRetry()
		s.cancelRetry = nil
	}
	if resetCrashes {
		s.crashes = 0
	}
	return s.gen
}

func (s *Supervisor) stopCurrent(ctx context.Context) error {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Stop(ctx)
}

func (s *Supervisor) current(gen int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen == gen
}

// launch starts a process for generation gen; the caller holds opMu.
func (s *Supervisor) launch(ctx context.Context, gen int) error {
	spec := s.spec
	userHook := spec.OnStart
	spec.OnStart = func(st Started) error {
		if userHook != nil {
			if err := userHook(st); err != nil {
				return err
			}
		}
		s.emit(Event{State: StateStarting, Process: st})
		return nil
	}
	p, err := Start(ctx, spec)
	if err != nil {
		if !s.current(gen) {
			return err // superseded: the newer Start or Stop reports
		}
		var exit *ExitError
		var inUse *PortInUseError
		if (errors.As(err, &exit) || errors.As(err, &inUse)) && ctx.Err() == nil {
			s.crashed(gen, err)
		} else {
			s.emit(Event{State: StateFailed, Err: err})
		}
		return err
	}
	s.mu.Lock()
	if s.gen != gen {
		// Stop or Start came in while this one waited for readiness.
		s.mu.Unlock()
		p.Stop(context.Background())
		return context.Canceled
	}
	s.proc = p
	s.mu.Unlock()
	s.emit(Event{State: StateRunning, Process: p.Info()})
	go s.monitor(p, gen, time.Now())
	return nil
}

func (s *Supervisor) monitor(p *Process, gen int, readyAt time.Time) {
	<-p.Done()
	if p.Stopped() {
		return
	}
	s.mu.Lock()
	if s.gen != gen {
		s.mu.Unlock()
		return
	}
	s.proc = nil
	if time.Since(readyAt) >= s.backoff.ResetAfter {
		s.crashes = 0
	}
	s.mu.Unlock()
	s.crashed(gen, p.Exited())
}

// crashed reports a crash and schedules the restart.
func (s *Supervisor) crashed(gen int, err error) {
	s.mu.Lock()
	if s.gen != gen {
		s.mu.Unlock()
		return
	}
	s.crashes++
	crashes := s.crashes
	delay := s.backoff.delay(crashes)
	ctx, cancel := context.WithCancel(context.Background())
	if s.cancelRetry != nil {
		s.cancelRetry()
	}
	s.cancelRetry = cancel
	s.mu.Unlock()

	s.emit(Event{State: StateCrashed, Err: err, Crashes: crashes, RetryIn: delay})
	go func() {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.opMu.Lock()
		defer s.opMu.Unlock()
		if !s.current(gen) || ctx.Err() != nil {
			return
		}
		s.launch(ctx, gen)
	}()
}

func (s *Supervisor) emit(e Event) {
	if s.onEvent == nil {
		return
	}
	s.eventMu.Lock()
	defer s.eventMu.Unlock()
	s.onEvent(e)
}
