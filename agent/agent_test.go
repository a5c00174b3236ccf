package agent_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kloop/kloop/agent"
	"github.com/kloop/kloop/agent/tunnel"
)

var devHeader = http.Header{"X-Dev": {"alice"}}

func TestGlobalInterceptRoutesEveryRequestToTheLaptop(t *testing.T) {
	app := startBackend(t, "app")
	lap := startBackend(t, "laptop")
	a := startAgent(t, nil, httpForward(app.addr()))
	url := listenURL(t, a, app.port())
	c := &http.Client{}

	if got, err := get(c, url, nil); err != nil || got != "app HTTP/1.1" {
		t.Fatalf("before any intercept: got %q, %v; want the app", got, err)
	}
	l := connect(t, a, map[int]string{app.port(): lap.addr()}, "")
	if got, err := get(c, url, nil); err != nil || got != "app HTTP/1.1" {
		t.Fatalf("connected but not intercepting: got %q, %v; want the app", got, err)
	}
	l.set(t, tunnel.Intercept{})
	for i := range 5 {
		if got, err := get(c, url, nil); err != nil || got != "laptop HTTP/1.1" {
			t.Fatalf("request %d under a global intercept: got %q, %v; want the laptop", i, got, err)
		}
	}
	st, err := l.client.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Ports) != 1 || st.Ports[0].Port != app.port() || st.Ports[0].ToLaptop != 5 || st.Ports[0].ToApp != 2 {
		t.Errorf("stats = %+v; want 5 requests to the laptop and 2 to the app on port %d", st, app.port())
	}
	if err := l.client.ClearIntercept(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := get(c, url, nil); err != nil || got != "app HTTP/1.1" {
		t.Fatalf("after clearing the intercept: got %q, %v; want the app", got, err)
	}
}

// oneConnClient allows a single connection and counts how many it opened.
func oneConnClient(h2c bool) (*http.Client, *int) {
	tr := &http.Transport{MaxConnsPerHost: 1, DisableCompression: true}
	if h2c {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	var mu sync.Mutex
	opened := 0
	c := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			if !info.Reused {
				mu.Lock()
				opened++
				mu.Unlock()
			}
		}}
		return tr.RoundTrip(r.WithContext(httptrace.WithClientTrace(r.Context(), trace)))
	})}
	return c, &opened
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestHeaderInterceptRoutesEachRequestOnOneConnection(t *testing.T) {
	app := startBackend(t, "app")
	lap := startBackend(t, "laptop")
	a := startAgent(t, nil, httpForward(app.addr()))
	url := listenURL(t, a, app.port())
	l := connect(t, a, map[int]string{app.port(): lap.addr()}, "")
	l.set(t, tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}})

	for _, tc := range []struct {
		name  string
		h2c   bool
		proto string
	}{
		{"http1 keep-alive", false, "HTTP/1.1"},
		{"h2c prior knowledge", true, "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, opened := oneConnClient(tc.h2c)
			steps := []struct {
				header http.Header
				want   string
			}{
				{devHeader, "laptop"},
				{nil, "app"},
				{http.Header{"X-Dev": {"bob"}}, "app"},
				{devHeader, "laptop"},
				{devHeader, "laptop"},
				{nil, "app"},
			}
			for i, s := range steps {
				got, err := get(c, url, s.header)
				if want := s.want + " " + tc.proto; err != nil || got != want {
					t.Fatalf("request %d (header %v): got %q, %v; want %q", i, s.header, got, err, want)
				}
			}
			if *opened != 1 {
				t.Errorf("the client opened %d connections; the mixed requests should share one", *opened)
			}
		})
	}
}

