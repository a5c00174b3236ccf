package agent_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kloop/kloop/agent/tunnel"
)

// Two developers' daemons share one pod's agent, each with a header of
// their own: under mixed concurrent traffic, on shared keep-alive
// connections and fresh ones alike, every request reaches its holder's
// laptop or the app, and each holder's stats count only their own.
func TestHoldersShareAnAgentEachWithTheirOwnRequests(t *testing.T) {
	app := startBackend(t, "app")
	alicePC := startBackend(t, "alice")
	bobPC := startBackend(t, "bob")
	a := startAgent(t, nil, httpForward(app.addr()))
	url := listenURL(t, a, app.port())
	alice := connectAs(t, a, map[int]string{app.port(): alicePC.addr()}, "", "alice@laptop", "id-alice")
	bob := connectAs(t, a, map[int]string{app.port(): bobPC.addr()}, "", "bob@desk", "id-bob")
	alice.set(t, tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}})
	bob.set(t, tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "x-dev", Value: "bob"}})

	senders := []struct {
		header http.Header
		want   string
	}{
		{http.Header{"X-Dev": {"alice"}}, "alice HTTP/1.1"},
		{http.Header{"X-Dev": {"bob"}}, "bob HTTP/1.1"},
		{nil, "app HTTP/1.1"},
		{http.Header{"X-Dev": {"carol"}}, "app HTTP/1.1"},
	}
	const perSender = 50
	shared, _ := oneConnClient(false) // one keep-alive connection for everyone, like a gateway's
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var wrong []string
	for _, c := range []*http.Client{shared, fresh} {
		for _, s := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perSender {
					got, err := get(c, url, s.header)
					if err != nil || got != s.want {
						mu.Lock()
						wrong = append(wrong, fmt.Sprintf("request %d with %v: got %q, %v; want %q", i, s.header, got, err, s.want))
						mu.Unlock()
					}
				}
			}()
		}
	}
	wg.Wait()
	if len(wrong) > 0 {
		t.Fatalf("%d of %d requests misrouted or failed, first: %s", len(wrong), 2*len(senders)*perSender, wrong[0])
	}
	for _, h := range []struct {
		name string
		l    *laptop
	}{{"alice", alice}, {"bob", bob}} {
		st := stats(t, h.l)
		if got := st.Ports[0].ToLaptop; got != 2*perSender {
			t.Errorf("%s's stats count %d requests to their laptop; want %d (theirs only)", h.name, got, 2*perSender)
		}
	}

	// Alice leaves: her requests go to the app, Bob's still reach him.
	alice.close()
	eventually(t, "alice's requests go to the app once her tunnel is gone", func() bool {
		got, err := get(fresh, url, http.Header{"X-Dev": {"alice"}})
		return err == nil && got == "app HTTP/1.1"
	})
	for i := range 10 {
		if got, err := get(shared, url, http.Header{"X-Dev": {"bob"}}); err != nil || got != "bob HTTP/1.1" {
			t.Fatalf("bob's request %d after alice left: got %q, %v", i, got, err)
		}
	}
}

// Rules of different holders that would select the same requests are
// refused with the other holder's name; a holder may change their own rule.
func TestHoldersRulesThatWouldOverlapAreRefused(t *testing.T) {
	app := startBackend(t, "app")
	lap := startBackend(t, "laptop")
	a := startAgent(t, nil, httpForward(app.addr()))
	local := map[int]string{app.port(): lap.addr()}
	alice := connectAs(t, a, local, "", "alice@laptop", "id-alice")
	bob := connectAs(t, a, local, "", "bob@desk", "id-bob")
	setErr := func(l *laptop, ic tunnel.Intercept) error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return l.client.SetIntercept(ctx, ic)
	}
	aliceHeader := &tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}

	alice.set(t, tunnel.Intercept{Header: aliceHeader})
	for _, tc := range []struct {
		name string
		ic   tunnel.Intercept
		want string
	}{
		{"global over a personal rule", tunnel.Intercept{}, "alice@laptop (personal, X-Dev=alice)"},
		{"the same header, spelled in another case", tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "x-dev", Value: "alice"}}, "already routed to alice@laptop"},
	} {
		err := setErr(bob, tc.ic)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: bob's SetIntercept = %v; want an error containing %q", tc.name, err, tc.want)
		}
	}
	// Alice turns hers global; now any personal rule of Bob's is refused.
	alice.set(t, tunnel.Intercept{})
	if err := setErr(bob, tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "X-Dev", Value: "bob"}}); err == nil || !strings.Contains(err.Error(), "intercepted globally by alice@laptop") {
		t.Errorf("bob's personal rule under alice's global one = %v; want refused naming alice", err)
	}
	// The refusals changed nothing: every request still reaches Alice.
	if got, err := get(http.DefaultClient, listenURL(t, a, app.port()), nil); err != nil || got != "laptop HTTP/1.1" {
		t.Errorf("after the refused rules: got %q, %v; want alice's global intercept", got, err)
	}
}

// A daemon that reconnects (same holder ID) replaces its own old tunnel and
// keeps its counts; another holder's tunnel is untouched.
func TestReconnectingHolderReplacesOnlyItsOwnTunnel(t *testing.T) {
	app := startBackend(t, "app")
	lap := startBackend(t, "laptop")
	a := startAgent(t, nil, httpForward(app.addr()))
	url := listenURL(t, a, app.port())
	local := map[int]string{app.port(): lap.addr()}
	bob := connectAs(t, a, local, "", "bob@desk", "id-bob")
	bob.set(t, tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "X-Dev", Value: "bob"}})
	first := connectAs(t, a, local, "", "alice@laptop", "id-alice")
	first.set(t, tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}})
	if got, err := get(http.DefaultClient, url, devHeader); err != nil || got != "laptop HTTP/1.1" {
		t.Fatalf("alice's request: got %q, %v", got, err)
	}
	second := connectAs(t, a, local, "", "alice@laptop", "id-alice")
	select {
	case <-first.client.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("alice's old tunnel stayed open after her daemon reconnected")
	}
	second.set(t, tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}})
	for _, h := range []http.Header{devHeader, {"X-Dev": {"bob"}}} {
		if got, err := get(http.DefaultClient, url, h); err != nil || got != "laptop HTTP/1.1" {
			t.Errorf("request with %v after alice reconnected: got %q, %v; want the laptop", h, got, err)
		}
	}
	if got := stats(t, second).Ports[0].ToLaptop; got != 2 {
		t.Errorf("alice's count after reconnecting = %d; want 2 (kept across her tunnels)", got)
	}
	select {
	case <-bob.client.Done():
		t.Error("bob's tunnel was closed when alice reconnected")
	default:
	}
}

func stats(t testing.TB, l *laptop) tunnel.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := l.client.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
