package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// An agent injected by an older kloop (protocol 2) and a newer daemon
// still agree on 2, and the daemon learns that such an agent cannot hold
// requests while its process is paused; an old daemon talking to this
// agent gets version 2 from it.
func TestVersionNegotiation(t *testing.T) {
	const token = "tok"
	t.Run("old agent, new daemon", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		offered := make(chan []int, 1)
		go func() {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			// A version 2 agent, as kloop built it before pause existed.
			var m [len(magic)]byte
			io.ReadFull(conn, m[:])
			var h hello
			readFrame(conn, &h)
			offered <- h.Versions
			nonce := make([]byte, nonceSize)
			writeFrame(conn, challenge{Version: 2, Nonce: nonce, Proof: prove(token, roleAgent, h.Nonce, nonce)})
			var p clientProof
			readFrame(conn, &p)
			writeFrame(conn, welcome{Version: 2})
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			io.Copy(io.Discard, conn)
		}()
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c, err := Dial(context.Background(), conn, token)
		if err != nil {
			t.Fatalf("Dial to a version 2 agent: %v", err)
		}
		defer c.Close()
		if got := <-offered; !slices.Equal(got, []int{5, 4, 3, 2}) {
			t.Errorf("the client offered %v; want [5 4 3 2]", got)
		}
		if c.Version() != 2 {
			t.Errorf("Version() = %d; want 2", c.Version())
		}
		if err := c.SetPaused(context.Background(), true, 0); !errors.Is(err, ErrPauseUnsupported) {
			t.Errorf("SetPaused on a version 2 agent: %v; want ErrPauseUnsupported", err)
		}
	})
	t.Run("old daemon, new agent", func(t *testing.T) {
		addr, accepted := agentSide(t, ServerConfig{Token: token})
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write([]byte(magic))
		nonce := make([]byte, nonceSize)
		if err := writeFrame(conn, hello{Versions: []int{2}, Nonce: nonce}); err != nil {
			t.Fatal(err)
		}
		var ch challenge
		if err := readFrame(conn, &ch); err != nil || ch.Version != 2 {
			t.Fatalf("challenge %+v, %v; want version 2", ch, err)
		}
		writeFrame(conn, clientProof{Proof: prove(token, roleClient, nonce, ch.Nonce)})
		var w welcome
		if err := readFrame(conn, &w); err != nil || w.Version != 2 || w.Error != "" {
			t.Fatalf("welcome %+v, %v; want version 2", w, err)
		}
		if err := <-accepted; err != nil {
			t.Fatalf("Accept: %v", err)
		}
	})
}

// oldAgent plays an agent of protocol version v that answers control
// requests: it records each "set" as the agent received it on the wire.
func oldAgent(t *testing.T, token string, v int) (addr string, sets <-chan map[string]any) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan map[string]any, 4)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		var m [len(magic)]byte
		io.ReadFull(conn, m[:])
		var h hello
		readFrame(conn, &h)
		nonce := make([]byte, nonceSize)
		writeFrame(conn, challenge{Version: v, Nonce: nonce, Proof: prove(token, roleAgent, h.Nonce, nonce)})
		var p clientProof
		readFrame(conn, &p)
		writeFrame(conn, welcome{Version: v})
		sess, err := yamux.Server(conn, nil)
		if err != nil {
			return
		}
		defer sess.Close()
		for {
			st, err := sess.Accept()
			if err != nil {
				return
			}
			var kind [1]byte
			io.ReadFull(st, kind[:])
			// Decoded loosely, as an older agent's structs would drop
			// fields they do not know.
			var req struct {
				Op        string         `json:"op"`
				Intercept map[string]any `json:"intercept"`
			}
			readFrame(st, &req)
			if req.Op == "set" {
				got <- req.Intercept
			}
			writeFrame(st, controlResponse{})
			st.Close()
		}
	}()
	return ln.Addr().String(), got
}

// A daemon of this build keeps one-header intercepts working on an agent
// of version 3, sending the rule in the form that agent reads, and refuses
// a filter beyond one header instead of letting that agent (which would
// drop the unknown filter) take every request.
func TestFilterOnOldAgent(t *testing.T) {
	const token = "tok"
	addr, sets := oldAgent(t, token, 3)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(context.Background(), conn, token)
	if err != nil {
		t.Fatalf("Dial to a version 3 agent: %v", err)
	}
	defer c.Close()
	ctx := context.Background()

	one := &Filter{Headers: []HeaderMatch{{Name: "x-dev", Value: "alice"}}}
	if err := c.SetIntercept(ctx, Intercept{Filter: one}); err != nil {
		t.Fatalf("one-header rule on a version 3 agent: %v", err)
	}
	got := <-sets
	if h, _ := got["header"].(map[string]any); h["name"] != "x-dev" || h["value"] != "alice" {
		t.Errorf("the version 3 agent received %v; want header x-dev=alice in the old form", got)
	}
	if _, ok := got["filter"]; ok {
		t.Errorf("the version 3 agent received a filter field it cannot read: %v", got)
	}

	for _, f := range []*Filter{
		{PathPrefix: "/api/"},
		{Methods: []string{"GET"}},
		{Headers: []HeaderMatch{{Name: "x-dev", Value: "alice"}, {Name: "x-team", Value: "pay"}}},
		{Headers: []HeaderMatch{{Name: "x-dev", Value: "alice"}}, PathRegex: "^/v1/"},
	} {
		err := c.SetIntercept(ctx, Intercept{Filter: f})
		if !errors.Is(err, ErrFilterUnsupported) {
			t.Errorf("filter %s on a version 3 agent: %v; want ErrFilterUnsupported", f, err)
		}
	}
	select {
	case got := <-sets:
		t.Errorf("a refused filter still reached the agent: %v", got)
	default:
	}
}

// A mirror intercept on an agent of version 4, which would drop the
// unknown mirror field and steal the workload's requests, fails at once
// with ErrMirrorUnsupported and never reaches that agent; a steal
// intercept on it still works.
func TestMirrorOnOldAgent(t *testing.T) {
	const token = "tok"
	addr, sets := oldAgent(t, token, 4)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(context.Background(), conn, token)
	if err != nil {
		t.Fatalf("Dial to a version 4 agent: %v", err)
	}
	defer c.Close()
	ctx := context.Background()
	for _, ic := range []Intercept{
		{Mirror: true},
		{Mirror: true, Filter: &Filter{PathPrefix: "/api/"}},
	} {
		if err := c.SetIntercept(ctx, ic); !errors.Is(err, ErrMirrorUnsupported) {
			t.Errorf("mirror %+v on a version 4 agent: %v; want ErrMirrorUnsupported", ic, err)
		}
	}
	select {
	case got := <-sets:
		t.Fatalf("a refused mirror intercept still reached the agent: %v", got)
	default:
	}
	if err := c.SetIntercept(ctx, Intercept{Filter: &Filter{PathPrefix: "/api/"}}); err != nil {
		t.Fatalf("steal on a version 4 agent: %v", err)
	}
	if got := <-sets; got["mirror"] != nil {
		t.Errorf("a steal intercept carried mirror: %v", got)
	}
}
