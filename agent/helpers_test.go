package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kloop/kloop/agent"
	"github.com/kloop/kloop/agent/tunnel"
)

const testToken = "s3cret-token-for-tests"

// backend is a real HTTP server on loopback that answers with its name and the
// protocol the request arrived in, e.g. "laptop HTTP/2.0".
type backend struct {
	name string
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

func startBackend(t testing.TB, name string, configure ...func(*http.Server)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, ln: ln, done: make(chan struct{})}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Backend", name)
		fmt.Fprintf(w, "%s %s %s", name, r.Proto, body)
	})}
	b.srv.Protocols = new(http.Protocols)
	b.srv.Protocols.SetHTTP1(true)
	b.srv.Protocols.SetUnencryptedHTTP2(true)
	for _, f := range configure {
		f(b.srv)
	}
	go func() {
		defer close(b.done)
		b.srv.Serve(ln)
	}()
	t.Cleanup(b.close)
	return b
}

func (b *backend) addr() string { return b.ln.Addr().String() }

func (b *backend) port() int { return b.ln.Addr().(*net.TCPAddr).Port }

func (b *backend) close() {
	b.srv.Close()
	<-b.done
}

// echoServer is a TCP server that answers each line with "NAME: line".
type echoServer struct {
	name string
	ln   net.Listener
	wg   sync.WaitGroup
}

func startEcho(t testing.TB, name string) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{name: name, ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s: %s\n", name, sc.Text())
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); e.wg.Wait() })
	return e
}

func (e *echoServer) port() int { return e.ln.Addr().(*net.TCPAddr).Port }

// logBuffer collects the agent's log for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startAgent runs an agent on loopback forwarding to the given app targets.
func startAgent(t testing.TB, log io.Writer, forwards ...agent.Forward) *agent.Agent {
	t.Helper()
	if log == nil {
		log = io.Discard
	}
	a, err := agent.Start(context.Background(), agent.Config{
		Forwards:   forwards,
		ListenHost: "127.0.0.1",
		Control:    "127.0.0.1:0",
		Token:      testToken,
		Pod:        "orders-abc",
		Logger:     slog.New(slog.NewTextHandler(log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func httpForward(target string) agent.Forward {
	return agent.Forward{Target: target, Protocol: tunnel.ProtoHTTP}
}

// laptop plays the daemon: it holds a tunnel to the agent and pipes inbound
// streams to local processes by app port.
type laptop struct {
	client *tunnel.Client
	cancel context.CancelFunc
	done   chan error
}

// connect dials the agent's control port directly, or through via when set
// (a relay standing in for a Kubernetes port-forward).
func connect(t testing.TB, a *agent.Agent, local map[int]string, via string) *laptop {
	t.Helper()
	return connectAs(t, a, local, via, "alice@laptop", "alice-install")
}

// connectAs is connect for a holder of its own (a developer's daemon).
func connectAs(t testing.TB, a *agent.Agent, local map[int]string, via, holder, holderID string) *laptop {
	t.Helper()
	addr := a.ControlAddr()
	if via != "" {
		addr = via
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client, err := tunnel.Dial(ctx, conn, testToken, tunnel.WithHolder(holder, holderID))
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(context.Background())
	l := &laptop{client: client, cancel: stop, done: make(chan error, 1)}
	go func() {
		l.done <- client.ServeInbound(serveCtx, func(ctx context.Context, port int) (net.Conn, error) {
			target, ok := local[port]
			if !ok {
				return nil, fmt.Errorf("no local process for port %d", port)
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", target)
		})
	}()
	t.Cleanup(l.close)
	return l
}

func (l *laptop) close() {
	l.cancel()
	l.client.Close()
	<-l.done
	l.done <- nil // later close calls do not block
}

func (l *laptop) set(t testing.TB, ic tunnel.Intercept) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.client.SetIntercept(ctx, ic); err != nil {
		t.Fatal(err)
	}
}

// get sends one request and returns the body, or an error for transport
// failures and non-200 answers.
func get(c *http.Client, url string, header http.Header) (string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
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

// eventually polls cond until it holds, failing the test after a generous
// deadline meant for a loaded machine.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func listenURL(t testing.TB, a *agent.Agent, appPort int) string {
	t.Helper()
	addr, ok := a.ListenAddr(appPort)
	if !ok {
		t.Fatalf("agent does not forward port %d", appPort)
	}
	return "http://" + addr
}
