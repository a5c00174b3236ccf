// Package demo is kloop's whole inner loop as one scripted run, for
// `make demo` (through the program in cmd/demo) and for `make test` (a
// test that runs it on the test harness's cluster):
//
//	sandbox up → pool create → claim (through a private daemon) → deploy the
//	samples and run their stand-ins → a workspace with the orders program →
//	`kloop dap` driven by a real DAP client, launching with workload orders →
//	a request through port-forward stops at a breakpoint → continue → edit
//	the handler and save → relaunch → the next request stops in the new code
//	→ continue → disconnect (leaves) → release → sandbox down.
//
// Everything goes through the real kloop binary (CLI, daemon, `kloop dap`)
// and the real cluster; the demo only plays the user and the editor. Each
// step prints a line with its time as it happens, and Run returns the steps
// and what the user saw. Cleanup (leave, release, stand-ins, daemon,
// cluster) always runs, also on failure and on cancellation.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	godap "github.com/google/go-dap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kloop/kloop/internal/racecheck"
	"github.com/kloop/kloop/kube/claim"
	"github.com/kloop/kloop/kube/portforward"
	"github.com/kloop/kloop/sandbox"
	"github.com/kloop/kloop/session"
	"github.com/kloop/kloop/test/dapclient"
)

// DefaultCluster is the sandbox cluster the demo starts and removes.
const DefaultCluster = "kloop-demo"

// Options configure Run.
type Options struct {
	// Cluster is the name of the sandbox cluster; DefaultCluster when empty.
	Cluster string
	// Existing uses the running sandbox cluster Cluster (the test harness's)
	// instead of starting one: no `sandbox up`/`sandbox down`, and the pool
	// is deleted at the end instead.
	Existing bool
	// Kloop is the kloop binary; empty builds ./cmd/kloop into the demo's
	// temporary directory.
	Kloop string
	// Repo is the kloop repository (samples, deploy/); empty: the one this
	// package's source is in.
	Repo string
	// Pool is the pool the demo creates; "demo" when empty.
	Pool string
	// Out gets the progress lines; os.Stdout when nil.
	Out io.Writer
	// Wait bounds each wait (a request, a breakpoint, a relaunch); it only
	// turns a hang into an error. 3 minutes when 0.
	Wait time.Duration
	// KeepOnFailure keeps the temporary directory (daemon log, stand-in
	// log, workspace) when Run fails, and says where it is.
	KeepOnFailure bool
	// Soak, when set, repeats the loop under steady traffic for this long
	// (at least twice) after the first one, before the release, and fails
	// the run if the daemon's goroutines, open files or live heap grew
	// beyond noise (see soak).
	Soak time.Duration
	// HeapProfiles, when set, is a directory that gets the daemon's heap
	// profile at each soak sample (daemon-heap-NN.pprof; compare two with
	// go tool pprof -base).
	HeapProfiles string
	// Race builds kloop (when Run builds it) and the stand-ins with -race,
	// and fails the run on any race report of the daemon, kloop dap or a
	// stand-in; TestDemo sets it under `go test -race`.
	Race bool
}

// Step is one step of the run.
type Step struct {
	Name string
	// At is when the step started, from the start of the run.
	At       time.Duration
	Duration time.Duration
	// Detail is what the step showed, in one line.
	Detail  string
	Err     error
	Cleanup bool
}

// Report is what the run did and what the user saw.
type Report struct {
	Cluster   string
	Pool      string
	Slot      string
	Namespace string
	Steps     []Step
	Total     time.Duration

	// Before is the orders Service's answer from its own pods.
	Before Answer
	// Breakpoint is the line of the breakpoint in the original program;
	// EditedBreakpoint the same statement's line after the edit.
	Breakpoint, EditedBreakpoint int
	// FirstStop and SecondStop are the breakpoint hits before and after the
	// edit; FirstAnswer and SecondAnswer the answers after continue.
	FirstStop, SecondStop     *Stop
	FirstAnswer, SecondAnswer Answer
	// Relaunched is kloop's "relaunched" output line after the save.
	Relaunched string
	// Restored: after the disconnect the Deployment's pod template and the
	// Service's ports were exactly what they were before the intercept.
	Restored bool
	// After is the orders Service's answer once the workload was restored.
	After Answer
	// Released: the slot's Lease is gone and the namespace holds no
	// Deployment after `kloop release`.
	Released bool
	// Dir is the run's temporary directory (daemon socket and state,
	// workspace, logs); removed at the end unless Kept.
	Dir string
	// Kept is Dir when it was kept after a failure.
	Kept string
	// Soak is what the soak measured (nil without Options.Soak).
	Soak *SoakReport
}

