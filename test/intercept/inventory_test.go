package intercept_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
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
	"github.com/kloop/kloop/session"
	"github.com/kloop/kloop/test/cluster"
	"github.com/kloop/kloop/test/editor"
	"github.com/kloop/kloop/test/orders"
)

// inventoryAnswer is what the inventory sample's GET /items/kb-1 returns.
type inventoryAnswer struct {
	SKU       string `json:"sku"`
	Count     int    `json:"count"`
	Warehouse string `json:"warehouse"`
	TokenSet  bool   `json:"tokenSet"`
	ServedBy  string `json:"servedBy"`
	Build     string `json:"build"`
}

// TestInterceptInfersThePortOfAServiceOfYourOwn is README.md's loop typed as
// printed on a service that is not orders (test/testdata/inventory.yaml):
// one container port named web behind a Service with targetPort: web, two
// replicas, env from a ConfigMap and a Secret, the handler outside package
// main, no .kloop.yaml. `kloop intercept inventory --program
// ./cmd/inventory` without --port intercepts that port, runs the program on
// the same port locally with the pod's env, relaunches it when the
// handler's file is saved, and Ctrl-C leaves the workload as it was.
func TestInterceptInfersThePortOfAServiceOfYourOwn(t *testing.T) {
	env := cluster.New(t)
	si := env.StartStandIns(t, cluster.DefaultImages())
	// The local port is the container's: a free one, so this run's program
	// collides with nothing on the machine.
	port := orders.FreePort(t)
	manifest, err := os.ReadFile(filepath.Join("..", "testdata", "inventory.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(manifest), "8080"); n != 2 {
		t.Fatalf("inventory.yaml names 8080 %d times, want 2 (containerPort and PORT); update the test", n)
	}
	manifest = []byte(strings.ReplaceAll(string(manifest), "8080", strconv.Itoa(port)))
	if err := env.ApplyYAML(context.Background(), manifest); err != nil {
		t.Fatalf("apply inventory.yaml: %v", err)
	}
	for _, pod := range env.WaitPodsRunning(t, "app=inventory", 2) {
		si.Wait(t, pod.Name, "inventory")
	}
	orders.WarmAgent(t, env, si)
	origTemplate, origService := inventorySpecs(t, env)

	// The workspace: a copy of the sample as its own module, no .kloop.yaml.
	ws := t.TempDir()
	copySample(t, filepath.Join("..", "testdata", "inventory"), ws)
	write(t, filepath.Join(ws, "go.mod"), "module github.com/kloop/kloop/test/testdata/inventory\n\ngo 1.26\n")
	handlerFile := filepath.Join(ws, "handler", "handler.go")
	setBuild(t, handlerFile, "laptop-v1")

	daemon := editor.NewEnv(t, binary(t))
	daemon.Extra = []string{"KUBECONFIG=" + env.Kubeconfig}
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(daemon.State, "daemon.log")); err == nil {
				t.Logf("daemon log:\n%s", log)
			}
		}
	})
	pf := portforward.NewDialer(env.Config)

	// Before: the cluster's pods answer.
	if a := getItem(t, env, pf); a.Build != "" || a.Warehouse != "north" {
		t.Fatalf("before the intercept: %+v, want the cluster's build", a)
	}

	cmd := daemon.Command(context.Background(), "intercept", "inventory", "--program", "./cmd/inventory")
	cmd.Dir = ws
	var out safeBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	eventually(t, "the program's output in the terminal", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("kloop intercept inventory --program ./cmd/inventory ended (%v):\n%s", err, out.String())
		default:
		}
		return strings.Contains(out.String(), "inventory listening")
	})

	// Cluster traffic reaches the local build, which got the ConfigMap's
	// warehouse and the Secret's token, and listens on the container's port.
	a := getItem(t, env, pf)
	if a.Build != "laptop-v1" || a.Warehouse != "north" || !a.TokenSet || a.Count != 12 {
		t.Fatalf("through the intercept: %+v, want the laptop's build laptop-v1 with the pod's env\noutput:\n%s", a, out.String())
	}
	if !strings.Contains(out.String(), "port="+strconv.Itoa(port)) {
		t.Errorf("the program did not say it listens on %d:\n%s", port, out.String())
	}
	st := statusOf(t, daemon, ws)
	want := fmt.Sprintf("%d->%d", port, port)
	if len(st.Intercepts) != 1 || !reflect.DeepEqual(st.Intercepts[0].Ports, []string{want}) {
		t.Errorf("status intercepts = %+v, want deployment/inventory on %s (the port named web, locally the same)", st.Intercepts, want)
	}

	// Saving the handler (outside package main) relaunches the program.
	setBuild(t, handlerFile, "laptop-v2")
	eventually(t, "an answer from the relaunched build laptop-v2", func() bool { return getItem(t, env, pf).Build == "laptop-v2" })

	// Ctrl-C ends the intercept: the workload and Service are as they were.
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
	if !strings.Contains(out.String(), "left deployment/inventory") {
		t.Errorf("no word of leaving after Ctrl-C:\n%s", out.String())
	}
	template, service := inventorySpecs(t, env)
	if !reflect.DeepEqual(template, origTemplate) || !reflect.DeepEqual(service, origService) {
		t.Errorf("inventory not restored after Ctrl-C:\n%+v\n%+v\nwant\n%+v\n%+v", template, service, origTemplate, origService)
	}
	if a := getItem(t, env, pf); a.Build != "" {
		t.Errorf("after Ctrl-C: %+v, want the cluster's answer", a)
	}
}

