package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	xproxy "golang.org/x/net/proxy"

	"github.com/kloop/kloop/agent"
	"github.com/kloop/kloop/agent/tunnel"
	"github.com/kloop/kloop/kube/intercept/proxy"
)

const token = "proxy-test-token"

// cluster is an agent whose outbound dialer knows names that only exist
// "inside the pod": users:8080 (plain HTTP) and users:8443 (HTTPS). The laptop
// side cannot resolve them, so a request that works went through the agent.
type cluster struct {
	client *tunnel.Client
	plain  *httptest.Server
	secure *httptest.Server
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "users saw %s %s host=%s", r.Method, r.URL.Path, r.Host)
	})
	c.plain = httptest.NewServer(handler)
	c.secure = httptest.NewTLSServer(handler)
	t.Cleanup(c.plain.Close)
	t.Cleanup(c.secure.Close)
	names := map[string]string{
		"users:8080": c.plain.Listener.Addr().String(),
		"users:8443": c.secure.Listener.Addr().String(),
	}
	app := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(app.Close)
	a, err := agent.Start(context.Background(), agent.Config{
		Forwards:   []agent.Forward{{Target: app.Listener.Addr().String(), Protocol: tunnel.ProtoHTTP}},
		ListenHost: "127.0.0.1",
		Control:    "127.0.0.1:0",
		Token:      token,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			real, ok := names[addr]
			if !ok {
				return nil, &net.DNSError{Err: "no such host", Name: addr, IsNotFound: true}
			}
			var d net.Dialer
			return d.DialContext(ctx, network, real)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	conn, err := net.Dial("tcp", a.ControlAddr())
	if err != nil {
		t.Fatal(err)
	}
	c.client, err = tunnel.Dial(context.Background(), conn, token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.client.Close() })
	return c
}

type serveFunc func(ctx context.Context, ln net.Listener, dial proxy.DialFunc, opts ...proxy.Option) error

// serve runs a proxy on loopback until the test ends and checks that it
// returns cleanly.
func serve(t *testing.T, fn serveFunc, dial proxy.DialFunc, opts ...proxy.Option) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx, ln, dial, opts...) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy returned %v after its context ended", err)
		}
	})
	return ln.Addr().String()
}

func body(t *testing.T, resp *http.Response, err error) string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}

func TestHTTPProxyReachesClusterNames(t *testing.T) {
	c := startCluster(t)
	addr := serve(t, proxy.ServeHTTPProxy, c.client.DialCluster)
	proxyURL, _ := url.Parse("http://" + addr)
	tlsConf := c.secure.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tlsConf.ServerName = "example.com" // the name in httptest's certificate
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: tlsConf}}
	defer client.CloseIdleConnections()

	for _, tc := range []struct {
		name, url, want string
	}{
		{"plain forward (HTTP_PROXY)", "http://users:8080/orders", "200 users saw GET /orders host=users:8080"},
		{"CONNECT (HTTPS_PROXY)", "https://users:8443/orders", "200 users saw GET /orders host=users:8443"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Get(tc.url)
			if got := body(t, resp, err); got != tc.want {
				t.Fatalf("got %q; want %q", got, tc.want)
			}
		})
	}
	resp, err := client.Get("http://nosuch:8080/")
	if got := body(t, resp, err); !strings.HasPrefix(got, "502 ") || !strings.Contains(got, "no such host") {
		t.Fatalf("unknown cluster name: got %q; want a 502 that says the host does not exist", got)
	}
	if _, err := client.Get("https://nosuch:8443/"); err == nil || !strings.Contains(err.Error(), "Bad Gateway") {
		t.Fatalf("CONNECT to an unknown name: err = %v; want the proxy's Bad Gateway", err)
	}
}

func TestSOCKS5ReachesClusterNames(t *testing.T) {
	c := startCluster(t)
	addr := serve(t, proxy.ServeSOCKS5, c.client.DialCluster)
	dialer, err := xproxy.SOCKS5("tcp", addr, nil, xproxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DialContext: dialer.(xproxy.ContextDialer).DialContext}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://users:8080/users/7")
	if got := body(t, resp, err); got != "200 users saw GET /users/7 host=users:8080" {
		t.Fatalf("got %q", got)
	}
	_, err = dialer.(xproxy.ContextDialer).DialContext(context.Background(), "tcp", "nosuch:80")
	if err == nil || !strings.Contains(err.Error(), "host unreachable") {
		t.Fatalf("unknown cluster name over SOCKS5: err = %v; want host unreachable", err)
	}
}

func TestProxyCredentials(t *testing.T) {
	c := startCluster(t)
	creds := proxy.WithCredentials("kloop", "pw-123")
	httpAddr := serve(t, proxy.ServeHTTPProxy, c.client.DialCluster, creds)
	socksAddr := serve(t, proxy.ServeSOCKS5, c.client.DialCluster, creds)

	for _, tc := range []struct {
		name string
		user *url.Userinfo
		want string
	}{
		{"right credentials", url.UserPassword("kloop", "pw-123"), "200 users saw"},
		{"wrong password", url.UserPassword("kloop", "nope"), "407 "},
		{"no credentials", nil, "407 "},
	} {
		t.Run("http "+tc.name, func(t *testing.T) {
			u := &url.URL{Scheme: "http", Host: httpAddr, User: tc.user}
			tr := &http.Transport{Proxy: http.ProxyURL(u)}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get("http://users:8080/")
			if got := body(t, resp, err); !strings.HasPrefix(got, tc.want) {
				t.Fatalf("got %q; want %q...", got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		auth *xproxy.Auth
		ok   bool
	}{
		{"right credentials", &xproxy.Auth{User: "kloop", Password: "pw-123"}, true},
		{"wrong password", &xproxy.Auth{User: "kloop", Password: "nope"}, false},
		{"no credentials", nil, false},
	} {
		t.Run("socks5 "+tc.name, func(t *testing.T) {
			d, _ := xproxy.SOCKS5("tcp", socksAddr, tc.auth, xproxy.Direct)
			conn, err := d.Dial("tcp", "users:8080")
			if tc.ok != (err == nil) {
				t.Fatalf("dial err = %v; want success %v", err, tc.ok)
			}
			if conn != nil {
				conn.Close()
			}
		})
	}
}

func TestProxiesLeaveNoGoroutines(t *testing.T) {
	c := startCluster(t)
	for _, fn := range []serveFunc{proxy.ServeHTTPProxy, proxy.ServeSOCKS5} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- fn(ctx, ln, c.client.DialCluster) }()
		// A client that connected and stays idle must not keep the proxy up.
		idle, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("proxy did not return after its context ended")
		}
		idle.Close()
	}
	// Count the proxy's own goroutines, not the process's: the fake
	// cluster's connections come and go on their own schedule.
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := proxyGoroutines()
		if left == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines of the proxy left after it returned:\n%s", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// proxyGoroutines returns the stacks of running goroutines that are in
// package proxy (not the test's own), "" when there are none.
func proxyGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "kloop/kube/intercept/proxy.") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