// WriteTable writes the short table of steps and times.
func (r *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tstep\tat\ttook\tresult")
	for i, s := range r.Steps {
		res := "ok"
		if s.Err != nil {
			res = "FAILED"
		}
		name := s.Name
		if s.Cleanup {
			name = "cleanup: " + name
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", i+1, name, fmtDur(s.At), fmtDur(s.Duration), res)
	}
	fmt.Fprintf(tw, "\ttotal\t\t%s\t\n", fmtDur(r.Total))
	tw.Flush()
	if r.Soak != nil && len(r.Soak.Samples) > 1 {
		first, last := r.Soak.First(), r.Soak.Last()
		fmt.Fprintf(w, "\nsoak: %d iterations in %s under steady traffic (%d answered, %d retries, %d failed)\n", len(r.Soak.Samples)-1, fmtDur(r.Soak.Duration), last.Answered, last.Retried, last.Errors)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "daemon\tbefore\tafter")
		fmt.Fprintf(tw, "goroutines\t%d\t%d\n", first.Daemon.Goroutines, last.Daemon.Goroutines)
		fmt.Fprintf(tw, "live heap\t%s\t%s\n", mib(first.Daemon.HeapAllocBytes), mib(last.Daemon.HeapAllocBytes))
		fmt.Fprintf(tw, "resident\t%s\t%s\n", mib(uint64(first.Daemon.RSSBytes)), mib(uint64(last.Daemon.RSSBytes)))
		fmt.Fprintf(tw, "open files\t%d\t%d\n", first.Daemon.OpenFiles, last.Daemon.OpenFiles)
		tw.Flush()
		if r.Soak.LastTrafficError != "" {
			fmt.Fprintf(w, "last traffic error: %s\n", r.Soak.LastTrafficError)
		}
	}
}

