package claim

import (
	"net/http"
	"sync"
	"time"
)

// serverClock estimates the apiserver's clock from the Date header of every
// response the claimer receives.
//
// Why the server's clock: lease times are written by one client and judged by
// another, so judging them with each client's own clock makes a client whose
// clock runs ahead steal live slots, and one whose clock runs behind hold
// slots too long. All lease times this package writes and compares are in the
// apiserver's time basis, so the clients' clocks only need to agree with the
// server to within the estimate's error.
//
// The Date header has one-second resolution: the server's time at the response
// lies in [Date, Date+1s). The estimate takes Date+0.5s at the local midpoint
// of the request, so its error is at most 0.5s plus half the round trip.
// Expiry decisions add clockMargin on top to absorb that.
type serverClock struct {
	local func() time.Time

	mu     sync.Mutex
	offset time.Duration // server minus local
	known  bool
	// best keeps the round trip of the sample the offset came from; a later
	// sample replaces it when it is at least as precise or the estimate is old.
	bestRTT time.Duration
	at      time.Time
}

// clockMargin is added to every expiry: the estimate's worst-case error
// (0.5s from the header resolution plus half a round trip) with room to spare.
const clockMargin = 2 * time.Second

func newServerClock(local func() time.Time) *serverClock {
	if local == nil {
		local = time.Now
	}
	return &serverClock{local: local}
}

// Now returns the estimated apiserver time.
func (c *serverClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local().Add(c.offset)
}

// Offset returns the estimated server-minus-local offset and whether any
// response has been seen yet.
func (c *serverClock) Offset() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset, c.known
}

func (c *serverClock) observe(start, end time.Time, date string) {
	if date == "" {
		return
	}
	server, err := http.ParseTime(date)
	if err != nil {
		return
	}
	rtt := end.Sub(start)
	mid := start.Add(rtt / 2)
	offset := server.Add(500 * time.Millisecond).Sub(mid)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.known || rtt <= c.bestRTT || end.Sub(c.at) > time.Minute {
		c.offset, c.known, c.bestRTT, c.at = offset, true, rtt, end
	}
}

// wrap returns a RoundTripper that feeds every response's Date header to c.
func (c *serverClock) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		start := c.local()
		resp, err := rt.RoundTrip(req)
		if err == nil {
			c.observe(start, c.local(), resp.Header.Get("Date"))
		}
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