func TestChangingTheInterceptReroutesOpenConnections(t *testing.T) {
	app := startBackend(t, "app")
	lap := startBackend(t, "laptop")
	a := startAgent(t, nil, httpForward(app.addr()))
	url := listenURL(t, a, app.port())
	l := connect(t, a, map[int]string{app.port(): lap.addr()}, "")
	l.set(t, tunnel.Intercept{})
	// A keep-alive client such as an ingress controller, connected while
	// the intercept was global.
	c, _ := oneConnClient(false)
	if got, err := get(c, url, nil); err != nil || got != "laptop HTTP/1.1" {
		t.Fatalf("global intercept: got %q, %v", got, err)
	}
	l.set(t, tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}})
	for i, s := range []struct {
		header http.Header
		want   string
	}{
		{nil, "app HTTP/1.1"},
		{devHeader, "laptop HTTP/1.1"},
		{nil, "app HTTP/1.1"},
	} {
		if got, err := get(c, url, s.header); err != nil || got != s.want {
			t.Fatalf("request %d after switching to a header intercept: got %q, %v; want %q", i, got, err, s.want)
		}
	}
}

func TestHeaderInterceptOverH2CUpgrade(t *testing.T) {
	app := startBackend(t, "app")
	lap := startBackend(t, "laptop")
	a := startAgent(t, nil, httpForward(app.addr()))
	addr, _ := a.ListenAddr(app.port())
	l := connect(t, a, map[int]string{app.port(): lap.addr()}, "")
	l.set(t, tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}})

	h2, first := dialH2CUpgrade(t, addr, "/upgrade", devHeader)
	// The request that asked for the upgrade went upstream as HTTP/1.1.
	if first != "laptop HTTP/1.1" {
		t.Fatalf("upgrade request with the header: got %q; want the laptop", first)
	}
	for i, s := range []struct {
		header http.Header
		want   string
	}{
		{nil, "app HTTP/2.0"},
		{devHeader, "laptop HTTP/2.0"},
		{nil, "app HTTP/2.0"},
	} {
		if got := h2.get(t, "/next", s.header); got != s.want {
			t.Fatalf("h2 request %d on the upgraded connection: got %q; want %q", i, got, s.want)
		}
	}
}

func TestTCPPortPassThrough(t *testing.T) {
	app := startEcho(t, "app")
	lap := startEcho(t, "laptop")
	httpApp := startBackend(t, "httpapp")
	a := startAgent(t, nil,
		agent.Forward{Target: fmt.Sprintf("127.0.0.1:%d", app.port()), Protocol: tunnel.ProtoTCP},
		httpForward(httpApp.addr()))
	addr, _ := a.ListenAddr(app.port())
	talk := func() string {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "hello\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("read echo through the agent: %v", err)
		}
		return strings.TrimSpace(line)
	}
	if got := talk(); got != "app: hello" {
		t.Fatalf("without intercept: got %q; want the app", got)
	}
	l := connect(t, a, map[int]string{app.port(): fmt.Sprintf("127.0.0.1:%d", lap.port())}, "")

	// A header intercept of every port leaves the tcp port on the app.
	l.set(t, tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}})
	if got := talk(); got != "app: hello" {
		t.Fatalf("header intercept of all ports: tcp port got %q; want the app", got)
	}
	// Naming the tcp port in a header intercept is refused, clearly.
	err := l.client.SetIntercept(context.Background(), tunnel.Intercept{Ports: []int{app.port()}, Header: &tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}})
	if err == nil || !strings.Contains(err.Error(), "tcp") || !strings.Contains(err.Error(), "global") {
		t.Fatalf("header intercept of a tcp port: err = %v; want a refusal that says to use a global intercept", err)
	}
	err = l.client.SetIntercept(context.Background(), tunnel.Intercept{Ports: []int{1}})
	if err == nil || !strings.Contains(err.Error(), "not intercepted") {
		t.Fatalf("intercept of an unknown port: err = %v; want one naming the forwarded ports", err)
	}

	l.set(t, tunnel.Intercept{Ports: []int{app.port()}})
	if got := talk(); got != "laptop: hello" {
		t.Fatalf("global intercept: got %q; want the laptop", got)
	}
	// A connection left open on the laptop ends with the intercept, so the
	// client reconnects to the app instead of talking to a laptop that left.
	open, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	openR := bufio.NewReader(open)
	fmt.Fprintf(open, "first\n")
	if line, _ := openR.ReadString('\n'); line != "laptop: first\n" {
		t.Fatalf("open connection under the intercept: got %q", line)
	}
	if err := l.client.ClearIntercept(context.Background()); err != nil {
		t.Fatal(err)
	}
	open.SetReadDeadline(time.Now().Add(30 * time.Second))
	if line, err := openR.ReadString('\n'); err != io.EOF {
		t.Fatalf("connection to the laptop after the intercept was cleared: read %q, %v; want it closed", line, err)
	}
	if got := talk(); got != "app: hello" {
		t.Fatalf("after clearing: got %q; want the app", got)
	}
	l.set(t, tunnel.Intercept{Ports: []int{app.port()}})
	// The HTTP port was not named, so it stays on the app.
	if got, err := get(http.DefaultClient, listenURL(t, a, httpApp.port()), nil); err != nil || got != "httpapp HTTP/1.1" {
		t.Fatalf("http port not named in the intercept: got %q, %v", got, err)
	}
}