func fmtDur(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// markerAnchor is where the workspace's copy of the orders program gets its
// build marker; the breakpoint is on this line (the handler's answer).
const markerAnchor = `"servedBy": cfg.Pod`

// editAnchor is the handler's line above which the edit inserts a statement.
const editAnchor = "\t\tw.Header().Set(\"Content-Type\", \"application/json\")\n"

// EditedSuffix is what the edited handler appends to the order's item.
const EditedSuffix = " (edited on the laptop)"

// editedStatement is the statement the edit inserts into the handler.
const editedStatement = `o.Item += "` + EditedSuffix + `"`

// OrdersSource is the sample's main.go with a build marker in its answer
// (same lines as the sample), and, when edited, one statement inserted
// above the answer that changes the order's item.
func OrdersSource(sample []byte, marker string, edited bool) (string, error) {
	src := string(sample)
	if !strings.Contains(src, markerAnchor) || !strings.Contains(src, editAnchor) {
		return "", fmt.Errorf("test/testdata/orders/main.go no longer has %q and %q; update package demo", markerAnchor, editAnchor)
	}
	src = strings.Replace(src, markerAnchor, markerAnchor+`, "build": "`+marker+`"`, 1)
	if edited {
		src = strings.Replace(src, editAnchor, "\t\t"+editedStatement+"\n"+editAnchor, 1)
	}
	return src, nil
}

// LineOf is the 1-based line of the first occurrence of s in src, 0 if none.
func LineOf(src, s string) int {
	i := strings.Index(src, s)
	if i < 0 {
		return 0
	}
	return strings.Count(src[:i], "\n") + 1
}

type run struct {
	opts  Options
	out   io.Writer
	start time.Time
	rep   *Report

	work   string // temporary directory
	ws     string // the workspace
	main   string // its main.go
	kloop  string
	env    []string
	repo   string
	pool   string
	sample []byte

	kubeconfig string
	admin      kubernetes.Interface
	adminCfg   *rest.Config
	call       *caller
	localPort  int

	// What cleanup must undo.
	upDone      bool // the demo started (or reused) its own cluster
	poolMade    bool
	claimed     bool
	daemonMaybe bool
	standIns    *exec.Cmd
	standInsErr chan error
	dap         *dapclient.Client

	outMu sync.Mutex
	// quiet drops the lines of the steps' details (the soak's iterations).
	quiet bool
}

// Run runs the demo. The report is returned also on error, with the steps
// done so far and the cleanup steps.
func Run(ctx context.Context, opts Options) (rep *Report, err error) {
	if opts.Cluster == "" {
		opts.Cluster = DefaultCluster
	}
	if opts.Pool == "" {
		opts.Pool = "demo"
	}
	if opts.Wait == 0 {
		opts.Wait = 3 * time.Minute
	}
	r := &run{opts: opts, out: opts.Out, start: time.Now(), pool: opts.Pool, repo: opts.Repo,
		rep: &Report{Cluster: opts.Cluster, Pool: opts.Pool}}
	if r.out == nil {
		r.out = os.Stdout
	}
	if r.repo == "" {
		_, file, _, _ := runtime.Caller(0)
		r.repo = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	}
	// Unix socket paths are short: the directory lives under /tmp.
	r.work, err = os.MkdirTemp("/tmp", "kloop-demo-")
	if err != nil {
		return r.rep, err
	}
	r.rep.Dir = r.work
	defer func() {
		cerr := r.cleanup()
		r.rep.Total = time.Since(r.start)
		if err == nil && cerr != nil {
			err = fmt.Errorf("cleanup: %w", cerr)
		}
		if err != nil && opts.KeepOnFailure {
			r.rep.Kept = r.work
			r.printf("logs and workspace kept in %s (daemon log: state/daemon.log, stand-ins: sandbox-run.log)", r.work)
		} else {
			os.RemoveAll(r.work)
		}
	}()
	return r.rep, r.steps(ctx)
}

func (r *run) printf(format string, args ...any) {
	r.outMu.Lock()
	defer r.outMu.Unlock()
	if r.quiet {
		return
	}
	fmt.Fprintf(r.out, "%s [%7s] %s\n", time.Now().Format("15:04:05.000"), fmtDur(time.Since(r.start)), fmt.Sprintf(format, args...))
}

func (r *run) setQuiet(q bool) {
	r.outMu.Lock()
	r.quiet = q
	r.outMu.Unlock()
}

// step runs f as a named step, printing its start and its end with the time
// it took, and records it.
func (r *run) step(ctx context.Context, name string, f func(ctx context.Context) (string, error)) error {
	return r.doStep(ctx, name, false, f)
}

func (r *run) doStep(ctx context.Context, name string, cleanup bool, f func(ctx context.Context) (string, error)) error {
	t0 := time.Now()
	label := name
	if cleanup {
		label = "cleanup: " + name
	}
	r.printf("==> %s", label)
	var detail string
	var err error
	if err = ctx.Err(); err == nil {
		detail, err = f(ctx)
	}
	s := Step{Name: name, At: t0.Sub(r.start), Duration: time.Since(t0), Detail: detail, Err: err, Cleanup: cleanup}
	r.rep.Steps = append(r.rep.Steps, s)
	if err != nil {
		r.printf("    FAILED after %s: %v", fmtDur(s.Duration), err)
		return fmt.Errorf("%s: %w", name, err)
	}
	if detail != "" {
		r.printf("    done in %s: %s", fmtDur(s.Duration), detail)
	} else {
		r.printf("    done in %s", fmtDur(s.Duration))
	}
	return nil
}

// command is a kloop command of the demo's daemon environment, in its own
// process group (the terminal's Ctrl-C reaches the demo, which then cleans
// up in order), interrupted (not killed) when ctx ends.
func (r *run) command(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, r.kloop, args...)
	cmd.Dir = dir
	cmd.Env = r.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	return cmd
}

// kloopRun runs a kloop command and returns its stdout; the error carries
// its stderr.
func (r *run) kloopRun(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := r.command(ctx, dir, args...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kloop %s: %w\n%s%s", strings.Join(args, " "), err, errOut.String(), out.String())
	}
	return out.String(), nil
}

