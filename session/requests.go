package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kloop/kloop/kube/workload"
	"github.com/kloop/kloop/session/capture"
	"github.com/kloop/kloop/session/relaunch"
	"github.com/kloop/kloop/session/run"
)

// RequestsArgs select the recorded requests to list.
type RequestsArgs struct {
	// Workload limits the list to one intercept; empty lists all.
	Workload string `json:"workload,omitempty"`
}

// Validate checks that the workload, when given, parses.
func (a RequestsArgs) Validate() error {
	if a.Workload != "" {
		if _, err := workload.Parse(a.Workload); err != nil {
			return err
		}
	}
	return nil
}

// RequestsResult lists recorded exchanges, oldest first, credentials
// masked.
type RequestsResult struct {
	Requests []capture.Exchange `json:"requests"`
}

// Requests lists the HTTP exchanges intercepted traffic carried to the
// local process: the last capture.DefaultKeep per workload, in memory only.
func (s *Session) Requests(_ context.Context, args RequestsArgs) (*RequestsResult, error) {
	w, err := canonicalWorkload(args.Workload)
	if err != nil {
		return nil, err
	}
	return &RequestsResult{Requests: s.captures.List(w)}, nil
}

// ReplayArgs name the recorded request to send again.
type ReplayArgs struct {
	// ID is a request of `kloop requests`; 0 is the last one that stopped
	// at a breakpoint, else the last one (of Workload, when given).
	ID       int    `json:"id,omitempty"`
	Workload string `json:"workload,omitempty"`
	// Yes confirms sending again a request that may change data (any
	// method but GET, HEAD, OPTIONS and TRACE).
	Yes bool `json:"yes,omitempty"`
}

// Validate checks the ID and the workload.
func (a ReplayArgs) Validate() error {
	if a.ID < 0 {
		return fmt.Errorf("id %d: want a request ID from `kloop requests`, or none for the last", a.ID)
	}
	if a.Workload != "" {
		if _, err := workload.Parse(a.Workload); err != nil {
			return err
		}
	}
	return nil
}

// ReplayResult is a replay's answer beside the one recorded.
type ReplayResult struct {
	// Request is the request sent again, as recorded (credentials masked).
	Request capture.Exchange `json:"request"`
	// Response is the local process's new answer (credentials masked).
	Response *capture.Response `json:"response"`
	Pid      int               `json:"pid,omitempty"`
	Duration time.Duration     `json:"duration"`
	// Same reports that the answers agree (see capture.Compare); Diff
	// says how they differ otherwise.
	Same bool     `json:"same"`
	Diff []string `json:"diff,omitempty"`
}

// ErrNotRecorded: no recorded request matches.
var ErrNotRecorded = errors.New("no such recorded request")

// Replay sends a recorded request again, to the local process only (never
// to the cluster's pods), through the run loop's gate so that it waits for
// a relaunch in progress, and compares the answer with the recorded one.
func (s *Session) Replay(ctx context.Context, args ReplayArgs, _ Progress) (*ReplayResult, error) {
	w, err := canonicalWorkload(args.Workload)
	if err != nil {
		return nil, err
	}
	var ex capture.Exchange
	var ok bool
	if args.ID == 0 {
		// The request a breakpoint stopped in is the one being worked on.
		ex, ok = s.captures.Preferred(w, false)
	} else {
		ex, ok = s.captures.Get(args.ID)
	}
	if !ok {
		if args.ID != 0 {
			return nil, fmt.Errorf("%w: request %d is not among the last %d kept per workload; `kloop requests` lists them", ErrNotRecorded, args.ID, capture.DefaultKeep)
		}
		return nil, fmt.Errorf("%w: no request has reached your process through an intercept yet; send one (curl, the app) and try again", ErrNotRecorded)
	}
	if !ex.Safe() && !args.Yes {
		return nil, fmt.Errorf("request %d is a %s, which may change data when sent again; replay it anyway with `kloop replay %d --yes`", ex.ID, ex.Method, ex.ID)
	}
	s.imu.Lock()
	ai := s.intercepts[ex.Workload]
	s.imu.Unlock()
	if ai == nil || ai.live == nil {
		return nil, fmt.Errorf("%s is no longer intercepted, so there is no local process to replay request %d to: intercept it again first", ex.Workload, ex.ID)
	}
	ctx, cancel := context.WithTimeout(ctx, replayTimeout)
	defer cancel()
	conn, err := s.dialLocal(ctx, ai, ai.live.Port())
	if err != nil {
		return nil, fmt.Errorf("replay request %d: %w", ex.ID, err)
	}
	resp, took, err := capture.Send(ctx, conn, ex)
	if err != nil {
		return nil, err
	}
	res := &ReplayResult{Request: ex.Masked(), Pid: ai.pid(), Duration: took}
	if ex.Response != nil {
		res.Diff = capture.Compare(ex.Response, resp)
	} else {
		res.Diff = []string{"the recorded request got no answer"}
	}
	res.Same = len(res.Diff) == 0
	masked := capture.Exchange{Response: resp}.Masked()
	res.Response = masked.Response
	return res, nil
}

// replayTimeout bounds a replay, relaunch included.
const replayTimeout = 2 * time.Minute

func canonicalWorkload(ref string) (string, error) {
	if ref == "" {
		return "", nil
	}
	w, err := workload.Parse(ref)
	if err != nil {
		return "", err
	}
	return w.String(), nil
}

// withReplayOnSave makes spec's program replay the last safe request of
// workload after each relaunch (replayOnSave), beside the status hook it
// has.
func (s *Session) withReplayOnSave(spec *programSpec, workload string) {
	replay := s.replayOnRelaunch(workload, spec.name)
	prev := spec.onStatus
	spec.onStatus = func(st relaunch.Status) {
		if prev != nil {
			prev(st)
		}
		replay(st)
	}
}

// replayOnRelaunch returns a program status hook that, each time a new
// process of workload is running after a relaunch, replays the last safe
// request recorded for it that stopped at a breakpoint, else the last safe
// one, and reports the outcome in the program's output
// (`kloop logs`, editors) and the status.
func (s *Session) replayOnRelaunch(workload, program string) func(relaunch.Status) {
	var lastPid int // the hook runs on the loop's goroutine only
	return func(st relaunch.Status) {
		if st.State != relaunch.StateRunning || st.Pid == lastPid {
			return
		}
		first := lastPid == 0
		lastPid = st.Pid
		if first {
			return
		}
		ex, ok := s.captures.Preferred(workload, true)
		if !ok {
			return
		}
		go func() {
			res, err := s.Replay(context.Background(), ReplayArgs{ID: ex.ID}, nil)
			// The program's own output, so `kloop logs` shows it with
			// what the new build printed for the request.
			name := program
			if err != nil {
				s.programLine(name, run.Stderr, fmt.Sprintf("kloop: replay of #%d %s %s after the relaunch failed: %v", ex.ID, ex.Method, ex.Target, err))
				return
			}
			s.update(func(st *Status) { st.LastReplay = res })
			verdict := "same answer as before"
			if !res.Same {
				verdict = "the answer changed:"
			}
			s.programLine(name, run.Stderr, fmt.Sprintf("kloop: replayed #%d %s %s to pid %d after the relaunch: %d, %s", ex.ID, ex.Method, ex.Target, res.Pid, res.Response.Status, verdict))
			for _, d := range res.Diff {
				s.programLine(name, run.Stderr, "kloop:   "+d)
			}
		}()
	}
}
