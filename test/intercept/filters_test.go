package intercept_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kloop/kloop/kube/portforward"
	"github.com/kloop/kloop/test/cluster"
	"github.com/kloop/kloop/test/editor"
	"github.com/kloop/kloop/test/orders"
)

// TestInterceptByPathMethodAndHeaders types a personal intercept beyond
// one header on the users sample (test/testdata/users.yaml), with a server
// of the developer's own on this machine and no program:
//
//	kloop intercept users --port P:LOCAL --header x-dev=alice --header x-team=pay
//	    --path-regex '^/users/[12]$' --method GET,HEAD
//
// Only requests that meet every condition reach the laptop, every other
// one the cluster's pod; a second rule typed with a bad regex is refused
// with the offset and changes nothing; then a rule with --match any
// takes each request that meets one condition; leave restores users.
func TestInterceptByPathMethodAndHeaders(t *testing.T) {
	env := cluster.New(t)
	si := env.StartStandIns(t, cluster.DefaultImages())
	port := orders.FreePort(t)
	manifest, err := os.ReadFile(filepath.Join("..", "testdata", "users.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(manifest), "8080"); n != 3 {
		t.Fatalf("users.yaml names 8080 %d times, want 3 (containerPort, port, targetPort); update the test", n)
	}
	m := strings.ReplaceAll(string(manifest), "8080", strconv.Itoa(port))
	// The sample listens on HTTP_ADDR.
	m = strings.Replace(m, "          env:\n", fmt.Sprintf("          env:\n            - {name: HTTP_ADDR, value: \":%d\"}\n", port), 1)
	if err := env.ApplyYAML(context.Background(), []byte(m)); err != nil {
		t.Fatalf("apply users.yaml: %v", err)
	}
	for _, pod := range env.WaitPodsRunning(t, "app=users", 1) {
		si.Wait(t, pod.Name, "users")
	}
	orders.WarmAgent(t, env, si)
	origTemplate, origService := usersSpecs(t, env)

	// The developer's own server: it answers every path as the laptop.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", "laptop")
		fmt.Fprint(w, "laptop")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	local := ln.Addr().(*net.TCPAddr).Port

	ws := t.TempDir()
	daemon := editor.NewEnv(t, binary(t))
	daemon.Extra = []string{"KUBECONFIG=" + env.Kubeconfig}
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(daemon.State, "daemon.log")); err == nil {
				t.Logf("daemon log:\n%s", log)
			}
		}
	})
	kloop := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), cluster.WaitTimeout)
		defer cancel()
		cmd := daemon.Command(ctx, args...)
		cmd.Dir = ws
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	pf := portforward.NewDialer(env.Config)
	type req struct {
		method, path string
		header       []string
		who          string // who must answer
	}
	check := func(when string, want []req) {
		t.Helper()
		for _, r := range want {
			who := r.who
			got, err := usersVia(env, pf, r.method, r.path, r.header...)
			if err != nil {
				t.Errorf("%s: %s %s %v: %v", when, r.method, r.path, r.header, err)
				continue
			}
			if got != who {
				t.Errorf("%s: %s %s %v answered by %s; want %s", when, r.method, r.path, r.header, got, who)
			}
		}
	}
	alice := []string{"x-dev", "alice", "x-team", "pay"}
	portArg := fmt.Sprintf("%d:%d", port, local)
	if out, err := kloop("intercept", "users", "--port", portArg, "--header", "x-dev=alice", "--header", "x-team=pay",
		"--path-regex", "^/users/[12]$", "--method", "GET,HEAD"); err != nil {
		t.Fatalf("kloop intercept users: %v\n%s", err, out)
	}
	check("all of the conditions", []req{
		{"GET", "/users/1", alice, "laptop"},
		{"HEAD", "/users/2", alice, "laptop"},
		{"GET", "/users/3", alice, "cluster"},                      // the regex
		{"GET", "/users/12", alice, "cluster"},                     // anchored
		{"POST", "/users/1", alice, "cluster"},                     // the method (the pod answers 405)
		{"GET", "/users/1", []string{"x-dev", "alice"}, "cluster"}, // one header of two
		{"GET", "/users/1", []string{"x-dev", "bob", "x-team", "pay"}, "cluster"},
		{"GET", "/users/1", nil, "cluster"},
	})

	// A bad regex is refused at once with where it is wrong; the intercept
	// in place keeps routing.
	out, err := kloop("intercept", "users", "--port", portArg, "--path-regex", "^/users/([0-9]+")
	if err == nil || !strings.Contains(out, `path regex "^/users/([0-9]+" at offset 0: missing closing )`) {
		t.Errorf("kloop intercept with a bad regex: %v\n%s\nwant refused naming the offset", err, out)
	}
	out, err = kloop("intercept", "users", "--port", portArg, "--method", "GET,GTE")
	if err == nil || !strings.Contains(out, `method "GTE" (item 2 of "GET,GTE") is not an HTTP method`) {
		t.Errorf("kloop intercept with a bad method: %v\n%s\nwant refused naming the item", err, out)
	}
	check("after the refused rules", []req{
		{"GET", "/users/1", alice, "laptop"},
		{"GET", "/users/1", nil, "cluster"},
	})
	st := statusOf(t, daemon, ws)
	if len(st.Intercepts) != 1 || st.Intercepts[0].Rule != "x-dev=alice and x-team=pay and path ~ ^/users/[12]$ and method GET,HEAD" {
		t.Errorf("status intercepts = %+v; want users with the rule as typed", st.Intercepts)
	}

	// Other conditions, any of them.
	if out, err := kloop("leave", "users"); err != nil {
		t.Fatalf("kloop leave users: %v\n%s", err, out)
	}
	if out, err := kloop("intercept", "users", "--port", portArg, "--header", "x-dev=alice",
		"--path", "/users/3", "--method", "DELETE", "--match", "any"); err != nil {
		t.Fatalf("kloop intercept users --match any: %v\n%s", err, out)
	}
	check("any of the conditions", []req{
		{"GET", "/users/1", []string{"x-dev", "alice"}, "laptop"}, // the header
		{"GET", "/users/3", nil, "laptop"},                        // the path
		{"DELETE", "/users/1", nil, "laptop"},                     // the method
		{"GET", "/users/1", nil, "cluster"},                       // none
		{"GET", "/users/2", []string{"x-dev", "bob"}, "cluster"},
	})

	if out, err := kloop("leave", "users"); err != nil {
		t.Fatalf("kloop leave users: %v\n%s", err, out)
	}
	template, service := usersSpecs(t, env)
	if !reflect.DeepEqual(template, origTemplate) || !reflect.DeepEqual(service, origService) {
		t.Errorf("after leave users is not restored:\ntemplate %+v\nwant     %+v\nports %+v\nwant  %+v", template, origTemplate, service, origService)
	}
	check("after leave", []req{{"GET", "/users/1", alice, "cluster"}})
}

