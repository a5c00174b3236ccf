package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kloop/kloop/kube/portforward"
	"github.com/kloop/kloop/sandbox/standin"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	usersManifest  = "../testdata/users.yaml"
	ordersManifest = "../testdata/orders.yaml"
	sampleToken    = "sample-token-not-a-real-secret"
)

func getVia(t *testing.T, env *Env, pod string, port int, path string) (int, string) {
	t.Helper()
	return env.HTTPGet(t, pod, port, path)
}

func envValue(p *Process, name string) (string, bool) {
	for _, kv := range p.Env {
		if k, v, _ := strings.Cut(kv, "="); k == name {
			return v, true
		}
	}
	return "", false
}

func TestSamplesRunAsStandInsAndAnswerThroughPortForward(t *testing.T) {
	var procs []*Process
	var netnsNames []string
	t.Run("deploy", func(t *testing.T) {
		env := New(t)
		si := env.StartStandIns(t, DefaultImages())
		t.Logf("stand-in network: %s", si.Network())
		env.Apply(t, usersManifest, ordersManifest)
		users := env.WaitPodsRunning(t, "app=users", 1)
		orders := env.WaitPodsRunning(t, "app=orders", 2)
		procs = append(procs, si.Wait(t, users[0].Name, "users"))

		for _, pod := range orders {
			p := si.Wait(t, pod.Name, "orders")
			procs = append(procs, p)
			if p.Netns != "" {
				netnsNames = append(netnsNames, p.Netns)
			}
			for name, want := range map[string]string{
				"POD_NAME":     pod.Name,
				"API_TOKEN":    sampleToken,
				"USERS_URL":    "http://users:8080",
				"CATALOG_FILE": "/etc/orders/catalog.json",
			} {
				if got, ok := envValue(p, name); !ok || got != want {
					t.Errorf("%s: env %s = %q (set %v), want %q", pod.Name, name, got, ok, want)
				}
			}

			status, body := getVia(t, env, pod.Name, 9090, "/config")
			if status != http.StatusOK {
				t.Fatalf("%s /config: %d %s", pod.Name, status, body)
			}
			var cfg struct {
				Pod, Namespace, UsersURL, Greeting, TokenSHA256 string
				CatalogItems                                    int
			}
			if err := json.Unmarshal([]byte(body), &cfg); err != nil {
				t.Fatalf("%s /config: %v: %s", pod.Name, err, body)
			}
			sum := sha256.Sum256([]byte(sampleToken))
			if cfg.Pod != pod.Name || cfg.Namespace != env.Namespace || cfg.Greeting != "hello from orders" ||
				cfg.TokenSHA256 != hex.EncodeToString(sum[:]) || cfg.CatalogItems != 3 {
				t.Errorf("%s was configured with %+v", pod.Name, cfg)
			}
		}

		if si.Network() == NetworkNamespace {
			// Service names resolve inside the pod network: orders reaches users.
			status, body := getVia(t, env, orders[0].Name, 8080, "/orders/2")
			if status != http.StatusOK || !strings.Contains(body, "Grace Hopper") || !strings.Contains(body, users[0].Name) {
				t.Errorf("GET /orders/2 via port-forward: %d %s", status, body)
			}
		}
	})
	// The subtest's cleanup stopped everything.
	for _, p := range procs {
		if p.Running() {
			t.Errorf("stand-in %s/%s (pid %d) still runs after the test ended", p.Pod, p.Container, p.PID())
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.PID())); err == nil {
			t.Errorf("process %d of %s/%s still exists", p.PID(), p.Pod, p.Container)
		}
	}
	for _, ns := range netnsNames {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
			t.Errorf("network namespace %s still exists after the test ended", ns)
		}
	}
}

func TestReplicasDoNotCollideOnLoopback(t *testing.T) {
	env := New(t)
	si := env.StartStandIns(t, DefaultImages(), WithNetwork(NetworkLoopback))
	env.Apply(t, ordersManifest)
	pods := env.WaitPodsRunning(t, "app=orders", 2)
	var addrs []string
	for _, pod := range pods {
		p := si.Wait(t, pod.Name, "orders")
		addrs = append(addrs, p.Addr(8080), p.Addr(9090))
		if v, _ := envValue(p, "HTTP_ADDR"); !strings.HasPrefix(v, "127.0.0.1:") || v == "127.0.0.1:8080" {
			t.Errorf("%s: HTTP_ADDR %q was not remapped to a loopback port", pod.Name, v)
		}
		status, body := getVia(t, env, pod.Name, 9090, "/config")
		if status != http.StatusOK || !strings.Contains(body, `"pod":"`+pod.Name+`"`) {
			t.Errorf("%s /config via port-forward: %d %s", pod.Name, status, body)
		}
	}
	slices.Sort(addrs)
	if len(slices.Compact(slices.Clone(addrs))) != len(addrs) {
		t.Errorf("replicas share addresses: %v", addrs)
	}
}

