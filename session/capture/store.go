package capture

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultKeep is how many exchanges a Store keeps unless told otherwise.
const DefaultKeep = 50

// MaxBody caps each recorded body; the rest still flows, unrecorded.
const MaxBody = 64 << 10

// Exchange is one recorded request and its answer.
type Exchange struct {
	ID       int       `json:"id"`
	Workload string    `json:"workload"`
	Time     time.Time `json:"time"`
	// End is when the answer's last byte was seen.
	End time.Time `json:"end"`
	// Duration is from the request's head to the response's head.
	Duration time.Duration `json:"duration"`
	Method   string        `json:"method"`
	// Target is the request-target as sent: path and query.
	Target        string      `json:"target"`
	Host          string      `json:"host"`
	Header        http.Header `json:"header"`
	Body          string      `json:"body,omitempty"`
	BodyTruncated bool        `json:"bodyTruncated,omitempty"`
	Response      *Response   `json:"response,omitempty"`
	// Pid is the local process that answered.
	Pid int `json:"pid,omitempty"`
	// Stopped marks a request that was in flight when the debugger
	// stopped the process: the one a breakpoint sat in. Its Response is
	// nil when the process was replaced before it answered.
	Stopped bool `json:"stoppedAtBreakpoint,omitempty"`
	// Mirrored marks a copy a mirror intercept sent: the cluster's pods
	// answered the caller, with ClusterStatus, and Response is the local
	// process's answer, which the agent discarded.
	Mirrored      bool `json:"mirrored,omitempty"`
	ClusterStatus int  `json:"clusterStatus,omitempty"`
}

// Response is the recorded answer.
type Response struct {
	Status        int         `json:"status"`
	Header        http.Header `json:"header"`
	Body          string      `json:"body,omitempty"`
	BodyTruncated bool        `json:"bodyTruncated,omitempty"`
}

// Store keeps the last exchanges of each workload, oldest first.
type Store struct {
	mu   sync.Mutex
	keep int
	next int
	list []Exchange
	// outbound are the calls the local processes made through the
	// outbound proxy, outboundPerRequest times keep per workload.
	outbound []Exchange
	// stops are the last times the debugger stopped each workload's
	// process, newest last.
	stops map[string][]time.Time
}

// keepStops bounds the stop times kept per workload: a request outlives
// only the few stops (steps) made while it waits.
const keepStops = 64

// stoppedBetween reports whether the debugger stopped workload's process
// between sent (the process got the request) and answered (its answer left,
// or the connection ended without one): the request was then in flight, as
// the one a breakpoint sits in is. Times are those the bytes crossed the
// connection, so the parser running behind it changes nothing.
func (s *Store) stoppedBetween(workload string, sent, answered time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, at := range s.stops[workload] {
		if !at.Before(sent) && !at.After(answered) {
			return true
		}
	}
	return false
}

// MarkStopped records that the debugger has just stopped workload's
// process: the requests in flight across this moment are marked stopped at
// a breakpoint when they are recorded (see stoppedBetween).
func (s *Store) MarkStopped(workload string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stops == nil {
		s.stops = map[string][]time.Time{}
	}
	stops := append(s.stops[workload], time.Now())
	if len(stops) > keepStops {
		stops = stops[len(stops)-keepStops:]
	}
	s.stops[workload] = stops
}

// outboundPerRequest is how many outbound calls per kept request a Store
// keeps, so that the calls of the requests still kept are kept too.
const outboundPerRequest = 4

// NewStore keeps the last keep exchanges per workload (DefaultKeep when
// keep <= 0).
func NewStore(keep int) *Store {
	if keep <= 0 {
		keep = DefaultKeep
	}
	return &Store{keep: keep}
}

func (s *Store) add(e Exchange) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	e.ID = s.next
	s.list = append(s.list, e)
	n := 0
	for _, x := range s.list {
		if x.Workload == e.Workload {
			n++
		}
	}
	if n > s.keep {
		// The workload's oldest goes; other workloads keep theirs.
		i := slices.IndexFunc(s.list, func(x Exchange) bool { return x.Workload == e.Workload })
		s.list = slices.Delete(s.list, i, i+1)
	}
}

func (s *Store) addOutbound(e Exchange) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outbound = append(s.outbound, e)
	n := 0
	for _, x := range s.outbound {
		if x.Workload == e.Workload {
			n++
		}
	}
	if n > s.keep*outboundPerRequest {
		i := slices.IndexFunc(s.outbound, func(x Exchange) bool { return x.Workload == e.Workload })
		s.outbound = slices.Delete(s.outbound, i, i+1)
	}
}

