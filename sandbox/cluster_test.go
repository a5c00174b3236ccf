package sandbox

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

var binOnce struct {
	sync.Once
	dir string
	err error
}

// testOptions gives each test its own state directory and the shared
// binary cache (built on first use, as `make test` does on a fresh machine).
func testOptions(t *testing.T, name string) Options {
	t.Helper()
	binOnce.Do(func() {
		binOnce.dir, binOnce.err = EnsureBinaries(context.Background(), ProgressTo(os.Stderr))
	})
	if binOnce.err != nil {
		t.Fatalf("sandbox binaries: %v", binOnce.err)
	}
	opts := Options{Name: name, StateDir: t.TempDir(), BinDir: binOnce.dir}
	t.Cleanup(func() {
		if err := Down(context.Background(), opts); err != nil && !errors.Is(err, ErrNoCluster) {
			t.Errorf("cleanup: %v", err)
		}
	})
	return opts
}

func TestUpStatusDown(t *testing.T) {
	ctx := context.Background()
	opts := testOptions(t, "lifecycle")
	opts.Nodes = 2
	c, err := Up(ctx, opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	fi, err := os.Stat(c.Kubeconfig)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig %s: %v mode %v, want 0600", c.Kubeconfig, err, fi.Mode().Perm())
	}
	cfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cfg.Host, "https://127.0.0.1:") {
		t.Errorf("apiserver %s is not on loopback", cfg.Host)
	}
	nodes, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 2 {
		t.Fatalf("nodes: %v, %d of 2", err, len(nodes.Items))
	}

	st, err := Status(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != StateRunning || len(st.Components) != 5 || st.Nodes != 2 || st.Kubeconfig != c.Kubeconfig {
		t.Errorf("Status = %+v", st)
	}

	again, err := Up(ctx, opts)
	if err != nil || !again.Reused || again.Server != c.Server {
		t.Errorf("second Up = %+v, %v; want the running cluster reused", again, err)
	}

	if err := Down(ctx, opts); err != nil {
		t.Fatalf("Down: %v", err)
	}
	for _, comp := range st.Components {
		if processAlive(comp.PID) {
			t.Errorf("%s (pid %d) still runs after Down", comp.Name, comp.PID)
		}
	}
	if _, err := Status(ctx, opts); !errors.Is(err, ErrNoCluster) {
		t.Errorf("Status after Down: %v, want ErrNoCluster", err)
	}
	if err := Down(ctx, opts); !errors.Is(err, ErrNoCluster) {
		t.Errorf("second Down: %v, want ErrNoCluster", err)
	}
}

func TestUpRefusesTakenPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	opts := testOptions(t, "taken")
	opts.APIServerPort = ln.Addr().(*net.TCPAddr).Port
	_, err = Up(context.Background(), opts)
	if err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("Up on a taken port: %v, want an 'already in use' error", err)
	}
	if _, err := Status(context.Background(), opts); !errors.Is(err, ErrNoCluster) {
		t.Errorf("a failed Up left a cluster behind: %v", err)
	}
}

func TestUpReplacesClusterWithDeadComponent(t *testing.T) {
	ctx := context.Background()
	opts := testOptions(t, "leftover")
	first, err := Up(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	l := newLayout(opts.StateDir, opts.Name)
	kwokPID := componentPIDs(l)["kwok-controller"]
	if err := killAndWait(ctx, kwokPID, 0); err != nil {
		t.Fatal(err)
	}
	st, err := Status(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != StateDegraded || !strings.Contains(st.Problem, "kwok-controller") {
		t.Errorf("Status with a dead kwok-controller = %s, %q", st.State, st.Problem)
	}
	second, err := Up(ctx, opts)
	if err != nil {
		t.Fatalf("Up over a broken cluster: %v", err)
	}
	if second.Reused {
		t.Errorf("Up reused a cluster whose kwok-controller was dead (first at %s)", first.Server)
	}
	if st, _ := Status(ctx, opts); st == nil || st.State != StateRunning {
		t.Errorf("after replacing: %+v", st)
	}
}

func TestUpRemovesClustersOfDeadOwners(t *testing.T) {
	ctx := context.Background()
	opts := testOptions(t, "orphan")
	owner := exec.Command("sleep", "60")
	if err := owner.Start(); err != nil {
		t.Fatal(err)
	}
	opts.Owner = owner.Process.Pid
	if _, err := Up(ctx, opts); err != nil {
		t.Fatal(err)
	}
	orphanPIDs := componentPIDs(newLayout(opts.StateDir, opts.Name))
	owner.Process.Kill()
	owner.Wait()

	other := opts
	other.Name, other.Owner = "survivor", 0
	if _, err := Up(ctx, other); err != nil {
		t.Fatal(err)
	}
	defer Down(ctx, other)
	if _, err := Status(ctx, opts); !errors.Is(err, ErrNoCluster) {
		t.Errorf("cluster of a dead owner survived another Up: %v", err)
	}
	for name, pid := range orphanPIDs {
		if processAlive(pid) {
			t.Errorf("%s (pid %d) of the orphaned cluster still runs", name, pid)
		}
	}
}

func TestOptionsRejectBadInput(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"uppercase name", Options{Name: "Demo"}, "invalid sandbox cluster name"},
		{"long name", Options{Name: strings.Repeat("a", 41)}, "at most 40 characters"},
		{"negative nodes", Options{Nodes: -1}, "node count -1 is out of range"},
		{"port too big", Options{APIServerPort: 70000}, "port 70000 is out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.StateDir = t.TempDir()
			_, err := Up(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Up(%+v) = %v, want error containing %q", tt.opts, err, tt.want)
			}
		})
	}
}

func TestUpRejectsIncompleteBinDir(t *testing.T) {
	opts := Options{Name: "x", StateDir: t.TempDir(), BinDir: t.TempDir()}
	_, err := Up(context.Background(), opts)
	if err == nil || !strings.Contains(err.Error(), "sandbox binaries missing") || !strings.Contains(err.Error(), "kube-apiserver") {
		t.Errorf("Up with an empty bin dir: %v", err)
	}
}
