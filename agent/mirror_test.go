package agent_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/kloop/kloop/agent/tunnel"
)

// seen is what a mirror laptop received of one copy.
type seen struct {
	method, path, body, mirror, proto string
}

// mirrorLaptop is a local process that records every request it gets and
// answers 500, an answer nobody must see; until release is closed (when
// set) it does not answer at all.
type mirrorLaptop struct {
	addr    string
	mu      sync.Mutex
	got     []seen
	release chan struct{}
	once    sync.Once
}

func startMirrorLaptop(t *testing.T, blocked bool) *mirrorLaptop {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &mirrorLaptop{addr: ln.Addr().String()}
	if blocked {
		m.release = make(chan struct{})
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m.mu.Lock()
		m.got = append(m.got, seen{r.Method, r.URL.RequestURI(), string(body), r.Header.Get(tunnel.MirrorHeader), r.Proto})
		m.mu.Unlock()
		if m.release != nil {
			<-m.release
		}
		http.Error(w, "laptop", http.StatusInternalServerError)
	})}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() {
		if m.release != nil {
			m.open()
		}
		srv.Close()
		<-done
	})
	return m
}

func (m *mirrorLaptop) open() { m.once.Do(func() { close(m.release) }) }

func (m *mirrorLaptop) seen() []seen {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]seen(nil), m.got...)
}

// do sends one request and returns the status and body the caller got.
func do(t *testing.T, c *http.Client, method, url string, body io.Reader, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// A mirror holder's laptop gets a copy of every request the app answers,
// on the fast path, through the HTTP server (chunked bodies, h2c) alike,
// with its body and the app's status, while every caller gets the app's
// answer and never the laptop's. Another developer's steal rule on the
// same port keeps its requests, and those are not copied.
func TestMirrorCopiesReachTheLaptopWhileTheAppAnswers(t *testing.T) {
	app := startBackend(t, "app")
	aliceApp := startMirrorLaptop(t, false)
	bobPC := startBackend(t, "bob")
	a := startAgent(t, nil, httpForward(app.addr()))
	url := listenURL(t, a, app.port())
	alice := connectAs(t, a, map[int]string{app.port(): aliceApp.addr}, "", "alice@laptop", "id-alice")
	bob := connectAs(t, a, map[int]string{app.port(): bobPC.addr()}, "", "bob@desk", "id-bob")
	bob.set(t, tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "x-dev", Value: "bob"}})
	// A global mirror overlaps Bob's rule: both are accepted.
	alice.set(t, tunnel.Intercept{Mirror: true})

	h1 := &http.Client{}
	h2, _ := oneConnClient(true)
	type call struct {
		c      *http.Client
		method string
		path   string
		body   string
		chunk  bool
		header http.Header
		want   string
	}
	calls := []call{
		{h1, "GET", "/orders?id=7", "", false, nil, "app HTTP/1.1"},
		{h1, "POST", "/orders", `{"qty":2}`, false, nil, `app HTTP/1.1 {"qty":2}`},
		{h1, "PUT", "/orders/7", "chunked body", true, nil, "app HTTP/1.1 chunked body"},
		{h2, "POST", "/grpc-ish", "over h2c", false, nil, "app HTTP/2.0 over h2c"},
		{h1, "GET", "/bob-only", "", false, http.Header{"X-Dev": {"bob"}}, "bob HTTP/1.1"},
	}
	for _, c := range calls {
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
			if c.chunk {
				body = io.MultiReader(body) // unknown length: sent chunked
			}
		}
		status, got := do(t, c.c, c.method, url+c.path, body, c.header)
		if status != http.StatusOK || got != c.want {
			t.Errorf("%s %s: the caller got %d %q; want 200 %q (the cluster's answer)", c.method, c.path, status, got, c.want)
		}
	}
	want := map[string]seen{
		"/orders?id=7": {"GET", "/orders?id=7", "", "200", "HTTP/1.1"},
		"/orders":      {"POST", "/orders", `{"qty":2}`, "200", "HTTP/1.1"},
		"/orders/7":    {"PUT", "/orders/7", "chunked body", "200", "HTTP/1.1"},
		"/grpc-ish":    {"POST", "/grpc-ish", "over h2c", "200", "HTTP/1.1"},
	}
	eventually(t, "the laptop has a copy of each request the app answered", func() bool { return len(aliceApp.seen()) >= len(want) })
	for _, s := range aliceApp.seen() {
		w, ok := want[s.path]
		if !ok {
			t.Errorf("the laptop got a copy of %s %s, which the app did not answer", s.method, s.path)
			continue
		}
		if s != w {
			t.Errorf("copy of %s: got %+v; want %+v", s.path, s, w)
		}
		delete(want, s.path)
	}
	for p := range want {
		t.Errorf("no copy of %s reached the laptop", p)
	}
	eventually(t, "the stats count the copies", func() bool { return stats(t, alice).Ports[0].Mirrored == 4 })
	st := stats(t, alice).Ports[0]
	if st.ToLaptop != 0 || st.MirrorDropped != 0 {
		t.Errorf("mirror holder's stats: %+v; want no request taken and none dropped", st)
	}

	// Leaving ends the copies; the app keeps answering.
	alice.close()
	eventually(t, "the agent drops the mirror once its tunnel is gone", func() bool {
		n := len(aliceApp.seen())
		do(t, h1, "GET", url+"/after", nil, nil)
		return len(aliceApp.seen()) == n
	})
}