func (r *run) steps(ctx context.Context) error {
	r.ws = filepath.Join(r.work, "orders")
	r.main = filepath.Join(r.ws, "main.go")
	r.env = append(os.Environ(),
		"KLOOP_SOCKET="+filepath.Join(r.work, "d", "daemon.sock"),
		"KLOOP_STATE_DIR="+filepath.Join(r.work, "state"))
	var err error
	if r.sample, err = os.ReadFile(filepath.Join(r.repo, "test", "testdata", "orders", "main.go")); err != nil {
		return err
	}
	v1, err := OrdersSource(r.sample, "laptop-v1", false)
	if err != nil {
		return err
	}
	v2, err := OrdersSource(r.sample, "laptop-v2", true)
	if err != nil {
		return err
	}
	r.rep.Breakpoint, r.rep.EditedBreakpoint = LineOf(v1, markerAnchor), LineOf(v2, markerAnchor)

	r.kloop = r.opts.Kloop
	if r.kloop == "" {
		if err := r.step(ctx, "build kloop", r.buildKloop); err != nil {
			return err
		}
	} else if r.kloop, err = filepath.Abs(r.kloop); err != nil {
		return err
	}
	if err := r.step(ctx, r.clusterStepName(), r.sandboxUp); err != nil {
		return err
	}
	if err := r.step(ctx, "pool create "+r.pool+" --namespaces 2 --default", r.poolCreate); err != nil {
		return err
	}
	if err := r.step(ctx, "workspace with the orders program", func(context.Context) (string, error) { return r.workspace(v1) }); err != nil {
		return err
	}
	if err := r.step(ctx, "claim a namespace (daemon auto-starts)", r.claim); err != nil {
		return err
	}
	if err := r.step(ctx, "deploy the samples, run their stand-ins", r.deploy); err != nil {
		return err
	}
	var origTemplate, origPorts any
	if err := r.step(ctx, "kloop dap: launch workload orders", func(ctx context.Context) (string, error) {
		var err error
		if origTemplate, origPorts, err = r.specs(ctx); err != nil {
			return "", err
		}
		return r.launch(ctx)
	}); err != nil {
		return err
	}

	var pending <-chan answerOrErr
	if err := r.step(ctx, "request stops at the breakpoint", func(ctx context.Context) (string, error) {
		since := r.dap.Mark()
		pending = r.request(ctx, nil)
		s, err := r.stopAt(ctx, since, r.rep.Breakpoint)
		r.rep.FirstStop = s
		return stopDetail(s), err
	}); err != nil {
		return err
	}
	if err := r.step(ctx, "continue: the laptop answers", func(ctx context.Context) (string, error) {
		a, err := r.continueAndAnswer(ctx, r.rep.FirstStop, pending)
		r.rep.FirstAnswer = a
		if err == nil && a.Build != "laptop-v1" {
			err = fmt.Errorf("answer %s, want one from the workspace's build laptop-v1", a.Body)
		}
		return answerDetail(a), err
	}); err != nil {
		return err
	}
	if err := r.step(ctx, "edit the handler, save: relaunch", func(ctx context.Context) (string, error) {
		return r.edit(ctx, v2)
	}); err != nil {
		return err
	}
	if err := r.step(ctx, "request stops in the new code", func(ctx context.Context) (string, error) {
		since := r.dap.Mark()
		pending = r.request(ctx, nil)
		s, err := r.stopAt(ctx, since, r.rep.EditedBreakpoint)
		r.rep.SecondStop = s
		if err == nil && !strings.Contains(s.Value, EditedSuffix) {
			err = fmt.Errorf("%s = %s at the stop, want the edited item (…%s)", s.Variable, s.Value, EditedSuffix)
		}
		return stopDetail(s), err
	}); err != nil {
		return err
	}
	if err := r.step(ctx, "continue: the new code answers", func(ctx context.Context) (string, error) {
		a, err := r.continueAndAnswer(ctx, r.rep.SecondStop, pending)
		r.rep.SecondAnswer = a
		if err == nil && (a.Build != "laptop-v2" || !strings.HasSuffix(a.Item, EditedSuffix)) {
			err = fmt.Errorf("answer %s, want build laptop-v2 with the edited item", a.Body)
		}
		return answerDetail(a), err
	}); err != nil {
		return err
	}
	if err := r.step(ctx, "disconnect: kloop leaves orders", func(ctx context.Context) (string, error) {
		return r.leave(ctx, origTemplate, origPorts)
	}); err != nil {
		return err
	}
	if err := r.step(ctx, "the cluster's own pods answer again", r.clusterAnswers); err != nil {
		return err
	}
	if r.opts.Soak > 0 {
		name := fmt.Sprintf("soak: the loop again for %s under steady traffic", r.opts.Soak)
		if err := r.step(ctx, name, func(ctx context.Context) (string, error) { return r.soak(ctx, v1, v2) }); err != nil {
			return err
		}
	}
	if err := r.step(ctx, "release the namespace", r.release); err != nil {
		return err
	}
	return nil
}

func (r *run) clusterStepName() string {
	if r.opts.Existing {
		return "sandbox cluster " + r.opts.Cluster + " (existing)"
	}
	return "sandbox up --name " + r.opts.Cluster
}

func (r *run) buildKloop(ctx context.Context) (string, error) {
	bin := filepath.Join(r.work, "bin", "kloop")
	args := []string{"build", "-o", bin}
	if r.opts.Race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/kloop")...)
	cmd.Dir = r.repo
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/kloop: %w\n%s", err, out)
	}
	r.kloop = bin
	return bin, nil
}

type prefixWriter struct {
	r       *run
	partial []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.partial = append(p.partial, b...)
	for {
		i := strings.IndexByte(string(p.partial), '\n')
		if i < 0 {
			return len(b), nil
		}
		if line := strings.TrimSpace(string(p.partial[:i])); line != "" {
			p.r.printf("    | %s", line)
		}
		p.partial = p.partial[i+1:]
	}
}

