package intercept_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestTwoMappedPortsEachReachTheirLocalPort: orders has two container
// ports (http 8080, admin 9090); with --port given twice each Service port
// reaches its own local port, and kloop status shows both mappings.
func TestTwoMappedPortsEachReachTheirLocalPort(t *testing.T) {
	f := newFixture(t)
	cfg := "kubeconfig: " + f.Env.Kubeconfig + "\n"
	if err := os.WriteFile(filepath.Join(f.WS, ".kloop.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	serve := func(answer string) int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, answer) })}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return ln.Addr().(*net.TCPAddr).Port
	}
	httpLocal, adminLocal := serve("laptop http"), serve("laptop admin")
	f.MustKloop(t, "intercept", "orders", "--port", fmt.Sprintf("8080:%d", httpLocal), "--port", fmt.Sprintf("9090:%d", adminLocal), "--detach")
	t.Cleanup(func() { f.Kloop(t, "leave", "orders") })

	for port, want := range map[int]string{8080: "laptop http", 9090: "laptop admin"} {
		if got := getViaService(t, f, port); got != want {
			t.Errorf("Service orders port %d answered %q, want %q", port, got, want)
		}
	}
	if r := f.MustKloop(t, "status"); !strings.Contains(r.Stdout, fmt.Sprintf("ports 8080->%d,9090->%d", httpLocal, adminLocal)) {
		t.Errorf("kloop status printed %q, want both port mappings", r.Stdout)
	}
	st := f.Status(t)
	want := []string{fmt.Sprintf("8080->%d", httpLocal), fmt.Sprintf("9090->%d", adminLocal)}
	if len(st.Intercepts) != 1 || !slices.Equal(st.Intercepts[0].Ports, want) {
		t.Errorf("status intercepts = %+v, want ports %v", st.Intercepts, want)
	}
}

// getViaService sends GET / to Service orders' port as the cluster would:
// to a ready pod's target port of that Service port.
func getViaService(t *testing.T, f *fixture, port int) string {
	t.Helper()
	ctx := context.Background()
	svc, err := f.Env.Client.CoreV1().Services(f.Env.Namespace).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var tp intstr.IntOrString
	for _, sp := range svc.Spec.Ports {
		if int(sp.Port) == port {
			tp = sp.TargetPort
		}
	}
	pod := f.ReadyPod(t, labels.SelectorFromSet(svc.Spec.Selector).String())
	target := tp.IntValue()
	if tp.Type == intstr.String {
		for _, c := range pod.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == tp.StrVal {
					target = int(cp.ContainerPort)
				}
			}
		}
	}
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return f.PF.Dial(ctx, f.Env.Namespace, pod.Name, target)
		},
	}}
	resp, err := client.Get("http://orders/")
	if err != nil {
		t.Fatalf("Service orders port %d (pod %s port %d): %v", port, pod.Name, target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}