func TestDeletedPodStopsItsStandIn(t *testing.T) {
	env := New(t)
	si := env.StartStandIns(t, DefaultImages())
	env.Apply(t, usersManifest)
	pod := env.WaitPodsRunning(t, "app=users", 1)[0]
	p := si.Wait(t, pod.Name, "users")
	if err := env.Client.CoreV1().Pods(env.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := poll(context.Background(), WaitTimeout, func(context.Context) (bool, error) { return !p.Running(), nil })
	if err != nil {
		t.Fatalf("stand-in of deleted pod %s still runs: %v", pod.Name, err)
	}
	// The Deployment's replacement gets a stand-in of its own.
	var next string
	poll(context.Background(), WaitTimeout, func(context.Context) (bool, error) {
		for _, q := range env.WaitPodsRunning(t, "app=users", 1) {
			if q.Name != pod.Name {
				next = q.Name
			}
		}
		return next != "", nil
	})
	if next == "" {
		t.Fatalf("no replacement pod for %s", pod.Name)
	}
	si.Wait(t, next, "users")
}

// sidecarPod has two containers talking over the pod's localhost; users
// listens on 127.0.0.1 only, like kloop's agent control port.
const sidecarPod = `
apiVersion: v1
kind: ConfigMap
metadata: {name: catalog}
data:
  catalog.json: '[{"id": "1", "item": "keyboard", "userId": "1"}]'
---
apiVersion: v1
kind: Secret
metadata: {name: token}
stringData: {api-token: t}
---
apiVersion: v1
kind: Pod
metadata: {name: pair, labels: {app: pair}}
spec:
  containers:
    - name: users
      image: ko://github.com/kloop/kloop/test/testdata/users
      env: [{name: HTTP_ADDR, value: "127.0.0.1:8080"}]
      ports: [{containerPort: 8080}]
    - name: orders
      image: ko://github.com/kloop/kloop/test/testdata/orders
      env:
        - {name: USERS_URL, value: "http://localhost:8080"}
        - {name: HTTP_ADDR, value: ":8081"}
        - {name: ADMIN_ADDR, value: ":9091"}
        - {name: CATALOG_FILE, value: /data/catalog.json}
        - name: API_TOKEN
          valueFrom: {secretKeyRef: {name: token, key: api-token}}
      ports: [{containerPort: 8081}, {containerPort: 9091}]
      volumeMounts: [{name: catalog, mountPath: /data}]
  volumes:
    - name: catalog
      configMap: {name: catalog}
`

// forEachNetwork runs f once per stand-in network mode. Network namespaces
// need root: .ci/run refuses to run as anyone else, so CI runs both.
func forEachNetwork(t *testing.T, f func(t *testing.T, network Network)) {
	for _, network := range []Network{NetworkNamespace, NetworkLoopback} {
		t.Run(string(network), func(t *testing.T) {
			if network == NetworkNamespace && os.Geteuid() != 0 {
				t.Skip("network namespaces need root; CI runs the sandbox tests as root")
			}
			f(t, network)
		})
	}
}

func TestContainersOfAPodShareLocalhost(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, network Network) {
		env := New(t)
		si := env.StartStandIns(t, DefaultImages(), WithNetwork(network))
		if err := env.ApplyYAML(context.Background(), []byte(sidecarPod)); err != nil {
			t.Fatal(err)
		}
		env.WaitPodsRunning(t, "app=pair", 1)
		si.Wait(t, "pair", "users")
		si.Wait(t, "pair", "orders")
		// orders reaches users at localhost:8080 inside the pod.
		status, body := getVia(t, env, "pair", 8081, "/orders/1")
		if status != http.StatusOK || !strings.Contains(body, "Ada Lovelace") {
			t.Errorf("GET /orders/1: %d %s", status, body)
		}
		// Port-forward reaches a port bound to the pod's 127.0.0.1 only.
		status, body = getVia(t, env, "pair", 8080, "/users/3")
		if status != http.StatusOK || !strings.Contains(body, "Ken Thompson") {
			t.Errorf("GET /users/3 on the localhost-only port: %d %s", status, body)
		}
	})
}

// An image table entry maps any image to a local program, and its Ports
// make undeclared listening ports reachable (as kloop's injected agent
// needs for its control port).
func TestImageTableMapsOtherImagesAndUndeclaredPorts(t *testing.T) {
	env := New(t)
	images := DefaultImages()
	images["registry.example/team/users"] = Image{Package: "github.com/kloop/kloop/test/testdata/users", Ports: []int32{8080}}
	si := env.StartStandIns(t, images)
	const pod = `
apiVersion: v1
kind: Pod
metadata: {name: custom, labels: {app: custom}}
spec:
  containers:
    - name: app
      image: registry.example/team/users:v1.2.3
`
	if err := env.ApplyYAML(context.Background(), []byte(pod)); err != nil {
		t.Fatal(err)
	}
	env.WaitPodsRunning(t, "app=custom", 1)
	p := si.Wait(t, "custom", "app")
	if p.Argv[0] == "" || !strings.Contains(p.Argv[0], "testdata_users") {
		t.Errorf("stand-in runs %q, want the users binary", p.Argv)
	}
	status, body := getVia(t, env, "custom", 8080, "/users/1")
	if status != http.StatusOK || !strings.Contains(body, "Ada Lovelace") {
		t.Errorf("GET /users/1 on an undeclared port: %d %s", status, body)
	}
}