func (r *run) sandboxUp(ctx context.Context) (string, error) {
	if !r.opts.Existing {
		// Set before the command: an interrupted start may leave a
		// half-made cluster, which `sandbox down` removes.
		r.upDone = true
		cmd := r.command(ctx, r.repo, "sandbox", "up", "--name", r.opts.Cluster)
		// Progress (a first build takes minutes) as it happens.
		cmd.Stderr = &prefixWriter{r: r}
		if out, err := cmd.Output(); err != nil {
			return "", fmt.Errorf("kloop sandbox up: %w\n%s", err, out)
		}
	}
	out, err := r.kloopRun(ctx, r.repo, "sandbox", "status", "--name", r.opts.Cluster, "-o", "json")
	if err != nil {
		return "", err
	}
	var st sandbox.ClusterStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return "", fmt.Errorf("kloop sandbox status -o json: %w\n%s", err, out)
	}
	if st.State != sandbox.StateRunning || st.Kubeconfig == "" {
		return "", fmt.Errorf("sandbox cluster %s is %s (%s)", r.opts.Cluster, st.State, st.Problem)
	}
	r.kubeconfig = st.Kubeconfig
	// The developer's shell: the daemon (auto-started by the first CLI
	// command) and `kloop pool` use it.
	r.env = append(r.env, "KUBECONFIG="+st.Kubeconfig)
	if r.adminCfg, err = clientcmd.BuildConfigFromFlags("", st.Kubeconfig); err != nil {
		return "", err
	}
	r.adminCfg.QPS, r.adminCfg.Burst = 50, 100
	if r.admin, err = kubernetes.NewForConfig(r.adminCfg); err != nil {
		return "", err
	}
	return fmt.Sprintf("cluster %s at %s, %d nodes (kube-apiserver, etcd, controller-manager, scheduler, kwok)", st.Name, st.Server, st.Nodes), nil
}

func (r *run) poolCreate(ctx context.Context) (string, error) {
	// What a cluster admin applies once per cluster (the sandbox has no
	// kubectl; this is the create-only apply of package sandbox).
	_, err := r.admin.RbacV1().RoleBindings(claim.DefaultNamespace).Get(ctx, claim.ClaimersRoleBinding, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		data, err := os.ReadFile(filepath.Join(r.repo, "deploy", "claimer-rbac.yaml"))
		if err != nil {
			return "", err
		}
		if err := sandbox.Apply(ctx, r.adminCfg, claim.DefaultNamespace, data); err != nil {
			return "", fmt.Errorf("apply deploy/claimer-rbac.yaml: %w", err)
		}
	case err != nil:
		return "", err
	}
	// A failed create leaves nothing behind (kube/claim undoes its steps).
	out, err := r.kloopRun(ctx, r.repo, "pool", "create", r.pool, "--namespaces", "2", "--default")
	if err != nil {
		return "", err
	}
	r.poolMade = true
	return "applied deploy/claimer-rbac.yaml; " + strings.TrimSpace(out), nil
}

func (r *run) workspace(v1 string) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	r.localPort = l.Addr().(*net.TCPAddr).Port
	l.Close()
	kloopYAML := fmt.Sprintf(`# The demo's workspace: claim from pool %[1]s; intercept orders, run this
# program on the laptop at port %[2]d with the pod's env.
claim:
  pool: %[1]s
  for: 1h
intercepts:
  - workload: orders
    program: .
    port: "8080:%[2]d"
    env:
      HTTP_ADDR: "127.0.0.1:%[2]d"
      ADMIN_ADDR: "127.0.0.1:0"
`, r.pool, r.localPort)
	files := map[string]string{
		"go.mod":      "module example.com/orders\n\ngo 1.26\n",
		"main.go":     v1,
		".kloop.yaml": kloopYAML,
	}
	if err := os.MkdirAll(r.ws, 0o755); err != nil {
		return "", err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(r.ws, name), []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("%s: a copy of test/testdata/orders (answers carry \"build\": \"laptop-v1\"), .kloop.yaml", r.ws), nil
}

func (r *run) claim(ctx context.Context) (string, error) {
	r.daemonMaybe = true
	// Set before the command: a claim interrupted half way is released too.
	r.claimed = true
	out, err := r.kloopRun(ctx, r.ws, "claim", "--pool", r.pool, "-o", "json")
	if err != nil {
		return "", err
	}
	var cs session.ClaimStatus
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		return "", fmt.Errorf("kloop claim -o json: %w\n%s", err, out)
	}
	if cs.Namespace == "" || cs.Kubeconfig == "" {
		return "", fmt.Errorf("kloop claim -o json: no namespace or kubeconfig in %s", out)
	}
	r.rep.Slot, r.rep.Namespace = cs.Slot, cs.Namespace
	// From here on the demo acts as the developer, with the claim's
	// kubeconfig.
	cfg, err := clientcmd.BuildConfigFromFlags("", cs.Kubeconfig)
	if err != nil {
		return "", err
	}
	cfg.QPS, cfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	r.call = &caller{client: client, pf: portforward.NewDialer(cfg), namespace: cs.Namespace, wait: r.opts.Wait}
	return fmt.Sprintf("slot %s of pool %s (namespace %s) held by %s until %s", cs.Slot, cs.Pool, cs.Namespace, cs.Holder, cs.Until.Local().Format("15:04")), nil
}