// getItem does what a cluster client does: GET /items/kb-1 on the inventory
// Service, through a ready pod and the container port its targetPort names
// (as `kubectl port-forward svc/inventory 8080:80` does), retrying transport
// errors (kwok marks a pod Ready before its stand-in serves).
func getItem(t *testing.T, env *cluster.Env, pf *portforward.Dialer) inventoryAnswer {
	t.Helper()
	var a inventoryAnswer
	var last string
	eventually(t, "an answer from the inventory Service", func() bool {
		var err error
		a, err = tryGetItem(env, pf)
		if err != nil && err.Error() != last {
			last = err.Error()
			t.Logf("GET /items/kb-1: %v (retrying)", err)
		}
		return err == nil
	})
	return a
}

// header, when given, is NAME, VALUE of a header the request carries.
func tryGetItem(env *cluster.Env, pf *portforward.Dialer, header ...string) (inventoryAnswer, error) {
	ctx := context.Background()
	svc, err := env.Client.CoreV1().Services(env.Namespace).Get(ctx, "inventory", metav1.GetOptions{})
	if err != nil {
		return inventoryAnswer{}, err
	}
	pods, err := env.Client.CoreV1().Pods(env.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
	if err != nil {
		return inventoryAnswer{}, err
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
		req, err := http.NewRequest(http.MethodGet, "http://inventory/items/kb-1", nil)
		if err != nil {
			return inventoryAnswer{}, err
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			return inventoryAnswer{}, fmt.Errorf("via Service inventory (pod %s port %d): %w", pod.Name, target, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return inventoryAnswer{}, err
		}
		var a inventoryAnswer
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &a) != nil {
			return inventoryAnswer{}, fmt.Errorf("pod %s answered %d %q", pod.Name, resp.StatusCode, body)
		}
		return a, nil
	}
	return inventoryAnswer{}, fmt.Errorf("no ready pod of inventory")
}

func inventorySpecs(t *testing.T, env *cluster.Env) (any, any) {
	t.Helper()
	ctx := context.Background()
	d, err := env.Client.AppsV1().Deployments(env.Namespace).Get(ctx, "inventory", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := env.Client.CoreV1().Services(env.Namespace).Get(ctx, "inventory", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template, s.Spec.Ports
}

func statusOf(t *testing.T, daemon *editor.Env, dir string) session.Status {
	t.Helper()
	var st session.Status
	cmd := daemon.Command(context.Background(), "status", "-o", "json")
	cmd.Dir = dir
	data, err := cmd.Output()
	if err != nil {
		t.Fatalf("kloop status -o json: %v", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, data)
	}
	return st
}

// copySample copies a sample's Go files into dir.
func copySample(t *testing.T, from, dir string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		write(t, filepath.Join(dir, rel), string(data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// setBuild rewrites the build marker of the handler's copy, as a save in an
// editor does.
func setBuild(t *testing.T, path, marker string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	src := string(data)
	i := strings.Index(src, "const build = ")
	if i < 0 {
		t.Fatalf("%s has no `const build = `; update the test", path)
	}
	end := i + strings.IndexByte(src[i:], '\n')
	write(t, path, src[:i]+"const build = "+strconv.Quote(marker)+src[end:])
}
