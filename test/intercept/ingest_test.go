package intercept_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kloop/kloop/test/cluster"
	"github.com/kloop/kloop/test/editor"
)

// digestLine is what the digest sample (test/testdata/digest) prints.
type digestLine struct {
	Build    string            `json:"build"`
	Greeting string            `json:"greeting"`
	TokenSHA string            `json:"tokenSHA"`
	Root     string            `json:"root"`
	Items    int               `json:"items"`
	Users    map[string]string `json:"users"`
}

// usersWeb is a second Service of the users pods whose port (80) differs
// from the container port it targets, by name: reaching it proves the
// proxy translates as a cluster does.
const usersWeb = `apiVersion: v1
kind: Service
metadata:
  name: users-web
spec:
  selector: {app: users}
  ports:
    - {name: web, port: 80, targetPort: http}
`

// TestTrafficNoneGivesThePodsEnvAndServicesAndChangesNothing types
// `kloop intercept orders --traffic none --program .` in a workspace
// holding the digest sample, a program with no port that works from the
// orders pod's env, its mounted catalog and the users Service. The program
// gets the env and the KLOOP_ROOT files, reaches users by each of its DNS
// names (and through a Service whose port targets a named container port),
// gets a clear 502 for a pod IP and for a host outside the cluster,
// relaunches on save, `kloop status` says none (no traffic), and Ctrl-C
// removes the local files. Meanwhile the workload, the namespace's
// Services and Secrets and the orders pods stay exactly as they were: no
// agent, no Service pointed, no Secret, no annotation.
func TestTrafficNoneGivesThePodsEnvAndServicesAndChangesNothing(t *testing.T) {
	env := cluster.New(t)
	si := env.StartStandIns(t, cluster.DefaultImages())
	env.Apply(t, filepath.Join("..", "testdata", "users.yaml"), filepath.Join("..", "testdata", "orders.yaml"))
	if err := env.ApplyYAML(context.Background(), []byte(usersWeb)); err != nil {
		t.Fatalf("apply the users-web Service: %v", err)
	}
	for _, pod := range env.WaitPodsRunning(t, "app=orders", 2) {
		si.Wait(t, pod.Name, "orders")
	}
	for _, pod := range env.WaitPodsRunning(t, "app=users", 1) {
		si.Wait(t, pod.Name, "users")
	}
	before := clusterSnapshot(t, env)

	ws := t.TempDir()
	src, err := os.ReadFile(filepath.Join("..", "testdata", "digest", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	mainGo := filepath.Join(ws, "main.go")
	write(t, mainGo, string(src))
	write(t, filepath.Join(ws, "go.mod"), "module example.com/digest\n\ngo 1.26\n")
	hosts := []string{"users:8080", "users.NS:8080", "users.NS.svc.cluster.local:8080", "users-web:80", "10.96.0.10:8080", "www.example.org:80"}
	write(t, filepath.Join(ws, ".kloop.yaml"), "intercepts:\n  - workload: orders\n    env:\n      DIGEST_HOSTS: \""+strings.Join(hosts, " ")+"\"\n")

	daemon := editor.NewEnv(t, binary(t))
	daemon.Extra = []string{"KUBECONFIG=" + env.Kubeconfig}
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(daemon.State, "daemon.log")); err == nil {
				t.Logf("daemon log:\n%s", log)
			}
		}
	})

	// A rule for requests that never come is refused, saying so.
	refused := daemon.Command(context.Background(), "intercept", "orders", "--traffic", "none", "--header", "x-dev=me", "--program", ".")
	refused.Dir = ws
	if out, err := refused.CombinedOutput(); err == nil || !strings.Contains(string(out), "traffic none receives no requests, so header (--header) would do nothing: remove it, or use traffic steal") {
		t.Fatalf("kloop intercept orders --traffic none --header x-dev=me: %v\n%s\nwant refused, saying why", err, out)
	}

	cmd := daemon.Command(context.Background(), "intercept", "orders", "--traffic", "none", "--program", ".")
	cmd.Dir = ws
	var out safeBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	d := waitDigest(t, &out, exited, "digest-v1")

	secret, err := env.Client.CoreV1().Secrets(env.Namespace).Get(context.Background(), "orders-secret", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(secret.Data["api-token"])
	if d.Greeting != "hello from orders" || d.TokenSHA != hex.EncodeToString(sum[:6]) || d.Items != 3 {
		t.Errorf("digest %+v: want the ConfigMap's greeting, the Secret's token and the 3 items of the mounted catalog", d)
	}
	for _, h := range hosts[:4] {
		if got := d.Users[strings.ReplaceAll(h, "NS", env.Namespace)]; !strings.HasPrefix(got, "200 ") || !strings.Contains(got, `"name":"Ada Lovelace"`) || !strings.Contains(got, `"servedBy":"users-`) {
			t.Errorf("GET http://%s/users/1 through the proxy: %q; want user 1 from a users pod", h, got)
		}
	}
	if got := d.Users["10.96.0.10:8080"]; !strings.HasPrefix(got, "502 ") || !strings.Contains(got, "10.96.0.10 is an IP address") || !strings.Contains(got, "only Services can be reached, by name") {
		t.Errorf("GET a pod IP through the proxy: %q; want a 502 saying only Services by name work", got)
	}
	if got := d.Users["www.example.org:80"]; !strings.HasPrefix(got, "502 ") || !strings.Contains(got, "www.example.org is not a Service name") {
		t.Errorf("GET a host outside the cluster through the proxy: %q; want a 502 saying it is not a Service name", got)
	}
	if _, err := os.Stat(filepath.Join(d.Root, "etc", "orders", "catalog.json")); err != nil {
		t.Errorf("the mounted catalog under KLOOP_ROOT: %v", err)
	}
	if !strings.Contains(out.String(), "ingesting deployment/orders") {
		t.Errorf("the terminal does not say what traffic none does:\n%s", out.String())
	}
	status := daemon.Command(context.Background(), "status")
	status.Dir = ws
	if text, err := status.Output(); err != nil || !strings.Contains(string(text), "intercept  deployment/orders none (no traffic)") {
		t.Errorf("kloop status: %v\n%s\nwant the intercept shown as none (no traffic)", err, text)
	}
	if st := statusOf(t, daemon, ws); len(st.Intercepts) != 1 || st.Intercepts[0].Traffic != "none" || st.Intercepts[0].State != "none (no traffic)" {
		t.Errorf("kloop status -o json intercepts = %+v; want deployment/orders with traffic none", st.Intercepts)
	}
	assertUnchanged(t, "while the program runs", before, clusterSnapshot(t, env))

	// A save relaunches the program, as with steal.
	write(t, mainGo, strings.Replace(string(src), `const build = "digest-v1"`, `const build = "digest-v2"`, 1))
	if d2 := waitDigest(t, &out, exited, "digest-v2"); d2.Items != 3 || !strings.HasPrefix(d2.Users["users:8080"], "200 ") {
		t.Errorf("the relaunched build: %+v; want the same env, files and Services", d2)
	}

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("kloop intercept after Ctrl-C: %v\n%s", err, out.String())
		}
	case <-time.After(cluster.WaitTimeout):
		t.Fatalf("kloop intercept still runs %s after Ctrl-C:\n%s", cluster.WaitTimeout, out.String())
	}
	if !strings.Contains(out.String(), "left deployment/orders; the cluster was not changed") {
		t.Errorf("no word of leaving after Ctrl-C:\n%s", out.String())
	}
	if _, err := os.Stat(d.Root); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("KLOOP_ROOT %s is still there after leaving (%v)", d.Root, err)
	}
	assertUnchanged(t, "after leaving", before, clusterSnapshot(t, env))
}