func (r *run) deploy(ctx context.Context) (string, error) {
	logPath := filepath.Join(r.work, "sandbox-run.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return "", err
	}
	// Not bound to ctx: cleanup stops it, after the release.
	args := []string{"sandbox", "run", "--name", r.opts.Cluster, "-n", r.rep.Namespace,
		"-f", "test/testdata/users.yaml", "-f", "test/testdata/orders.yaml"}
	if r.opts.Race {
		// The agent and the samples under the race detector; sandbox run
		// exits non-zero with their reports when it stops.
		args = append(args, "--race")
	}
	cmd := r.command(context.Background(), r.repo, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return "", err
	}
	r.standIns = cmd
	r.standInsErr = make(chan error, 1)
	go func() {
		r.standInsErr <- cmd.Wait()
		logf.Close()
	}()
	standInLog := func() string {
		data, _ := os.ReadFile(logPath)
		return lastLines(string(data), 20)
	}
	for _, w := range []struct {
		sel string
		n   int
	}{{"app=users", 1}, {"app=orders", 2}} {
		err := poll(ctx, r.opts.Wait, fmt.Sprintf("%d running pods %s", w.n, w.sel), func(ctx context.Context) (bool, error) {
			if r.standIns.ProcessState != nil {
				return false, fmt.Errorf("kloop sandbox run exited:\n%s", standInLog())
			}
			n, err := runningPods(ctx, r.call.client, r.rep.Namespace, w.sel)
			return err == nil && n >= w.n, nil
		})
		if err != nil {
			return "", err
		}
	}
	a, err := r.call.get(ctx, func(a Answer) bool { return a.ServedBy != "" && a.Build == "" })
	if err != nil {
		return "", fmt.Errorf("%w\nkloop sandbox run:\n%s", err, standInLog())
	}
	r.rep.Before = a
	return fmt.Sprintf("users (1 pod) and orders (2 pods) run as stand-ins; GET /orders/1 via port-forward → %s", answerDetail(a)), nil
}

// specs is what leave must restore exactly.
func (r *run) specs(ctx context.Context) (any, any, error) {
	d, err := r.call.client.AppsV1().Deployments(r.rep.Namespace).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	s, err := r.call.client.CoreV1().Services(r.rep.Namespace).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	return d.Spec.Template, s.Spec.Ports, nil
}

func (r *run) launch(ctx context.Context) (string, error) {
	cmd := r.command(context.Background(), r.ws, "dap")
	c, err := dapclient.New(cmd, dapclient.Options{Wait: r.opts.Wait})
	if err != nil {
		return "", err
	}
	r.dap = c
	c.SetBreakpoint(r.main, r.rep.Breakpoint)
	if _, err := c.CallContext(ctx, "initialize", godap.InitializeRequestArguments{
		ClientID: "kloop-demo", AdapterID: "kloop", PathFormat: "path", LinesStartAt1: true, ColumnsStartAt1: true}); err != nil {
		return "", err
	}
	launch := map[string]any{
		"type": "kloop", "request": "launch", "name": "orders (kloop)",
		"workload": "orders", "program": ".", "port": fmt.Sprintf("8080:%d", r.localPort),
		"env": map[string]string{"HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", r.localPort), "ADMIN_ADDR": "127.0.0.1:0"},
	}
	args, _ := json.Marshal(launch)
	r.printf("    launch %s", args)
	r.printf("    breakpoint at main.go:%d: %s", r.rep.Breakpoint, strings.TrimSpace(lineText(r.main, r.rep.Breakpoint)))
	if _, err := c.CallContext(ctx, "launch", json.RawMessage(args)); err != nil {
		return "", err
	}
	out, err := r.kloopRun(ctx, r.ws, "status", "-o", "json")
	if err != nil {
		return "", err
	}
	var st session.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return "", fmt.Errorf("kloop status -o json: %w\n%s", err, out)
	}
	var in []string
	for _, i := range st.Intercepts {
		in = append(in, fmt.Sprintf("%s %s (%s)", i.Workload, strings.Join(i.Ports, ","), i.State))
	}
	if len(in) == 0 {
		return "", fmt.Errorf("the launch succeeded but kloop status shows no intercept: %s", out)
	}
	return "intercepted " + strings.Join(in, "; ") + "; built and running under Delve", nil
}

