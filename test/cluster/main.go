package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kloop/kloop/sandbox"
	"github.com/kloop/kloop/sandbox/standin"
)

// Cluster is the sandbox cluster shared by the tests of one test binary.
type Cluster struct {
	Name string
	// Kubeconfig is the cluster's kubeconfig file (namespace "default").
	Kubeconfig string
	// Config must not be modified; use rest.CopyConfig.
	Config  *rest.Config
	Client  kubernetes.Interface
	Dynamic dynamic.Interface

	// runDir holds this run's stand-in binaries, volumes, logs and pids.
	runDir string
	opts   sandbox.Options

	// dialCommand is the stand-ins' DialCommand: this binary as a pipe.
	dialCommand []string

	mu      sync.Mutex
	cleanup []func()
}

// The cluster of this test binary; set once by Main before any test runs.
var shared struct {
	cluster *Cluster
	err     error
}

const reaperEnv = "KLOOP_SANDBOX_REAPER"

// dialArg makes the test binary a stdio<->TCP pipe (standin.Pipe), the
// stand-ins' DialCommand.
const dialArg = "-kloop-sandbox-dial"

// Main is the whole TestMain of a package that uses the sandbox:
//
//	func TestMain(m *testing.M) { cluster.Main(m) }
//
// It starts the cluster, runs the tests, tears down and exits with the
// tests' status. If the cluster cannot start, every test fails with the
// reason (the failure is not hidden as a skip).
func Main(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == dialArg {
		if err := standin.Pipe(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if spec := os.Getenv(reaperEnv); spec != "" {
		os.Exit(runReaper(spec))
	}
	code := run(m)
	os.Exit(code)
}

func run(m *testing.M) int {
	// An interrupt during the start (maybe a 13-minute first build) must
	// stop the build's process group too, so the start gets a context.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	c, err := start(ctx)
	interrupted := ctx.Err() != nil
	stop()
	if interrupted {
		if c != nil {
			c.teardown()
		}
		fmt.Fprintln(os.Stderr, "sandbox: interrupted while starting")
		return 130
	}
	shared.cluster, shared.err = c, err
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox: %v\n", err)
	}
	if c == nil {
		return m.Run()
	}

	// Tear down on SIGINT/SIGTERM too; testing installs no handler of its own.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	var teardownOnce sync.Once
	teardown := func() { teardownOnce.Do(func() { c.teardown() }) }
	go func() {
		select {
		case s := <-sig:
			fmt.Fprintf(os.Stderr, "sandbox: %v: tearing down cluster %s\n", s, c.Name)
			teardown()
			os.Exit(130)
		case <-done:
		}
	}()
	defer func() {
		close(done)
		signal.Stop(sig)
		teardown()
	}()
	return m.Run()
}

func start(ctx context.Context) (*Cluster, error) {
	progress := sandbox.ProgressTo(os.Stderr)
	binDir, err := sandbox.EnsureBinaries(ctx, progress)
	if err != nil {
		return nil, fmt.Errorf("build the sandbox binaries: %w", err)
	}
	name := clusterName(os.Args[0], os.Getpid())
	runDir, err := os.MkdirTemp("", "kloop-sandbox-"+name+"-")
	if err != nil {
		return nil, fmt.Errorf("create sandbox run directory: %w", err)
	}
	opts := sandbox.Options{Name: name, Nodes: 1, BinDir: binDir, Owner: os.Getpid(), Progress: quietProgress(progress)}
	standin.CleanupOrphans()
	if err := startReaper(name, runDir, binDir); err != nil {
		os.RemoveAll(runDir)
		return nil, err
	}
	kc, err := sandbox.Up(ctx, opts)
	if err != nil {
		os.RemoveAll(runDir)
		return nil, fmt.Errorf("start sandbox cluster: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the test binary: %w", err)
	}
	c := &Cluster{Name: name, Kubeconfig: kc.Kubeconfig, runDir: runDir, opts: opts, dialCommand: []string{self, dialArg}}
	c.Config, err = kc.RESTConfig()
	if err != nil {
		c.teardown()
		return nil, err
	}
	// Tests create many objects quickly; the default 5 QPS would throttle them.
	c.Config.QPS, c.Config.Burst = 100, 200
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		c.teardown()
		return nil, err
	}
	if c.Dynamic, err = dynamic.NewForConfig(c.Config); err != nil {
		c.teardown()
		return nil, err
	}
	return c, nil
}