func TestWrongTokenIsRefusedAndLoggedWithoutTheToken(t *testing.T) {
	app := startBackend(t, "app")
	var log logBuffer
	a := startAgent(t, &log, httpForward(app.addr()))
	const forged = "forged-token-value"
	conn, err := net.Dial("tcp", a.ControlAddr())
	if err != nil {
		t.Fatal(err)
	}
	// The agent proves itself first, and a client with another token
	// cannot check that proof: it stops before sending its own.
	_, err = tunnel.Dial(context.Background(), conn, forged)
	if !errors.Is(err, tunnel.ErrAgentUnproven) {
		t.Fatalf("dial with a forged token: err = %v; want ErrAgentUnproven", err)
	}
	if !strings.Contains(err.Error(), "kloop leave") {
		t.Errorf("refusal %q does not say what to do", err)
	}
	eventually(t, "the agent logs the refusal", func() bool { return strings.Contains(log.String(), "refused tunnel client") })
	if s := log.String(); strings.Contains(s, forged) || strings.Contains(s, testToken) {
		t.Errorf("the agent log contains a token:\n%s", s)
	}
	if got, err := get(http.DefaultClient, listenURL(t, a, app.port()), nil); err != nil || got != "app HTTP/1.1" {
		t.Fatalf("traffic after a refused client: got %q, %v; want the app", got, err)
	}
}

// relay stands in for a Kubernetes port-forward that can hang: after freeze
// it keeps both connections open but moves no more bytes.
type relay struct {
	ln     net.Listener
	target string
	frozen chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func startRelay(t testing.TB, target string) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: target, frozen: make(chan struct{})}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, c, up)
			r.mu.Unlock()
			r.wg.Add(2)
			go r.pump(c, up)
			go r.pump(up, c)
		}
	}()
	t.Cleanup(r.close)
	return r
}

