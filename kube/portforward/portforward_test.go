package portforward_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kloop/kloop/kube/portforward"
	"github.com/kloop/kloop/test/cluster"
)

func TestMain(m *testing.M) { cluster.Main(m) }

// users listens on the pod's 127.0.0.1 only, like the agent's control port.
const pod = `
apiVersion: v1
kind: Pod
metadata: {name: users, labels: {app: users}}
spec:
  containers:
    - name: users
      image: ko://github.com/kloop/kloop/test/testdata/users
      env: [{name: HTTP_ADDR, value: "127.0.0.1:8080"}]
      ports: [{containerPort: 8080}]
`

func TestDialReachesLoopbackPortAndHonoursDeadlines(t *testing.T) {
	env := cluster.New(t)
	si := env.StartStandIns(t, cluster.DefaultImages())
	// A fresh namespace gets its default ServiceAccount a moment later.
	for {
		err := env.ApplyYAML(context.Background(), []byte(pod))
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "serviceaccount") {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	env.WaitPodsRunning(t, "app=users", 1)
	si.Wait(t, "users", "users")
	// kwok serves the pod's port-forward once it loaded its PortForward.
	env.HTTPGet(t, "users", 8080, "/users/1")

	for _, noWS := range []bool{false, true} {
		t.Run(fmt.Sprintf("spdy-only=%v", noWS), func(t *testing.T) {
			d := portforward.NewDialer(env.Config)
			d.NoWebsocket = noWS
			conn, err := d.Dial(context.Background(), env.Namespace, "users", 8080)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer conn.Close()

			// Nothing to read yet: a read deadline ends the Read.
			conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read with a deadline: %v, want a timeout", err)
			}
			conn.SetReadDeadline(time.Time{})

			for range 2 { // keep-alive: two requests on one forward
				fmt.Fprint(conn, "GET /users/3 HTTP/1.1\r\nHost: users\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					t.Fatalf("response: %v", err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatalf("body: %v", err)
				}
				if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Ken Thompson") {
					t.Errorf("GET /users/3: %d %q", resp.StatusCode, body)
				}
			}
			conn.Close()
			if _, err := conn.Write([]byte("x")); err == nil {
				t.Errorf("write after Close succeeded")
			}

			// The kubelet's reason reaches Read when it cannot forward.
			bad, err := d.Dial(context.Background(), env.Namespace, "users", 8999)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer bad.Close()
			fmt.Fprint(bad, "GET / HTTP/1.1\r\n\r\n")
			_, err = bad.Read(make([]byte, 10))
			if err == nil || !strings.Contains(err.Error(), "8999") || !strings.Contains(err.Error(), "users") {
				t.Errorf("read from an unforwarded port: %v, want the reason naming pod and port", err)
			}
			t.Logf("unforwarded port: %v", err)
		})
	}
}

func TestDialErrors(t *testing.T) {
	env := cluster.New(t)
	d := portforward.NewDialer(env.Config)
	t.Logf("forward to a missing pod: %v", func() error { _, err := d.Dial(context.Background(), env.Namespace, "nope", 8080); return err }())
	_, err := d.Dial(context.Background(), env.Namespace, "nope", 8080)
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("dial to a missing pod: %v, want an error naming it", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Dial(ctx, env.Namespace, "nope", 8080); !errors.Is(err, context.Canceled) {
		t.Errorf("dial with a cancelled context: %v", err)
	}
}
