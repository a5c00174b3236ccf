package tunnel

import (
	"context"
	"encoding/json"
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
		// A client with another token cannot check the agent's proof, so
		// it hangs up before proving anything.
		{name: "wrong token", token: "other", wantClient: "did not prove", wantAgent: "read proof"},
		{name: "empty token", token: "", wantClient: "did not prove", wantAgent: "read proof"},
		{
			name: "newer protocol only",
			hello: func(conn net.Conn) error {
				conn.Write([]byte(magic))
				return writeFrame(conn, hello{Versions: []int{99}, Nonce: make([]byte, nonceSize)})
			},
			wantClient: "this agent speaks 2 to 5",
			wantAgent:  "protocol versions [99] are not supported",
		},
		{
			name: "forged proof",
			hello: func(conn net.Conn) error {
				conn.Write([]byte(magic))
				nonce := make([]byte, nonceSize)
				if err := writeFrame(conn, hello{Versions: []int{Version}, Nonce: nonce}); err != nil {
					return err
				}
				var ch challenge
				if err := readFrame(conn, &ch); err != nil {
					return err
				}
				// The agent's own proof, replayed as the client's.
				return writeFrame(conn, clientProof{Proof: ch.Proof})
			},
			wantClient: "does not hold",
			wantAgent:  "refused the token",
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
				// The last frame the agent sent says why it refused.
				var last struct {
					Error string `json:"error"`
				}
				for readFrame(conn, &last) == nil && last.Error == "" {
				}
				if tc.wantClient != "" && !strings.Contains(last.Error, tc.wantClient) {
					t.Errorf("agent's error %q; want %q", last.Error, tc.wantClient)
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

func TestProofs(t *testing.T) {
	cn, an := []byte("client-nonce"), []byte("agent-nonce")
	good := prove("tok", roleClient, cn, an)
	for _, tc := range []struct {
		name      string
		token     string
		role      string
		cn, an    []byte
		proof     []byte
		wantValid bool
	}{
		{"the proof", "tok", roleClient, cn, an, good, true},
		{"another token", "tok2", roleClient, cn, an, good, false},
		{"the other role", "tok", roleAgent, cn, an, good, false},
		{"another client nonce", "tok", roleClient, []byte("x"), an, good, false},
		{"another agent nonce", "tok", roleClient, cn, []byte("y"), good, false},
		{"no token proves nothing", "", roleClient, cn, an, prove("", roleClient, cn, an), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := proofValid(tc.token, tc.role, tc.cn, tc.an, tc.proof); got != tc.wantValid {
				t.Errorf("proofValid = %v; want %v", got, tc.wantValid)
			}
		})
	}
}

// An impostor that binds the agent's control port first (a rogue pod or
// process) gets the client's hello and nothing else: no token, no proof it
// could replay, and no inbound stream is ever opened for it.
func TestImpostorOnTheControlPortGetsNothing(t *testing.T) {
	const token = "the-intercepts-secret-token"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan []byte, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			received <- nil
			return
		}
		defer conn.Close()
		var m [len(magic)]byte
		io.ReadFull(conn, m[:])
		var h hello
		readFrame(conn, &h)
		// The impostor claims to be the agent with a made-up proof, then
		// records whatever the client sends next.
		writeFrame(conn, challenge{Version: Version, Nonce: make([]byte, nonceSize), Proof: make([]byte, 32)})
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		rest, _ := io.ReadAll(conn)
		received <- append(append(m[:], mustMarshal(t, h)...), rest...)
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Dial(context.Background(), conn, token, WithHolder("alice@laptop", "id-alice"))
	if !errors.Is(err, ErrAgentUnproven) {
		t.Fatalf("Dial err = %v; want ErrAgentUnproven", err)
	}
	got := <-received
	if strings.Contains(string(got), token) {
		t.Fatal("the impostor received the token")
	}
	if i := strings.Index(string(got), "proof"); i >= 0 {
		t.Fatalf("the client sent the impostor a proof: %q", got[i:])
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
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
