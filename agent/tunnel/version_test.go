package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
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
		if got := <-offered; len(got) != 2 || got[0] != 3 || got[1] != 2 {
			t.Errorf("the client offered %v; want [3 2]", got)
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
