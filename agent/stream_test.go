package agent_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kloop/kloop/agent/tunnel"
)

// streamingBackend serves /events as a stream that sends one event, then
// waits for the client to ask for the next via /next, and /ws as an upgrade
// to a line echo protocol, the way WebSocket servers take over a connection.
func streamingBackend(t *testing.T, name string) (addr string, next chan struct{}) {
	t.Helper()
	next = make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "data: %s 1\n\n", name)
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "data: %s 2\n\n", name)
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		rw.Flush()
		for {
			line, err := rw.ReadString('\n')
			if err != nil {
				return
			}
			fmt.Fprintf(rw, "%s: %s", name, line)
			rw.Flush()
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String(), next
}

func TestHeaderInterceptStreamsAndUpgrades(t *testing.T) {
	appAddr, appNext := streamingBackend(t, "app")
	lapAddr, lapNext := streamingBackend(t, "laptop")
	a := startAgent(t, nil, httpForward(appAddr))
	_, portStr, _ := net.SplitHostPort(appAddr)
	var appPort int
	fmt.Sscan(portStr, &appPort)
	addr, _ := a.ListenAddr(appPort)
	l := connect(t, a, map[int]string{appPort: lapAddr}, "")
	l.set(t, tunnel.Intercept{Header: &tunnel.HeaderMatch{Name: "X-Dev", Value: "alice"}})

	for _, tc := range []struct {
		name   string
		header string
		want   string
		next   chan struct{}
	}{
		{"with header", "X-Dev: alice\r\n", "laptop", lapNext},
		{"without header", "", "app", appNext},
	} {
		t.Run("stream "+tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			fmt.Fprintf(conn, "GET /events HTTP/1.1\r\nHost: orders\r\n%s\r\n", tc.header)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(resp.Body)
			// The first event must arrive while the backend still holds
			// the response open: the agent must not buffer streams.
			if line, err := br.ReadString('\n'); err != nil || line != "data: "+tc.want+" 1\n" {
				t.Fatalf("first event: %q, %v", line, err)
			}
			tc.next <- struct{}{}
			rest, _ := io.ReadAll(br)
			if !strings.Contains(string(rest), "data: "+tc.want+" 2") {
				t.Fatalf("rest of the stream: %q", rest)
			}
		})
		t.Run("upgrade "+tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: orders\r\nConnection: Upgrade\r\nUpgrade: echo\r\n%s\r\n", tc.header)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade: %v, %v", resp, err)
			}
			for _, msg := range []string{"one", "two"} {
				fmt.Fprintf(conn, "%s\n", msg)
				if line, err := br.ReadString('\n'); err != nil || line != tc.want+": "+msg+"\n" {
					t.Fatalf("echo of %q: %q, %v", msg, line, err)
				}
			}
		})
	}
}
