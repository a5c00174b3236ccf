package agent_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kloop/kloop/agent"
	"github.com/kloop/kloop/agent/tunnel"
)

// stoppable is the laptop's process for pause tests: a real HTTP server on
// loopback whose /stop handler blocks until released, standing in for a
// request stopped at a breakpoint (Delve freezing a process is what the
// end-to-end test in test/intercept does; here only the agent is under
// test). It counts the connections it accepted.
type stoppable struct {
	*backend
	arrived chan struct{}
	release chan struct{}
	conns   atomic.Int64
}

func startStoppable(t *testing.T) *stoppable {
	s := &stoppable{arrived: make(chan struct{}, 1), release: make(chan struct{})}
	s.backend = startBackend(t, "laptop", func(srv *http.Server) {
		next := srv.Handler
		srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/stop" {
				s.arrived <- struct{}{}
				<-s.release
			}
			next.ServeHTTP(w, r)
		})
		srv.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		}
	})
	return s
}

func (l *laptop) pause(t *testing.T, paused bool, hold time.Duration) {
	t.Helper()
	if err := l.client.SetPaused(context.Background(), paused, hold); err != nil {
		t.Fatal(err)
	}
}

func pausedStats(t *testing.T, l *laptop) tunnel.PortStats {
	t.Helper()
	st, err := l.client.Stats(context.Background())
	if err != nil || len(st.Ports) != 1 {
		t.Fatalf("stats %+v, %v", st, err)
	}
	return st.Ports[0]
}

// While the laptop's process is paused under a global intercept, the
// request stopped there keeps waiting, and every other request, on new and
// kept-alive connections, HTTP/1.1 and h2c alike, is answered by the app
// after the hold, counted per holder; a request the hold is still waiting
// on goes to the laptop once it runs again, and so does all traffic after.
func TestPausedGlobalInterceptHoldsThenTheAppAnswers(t *testing.T) {
	app := startBackend(t, "app")
	lap := startStoppable(t)
	a := startAgent(t, nil, httpForward(app.addr()))
	url := listenURL(t, a, app.port())
	l := connect(t, a, map[int]string{app.port(): lap.addr()}, "")
	l.set(t, tunnel.Intercept{})

	// One connection, spliced to the laptop before the pause and kept
	// alive through it.
	keepAlive, opened := oneConnClient(false)
	if got, err := get(keepAlive, url, nil); err != nil || got != "laptop HTTP/1.1" {
		t.Fatalf("before the pause: %q, %v; want the laptop", got, err)
	}
	stopped := make(chan string, 1)
	go func() {
		got, err := get(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, url+"/stop", nil)
		if err != nil {
			got = err.Error()
		}
		stopped <- got
	}()
	<-lap.arrived
	l.pause(t, true, 200*time.Millisecond)
	if st := pausedStats(t, l); !st.Paused || st.PausedToApp != 0 {
		t.Fatalf("stats at the pause: %+v; want paused with nothing sent to the app yet", st)
	}

	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	clients := []struct {
		name, want string
		c          *http.Client
	}{
		{"new connections", "app HTTP/1.1", &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}},
		{"kept alive", "app HTTP/1.1", keepAlive},
		{"h2c", "app HTTP/2.0", &http.Client{Transport: h2c}},
	}
	sent := 0
	for _, c := range clients {
		for i := range 3 {
			if got, err := get(c.c, url, nil); err != nil || got != c.want {
				t.Fatalf("%s, request %d while paused: %q, %v; want %q", c.name, i, got, err, c.want)
			}
			sent++
		}
	}
	if st := pausedStats(t, l); st.PausedToApp != uint64(sent) {
		t.Errorf("pausedToApp = %d; want the %d requests the app answered while paused", st.PausedToApp, sent)
	}
	select {
	case got := <-stopped:
		t.Fatalf("the stopped request ended while paused: %q", got)
	default:
	}

	// A request held under a long hold goes to the laptop as soon as the
	// process runs again.
	l.pause(t, true, 30*time.Second)
	held := make(chan string, 1)
	go func() {
		got, err := get(&http.Client{Transport: &http.Transport{}}, url, nil)
		if err != nil {
			got = err.Error()
		}
		held <- got
	}()
	time.Sleep(200 * time.Millisecond) // let it reach the hold
	l.pause(t, false, 0)
	if got := <-held; got != "laptop HTTP/1.1" {
		t.Errorf("request held over the resume: %q; want the laptop", got)
	}
	close(lap.release)
	if got := <-stopped; got != "laptop HTTP/1.1" {
		t.Errorf("the stopped request after the resume: %q; want the laptop's answer", got)
	}
	for _, c := range clients {
		want := strings.Replace(c.want, "app", "laptop", 1)
		if got, err := get(c.c, url, nil); err != nil || got != want {
			t.Errorf("%s after the resume: %q, %v; want %q", c.name, got, err, want)
		}
	}
	if st := pausedStats(t, l); st.Paused {
		t.Errorf("stats after the resume: %+v; want not paused", st)
	}
	if *opened != 1 {
		t.Errorf("the kept-alive client opened %d connections; want its one connection to carry every request", *opened)
	}
	// The next pause counts from zero.
	l.pause(t, true, 50*time.Millisecond)
	if st := pausedStats(t, l); !st.Paused {
		t.Fatalf("second pause: stats %+v", st)
	}
	if got, err := get(keepAlive, url, nil); err != nil || got != "app HTTP/1.1" {
		t.Fatalf("second pause: %q, %v; want the app", got, err)
	}
	if st := pausedStats(t, l); st.PausedToApp != 1 {
		t.Errorf("pausedToApp in the second pause = %d; want 1", st.PausedToApp)
	}
}

