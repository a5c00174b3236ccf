package session

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/kloop/kloop/session/build"
)

// Event is something a session tells its editors besides its status: the
// diagnostics of a build, or a line of the program's output.
type Event struct {
	// Diagnostics maps absolute file paths to their compile errors; a file
	// mapped to an empty list is to be cleared.
	Diagnostics map[string][]build.Diagnostic
	Output      *OutputLine
	// Notice is a warning for the user to read now (editors show it as a
	// message); the same text stays in the intercept's status until what
	// it asks for is done.
	Notice *Notice
}

// Notice is a warning about one intercept.
type Notice struct {
	Workload string `json:"workload"`
	Message  string `json:"message"`
}

// SubscribeEvents calls fn for every event until cancel is called. fn runs
// on the goroutine that produced the event and must not block.
func (s *Session) SubscribeEvents(fn func(Event)) (cancel func()) {
	s.mu.Lock()
	id := s.nextSub
	s.nextSub++
	if s.eventSubs == nil {
		s.eventSubs = map[int]func(Event){}
	}
	s.eventSubs[id] = fn
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.eventSubs, id)
		s.mu.Unlock()
	}
}

func (s *Session) emit(e Event) {
	s.mu.Lock()
	subs := make([]func(Event), 0, len(s.eventSubs))
	for _, fn := range s.eventSubs {
		subs = append(subs, fn)
	}
	s.mu.Unlock()
	for _, fn := range subs {
		fn(e)
	}
}

func (s *Session) diagnose(byFile map[string][]build.Diagnostic) {
	abs := make(map[string][]build.Diagnostic, len(byFile))
	for f, d := range byFile {
		if !filepath.IsAbs(f) {
			f = filepath.Join(s.root, f)
		}
		abs[f] = d
	}
	s.emit(Event{Diagnostics: abs})
}

func (s *Session) output(l OutputLine) { s.emit(Event{Output: &l}) }

// stateDir is where the daemon keeps per-user files: built binaries and
// materialized volumes live under it, next to state.json.
func (m *Manager) stateDir() string {
	if m.opts.Store != nil {
		return filepath.Dir(m.opts.Store.path)
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("kloop-%d", os.Getuid()))
}