// waitDigest waits for the digest line of build in the terminal's output.
func waitDigest(t *testing.T, out *safeBuffer, exited <-chan error, build string) digestLine {
	t.Helper()
	var d digestLine
	eventually(t, "the digest of "+build+" in the terminal", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("kloop intercept orders --traffic none ended (%v):\n%s", err, out.String())
		default:
		}
		for _, line := range strings.Split(out.String(), "\n") {
			rest, ok := strings.CutPrefix(line, "digest ")
			if !ok {
				continue
			}
			if err := json.Unmarshal([]byte(rest), &d); err == nil && d.Build == build {
				return true
			}
		}
		return false
	})
	return d
}

// clusterSnapshot is what traffic none must not change, as JSON per
// object: the orders Deployment (spec, labels, annotations), the names of
// its pods (a rollout would replace them), every Service and every Secret
// of the namespace.
func clusterSnapshot(t *testing.T, env *cluster.Env) map[string]string {
	t.Helper()
	ctx := context.Background()
	snap := map[string]string{}
	put := func(key string, v any) {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		snap[key] = string(data)
	}
	d, err := env.Client.AppsV1().Deployments(env.Namespace).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	put("deployment/orders", []any{d.Spec, d.Labels, d.Annotations})
	pods, err := env.Client.CoreV1().Pods(env.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=orders"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	put("pods of orders", names)
	svcs, err := env.Client.CoreV1().Services(env.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs.Items {
		put("service/"+s.Name, []any{s.Spec, s.Labels, s.Annotations})
	}
	secrets, err := env.Client.CoreV1().Secrets(env.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		put("secret/"+s.Name, []any{s.Type, s.Data, s.Labels, s.Annotations})
	}
	return snap
}

func assertUnchanged(t *testing.T, when string, before, now map[string]string) {
	t.Helper()
	for k, v := range before {
		if now[k] != v {
			t.Errorf("%s: %s changed:\n%s\nwas\n%s", when, k, now[k], v)
		}
	}
	for k, v := range now {
		if _, ok := before[k]; !ok {
			t.Errorf("%s: %s appeared: %s", when, k, v)
		}
	}
}
