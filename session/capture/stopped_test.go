package capture

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
)

// A local process whose /stop handler waits to be released, as a handler
// stopped at a breakpoint does, and whose /die handler never answers
// (the process is replaced by a relaunch).
func startStoppingServer(t *testing.T) (addr string, arrived chan string, release chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	arrived, release = make(chan string, 4), make(chan struct{}, 4)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stop":
			arrived <- r.URL.Path
			<-release
		case "/die":
			arrived <- r.URL.Path
			conn, _, _ := http.NewResponseController(w).Hijack()
			<-release
			conn.Close()
			return
		}
		fmt.Fprintf(w, "local %s", r.URL.Path)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), arrived, release
}

// The request in flight when the debugger stops the process is marked, and
// kept even when the process never answers it; the requests around it are
// not marked.
func TestRequestInFlightAtAStopIsMarked(t *testing.T) {
	s := NewStore(0)
	addr, arrived, release := startStoppingServer(t)
	c := dialRecorded(t, addr, s)
	br := bufio.NewReader(c)
	roundTrip := func(path string, stop bool) {
		t.Helper()
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: orders\r\n\r\n", path); err != nil {
			t.Fatal(err)
		}
		if stop {
			<-arrived
			s.MarkStopped("deployment/other") // another workload's stop
			s.MarkStopped("deployment/orders")
			release <- struct{}{}
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	roundTrip("/before", false)
	roundTrip("/stop", true)
	roundTrip("/after", false)
	got := waitRecorded(t, s, 3)
	if len(got) != 3 {
		t.Fatalf("recorded %d exchanges; want 3", len(got))
	}
	for i, want := range []bool{false, true, false} {
		if got[i].Stopped != want {
			t.Errorf("%s: stopped = %v; want %v", got[i].Target, got[i].Stopped, want)
		}
	}

	// Stopped, then the process went away without answering.
	if _, err := fmt.Fprintf(c, "GET /die HTTP/1.1\r\nHost: orders\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-arrived
	s.MarkStopped("deployment/orders")
	release <- struct{}{}
	io.Copy(io.Discard, br)
	got = waitRecorded(t, s, 4)
	if len(got) != 4 || got[3].Target != "/die" || !got[3].Stopped || got[3].Response != nil {
		t.Fatalf("recorded %+v; want GET /die marked stopped, without an answer", got)
	}
}

func TestPreferred(t *testing.T) {
	ex := func(w, method, target string, stopped bool) Exchange {
		return Exchange{Workload: w, Method: method, Target: target, Stopped: stopped}
	}
	const orders, users = "deployment/orders", "deployment/users"
	for _, tc := range []struct {
		name     string
		list     []Exchange
		workload string
		safeOnly bool
		want     string // Target; "" for none
	}{
		{"nothing recorded", nil, orders, false, ""},
		{"the last without a stop", []Exchange{ex(orders, "GET", "/1", false), ex(orders, "GET", "/2", false)}, orders, false, "/2"},
		{"the stopped one over newer ones", []Exchange{ex(orders, "GET", "/1", true), ex(orders, "GET", "/2", false)}, orders, false, "/1"},
		{"the newest stopped one", []Exchange{ex(orders, "GET", "/1", true), ex(orders, "GET", "/2", true), ex(orders, "GET", "/3", false)}, orders, false, "/2"},
		{"another workload's stop does not count", []Exchange{ex(users, "GET", "/u", true), ex(orders, "GET", "/1", false)}, orders, false, "/1"},
		{"any workload", []Exchange{ex(users, "GET", "/u", true), ex(orders, "GET", "/1", false)}, "", false, "/u"},
		{"safe only skips a stopped POST", []Exchange{ex(orders, "GET", "/1", false), ex(orders, "POST", "/2", true), ex(orders, "GET", "/3", false)}, orders, true, "/3"},
		{"a stopped POST without safe only", []Exchange{ex(orders, "POST", "/2", true), ex(orders, "GET", "/3", false)}, orders, false, "/2"},
		{"nothing safe", []Exchange{ex(orders, "POST", "/2", true)}, orders, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStore(0)
			for _, e := range tc.list {
				s.add(e)
			}
			got, ok := s.Preferred(tc.workload, tc.safeOnly)
			if ok != (tc.want != "") || got.Target != tc.want {
				t.Errorf("Preferred = %q, %v; want %q", got.Target, ok, tc.want)
			}
		})
	}
}
