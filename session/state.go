package session

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// State is what state.json records: everything a crashed daemon leaves in
// the cluster or on the machine, written before it is acted on.
type State struct {
	Version  int                      `json:"version"`
	Sessions map[string]*SessionState `json:"sessions"`
}

// SessionState is one workspace's record.
type SessionState struct {
	Claim *ClaimStatus `json:"claim,omitempty"`
	// ClaimPhase is "claiming" (written before a claim is made), "held" or
	// "releasing" (written before a release).
	ClaimPhase string `json:"claimPhase,omitempty"`
	// ClaimPlan is the resolved claim request: what a restarted daemon
	// needs to find the claim in the cluster.
	ClaimPlan *ClaimPlan `json:"claimPlan,omitempty"`
	// ClaimRecord is the claim engine's record of the held claim.
	ClaimRecord json.RawMessage `json:"claimRecord,omitempty"`
	// Intercepts are written before the agent is injected and removed
	// once the workload is restored, so a restarted daemon can restore
	// what a crashed one left intercepted.
	Intercepts []InterceptRecord `json:"intercepts,omitempty"`
	// Processes are the local programs started for intercepts, written as
	// each starts, so a restarted daemon kills the ones left behind.
	Processes []ProcessRecord `json:"processes,omitempty"`
}

// InterceptRecord is one intercept in state.json.
type InterceptRecord struct {
	Workload string `json:"workload"`
	Target   Target `json:"target"`
	// Traffic is the intercept's mode; "" is steal. An intercept of
	// traffic none changed nothing in the cluster, so recovery only
	// removes its local files.
	Traffic Traffic `json:"traffic,omitempty"`
}

// ProcessRecord identifies a started program well enough to kill it
// safely later: the start time guards against a reused pid.
type ProcessRecord struct {
	// Workload is the intercepted workload, or the key of a local debug
	// session ("debug:" and the program).
	Workload string `json:"workload"`
	// Role is "" for the program itself, "debugger" for the debug worker
	// hosting Delve, "debuggee" for the program Delve started.
	Role      string `json:"role,omitempty"`
	Pid       int    `json:"pid"`
	Pgid      int    `json:"pgid"`
	StartTime uint64 `json:"startTime"`
}

func (ss *SessionState) empty() bool {
	return ss.Claim == nil && ss.ClaimPlan == nil && len(ss.Intercepts) == 0 && len(ss.Processes) == 0
}

func (st *State) session(root string) *SessionState {
	if st.Sessions == nil {
		st.Sessions = map[string]*SessionState{}
	}
	ss, ok := st.Sessions[root]
	if !ok {
		ss = &SessionState{}
		st.Sessions[root] = ss
	}
	return ss
}

// Store reads and writes state.json (0600, written atomically).
type Store struct {
	path string
	mu   sync.Mutex
}

// NewStore returns a Store for path.
func NewStore(path string) *Store { return &Store{path: path} }

// Load reads the file; a missing file is an empty State.
func (s *Store) Load() (*State, error) {
	if s == nil {
		return &State{Version: 1}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadLocked()
}

func (s *Store) loadLocked() (*State, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return &State{Version: 1}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", s.path, err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("parse state %s: %w; move it aside to start fresh (what it listed may still be held in the cluster: `kloop leave --all` restores workloads)", s.path, err)
	}
	return &st, nil
}

// update applies change to the stored state and writes it back.
func (s *Store) update(change func(*State)) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.loadLocked()
	if err != nil {
		return err
	}
	change(st)
	for root, ss := range st.Sessions {
		if ss.empty() {
			delete(st.Sessions, root)
		}
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".state-*.json")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}
