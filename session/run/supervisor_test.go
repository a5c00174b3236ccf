package run

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) snapshot() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}

func (l *eventLog) count(s State) int {
	n := 0
	for _, e := range l.snapshot() {
		if e.State == s {
			n++
		}
	}
	return n
}

func TestSupervisorCrashLoopBacksOff(t *testing.T) {
	var log eventLog
	spec := helperSpec(t, "exit", freePort(t))
	s := NewSupervisor(spec, Backoff{Initial: 40 * time.Millisecond, Max: 160 * time.Millisecond, ResetAfter: time.Hour}, log.add)
	err := s.Start(context.Background())
	var exit *ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("Start = %v, want the exit error", err)
	}
	waitFor(t, "five crashes", func() bool { return log.count(StateCrashed) >= 5 })
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}

	var delays []time.Duration
	for _, e := range log.snapshot() {
		if e.State == StateCrashed {
			if e.Crashes != len(delays)+1 {
				t.Errorf("crash event %d counts %d crashes", len(delays)+1, e.Crashes)
			}
			if e.Err == nil {
				t.Error("crash event without a reason")
			}
			delays = append(delays, e.RetryIn)
		}
	}
	want := []time.Duration{40, 80, 160, 160, 160}
	for i, w := range want {
		if delays[i] != w*time.Millisecond {
			t.Errorf("retry delays = %v, want them to double from 40ms up to 160ms", delays)
			break
		}
	}

	// After Stop nothing restarts it.
	n := len(log.snapshot())
	time.Sleep(400 * time.Millisecond) // more than twice the longest back-off
	events := log.snapshot()
	if len(events) != n || events[n-1].State != StateStopped {
		t.Errorf("events after Stop: %v", events[n-1:])
	}
}

func TestSupervisorRestartsCrashedServer(t *testing.T) {
	var log eventLog
	port := freePort(t)
	s := NewSupervisor(helperSpec(t, "serve", port), Backoff{Initial: 50 * time.Millisecond}, log.add)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	first := s.Process().Info().Pid

	get(t, port, "/crash") // the program dies answering this
	waitFor(t, "restart after crash", func() bool { return log.count(StateRunning) >= 2 })
	var crash *Event
	for _, e := range log.snapshot() {
		if e.State == StateCrashed {
			crash = &e
		}
	}
	if crash == nil || crash.Err == nil || crash.RetryIn != 50*time.Millisecond {
		t.Fatalf("crash event = %+v", crash)
	}
	var exit *ExitError
	if !errors.As(crash.Err, &exit) || exit.State.ExitCode() != 2 {
		t.Errorf("crash reason = %v, want exit status 2", crash.Err)
	}
	second := s.Process().Info().Pid
	body, err := get(t, port, "/")
	if second == first || err != nil || body != fmt.Sprintf("pid %d", second) {
		t.Errorf("after restart: pid %d -> %d, GET = %q, %v", first, second, body, err)
	}
}

func TestSupervisorStartReplacesProcess(t *testing.T) {
	port := freePort(t)
	s := NewSupervisor(helperSpec(t, "serve", port), Backoff{}, nil)
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	old := s.Process()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("second start on the same port: %v", err)
	}
	select {
	case <-old.Done():
	default:
		t.Error("old process still running after Start replaced it")
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Process() != nil {
		t.Error("process left after Stop")
	}
	if err := CheckPortFree(port); err != nil {
		t.Error(err)
	}
}
