package capture

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A local process: answers "NAME METHOD PATH BODYLEN", sets a cookie.
func startServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: "s3cr3t", Path: "/"})
		fmt.Fprintf(w, "local %s %s %d", r.Method, r.URL.Path, len(b))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// dialRecorded is what the daemon does for a tunneled connection.
func dialRecorded(t *testing.T, addr string, s *Store) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return Wrap(c, s, "deployment/orders", func() int { return 4242 })
}

func waitRecorded(t *testing.T, s *Store, n int) []Exchange {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := s.List("")
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestKeepAliveExchangesAreRecordedInOrder(t *testing.T) {
	s := NewStore(0)
	c := dialRecorded(t, startServer(t), s)
	big := strings.Repeat("x", MaxBody+10)
	reqs := []string{
		"GET /orders/1?full=1 HTTP/1.1\r\nHost: orders\r\nAuthorization: Bearer tok-123\r\nCookie: a=1; b=2\r\n\r\n",
		"POST /orders HTTP/1.1\r\nHost: orders\r\nContent-Length: 7\r\n\r\n{\"a\":1}",
		fmt.Sprintf("PUT /big HTTP/1.1\r\nHost: orders\r\nContent-Length: %d\r\n\r\n%s", len(big), big),
	}
	br := bufio.NewReader(c)
	for i, r := range reqs {
		if _, err := io.WriteString(c, r); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d through the recorded connection: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	got := waitRecorded(t, s, 3)
	if len(got) != 3 {
		t.Fatalf("recorded %d exchanges; want 3", len(got))
	}
	for i, want := range []struct {
		method, target, body, answer string
		truncated                    bool
	}{
		{"GET", "/orders/1?full=1", "", "local GET /orders/1 0", false},
		{"POST", "/orders", `{"a":1}`, "local POST /orders 7", false},
		{"PUT", "/big", big[:MaxBody], fmt.Sprintf("local PUT /big %d", len(big)), true},
	} {
		e := got[i]
		if e.ID != i+1 || e.Method != want.method || e.Target != want.target || e.Body != want.body || e.BodyTruncated != want.truncated ||
			e.Response == nil || e.Response.Status != 200 || e.Response.Body != want.answer || e.Pid != 4242 || e.Host != "orders" {
			t.Errorf("exchange %d = %+v; want %s %s answered %q by pid 4242", i, e, want.method, want.target, want.answer)
		}
	}
	if got := got[0].Header.Get("Authorization"); got != "Bearer ***" {
		t.Errorf("listed Authorization = %q; want it masked", got)
	}
	if got := got[0].Header.Get("Cookie"); got != "a=***; b=***" {
		t.Errorf("listed Cookie = %q; want values masked", got)
	}
	if got := got[0].Response.Header.Get("Set-Cookie"); got != "sid=***; Path=/" {
		t.Errorf("listed Set-Cookie = %q; want the value masked", got)
	}
	raw, _ := s.Get(got[0].ID)
	if raw.Header.Get("Authorization") != "Bearer tok-123" {
		t.Errorf("Get (for a replay) = %q; want the credential as sent", raw.Header.Get("Authorization"))
	}
}

// Bytes that are not HTTP/1.x pass untouched and nothing is recorded.
func TestOtherProtocolsPassUnrecorded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // echo
	}()
	s := NewStore(0)
	c := dialRecorded(t, ln.Addr().String(), s)
	msg := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x01binary"
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo through the recorded connection: %q, %v", buf, err)
	}
	time.Sleep(50 * time.Millisecond)
	if got := s.List(""); len(got) != 0 {
		t.Errorf("recorded %+v from a connection that is not HTTP/1.x", got)
	}
}

func TestStoreKeepsTheLastN(t *testing.T) {
	s := NewStore(3)
	for i := range 5 {
		w := "deployment/a"
		if i%2 == 1 {
			w = "deployment/b"
		}
		s.add(Exchange{Workload: w, Target: fmt.Sprint("/", i)})
	}
	s.add(Exchange{Workload: "deployment/a", Target: "/5"})
	s.add(Exchange{Workload: "deployment/a", Target: "/6"})
	// Per workload: a keeps its last 3 (3, 5... of IDs 1,3,5,6,7), b both.
	var ids []int
	for _, e := range s.List("") {
		ids = append(ids, e.ID)
	}
	if fmt.Sprint(ids) != "[2 4 5 6 7]" {
		t.Fatalf("kept IDs %v; want [2 4 5 6 7] (a's last 3, b's 2)", ids)
	}
	if last, ok := s.Last("deployment/b"); !ok || last.ID != 4 {
		t.Errorf("last of b = %+v, %v; want ID 4", last, ok)
	}
	s.Forget("deployment/a")
	if got := s.List(""); len(got) != 2 || got[0].Workload != "deployment/b" || got[1].Workload != "deployment/b" {
		t.Errorf("after forgetting a: %+v", got)
	}
	if _, ok := s.Get(5); ok {
		t.Error("Get found a forgotten exchange")
	}
}