func lineText(path string, line int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(string(data), "\n")
	if line < 1 || line > len(lines) {
		return ""
	}
	return lines[line-1]
}

type answerOrErr struct {
	a   Answer
	err error
}

// request sends GET /orders/1 in the background (it waits at the
// breakpoint until the demo continues).
func (r *run) request(ctx context.Context, accept func(Answer) bool) <-chan answerOrErr {
	ch := make(chan answerOrErr, 1)
	go func() {
		a, err := r.call.get(ctx, accept)
		ch <- answerOrErr{a, err}
	}()
	return ch
}

// Stop is where the debuggee stopped at a breakpoint.
type Stop struct {
	// Function, File and Line are the top stack frame.
	Function string
	File     string
	Line     int
	// Stack is the top frames, "function file:line" each.
	Stack []string
	// Variable was evaluated in the top frame; Value is what Delve says.
	Variable string
	Value    string
	thread   int
}

// stopAt waits for a stop after since, reads the stack, evaluates o in the
// top frame and checks the stop is at main.go:line.
func (r *run) stopAt(ctx context.Context, since, line int) (*Stop, error) {
	st, err := r.dap.StoppedContext(ctx, since, 3)
	if err != nil {
		return nil, err
	}
	top := st.Frames[0]
	s := &Stop{Function: top.Name, Line: top.Line, Stack: st.Stack(), Variable: "o", thread: st.Thread}
	if top.Source != nil {
		s.File = top.Source.Path
	}
	res, err := r.dap.CallContext(ctx, "evaluate", godap.EvaluateArguments{Expression: s.Variable, FrameId: top.Id, Context: "watch"})
	if err != nil {
		return s, err
	}
	if ev, ok := res.DAP.(*godap.EvaluateResponse); ok {
		s.Value = ev.Body.Result
	}
	for _, f := range s.Stack {
		r.printf("    frame  %s", f)
	}
	r.printf("    %s = %s", s.Variable, s.Value)
	if s.File != r.main || s.Line != line {
		return s, fmt.Errorf("stopped at %s:%d, want %s:%d", s.File, s.Line, r.main, line)
	}
	return s, nil
}

func stopDetail(s *Stop) string {
	if s == nil {
		return ""
	}
	return fmt.Sprintf("stopped in %s at %s:%d; %s = %s", s.Function, filepath.Base(s.File), s.Line, s.Variable, s.Value)
}

func answerDetail(a Answer) string {
	build := a.Build
	if build == "" {
		build = "the cluster's image"
	}
	d := fmt.Sprintf("HTTP %d via pod %s: item %q, servedBy %s, build %s", a.Status, a.Pod, a.Item, a.ServedBy, build)
	if a.Attempts > 1 {
		d += fmt.Sprintf(" (answered at attempt %d; before: %s)", a.Attempts, a.Retried)
	}
	return d
}

func (r *run) continueAndAnswer(ctx context.Context, s *Stop, pending <-chan answerOrErr) (Answer, error) {
	if _, err := r.dap.CallContext(ctx, "continue", godap.ContinueArguments{ThreadId: s.thread}); err != nil {
		return Answer{}, err
	}
	select {
	case got := <-pending:
		r.printf("    answer %s", strings.TrimSpace(got.a.Body))
		return got.a, got.err
	case <-ctx.Done():
		return Answer{}, ctx.Err()
	}
}

func (r *run) edit(ctx context.Context, v2 string) (string, error) {
	// The editor moves the breakpoint with its statement (one line down)
	// before saving.
	r.dap.SetBreakpoint(r.main, r.rep.EditedBreakpoint)
	since := r.dap.Mark()
	if err := os.WriteFile(r.main, []byte(v2), 0o644); err != nil {
		return "", err
	}
	inserted := LineOf(v2, editedStatement)
	r.printf("    saved main.go with line %d inserted: %s", inserted, strings.TrimSpace(lineText(r.main, inserted)))
	m, err := r.dap.NextContext(ctx, since, `"kloop: relaunched" output event`, dapclient.OutputContaining("kloop: relaunched"))
	if err != nil {
		return "", err
	}
	r.rep.Relaunched = strings.TrimSpace(m.DAP.(*godap.OutputEvent).Body.Output)
	return r.rep.Relaunched + "; the debug session stayed connected", nil
}