func usersSpecs(t *testing.T, env *cluster.Env) (any, any) {
	t.Helper()
	ctx := context.Background()
	d, err := env.Client.AppsV1().Deployments(env.Namespace).Get(ctx, "users", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := env.Client.CoreV1().Services(env.Namespace).Get(ctx, "users", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template, s.Spec.Ports
}

// usersVia sends one request as an in-cluster caller of the users Service
// would (to the port the Service targets on a ready pod, through
// port-forward) and says who answered: "laptop", or "cluster" for the
// pod's own users process (any status: POST is its 405).
func usersVia(env *cluster.Env, pf *portforward.Dialer, method, path string, header ...string) (string, error) {
	ctx := context.Background()
	svc, err := env.Client.CoreV1().Services(env.Namespace).Get(ctx, "users", metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	pods, err := env.Client.CoreV1().Pods(env.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return "", err
	}
	tp := svc.Spec.Ports[0].TargetPort
	for _, pod := range pods.Items {
		ready := false
		for _, c := range pod.Status.Conditions {
			ready = ready || (c.Type == "Ready" && c.Status == "True")
		}
		if !ready || pod.DeletionTimestamp != nil {
			continue
		}
		target := tp.IntValue()
		for _, c := range pod.Spec.Containers {
			for _, cp := range c.Ports {
				if tp.StrVal != "" && cp.Name == tp.StrVal {
					target = int(cp.ContainerPort)
				}
			}
		}
		client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return pf.Dial(ctx, env.Namespace, pod.Name, target)
			},
		}}
		req, err := http.NewRequest(method, "http://users"+path, nil)
		if err != nil {
			return "", err
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", fmt.Errorf("via Service users (pod %s port %d): %w", pod.Name, target, err)
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return "", err
		}
		if resp.Header.Get("X-Served-By") == "laptop" {
			return "laptop", nil
		}
		return "cluster", nil
	}
	return "", fmt.Errorf("no ready pod of users")
}
