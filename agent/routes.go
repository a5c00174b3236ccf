package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kloop/kloop/agent/tunnel"
)

// route is one holder's intercept, bound to that holder's tunnel.
type route struct {
	conn   *tunnel.ServerConn
	holder string                 // the holder's ID (its key in the table)
	ports  map[int]*tunnel.Filter // app port -> rule (nil: global)
	since  time.Time              // when the holder's rule was first set: earlier wins overlaps
	laptop *transports            // HTTP to the laptop through conn
	stats  *holderStats
	pause  *pauseGate // the tunnel's; shared by the routes it sets
	mirror *mirrorer  // a mirror route's copies; nil for one that takes requests

	mu      sync.Mutex
	spliced map[net.Conn]struct{} // whole connections sent to the laptop
	idle    map[*hsplice]struct{} // those of them a pause may take back
	ended   bool
}

// adopt records a connection spliced to the laptop under this route; it
// refuses once the route has ended.
func (r *route) adopt(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended {
		return false
	}
	if r.spliced == nil {
		r.spliced = map[net.Conn]struct{}{}
	}
	r.spliced[c] = struct{}{}
	return true
}

func (r *route) release(c net.Conn) {
	r.mu.Lock()
	delete(r.spliced, c)
	r.mu.Unlock()
}

// watch lets a pause take s back from the laptop; forget ends that.
func (r *route) watch(s *hsplice) {
	r.mu.Lock()
	if r.idle == nil {
		r.idle = map[*hsplice]struct{}{}
	}
	r.idle[s] = struct{}{}
	r.mu.Unlock()
}

func (r *route) forget(s *hsplice) {
	r.mu.Lock()
	delete(r.idle, s)
	r.mu.Unlock()
}

// takeBackIdle moves the idle connections spliced to the paused laptop to
// the per-request router, which holds each request briefly and then lets
// the app answer.
func (r *route) takeBackIdle() {
	r.mu.Lock()
	list := make([]*hsplice, 0, len(r.idle))
	for s := range r.idle {
		list = append(list, s)
	}
	r.mu.Unlock()
	for _, s := range list {
		s.detachIfIdle()
	}
}

// end closes what this route sent to the laptop: when an intercept changes
// or ends, clients reconnect and are routed afresh instead of staying on
// the laptop.
func (r *route) end() {
	r.mu.Lock()
	r.ended = true
	for c := range r.spliced {
		c.Close()
	}
	r.mu.Unlock()
	r.stopMirror()
	r.laptop.closeIdle()
}

// describe names the route's holder and rule on port for error messages.
func (r *route) describe(port int) string {
	who := r.conn.Holder()
	if who == "" {
		who = "another kloop client"
	}
	if h := r.ports[port]; h != nil {
		return fmt.Sprintf("%s (personal, %s)", who, h)
	}
	return who + " (global)"
}

// routes is the agent's routing table, replaced whole on every change so
// the request path reads it without a lock: at most one global route per
// port, or any number of personal ones with distinct headers. Mirror
// routes take no request, so they are kept apart and never conflict.
type routes struct{ list, mirrors []*route }

// forConn returns the route that takes whole connections on port: the
// global one, if any.
func (rs *routes) forConn(port int) *route {
	if rs == nil {
		return nil
	}
	for _, r := range rs.list {
		if h, ok := r.ports[port]; ok && h == nil {
			return r
		}
	}
	return nil
}

// forRequest returns the route whose rule takes an HTTP request on port, or
// nil when the app answers it. Two holders' rules may both take a request
// (x-dev=alice and path /api/): the list is ordered by the rules' since,
// so the holder who intercepted first takes it, on every pod alike.
func (rs *routes) forRequest(port int, req *http.Request) *route {
	if rs == nil {
		return nil
	}
	for _, r := range rs.list {
		if f, ok := r.ports[port]; ok && (f == nil || f.MatchesRequest(req)) {
			return r
		}
	}
	return nil
}

