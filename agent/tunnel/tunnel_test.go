package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// agentSide accepts one tunnel on a loopback listener and reports the
// result of Accept.
func agentSide(t *testing.T, cfg ServerConfig) (addr string, accepted <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			ch <- err
			return
		}
		sc, err := Accept(context.Background(), conn, cfg)
		if err == nil {
			t.Cleanup(func() { sc.Close() })
		}
		ch <- err
	}()
	return ln.Addr().String(), ch
}

func TestHandshake(t *testing.T) {
	for _, tc := range []struct {
		name       string
		hello      func(conn net.Conn) error // nil: a real client with token
		token      string
		wantClient string // substring of the client's error; "" means success
		wantAgent  string // substring of the agent's error
	}{
		{name: "right token", token: "tok"},
		{name: "wrong token", token: "other", wantClient: "refused the token", wantAgent: "refused the token"},
		{name: "empty token", token: "", wantClient: "refused the token", wantAgent: "refused the token"},
		{
			name: "newer protocol only",
			hello: func(conn net.Conn) error {
				conn.Write([]byte(magic))
				return writeFrame(conn, hello{Versions: []int{99}, Token: "tok"})
			},
			wantClient: "this agent speaks 1",
			wantAgent:  "protocol versions [99] are not supported",
		},
		{
			name: "not a kloop client",
			hello: func(conn net.Conn) error {
				_, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				return err
			},
			wantAgent: "not a kloop tunnel client",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, accepted := agentSide(t, ServerConfig{Token: "tok", Agent: AgentInfo{Pod: "p1", Ports: []PortInfo{{Port: 8080, ListenPort: 9080, Protocol: ProtoHTTP}}}})
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			if tc.hello == nil {
				c, err := Dial(context.Background(), conn, tc.token)
				if tc.wantClient == "" {
					if err != nil {
						t.Fatalf("Dial: %v", err)
					}
					if got := c.Agent(); got.Pod != "p1" || len(got.Ports) != 1 || got.Ports[0].Port != 8080 {
						t.Errorf("agent info = %+v", got)
					}
					c.Close()
				} else if err == nil || !strings.Contains(err.Error(), tc.wantClient) {
					t.Fatalf("Dial err = %v; want %q", err, tc.wantClient)
				}
			} else {
				defer conn.Close()
				if err := tc.hello(conn); err != nil {
					t.Fatal(err)
				}
				var w welcome
				readFrame(conn, &w)
				if tc.wantClient != "" && !strings.Contains(w.Error, tc.wantClient) {
					t.Errorf("welcome error %q; want %q", w.Error, tc.wantClient)
				}
			}
			select {
			case err := <-accepted:
				if tc.wantAgent == "" && err != nil {
					t.Fatalf("Accept: %v", err)
				}
				if tc.wantAgent != "" && (err == nil || !strings.Contains(err.Error(), tc.wantAgent)) {
					t.Fatalf("Accept err = %v; want %q", err, tc.wantAgent)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Accept did not return")
			}
		})
	}
}

func TestDialToSomethingElseSaysSo(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Dial(context.Background(), conn, "tok")
	if err == nil || !strings.Contains(err.Error(), "control port") {
		t.Fatalf("Dial to an HTTP server: err = %v; want one asking whether this is the agent's control port", err)
	}
}

func TestDialGivesUpWithItsContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// A listener that accepts and never answers, like a hung port-forward.
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := Dial(ctx, conn, "tok")
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v; want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Dial ignored its context")
	}
}

func TestTokenEqual(t *testing.T) {
	for _, tc := range []struct {
		got, want string
		eq        bool
	}{
		{"abc", "abc", true},
		{"abc", "abd", false},
		{"abc", "abcd", false},
		{"", "", false}, // an agent without a token accepts nobody
		{"x", "", false},
	} {
		if got := tokenEqual(tc.got, tc.want); got != tc.eq {
			t.Errorf("tokenEqual(%q, %q) = %v; want %v", tc.got, tc.want, got, tc.eq)
		}
	}
}

func TestParseHeaderMatch(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    HeaderMatch
		wantErr string
	}{
		{"x-dev=alice", HeaderMatch{"x-dev", "alice"}, ""},
		{"X-Dev=a=b", HeaderMatch{"X-Dev", "a=b"}, ""},
		{"x-dev", HeaderMatch{}, "NAME=VALUE"},
		{"x dev=alice", HeaderMatch{}, "not a valid HTTP header name"},
		{"x-dev=", HeaderMatch{}, "value is empty"},
		{"x-dev=a\nb", HeaderMatch{}, "cannot carry"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseHeaderMatch(tc.in)
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
