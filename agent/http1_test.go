package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kloop/kloop/agent/tunnel"
)

// rawExchange writes raw bytes on one connection to the agent and reads n
// responses from it, returning each body.
func rawExchange(t *testing.T, addr, raw string, n int) []string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	var bodies []string
	for i := range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		for resp.StatusCode == http.StatusContinue { // one or more
			resp, err = http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("response %d after 100 Continue: %v", i, err)
			}
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("response %d body: %v", i, err)
		}
		bodies = append(bodies, fmt.Sprintf("%d %s", resp.StatusCode, b))
	}
	return bodies
}

func TestHeaderInterceptRawHTTP1(t *testing.T) {
	app := startBackend(t, "app")
	lap := startBackend(t, "laptop")
	a := startAgent(t, nil, httpForward(app.addr()))
	addr, _ := a.ListenAddr(app.port())
	l := connect(t, a, map[int]string{app.port(): lap.addr()}, "")
	l.set(t, tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}})

	big := strings.Repeat("x", 40<<10)
	for _, tc := range []struct {
		name string
		raw  string
		want []string
	}{
		{
			name: "pipelined requests keep their order and routes",
			raw: "POST /a HTTP/1.1\r\nHost: o\r\nX-Dev: alice\r\nContent-Length: 5\r\n\r\nhello" +
				"GET /b HTTP/1.1\r\nHost: o\r\n\r\n" +
				"PUT /c HTTP/1.1\r\nHost: o\r\nx-dev: alice\r\nContent-Length: 3\r\n\r\nabc",
			want: []string{"200 laptop HTTP/1.1 hello", "200 app HTTP/1.1 ", "200 laptop HTTP/1.1 abc"},
		},
		{
			name: "HTTP/1.0",
			raw:  "GET / HTTP/1.0\r\nHost: o\r\nX-Dev: alice\r\n\r\n",
			want: []string{"200 laptop HTTP/1.0 "},
		},
		{
			name: "chunked request body",
			raw:  "POST / HTTP/1.1\r\nHost: o\r\nX-Dev: alice\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
			want: []string{"200 laptop HTTP/1.1 abcde"},
		},
		{
			name: "Expect: 100-continue",
			raw:  "POST / HTTP/1.1\r\nHost: o\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
			want: []string{"200 app HTTP/1.1 hi"},
		},
		{
			name: "head larger than the fast path's buffer",
			raw:  "GET / HTTP/1.1\r\nHost: o\r\nX-Big: " + big + "\r\nX-Dev: alice\r\n\r\nGET / HTTP/1.1\r\nHost: o\r\n\r\n",
			want: []string{"200 laptop HTTP/1.1 ", "200 app HTTP/1.1 "},
		},
		{
			name: "body larger than a buffer",
			raw:  "POST / HTTP/1.1\r\nHost: o\r\nX-Dev: alice\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n" + big,
			want: []string{"200 laptop HTTP/1.1 " + big},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rawExchange(t, addr, tc.raw, len(tc.want))
			for i := range tc.want {
				if got[i] != tc.want[i] {
					t.Errorf("response %d = %.80q; want %.80q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// An upstream that closes an idle keep-alive connection must not cost the
// next request on the client's connection.
func TestUpstreamClosingIdleConnectionsIsInvisible(t *testing.T) {
	var mu sync.Mutex
	closed := 0
	app := startBackend(t, "app", func(srv *http.Server) {
		srv.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				mu.Lock()
				closed++
				mu.Unlock()
			}
		}
	})
	a := startAgent(t, nil, httpForward(app.addr()))
	c, opened := oneConnClient(false)
	url := listenURL(t, a, app.port())
	if got, err := get(c, url, nil); err != nil || got != "app HTTP/1.1" {
		t.Fatalf("first request: %q, %v", got, err)
	}
	// The app drops its idle connections, as servers with an idle timeout do.
	app.srv.SetKeepAlivesEnabled(false)
	eventually(t, "the app closes its idle connection to the agent", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return closed >= 1
	})
	app.srv.SetKeepAlivesEnabled(true)
	for i := range 3 {
		if got, err := get(c, url, nil); err != nil || got != "app HTTP/1.1" {
			t.Fatalf("request %d after the app closed the idle connection: %q, %v", i, got, err)
		}
	}
	if *opened != 1 {
		t.Errorf("the client needed %d connections to the agent; the agent should have hidden the upstream close", *opened)
	}
}

// The daemon replaces the local process (a relaunch): a client's keep-alive
// connection through the agent carries on with the new process.
func TestLocalProcessReplacedUnderAKeptAliveConnection(t *testing.T) {
	app := startBackend(t, "app")
	first := startBackend(t, "laptop")
	a := startAgent(t, nil, httpForward(app.addr()))
	var mu sync.Mutex
	local := first.addr()
	conn, err := net.Dial("tcp", a.ControlAddr())
	if err != nil {
		t.Fatal(err)
	}
	client, err := tunnel.Dial(t.Context(), conn, testToken)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	go client.ServeInbound(t.Context(), func(ctx context.Context, port int) (net.Conn, error) {
		mu.Lock()
		addr := local
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	})
	if err := client.SetIntercept(t.Context(), tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}}); err != nil {
		t.Fatal(err)
	}
	c, opened := oneConnClient(false)
	url := listenURL(t, a, app.port())
	if got, err := get(c, url, devHeader); err != nil || got != "laptop HTTP/1.1" {
		t.Fatalf("before the relaunch: %q, %v", got, err)
	}
	second := startBackend(t, "relaunched")
	mu.Lock()
	local = second.addr()
	mu.Unlock()
	first.close()
	for i := range 3 {
		if got, err := get(c, url, devHeader); err != nil || got != "relaunched HTTP/1.1" {
			t.Fatalf("request %d after the relaunch: %q, %v", i, got, err)
		}
	}
	if *opened != 1 {
		t.Errorf("the client needed %d connections; the relaunch should be invisible to it", *opened)
	}
}