func TestCompare(t *testing.T) {
	jsonHdr := http.Header{"Content-Type": {"application/json"}, "Date": {"Mon"}}
	for _, tc := range []struct {
		name     string
		old, new Response
		want     []string
	}{
		{"same answer, other date", Response{Status: 200, Header: jsonHdr, Body: `{"a":1}`},
			Response{Status: 200, Header: http.Header{"Content-Type": {"application/json"}, "Date": {"Tue"}}, Body: `{"a": 1}`}, nil},
		{"json fields", Response{Status: 200, Header: jsonHdr, Body: `{"order":{"id":"1","item":"keyboard"},"tags":["a"],"gone":true}`},
			Response{Status: 200, Header: jsonHdr, Body: `{"order":{"id":"1","item":"mouse"},"tags":["a","b"],"new":2}`},
			[]string{`$.gone: removed (was true)`, `$.new: added 2`, `$.order.item: "keyboard" → "mouse"`, `$.tags[1]: added "b"`}},
		{"status, header and text", Response{Status: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: "a\nb"},
			Response{Status: 500, Header: http.Header{"Content-Type": {"text/html"}, "Set-Cookie": {"sid=x"}}, Body: "a\nc"},
			[]string{"status: 200 → 500", `header Content-Type: "text/plain" → "text/html"`, `header Set-Cookie: added "sid=***"`, `body: line 2: "b" → "c"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Compare(&tc.old, &tc.new)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("Compare:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// The calls the local process makes through the outbound proxy while it
// serves a request are tied to that request, and only to it.
func TestOutboundCallsAreTiedToTheRequestServed(t *testing.T) {
	s := NewStore(0)
	users, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	usersSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"user":%q}`, r.URL.Path)
	})}
	go usersSrv.Serve(users)
	t.Cleanup(func() { usersSrv.Close() })
	// What the proxy does: each connection it dials is wrapped.
	out := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, users.Addr().String())
		if err != nil {
			return nil, err
		}
		return WrapOutbound(c, s, "deployment/orders"), nil
	}}}
	call := func(path string) {
		resp, err := out.Get("http://users:8080" + path)
		if err != nil {
			t.Error(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	local, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	localSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/with-calls" {
			call("/users/1")
			call("/users/2")
		}
		io.WriteString(w, "ok")
	})}
	go localSrv.Serve(local)
	t.Cleanup(func() { localSrv.Close() })

	c := dialRecorded(t, local.Addr().String(), s)
	br := bufio.NewReader(c)
	for _, path := range []string{"/with-calls", "/without"} {
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: orders\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	call("/users/3") // while no request is being served
	got := waitRecorded(t, s, 2)
	if len(got) != 2 {
		t.Fatalf("recorded %d inbound exchanges; want 2", len(got))
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(s.Outbound(Exchange{Workload: "deployment/orders", Time: got[0].Time, End: time.Now()})) < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	for i, want := range [][]string{{"/users/1", "/users/2"}, nil} {
		var targets []string
		for _, o := range s.Outbound(got[i]) {
			targets = append(targets, o.Target)
			if o.Host != "users:8080" || o.Response == nil || o.Response.Body != fmt.Sprintf(`{"user":%q}`, o.Target) {
				t.Errorf("outbound call %+v; want users:8080 and its answer", o)
			}
		}
		if fmt.Sprint(targets) != fmt.Sprint(want) {
			t.Errorf("outbound calls of %s %s = %v; want %v", got[i].Method, got[i].Target, targets, want)
		}
		if s.Overlapping(got[i]) {
			t.Errorf("%s overlaps another request; it was served alone", got[i].Target)
		}
	}
	if got := s.List(""); len(got) != 2 {
		t.Errorf("kloop requests lists %d exchanges; want the 2 inbound ones, not the outbound calls", len(got))
	}
	s.Forget("deployment/orders")
	if o := s.Outbound(Exchange{Workload: "deployment/orders", End: time.Now()}); len(o) != 0 {
		t.Errorf("after the intercept ended %d outbound calls are kept", len(o))
	}
}

// A copy a mirror intercept sent is recorded as mirrored, with the status
// the cluster's pods answered the caller with beside the local process's,
// and without the agent's mark, so a replay sends it as the caller did;
// the next request on the connection, a plain one, is not marked.
func TestMirroredCopyIsMarkedWithTheClusterStatus(t *testing.T) {
	s := NewStore(0)
	c := dialRecorded(t, startServer(t), s)
	br := bufio.NewReader(c)
	for _, r := range []string{
		"POST /orders HTTP/1.1\r\nHost: orders\r\nKloop-Mirror: 201\r\nX-Dev: me\r\nContent-Length: 2\r\n\r\n{}",
		"GET /orders HTTP/1.1\r\nHost: orders\r\n\r\n",
	} {
		if _, err := io.WriteString(c, r); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	got := waitRecorded(t, s, 2)
	if len(got) != 2 {
		t.Fatalf("recorded %d exchanges; want 2", len(got))
	}
	m := got[0]
	if !m.Mirrored || m.ClusterStatus != 201 || m.Response == nil || m.Response.Status != 200 {
		t.Errorf("mirrored copy recorded as mirrored=%v cluster=%d response=%+v; want mirrored, cluster 201, local 200", m.Mirrored, m.ClusterStatus, m.Response)
	}
	if _, ok := m.Header["Kloop-Mirror"]; ok || m.Header.Get("X-Dev") != "me" {
		t.Errorf("recorded header %v; want the caller's headers without Kloop-Mirror", m.Header)
	}
	if got[1].Mirrored || got[1].ClusterStatus != 0 {
		t.Errorf("a plain request recorded as mirrored: %+v", got[1])
	}
}
