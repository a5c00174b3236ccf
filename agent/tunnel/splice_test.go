package tunnel

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// tcpPair returns both ends of a real loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestSpliceEndsWhenTheTunnelDies(t *testing.T) {
	// A yamux session over loopback TCP, one stream across it.
	x, y := tcpPair(t)
	cfg := yamuxConfig(slog.New(slog.DiscardHandler))
	client, _ := yamux.Client(x, cfg)
	server, _ := yamux.Server(y, cfg)
	defer server.Close()
	opened := make(chan *yamux.Stream, 1)
	go func() {
		s, _ := server.AcceptStream()
		opened <- s
	}()
	local, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	local.Write([]byte("hi"))
	remote := <-opened

	// The stream is spliced to a peer that never closes its side, like an
	// idle database connection.
	app, appPeer := tcpPair(t)
	done := make(chan struct{})
	go func() {
		Splice(context.Background(), remote, app)
		close(done)
	}()
	buf := make([]byte, 2)
	if _, err := io.ReadFull(appPeer, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("bytes through the splice: %q, %v", buf, err)
	}
	client.Close()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Splice kept an idle connection open after its tunnel died")
	}
	appPeer.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := appPeer.Read(buf); err != io.EOF {
		t.Fatalf("the app's connection after the tunnel died: %v; want it closed", err)
	}
}

func TestSpliceHalfClosePassesThrough(t *testing.T) {
	a, aPeer := tcpPair(t)
	b, bPeer := tcpPair(t)
	done := make(chan struct{})
	go func() {
		Splice(context.Background(), a, b)
		close(done)
	}()
	// aPeer sends a request and shuts its write side, as clients of
	// request/response protocols do; the answer must still come back.
	aPeer.Write([]byte("ping"))
	aPeer.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(bPeer)
	if err != nil || string(got) != "ping" {
		t.Fatalf("b side read %q, %v; want ping then EOF", got, err)
	}
	bPeer.Write([]byte("pong"))
	bPeer.Close()
	got, err = io.ReadAll(aPeer)
	if err != nil || string(got) != "pong" {
		t.Fatalf("a side read %q, %v; want pong after its own half-close", got, err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Splice did not return after both sides closed")
	}
}