// A tcp port under a global intercept is held the same way, per
// connection.
func TestPausedGlobalInterceptOnATCPPort(t *testing.T) {
	app := startEcho(t, "app")
	lap := startEcho(t, "laptop")
	a := startAgent(t, nil, agentForwardTCP(app.port()))
	addr, _ := a.ListenAddr(app.port())
	l := connect(t, a, map[int]string{app.port(): fmt.Sprintf("127.0.0.1:%d", lap.port())}, "")
	l.set(t, tunnel.Intercept{})
	l.pause(t, true, 100*time.Millisecond)
	if got := echoOnce(t, addr, "hi"); got != "app: hi" {
		t.Errorf("while paused: %q; want the app", got)
	}
	l.pause(t, false, 0)
	if got := echoOnce(t, addr, "hi"); got != "laptop: hi" {
		t.Errorf("after the resume: %q; want the laptop", got)
	}
}

func agentForwardTCP(port int) agent.Forward {
	return agent.Forward{Target: fmt.Sprintf("127.0.0.1:%d", port), Protocol: tunnel.ProtoTCP}
}

func echoOnce(t *testing.T, addr, line string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "%s\n", line)
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("echo: %v", err)
	}
	return strings.TrimSpace(string(buf[:n]))
}

// Kubelet probes (User-Agent kube-probe/...) are answered by the app under
// every kind of intercept, paused or not, and a TCP probe that connects and
// hangs up never reaches the laptop.
func TestProbesNeverReachTheLaptop(t *testing.T) {
	app := startBackend(t, "app")
	lap := startStoppable(t)
	a := startAgent(t, nil, httpForward(app.addr()))
	url := listenURL(t, a, app.port())
	addr, _ := a.ListenAddr(app.port())
	l := connect(t, a, map[int]string{app.port(): lap.addr()}, "")
	probe := http.Header{"User-Agent": {"kube-probe/1.37"}}
	oneShot := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	keepAlive := &http.Client{}

	check := func(what string) {
		t.Helper()
		before := lap.conns.Load()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		for _, c := range []*http.Client{oneShot, keepAlive} {
			if got, err := get(c, url+"/healthz", probe); err != nil || got != "app HTTP/1.1" {
				t.Errorf("%s: probe answered %q, %v; want the app", what, got, err)
			}
		}
		// A laptop connection for the TCP probe would have been made
		// while the HTTP probes were answered; give it a moment more.
		time.Sleep(100 * time.Millisecond)
		if n := lap.conns.Load() - before; n != 0 {
			t.Errorf("%s: the laptop got %d connections; want none", what, n)
		}
	}
	l.set(t, tunnel.Intercept{})
	if got, err := get(oneShot, url, nil); err != nil || got != "laptop HTTP/1.1" {
		t.Fatalf("global intercept: %q, %v; want the laptop", got, err)
	}
	check("global intercept")
	l.pause(t, true, time.Minute)
	check("paused global intercept")
	l.pause(t, false, 0)
	l.set(t, tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}})
	probe.Set("X-Dev", "alice")
	check("personal intercept, probe carrying the header")
}

// A personal intercept paused: requests with the holder's header wait on
// the laptop, whatever the hold; the others were the app's anyway.
func TestPausedHeaderInterceptKeepsItsRequestsOnTheLaptop(t *testing.T) {
	app := startBackend(t, "app")
	lap := startBackend(t, "laptop")
	a := startAgent(t, nil, httpForward(app.addr()))
	url := listenURL(t, a, app.port())
	l := connect(t, a, map[int]string{app.port(): lap.addr()}, "")
	l.set(t, tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}})
	l.pause(t, true, 10*time.Millisecond)
	c := &http.Client{}
	for range 3 {
		if got, err := get(c, url, http.Header{"X-Dev": {"alice"}}); err != nil || got != "laptop HTTP/1.1" {
			t.Errorf("matching request while paused: %q, %v; want the laptop", got, err)
		}
		if got, err := get(c, url, nil); err != nil || got != "app HTTP/1.1" {
			t.Errorf("other request while paused: %q, %v; want the app", got, err)
		}
	}
	if st := pausedStats(t, l); st.PausedToApp != 0 || st.ToLaptop != 3 {
		t.Errorf("stats = %+v; want 3 to the laptop and none sent away for the pause", st)
	}
	if err := l.client.SetPaused(context.Background(), true, -time.Second); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("a negative hold: %v; want an error that says so", err)
	}
}