func (r *run) leave(ctx context.Context, origTemplate, origPorts any) (string, error) {
	c := r.dap
	t0 := time.Now()
	err := c.Disconnect(ctx)
	r.dap = nil
	if err != nil {
		return "", err
	}
	disconnected := time.Since(t0)
	if err := racecheck.Check("kloop dap", c.Stderr()); err != nil {
		return "", err
	}
	err = poll(ctx, r.opts.Wait, "the workload restored after the debug session", func(ctx context.Context) (bool, error) {
		tmpl, ports, err := r.specs(ctx)
		return err == nil && reflect.DeepEqual(tmpl, origTemplate) && reflect.DeepEqual(ports, origPorts), nil
	})
	if err != nil {
		return "", err
	}
	r.rep.Restored = true
	return fmt.Sprintf("session ended in %s; Deployment and Service exactly as before the intercept after %s",
		fmtDur(disconnected), fmtDur(time.Since(t0))), nil
}

func (r *run) clusterAnswers(ctx context.Context) (string, error) {
	a, err := r.call.get(ctx, func(a Answer) bool { return a.ServedBy != "" && a.Build == "" })
	r.rep.After = a
	if err != nil {
		return "", err
	}
	return answerDetail(a), nil
}

func (r *run) release(ctx context.Context) (string, error) {
	out, err := r.kloopRun(ctx, r.ws, "release")
	if err != nil {
		return "", err
	}
	r.claimed = false
	// The slot is free (its Lease gone) and clean.
	if _, err := r.admin.CoordinationV1().Leases(claim.DefaultNamespace).Get(ctx, r.pool+"."+r.rep.Slot, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		return "", fmt.Errorf("the Lease of slot %s is still there after release (%v)", r.rep.Slot, err)
	}
	deps, err := r.admin.AppsV1().Deployments(r.rep.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	if len(deps.Items) != 0 {
		return "", fmt.Errorf("%d Deployments left in %s after release", len(deps.Items), r.rep.Namespace)
	}
	r.rep.Released = true
	return strings.TrimSpace(out) + " (checked: its Lease is gone, no Deployment left)", nil
}

// cleanup undoes what the run did, in order, whatever happened; it runs
// with its own context so that a Ctrl-C (which cancelled the run) does
// not cut it short.
func (r *run) cleanup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var errs []error
	do := func(name string, f func(ctx context.Context) (string, error)) {
		if err := r.doStep(ctx, name, true, f); err != nil {
			errs = append(errs, err)
		}
	}
	if r.dap != nil {
		do("end the debug session (leaves orders)", func(context.Context) (string, error) {
			_ = r.dap.Close()
			r.dap = nil
			return "", nil
		})
	}
	if r.claimed {
		do("release", func(ctx context.Context) (string, error) {
			out, err := r.kloopRun(ctx, r.ws, "release")
			return strings.TrimSpace(out), err
		})
	}
	if r.standIns != nil {
		do("stop the stand-ins", func(ctx context.Context) (string, error) {
			_ = r.standIns.Process.Signal(os.Interrupt)
			select {
			case err := <-r.standInsErr:
				if err != nil {
					// Its reasons (a stand-in's race reports) are in its log.
					log, _ := os.ReadFile(filepath.Join(r.work, "sandbox-run.log"))
					return "", fmt.Errorf("kloop sandbox run: %w\n%s", err, lastLines(string(log), 200))
				}
				return "kloop sandbox run stopped every stand-in", nil
			case <-time.After(time.Minute):
				_ = syscall.Kill(-r.standIns.Process.Pid, syscall.SIGKILL)
				<-r.standInsErr
				return "", errors.New("kloop sandbox run did not stop within a minute of Ctrl-C; killed it")
			}
		})
	}
	if r.daemonMaybe {
		do("stop the daemon", func(ctx context.Context) (string, error) {
			out, err := r.kloopRun(ctx, r.repo, "daemon", "stop")
			if err != nil {
				return "", err
			}
			// A -race build's reports make the run fail.
			logs, _ := filepath.Glob(filepath.Join(r.work, "state", "daemon.log*"))
			for _, path := range logs {
				log, _ := os.ReadFile(path)
				if err := racecheck.Check("the daemon ("+filepath.Base(path)+")", string(log)); err != nil {
					return "", err
				}
			}
			return strings.TrimSpace(out), nil
		})
	}
	if r.opts.Existing && r.poolMade {
		do("pool delete "+r.pool, func(ctx context.Context) (string, error) {
			out, err := r.kloopRun(ctx, r.repo, "pool", "delete", r.pool, "--force")
			return strings.TrimSpace(out), err
		})
	}
	if r.upDone {
		do("sandbox down --name "+r.opts.Cluster, func(ctx context.Context) (string, error) {
			out, err := r.kloopRun(ctx, r.repo, "sandbox", "down", "--name", r.opts.Cluster)
			return strings.TrimSpace(out), err
		})
	}
	return errors.Join(errs...)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