// A laptop that does not answer (stopped at a breakpoint, or slow) never
// delays a caller: every request is answered by the app while the laptop
// answers none, the copies beyond the bounded queue are dropped and
// counted, and the queued ones arrive once the laptop runs again. A body
// over the cap is not copied, and counted as dropped.
func TestMirrorSlowLaptopNeverDelaysCallers(t *testing.T) {
	app := startBackend(t, "app")
	pc := startMirrorLaptop(t, true)
	a := startAgent(t, nil, httpForward(app.addr()))
	url := listenURL(t, a, app.port())
	l := connect(t, a, map[int]string{app.port(): pc.addr}, "")
	l.set(t, tunnel.Intercept{Mirror: true, Filter: &tunnel.Filter{PathPrefix: "/api/"}})

	const n = 300
	c := &http.Client{}
	for i := range n {
		status, got := do(t, c, "GET", fmt.Sprintf("%s/api/%d", url, i), nil, nil)
		if status != http.StatusOK || got != "app HTTP/1.1" {
			t.Fatalf("request %d while the laptop hangs: %d %q; want the app's answer", i, status, got)
		}
	}
	// Not matched by the rule: never copied, never counted.
	do(t, c, "GET", url+"/health", nil, nil)
	big := strings.Repeat("x", tunnel.MaxMirrorBody+1)
	if status, got := do(t, c, "POST", url+"/api/big", strings.NewReader(big), nil); status != http.StatusOK || got != "app HTTP/1.1 "+big {
		t.Fatalf("large POST: %d, %d bytes; want the app's echo", status, len(got))
	}
	st := stats(t, l).Ports[0]
	if st.Mirrored != 0 {
		t.Errorf("%d copies counted as sent while the laptop answered none", st.Mirrored)
	}
	// At most the queue (64) and the workers (4) hold copies; the rest,
	// and the large body, are dropped.
	if st.MirrorDropped < n-64-4+1 || st.MirrorDropped > n-64+1 {
		t.Errorf("%d copies dropped; want between %d and %d", st.MirrorDropped, n-64-4+1, n-64+1)
	}

	pc.open()
	eventually(t, "the queued copies reach the laptop once it answers", func() bool {
		s := stats(t, l).Ports[0]
		return s.Mirrored+s.MirrorDropped == n+1
	})
	for _, s := range pc.seen() {
		if !strings.HasPrefix(s.path, "/api/") || s.path == "/api/big" || s.mirror != "200" {
			t.Errorf("the laptop got %+v; want only /api/ copies under the cap, marked 200", s)
		}
	}
	if got, st := len(pc.seen()), stats(t, l).Ports[0]; uint64(got) != st.Mirrored {
		t.Errorf("the laptop saw %d copies; the stats count %d", got, st.Mirrored)
	}
}
