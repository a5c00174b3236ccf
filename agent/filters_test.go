package agent_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kloop/kloop/agent/tunnel"
)

// Three developers share one pod's agent with rules beyond one header:
// two headers (all of them), a path prefix with methods, and a path regex
// or a header (any of them). Under mixed concurrent traffic over HTTP/1.1
// (one shared keep-alive connection and fresh ones) and h2c, every request
// reaches the holder whose rule takes it, or the app, and a request two
// rules take goes to the rule set first by since, whatever order the
// daemons set them in.
func TestFiltersRouteMixedTraffic(t *testing.T) {
	app := startBackend(t, "app")
	a := startAgent(t, nil, httpForward(app.addr()))
	url := listenURL(t, a, app.port())
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	holders := []struct {
		name  string
		since time.Time
		rule  tunnel.RuleSpec
	}{
		{"carol", t0.Add(2 * time.Second), tunnel.RuleSpec{PathRegex: "^/v[0-9]+/orders", Header: map[string]string{"x-carol": "1"}, Match: "any"}},
		{"bob", t0.Add(time.Second), tunnel.RuleSpec{Path: "/api/", Method: []string{"POST,PUT"}}},
		{"alice", t0, tunnel.RuleSpec{Header: map[string]string{"x-dev": "alice", "x-team": "pay"}}},
	}
	for _, h := range holders {
		pc := startBackend(t, h.name)
		l := connectAs(t, a, map[int]string{app.port(): pc.addr()}, "", h.name+"@laptop", "id-"+h.name)
		f, err := tunnel.NewFilter(h.rule)
		if err != nil {
			t.Fatal(err)
		}
		l.set(t, tunnel.Intercept{Filter: f, Since: h.since})
	}

	aliceH := http.Header{"X-Dev": {"alice"}, "X-Team": {"pay"}}
	requests := []struct {
		method, path string
		header       http.Header
		want         string
	}{
		{"GET", "/", aliceH, "alice"},
		{"GET", "/", http.Header{"X-Dev": {"alice"}}, "app"},                     // one of alice's two headers
		{"GET", "/", http.Header{"X-Team": {"pay"}}, "app"},                      // the other
		{"POST", "/api/orders", nil, "bob"},                                      // prefix and method
		{"PUT", "/api/", nil, "bob"},                                             //
		{"GET", "/api/orders", nil, "app"},                                       // prefix, not the method
		{"POST", "/apiary", nil, "app"},                                          // method, not the prefix
		{"GET", "/v2/orders/7", nil, "carol"},                                    // regex alone
		{"DELETE", "/x", http.Header{"X-Carol": {"1"}}, "carol"},                 // header alone
		{"GET", "/api/v2/orders", nil, "app"},                                    // regex anchored at ^
		{"POST", "/api/v2/orders", aliceH, "alice"},                              // alice's and bob's: alice is first
		{"POST", "/api/x", http.Header{"X-Carol": {"1"}}, "bob"},                 // bob's and carol's: bob is first
		{"GET", "/v1/orders", http.Header{"X-Dev": {"alice"}}, "carol"},          // alice's half, carol's regex
		{"PATCH", "/v10/orders?x=/api/", http.Header{"X-Carol": {"0"}}, "carol"}, // the query is not the path
	}
	h1, _ := oneConnClient(false)
	h2, _ := oneConnClient(true)
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	const rounds = 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	var wrong []string
	sent := 0
	for _, c := range []struct {
		name  string
		c     *http.Client
		proto string
	}{{"keep-alive", h1, "HTTP/1.1"}, {"fresh", fresh, "HTTP/1.1"}, {"h2c", h2, "HTTP/2.0"}} {
		for _, r := range requests {
			sent += rounds
			wg.Add(1)
			go func() {
				defer wg.Done()
				want := r.want + " " + c.proto
				for i := range rounds {
					got, err := send(c.c, r.method, url+r.path, r.header)
					if err != nil || got != want {
						mu.Lock()
						wrong = append(wrong, fmt.Sprintf("%s %s %s %v (round %d): got %q, %v; want %q", c.name, r.method, r.path, r.header, i, got, err, want))
						mu.Unlock()
					}
				}
			}()
		}
	}
	wg.Wait()
	if len(wrong) > 0 {
		t.Fatalf("%d of %d requests misrouted or failed:\n%s", len(wrong), sent, strings.Join(wrong[:min(len(wrong), 10)], "\n"))
	}
}

// A rule that is the same as another holder's, spelled differently, is
// refused naming that holder; different rules that overlap are allowed.
func TestFiltersSameRuleOfAnotherHolderIsRefused(t *testing.T) {
	app := startBackend(t, "app")
	lap := startBackend(t, "laptop")
	a := startAgent(t, nil, httpForward(app.addr()))
	local := map[int]string{app.port(): lap.addr()}
	alice := connectAs(t, a, local, "", "alice@laptop", "id-alice")
	bob := connectAs(t, a, local, "", "bob@desk", "id-bob")
	mk := func(s tunnel.RuleSpec) *tunnel.Filter {
		f, err := tunnel.NewFilter(s)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	alice.set(t, tunnel.Intercept{Filter: mk(tunnel.RuleSpec{Path: "/api/", Method: []string{"GET,POST"}})})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := bob.client.SetIntercept(ctx, tunnel.Intercept{Filter: mk(tunnel.RuleSpec{Path: "/api/", Method: []string{"post", "get"}})})
	if err == nil || !strings.Contains(err.Error(), "the rule path /api/ and method POST,GET is already routed to alice@laptop") {
		t.Errorf("bob's copy of alice's rule: %v; want refused naming alice", err)
	}
	if err := bob.client.SetIntercept(ctx, tunnel.Intercept{Filter: mk(tunnel.RuleSpec{Path: "/api/", Method: []string{"PUT"}})}); err != nil {
		t.Errorf("bob's rule beside alice's: %v", err)
	}
}

// send makes one request and returns the body, as get does.
func send(c *http.Client, method, url string, header http.Header) (string, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return "", err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s: %s", resp.Status, body)
	}
	return strings.TrimSpace(string(body)), nil
}