// insert adds r at its place in the order of since (then holder ID, so
// that two rules set in the same instant still order alike everywhere).
func (rs *routes) insert(r *route) {
	if r.mirror != nil {
		rs.mirrors = append(rs.mirrors, r)
		return
	}
	i := 0
	for i < len(rs.list) {
		o := rs.list[i]
		if r.since.Before(o.since) || r.since.Equal(o.since) && r.holder < o.holder {
			break
		}
		i++
	}
	rs.list = slices.Insert(rs.list, i, r)
}

// without returns the table minus conn's routes, and those routes.
func (rs *routes) without(conn *tunnel.ServerConn) (*routes, []*route) {
	next := &routes{}
	var gone []*route
	if rs != nil {
		for _, r := range rs.list {
			if r.conn == conn {
				gone = append(gone, r)
			} else {
				next.list = append(next.list, r)
			}
		}
		for _, r := range rs.mirrors {
			if r.conn == conn {
				gone = append(gone, r)
			} else {
				next.mirrors = append(next.mirrors, r)
			}
		}
	}
	return next, gone
}

// conflict reports why rule (ports -> header) of holder cannot join the
// table: a global rule shares no port with another holder's rule, and two
// holders' personal rules never select the same requests.
func (rs *routes) conflict(holder string, ports map[int]*tunnel.Filter) error {
	if rs == nil {
		return nil
	}
	for _, r := range rs.list {
		if r.holder == holder {
			continue
		}
		for port, mine := range ports {
			theirs, ok := r.ports[port]
			if !ok {
				continue
			}
			switch {
			case mine == nil:
				return fmt.Errorf("port %d is intercepted by %s; a global intercept takes every request, so it cannot share the port: use a personal intercept (--header) or wait until they leave", port, r.describe(port))
			case theirs == nil:
				return fmt.Errorf("port %d is intercepted globally by %s, which takes every request; wait until they leave", port, r.describe(port))
			case mine.Same(theirs):
				if mine.SingleHeader() != nil {
					return fmt.Errorf("port %d: header %s is already routed to %s; pick a value only your requests carry", port, mine, r.describe(port))
				}
				return fmt.Errorf("port %d: the rule %s is already routed to %s; add a header only your requests carry", port, mine, r.describe(port))
			}
		}
	}
	return nil
}

// holderStats counts what the agent sent to one holder's laptop, per port
// (indexed like Agent.ports). They outlive the holder's tunnels, so a
// daemon that reconnects sees its counts grow, never reset; pausedToApp
// alone starts again at each pause.
type holderStats struct {
	toLaptop, fallbacks, pausedToApp []atomic.Uint64
	mirrored, mirrorDropped          []atomic.Uint64
}

func newHolderStats(ports int) *holderStats {
	return &holderStats{
		toLaptop: make([]atomic.Uint64, ports), fallbacks: make([]atomic.Uint64, ports), pausedToApp: make([]atomic.Uint64, ports),
		mirrored: make([]atomic.Uint64, ports), mirrorDropped: make([]atomic.Uint64, ports),
	}
}

// global reports whether r takes every request on port.
func (r *route) global(p *port) bool {
	h, ok := r.ports[p.fwd.AppPort()]
	return ok && h == nil
}

// heldAway waits, for a request of a global intercept whose holder's
// process is paused, until it runs again or the hold ends; it reports
// whether the app must answer instead (and counts that for the holder;
// the caller counts it in the port's toApp). Personal
// intercepts only get the requests their holder asked for, which wait on
// the laptop.
func (r *route) heldAway(ctx context.Context, p *port) bool {
	if !r.global(p) || r.pause.wait(ctx) {
		return false
	}
	r.stats.pausedToApp[p.idx].Add(1)
	return true
}

// sentToLaptop counts one request or connection on p that the laptop took.
func (r *route) sentToLaptop(p *port) { r.stats.toLaptop[p.idx].Add(1) }

// fellBack counts one meant for the laptop that the app answered instead.
func (r *route) fellBack(p *port) {
	r.stats.fallbacks[p.idx].Add(1)
	p.toApp.Add(1)
}