// quietProgress keeps build progress (long, worth seeing) and drops the
// per-start step lines that would clutter every test run.
func quietProgress(p sandbox.ProgressFunc) sandbox.ProgressFunc {
	return func(pr sandbox.Progress) {
		if pr.Elapsed > 10*time.Second || strings.Contains(pr.Message, "leftover") || strings.Contains(pr.Message, "died") {
			p(pr)
		}
	}
}

var unsafeName = regexp.MustCompile(`[^a-z0-9]+`)

// clusterName is "t-<package>-<pid>", a valid cluster name of at most 40 characters.
func clusterName(arg0 string, pid int) string {
	base := strings.TrimSuffix(filepath.Base(arg0), ".test")
	base = strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(base), "-"), "-")
	if len(base) > 24 {
		base = strings.Trim(base[:24], "-")
	}
	if base == "" {
		base = "x"
	}
	return "t-" + base + "-" + strconv.Itoa(pid)
}

// Shared returns the cluster of this test binary, failing t when Main was
// not used or the cluster did not start.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	if shared.err != nil {
		t.Fatalf("sandbox cluster did not start: %v", shared.err)
	}
	if shared.cluster == nil {
		t.Fatalf("no sandbox cluster: call cluster.Main(m) from TestMain")
	}
	if dead := shared.cluster.deadComponents(); dead != "" {
		t.Fatalf("sandbox cluster %s is broken: %s", shared.cluster.Name, dead)
	}
	return shared.cluster
}

// deadComponents names control-plane processes that died, with the place
// of their logs; "" while all run.
func (c *Cluster) deadComponents() string {
	st, err := sandbox.Status(context.Background(), c.opts)
	if err != nil {
		return err.Error()
	}
	var dead []string
	for _, comp := range st.Components {
		if !comp.Running {
			dead = append(dead, fmt.Sprintf("%s (pid %d) exited, see %s", comp.Name, comp.PID, comp.Log))
		}
	}
	return strings.Join(dead, "; ")
}

// health is "" while every component runs, else a sentence for a failure
// message: a wait that timed out because kwok died should say so.
func (c *Cluster) health() string {
	if dead := c.deadComponents(); dead != "" {
		return "; the sandbox cluster is broken: " + dead
	}
	return ""
}

// onTeardown registers f to run when the cluster is torn down, before the
// cluster itself goes (stand-ins that outlive their test).
func (c *Cluster) onTeardown(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cleanup = append(c.cleanup, f)
}

func (c *Cluster) teardown() {
	c.mu.Lock()
	fs := c.cleanup
	c.cleanup = nil
	c.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	standin.Reap(c.runDir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := sandbox.Down(ctx, c.opts); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox: tear down cluster %s: %v\n", c.Name, err)
	}
	os.RemoveAll(c.runDir)
}

type reaperSpec struct {
	PID    int    `json:"pid"`
	Name   string `json:"name"`
	RunDir string `json:"runDir"`
	BinDir string `json:"binDir"`
}

// startReaper starts this test binary again, detached, to clean up after
// us if we die without tearing down. It exits by itself once we are gone.
func startReaper(name, runDir, binDir string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("start sandbox reaper: %w", err)
	}
	log, err := os.OpenFile(filepath.Join(runDir, "reaper.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("start sandbox reaper: %w", err)
	}
	defer log.Close()
	spec, _ := json.Marshal(reaperSpec{PID: os.Getpid(), Name: name, RunDir: runDir, BinDir: binDir})
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), reaperEnv+"="+string(spec))
	// Its own session and no inherited pipes: `go test` must not wait for it.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start sandbox reaper: %w", err)
	}
	return cmd.Process.Release()
}

// runReaper waits until the test binary is gone, then removes what it
// left: stand-in processes, network namespaces, the cluster.
func runReaper(spec string) int {
	var rs reaperSpec
	if err := json.Unmarshal([]byte(spec), &rs); err != nil {
		fmt.Fprintf(os.Stderr, "bad %s: %v\n", reaperEnv, err)
		return 2
	}
	pid, name, runDir, binDir := rs.PID, rs.Name, rs.RunDir, rs.BinDir
	for syscall.Kill(pid, 0) == nil {
		time.Sleep(500 * time.Millisecond)
	}
	standin.Reap(runDir)
	opts := sandbox.Options{Name: name, BinDir: binDir}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if st, err := sandbox.Status(ctx, opts); err == nil {
		fmt.Fprintf(os.Stderr, "reaper: test binary %d exited without teardown; removing cluster %s (%s)\n", pid, name, st.State)
		if err := sandbox.Down(ctx, opts); err != nil {
			fmt.Fprintf(os.Stderr, "reaper: %v\n", err)
			return 1
		}
	}
	os.RemoveAll(runDir)
	return 0
}