// A pod that closes a connection (here an HTTP server honouring
// "Connection: close"; a server closing an idle keep-alive connection is the
// same) must be seen to close it at the other end of the port-forward, as
// with a real kubelet, or a client's next request on that connection waits
// for an answer forever. kwok as released never ended such a forward; the
// sandbox builds it patched (sandbox/kwokpatch.go).
func TestPortForwardEndsWhenThePodClosesTheConnection(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, network Network) {
		env := New(t)
		si := env.StartStandIns(t, DefaultImages(), WithNetwork(network))
		env.Apply(t, ordersManifest)
		pod := env.WaitPodsRunning(t, "app=orders", 2)[0]
		si.Wait(t, pod.Name, "orders")
		// A first answer proves kwok has the pod's PortForward.
		if status, body := getVia(t, env, pod.Name, 9090, "/config"); status != http.StatusOK {
			t.Fatalf("GET /config: %d %s", status, body)
		}

		conn, err := portforward.NewDialer(env.Config).Dial(context.Background(), env.Namespace, pod.Name, 9090)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "GET /config HTTP/1.1\r\nHost: orders\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		// Not a speed limit: without the fix the read never ends.
		conn.SetReadDeadline(time.Now().Add(time.Minute))
		answer, err := io.ReadAll(conn)
		if err != nil {
			t.Fatalf("the pod closed the connection, but the port-forward did not end: %v (read %q)", err, answer)
		}
		if !strings.HasPrefix(string(answer), "HTTP/1.1 200") {
			t.Errorf("answer: %q", answer)
		}
	})
}

// A stand-in built with Options.Race that races fails its runner's Stop with
// the report (StartStandIns turns that into a failed test; here the runner is
// started directly so the failure is the one under test), and a runner that
// never ran a racy stand-in stops clean.
func TestARaceInAStandInFailsStop(t *testing.T) {
	env := New(t)
	start := func(t *testing.T, race bool) *standin.Runner {
		r, err := standin.Start(context.Background(), standin.Options{
			Client: env.Client, Dynamic: env.Dynamic, Config: env.Config, Namespace: env.Namespace, Images: DefaultImages(),
			Dir:         filepath.Join(env.Cluster.runDir, "standins", env.Namespace+"-"+strconv.FormatBool(race)),
			BuildDir:    filepath.Join(env.Cluster.runDir, "bin"),
			RecordDir:   env.Cluster.runDir,
			DialCommand: env.Cluster.dialCommand,
			Logf:        t.Logf,
			Race:        race,
		})
		if err != nil {
			t.Fatalf("start stand-ins: %v", err)
		}
		t.Cleanup(func() { _ = r.Stop() })
		return r
	}
	const pod = `
apiVersion: v1
kind: Pod
metadata: {name: racy, labels: {app: racy}}
spec:
  containers:
    - name: app
      image: ko://github.com/kloop/kloop/test/testdata/racy
`
	if err := env.ApplyYAML(context.Background(), []byte(pod)); err != nil {
		t.Fatal(err)
	}
	env.WaitPodsRunning(t, "app=racy", 1)
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()

	t.Run("without -race", func(t *testing.T) {
		r := start(t, false)
		p, err := r.Wait(ctx, env.Namespace, "racy", "app")
		if err != nil {
			t.Fatal(err)
		}
		if err := poll(ctx, WaitTimeout, func(context.Context) (bool, error) { return strings.Contains(p.Logs(), "raced:"), nil }); err != nil {
			t.Fatalf("racy never printed: %v; log:\n%s", err, p.Logs())
		}
		if err := r.Stop(); err != nil {
			t.Errorf("Stop of a stand-in built without -race = %v, want nil", err)
		}
	})
	t.Run("with -race", func(t *testing.T) {
		r := start(t, true)
		p, err := r.Wait(ctx, env.Namespace, "racy", "app")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(p.Argv[0], "-race") {
			t.Errorf("stand-in runs %q, want the -race build", p.Argv[0])
		}
		if err := poll(ctx, WaitTimeout, func(context.Context) (bool, error) { return strings.Contains(p.Logs(), "raced:"), nil }); err != nil {
			t.Fatalf("racy never printed: %v; log:\n%s", err, p.Logs())
		}
		err = r.Stop()
		if err == nil || !strings.Contains(err.Error(), "WARNING: DATA RACE") || !strings.Contains(err.Error(), "racy/main.go:") ||
			!strings.Contains(err.Error(), "container app") {
			t.Fatalf("Stop = %v, want the race report of container app with its stack", err)
		}
		if again := r.Stop(); again == nil || again.Error() != err.Error() {
			t.Errorf("second Stop = %v, want the same error", again)
		}
	})
}
