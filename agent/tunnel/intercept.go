package tunnel

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Intercept is the routing an agent applies while a client is connected. It
// lives only as long as the tunnel that set it: when the tunnel ends, the agent
// sends everything to the app again.
type Intercept struct {
	// Ports are app container ports to intercept; empty means every forwarded
	// port (for a header intercept, every HTTP port).
	Ports []int `json:"ports,omitempty"`
	// Header, when set, makes this a personal intercept: only HTTP requests
	// carrying this header value reach the laptop. Nil means global: every
	// request and connection on the intercepted ports reaches the laptop.
	Header *HeaderMatch `json:"header,omitempty"`
	// Filter, since protocol version 4, is a personal intercept's rule
	// beyond one header; it takes over Header. A rule that is one header
	// travels as Header, so agents of older versions keep taking it.
	Filter *Filter `json:"filter,omitempty"`
	// Since, since version 4, is when the holder's rule was first set on
	// the workload: when a request matches the rules of several holders,
	// the earliest takes it, on every pod alike.
	Since time.Time `json:"since,omitzero"`
	// Mirror, since version 5, makes the agent send the laptop a copy of
	// each request the rule takes (every HTTP request when global) while
	// the app answers the caller; the laptop's answer is discarded. A
	// mirror holder takes no request from anyone, so its rule may overlap
	// any other holder's.
	Mirror bool `json:"mirror,omitempty"`
}

// MirrorHeader marks a request copy a mirror intercept sends the laptop;
// its value is the status code the app in the cluster answered the caller
// with. The copy goes out only once that answer is known.
const MirrorHeader = "Kloop-Mirror"

// MaxMirrorBody caps the request body a copy carries: a request with a
// larger body is not copied (it is counted in PortStats.MirrorDropped), as
// a truncated body would make the laptop's process see a request no caller
// sent.
const MaxMirrorBody = 64 << 10

// Rule is the intercept's personal rule, whichever field carries it; nil
// means global.
func (ic Intercept) Rule() *Filter {
	switch {
	case ic.Filter != nil:
		return ic.Filter
	case ic.Header != nil:
		return &Filter{Headers: []HeaderMatch{*ic.Header}}
	}
	return nil
}

// HeaderMatch selects requests whose header Name has exactly Value.
type HeaderMatch struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// ParseHeaderMatch parses the NAME=VALUE form users type after --header.
func ParseHeaderMatch(s string) (HeaderMatch, error) {
	name, value, ok := strings.Cut(s, "=")
	if !ok {
		return HeaderMatch{}, fmt.Errorf("header %q: want NAME=VALUE, e.g. x-dev=alice", s)
	}
	h := HeaderMatch{Name: strings.TrimSpace(name), Value: value}
	return h, h.Validate()
}

// Validate reports a header name or value that HTTP cannot carry.
func (h HeaderMatch) Validate() error {
	if !httpguts.ValidHeaderFieldName(h.Name) {
		return fmt.Errorf("header name %q is not a valid HTTP header name", h.Name)
	}
	if h.Value == "" {
		return fmt.Errorf("header %s: the value is empty; give a value that only your requests carry", h.Name)
	}
	if !httpguts.ValidHeaderFieldValue(h.Value) {
		return fmt.Errorf("header %s: the value contains characters HTTP cannot carry", h.Name)
	}
	return nil
}

// Matches reports whether a request carries the header value.
func (h HeaderMatch) Matches(header http.Header) bool {
	for _, v := range header.Values(h.Name) {
		if v == h.Value {
			return true
		}
	}
	return false
}

func (h HeaderMatch) String() string { return h.Name + "=" + h.Value }

// Stats counts where an agent sent traffic since it started.
type Stats struct {
	Ports []PortStats `json:"ports"`
}

// PortStats counts one forwarded port. HTTP ports count requests, TCP ports
// count connections.
type PortStats struct {
	Port     int    `json:"port"`
	ToLaptop uint64 `json:"toLaptop"`
	ToApp    uint64 `json:"toApp"`
	// Fallbacks were meant for the laptop but went to the app because the
	// laptop side did not take them; they are also counted in ToApp.
	Fallbacks uint64 `json:"fallbacks"`
	// PausedToApp counts requests (connections, for tcp ports) of this
	// holder's global intercept that the app answered because the
	// holder's process was paused, since its last pause began; they are
	// also counted in ToApp.
	PausedToApp uint64 `json:"pausedToApp,omitempty"`
	// Paused is whether this holder's process is paused now.
	Paused bool `json:"paused,omitempty"`
	// Mirrored counts copies a mirror intercept sent this holder's laptop
	// (version 5); the requests themselves are counted in ToApp.
	Mirrored uint64 `json:"mirrored,omitempty"`
	// MirrorDropped counts copies not sent: the holder's queue was full
	// because the laptop was slower than the callers, the request's body
	// was over MaxMirrorBody, or the laptop did not take the copy.
	MirrorDropped uint64 `json:"mirrorDropped,omitempty"`
}