// Outbound returns, oldest first and masked, the calls workload's local
// process made through the outbound proxy while it served e: those whose
// request and answer both fall within e's [Time, End]. The proxy serves a
// workload, not a request, so the tie is by time: when requests to the
// same workload overlapped, the calls made during the overlap are
// returned for each of them (Overlapping says whether that happened).
func (s *Store) Outbound(e Exchange) []Exchange {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Exchange
	for _, o := range s.outbound {
		if o.Workload == e.Workload && !o.Time.Before(e.Time) && !o.End.After(e.End) {
			out = append(out, o.Masked())
		}
	}
	return out
}

// Overlapping reports whether another kept request of e's workload was
// being served while e was.
func (s *Store) Overlapping(e Exchange) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.list {
		if x.ID != e.ID && x.Workload == e.Workload && x.Time.Before(e.End) && e.Time.Before(x.End) {
			return true
		}
	}
	return false
}

// List returns the exchanges of workload (every workload's for ""),
// oldest first, with credentials masked.
func (s *Store) List(workload string) []Exchange {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Exchange
	for _, e := range s.list {
		if workload == "" || e.Workload == workload {
			out = append(out, e.Masked())
		}
	}
	return out
}

// Get returns exchange id as recorded, credentials included: for sending
// it again, never for showing.
func (s *Store) Get(id int) (Exchange, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.list {
		if e.ID == id {
			return e, true
		}
	}
	return Exchange{}, false
}

// Last returns the newest exchange of workload (any workload's for "").
func (s *Store) Last(workload string) (Exchange, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.list) - 1; i >= 0; i-- {
		if workload == "" || s.list[i].Workload == workload {
			return s.list[i], true
		}
	}
	return Exchange{}, false
}

// LastSafe returns the newest exchange of workload whose method is safe
// to send again unasked (Exchange.Safe).
func (s *Store) LastSafe(workload string) (Exchange, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.list) - 1; i >= 0; i-- {
		if e := s.list[i]; e.Workload == workload && e.Safe() {
			return e, true
		}
	}
	return Exchange{}, false
}

// Preferred is what a replay without an ID sends: the newest exchange of
// workload (any workload's for "") that stopped at a breakpoint, else the
// newest; with safeOnly, among those Safe to send again unasked.
func (s *Store) Preferred(workload string, safeOnly bool) (Exchange, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var last *Exchange
	for i := len(s.list) - 1; i >= 0; i-- {
		e := &s.list[i]
		if (workload != "" && e.Workload != workload) || (safeOnly && !e.Safe()) {
			continue
		}
		if e.Stopped {
			return *e, true
		}
		if last == nil {
			last = e
		}
	}
	if last == nil {
		return Exchange{}, false
	}
	return *last, true
}

// Forget drops workload's exchanges (its intercept ended).
func (s *Store) Forget(workload string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = slices.DeleteFunc(s.list, func(e Exchange) bool { return e.Workload == workload })
	s.outbound = slices.DeleteFunc(s.outbound, func(e Exchange) bool { return e.Workload == workload })
}

// Masked is e with the values of credential headers replaced by "***"
// (an Authorization scheme and cookie names stay, to tell them apart).
func (e Exchange) Masked() Exchange {
	e.Header = maskHeader(e.Header)
	if e.Response != nil {
		r := *e.Response
		r.Header = maskHeader(r.Header)
		e.Response = &r
	}
	return e
}

func maskHeader(h http.Header) http.Header {
	out := h.Clone()
	for name, vs := range out {
		switch http.CanonicalHeaderKey(name) {
		case "Authorization", "Proxy-Authorization":
			for i, v := range vs {
				if scheme, _, ok := strings.Cut(v, " "); ok {
					vs[i] = scheme + " ***"
				} else {
					vs[i] = "***"
				}
			}
		case "Cookie":
			for i, v := range vs {
				vs[i] = maskCookies(v)
			}
		case "Set-Cookie":
			// One cookie, then its attributes (Path, HttpOnly), which
			// are not secret.
			for i, v := range vs {
				first, attrs, _ := strings.Cut(v, ";")
				vs[i] = maskCookies(first)
				if attrs != "" {
					vs[i] += ";" + attrs
				}
			}
		}
	}
	return out
}

// maskCookies keeps each cookie's name and hides its value.
func maskCookies(v string) string {
	parts := strings.Split(v, ";")
	var out []string
	for _, p := range parts {
		name, _, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || name == "" {
			continue
		}
		out = append(out, name+"=***")
	}
	if len(out) == 0 {
		return "***"
	}
	return strings.Join(out, "; ")
}
