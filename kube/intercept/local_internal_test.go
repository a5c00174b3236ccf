package intercept

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// A connection that arrives while the local process is down waits for it.
func TestLocalDialerWaitsForTheLocalProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the process is being relaunched
	dial := LocalDialer(func(port int) (string, bool) { return addr, port == 8080 }, time.Minute)

	started := make(chan net.Listener)
	go func() {
		time.Sleep(300 * time.Millisecond)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Error(err)
		}
		started <- ln
	}()
	c, err := dial(context.Background(), 8080)
	if err != nil {
		t.Fatalf("dial during the relaunch: %v", err)
	}
	c.Close()
	(<-started).Close()

	if _, err := dial(context.Background(), 9090); err == nil || !strings.Contains(err.Error(), "9090") {
		t.Errorf("unserved port: %v", err)
	}
	short := LocalDialer(func(int) (string, bool) { return addr, true }, 100*time.Millisecond)
	if _, err := short(context.Background(), 8080); err == nil || !strings.Contains(err.Error(), "did not accept") {
		t.Errorf("nothing listening: %v", err)
	}
}