func (r *relay) pump(dst, src net.Conn) {
	defer r.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-r.frozen:
			return // hold the connection open, forward nothing
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (r *relay) freeze() { r.once.Do(func() { close(r.frozen) }) }

func (r *relay) close() {
	r.freeze()
	r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func TestHungTunnelFallsBackToTheAppWithoutFailingRequests(t *testing.T) {
	app := startBackend(t, "app")
	lap := startBackend(t, "laptop")
	a := startAgent(t, nil, httpForward(app.addr()))
	url := listenURL(t, a, app.port())
	rl := startRelay(t, a.ControlAddr())
	l := connect(t, a, map[int]string{app.port(): lap.addr()}, rl.ln.Addr().String())
	l.set(t, tunnel.Intercept{})
	c := &http.Client{}
	if got, err := get(c, url, nil); err != nil || got != "laptop HTTP/1.1" {
		t.Fatalf("global intercept: got %q, %v", got, err)
	}

	rl.freeze()
	// The first request after the freeze waits for the keep-alive to give
	// up on the laptop and is then answered by the app; none may fail.
	for i := range 20 {
		got, err := get(c, url, nil)
		if err != nil || got != "app HTTP/1.1" {
			t.Fatalf("request %d after the tunnel hung: got %q, %v; want the app", i, got, err)
		}
	}
	select {
	case <-l.client.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon side never noticed the hung tunnel")
	}
}

func TestClosedTunnelFallsBackToTheApp(t *testing.T) {
	app := startBackend(t, "app")
	lap := startBackend(t, "laptop")
	a := startAgent(t, nil, httpForward(app.addr()))
	url := listenURL(t, a, app.port())
	l := connect(t, a, map[int]string{app.port(): lap.addr()}, "")
	l.set(t, tunnel.Intercept{})
	c := &http.Client{}
	if got, err := get(c, url, nil); err != nil || got != "laptop HTTP/1.1" {
		t.Fatalf("global intercept: got %q, %v", got, err)
	}
	l.close()
	for i := range 10 {
		if got, err := get(c, url, nil); err != nil || got != "app HTTP/1.1" {
			t.Fatalf("request %d after the daemon closed the tunnel: got %q, %v; want the app", i, got, err)
		}
	}
}

func TestLaptopProcessDownTheAppAnswers(t *testing.T) {
	app := startBackend(t, "app")
	a := startAgent(t, nil, httpForward(app.addr()))
	url := listenURL(t, a, app.port())
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	l := connect(t, a, map[int]string{app.port(): deadAddr}, "")
	// A fresh connection per request: global intercepts route connections.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

	for _, tc := range []struct {
		name string
		ic   tunnel.Intercept
	}{
		{"global", tunnel.Intercept{}},
		{"header", tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l.set(t, tc.ic)
			before, err := l.client.Stats(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got, err := get(c, url, devHeader); err != nil || got != "app HTTP/1.1" {
				t.Fatalf("GET with the laptop process down: got %q, %v; want the app", got, err)
			}
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("order 42"))
			req.Header.Set("X-Dev", "alice")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "app HTTP/1.1 order 42" {
				t.Fatalf("POST with the laptop process down: got %q; want the app with the whole body", body)
			}
			after, err := l.client.Stats(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if d := after.Ports[0].Fallbacks - before.Ports[0].Fallbacks; d != 2 || after.Ports[0].ToLaptop != 0 {
				t.Errorf("stats went from %+v to %+v; want 2 more fallbacks and nothing served by the laptop", before, after)
			}
		})
	}
}

func TestNewerClientReplacesTheOld(t *testing.T) {
	app := startBackend(t, "app")
	lap := startBackend(t, "laptop")
	a := startAgent(t, nil, httpForward(app.addr()))
	url := listenURL(t, a, app.port())
	old := connect(t, a, map[int]string{app.port(): lap.addr()}, "")
	old.set(t, tunnel.Intercept{})
	fresh := connect(t, a, map[int]string{app.port(): lap.addr()}, "")
	select {
	case <-old.client.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the old tunnel stayed open after a newer client connected")
	}
	if got, err := get(http.DefaultClient, url, nil); err != nil || got != "app HTTP/1.1" {
		t.Fatalf("the old client's intercept ended with it: got %q, %v; want the app", got, err)
	}
	fresh.set(t, tunnel.Intercept{})
	if got, err := get(http.DefaultClient, url, nil); err != nil || got != "laptop HTTP/1.1" {
		t.Fatalf("new client's intercept: got %q, %v", got, err)
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()

	app := startBackend(t, "app")
	lap := startBackend(t, "laptop")
	echoApp := startEcho(t, "app")
	echoLap := startEcho(t, "laptop")
	a := startAgent(t, nil, httpForward(app.addr()),
		agent.Forward{Target: fmt.Sprintf("127.0.0.1:%d", echoApp.port()), Protocol: tunnel.ProtoTCP})
	l := connect(t, a, map[int]string{
		app.port():     lap.addr(),
		echoApp.port(): fmt.Sprintf("127.0.0.1:%d", echoLap.port()),
	}, "")
	url := listenURL(t, a, app.port())
	h1, _ := oneConnClient(false)
	h2, _ := oneConnClient(true)
	for _, ic := range []tunnel.Intercept{{}, {Ports: []int{app.port()}, Header: &tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}}} {
		l.set(t, ic)
		for _, c := range []*http.Client{h1, h2} {
			for _, h := range []http.Header{nil, devHeader} {
				if _, err := get(c, url, h); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	tcpAddr, _ := a.ListenAddr(echoApp.port())
	open, err := net.Dial("tcp", tcpAddr) // left open: Close must end it
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(open, "x\n")
	bufio.NewReader(open).ReadString('\n')
	outbound, err := l.client.DialCluster(context.Background(), "tcp", app.addr())
	if err != nil {
		t.Fatal(err)
	}

	l.close()
	a.Close()
	outbound.Close()
	open.Close()
	for _, c := range []*http.Client{h1, h2} {
		c.CloseIdleConnections()
	}
	app.close()
	lap.close()
	echoApp.ln.Close()
	echoLap.ln.Close()
	echoApp.wg.Wait()
	echoLap.wg.Wait()

	eventually(t, "goroutines return to the count before the test", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

func TestStartRejectsBadConfig(t *testing.T) {
	good := httpForward("127.0.0.1:8080")
	for _, tc := range []struct {
		name string
		cfg  agent.Config
		want string
	}{
		{"no forwards", agent.Config{Token: "t", Control: "127.0.0.1:0"}, "--forward"},
		{"no token", agent.Config{Forwards: []agent.Forward{good}, Control: "127.0.0.1:0"}, "token"},
		{"control not loopback", agent.Config{Forwards: []agent.Forward{good}, Token: "t", Control: "0.0.0.0:7650"}, "not loopback"},
		{"port twice", agent.Config{Forwards: []agent.Forward{good, good}, Token: "t", Control: "127.0.0.1:0"}, "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := agent.Start(context.Background(), tc.cfg)
			if err == nil {
				a.Close()
				t.Fatalf("Start succeeded; want an error mentioning %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestParseForward(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    agent.Forward
		wantErr string
	}{
		{"9080=127.0.0.1:8080", agent.Forward{ListenPort: 9080, Target: "127.0.0.1:8080", Protocol: "http"}, ""},
		{"9080=8080", agent.Forward{ListenPort: 9080, Target: "127.0.0.1:8080", Protocol: "http"}, ""},
		{"9432=localhost:5432/tcp", agent.Forward{ListenPort: 9432, Target: "localhost:5432", Protocol: "tcp"}, ""},
		{"9080=[::1]:8080/http", agent.Forward{ListenPort: 9080, Target: "[::1]:8080", Protocol: "http"}, ""},
		{"9080", agent.Forward{}, "missing '='"},
		{"9080=8080/udp", agent.Forward{}, "not http or tcp"},
		{"x=8080", agent.Forward{}, "listen port"},
		{"9080=host:99999", agent.Forward{}, "target port"},
		{"70000=8080", agent.Forward{}, "listen port"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := agent.ParseForward(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v; want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestCloseEndsRequestsInFlight(t *testing.T) {
	arrived := make(chan struct{}, 2)
	slow := func(name string) *backend {
		return startBackend(t, name, func(srv *http.Server) {
			srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				arrived <- struct{}{}
				<-r.Context().Done() // answers only when the caller gives up
			})
		})
	}
	app := slow("app")
	h2app := slow("h2app")
	a, err := agent.Start(context.Background(), agent.Config{
		Forwards:   []agent.Forward{httpForward(app.addr()), httpForward(h2app.addr())},
		ListenHost: "127.0.0.1",
		Control:    "127.0.0.1:0",
		Token:      testToken,
	})
	if err != nil {
		t.Fatal(err)
	}
	h1, _ := oneConnClient(false)
	h2, _ := oneConnClient(true)
	errs := make(chan error, 2)
	go func() { _, err := get(h1, listenURL(t, a, app.port()), nil); errs <- err }()
	go func() { _, err := get(h2, listenURL(t, a, h2app.port()), nil); errs <- err }()
	<-arrived
	<-arrived

	closed := make(chan struct{})
	go func() { a.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close waited for requests the app never answers")
	}
	for range 2 {
		if err := <-errs; err == nil {
			t.Error("a request cut off by Close reported success")
		}
	}
}
