package intercept_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kloop/kloop/kube/claim"
	"github.com/kloop/kloop/kube/portforward"
	"github.com/kloop/kloop/sandbox"
	"github.com/kloop/kloop/test/cluster"
	"github.com/kloop/kloop/test/editor"
	"github.com/kloop/kloop/test/orders"
	"github.com/kloop/kloop/test/readme"
)

// TestREADMELoopRunsAsPrinted runs README.md's "The loop, from a terminal"
// block as printed, command by command in its order, against the sandbox
// cluster: the commands are read from README.md, each run in a workspace
// holding a copy of test/testdata/inventory (not orders), and each one's
// effect is checked as a user would notice it. Nothing in the commands is
// substituted. Between `kloop claim` and the first intercept the test
// deploys test/testdata/inventory.yaml into the claimed namespace, as the
// README's comment line asks the user to (its 8080 becomes a free port, so
// the local program collides with nothing on this machine). A command the
// test does not know fails it: a new line in the README needs a check here.
//
// Commands that keep running (`intercept --program`, `intercept -- CMD`)
// are ended as a terminal's Ctrl-C does: SIGINT to their process group.
// The `--program` intercept's stderr must show its long steps in order
// (agent injection, rollout, the tunnels' port-forward, the build, the
// start), as an editor sees them in $/progress.
func TestREADMELoopRunsAsPrinted(t *testing.T) {
	loop := readme.ShellCommands(t, readme.LoopBlock(t))
	if len(loop) < 6 {
		t.Fatalf("README.md's loop block has %d kloop commands: %v", len(loop), loop)
	}
	shared := cluster.Shared(t)
	applyClaimerRBAC(t, shared.Config)

	ws := t.TempDir()
	copySample(t, filepath.Join("..", "testdata", "inventory"), ws)
	write(t, filepath.Join(ws, "go.mod"), "module github.com/kloop/kloop/test/testdata/inventory\n\ngo 1.26\n")
	setBuild(t, filepath.Join(ws, "handler", "handler.go"), "laptop")

	daemon := editor.NewEnv(t, binary(t))
	// The developer's shell: the admin's kubeconfig, as after `kloop
	// sandbox up`.
	daemon.Extra = []string{"KUBECONFIG=" + shared.Kubeconfig}
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(daemon.State, "daemon.log")); err == nil {
				t.Logf("daemon log:\n%s", log)
			}
		}
	})
	pf := portforward.NewDialer(shared.Config)
	port := orders.FreePort(t)

	// What the steps share: the claimed namespace with inventory running
	// in it, and inventory's spec as deployed.
	var (
		slot                      *cluster.Env
		origTemplate, origService any
		pool                      string
	)
	needSlot := func(cmd string) {
		t.Helper()
		if slot == nil {
			t.Fatalf("README's %q comes before `kloop claim`; this test deploys inventory into the claimed namespace", cmd)
		}
	}
	workloadOf := func(args []string) string {
		for _, a := range args[1:] {
			if !strings.HasPrefix(a, "-") {
				return a
			}
		}
		t.Fatalf("README's `kloop %s` names no workload", strings.Join(args, " "))
		return ""
	}

	for _, args := range loop {
		line := "kloop " + strings.Join(args[1:], " ")
		args = args[1:]
		t.Logf("README: %s", line)
		switch {
		case len(args) >= 3 && args[0] == "pool" && args[1] == "create":
			pool = args[2]
			r := runKloop(t, daemon, ws, args...)
			t.Cleanup(func() { runKloop(t, daemon, ws, "pool", "delete", pool, "--force") })
			mustSucceed(t, line, r)
			if !strings.Contains(r.stdout, "pool "+pool+" created") {
				t.Errorf("%s printed %q, want the pool created", line, r.stdout)
			}

		case args[0] == "claim":
			r := runKloop(t, daemon, ws, args...)
			mustSucceed(t, line, r)
			st := statusOf(t, daemon, ws)
			if st.Claim == nil || (pool != "" && st.Claim.Pool != pool) {
				t.Fatalf("after %s: claim %+v, want one from pool %s\nstdout: %s", line, st.Claim, pool, r.stdout)
			}
			if !strings.Contains(r.stdout, "export KUBECONFIG="+st.Claim.Kubeconfig) {
				t.Errorf("%s does not say which KUBECONFIG to use:\n%s", line, r.stdout)
			}
			assertInOrder(t, line+"'s progress", r.stderr, "looking for a free slot", "claimed slot "+st.Claim.Slot)
			slot = slotEnv(t, shared, st.Claim.Kubeconfig)
			origTemplate, origService = deployInventory(t, slot, port)

		case args[0] == "intercept" && containsArg(args, "--program"):
			needSlot(line)
			j := startKloop(t, daemon, ws, line, args...)
			eventually(t, "the program's output in the terminal", func() bool {
				j.running(t)
				// The sample logs to stderr, which kloop passes on as stderr.
				return strings.Contains(j.errOut.String(), "inventory listening")
			})
			if a := getItem(t, slot, pf); a.Build != "laptop" || a.Warehouse != "north" || !a.TokenSet {
				t.Errorf("after %s the Service answered %+v, want the local build with the pod's env", line, a)
			}
			workload := workloadOf(args)
			t.Logf("%s's stderr so far:\n%s", line, j.errOut.String())
			assertInOrder(t, line+"'s stderr", j.errOut.String(),
				"injecting the kloop agent into deployment/"+workload,
				"rolling out deployment/"+workload,
				"2 of 2 pods updated and ready",
				"through port-forward",
				"pods tunneled",
				"building "+argAfter(args, "--program"),
				"starting "+argAfter(args, "--program"),
				"runs here and relaunches on save; Ctrl-C ends the intercept")
			if n := strings.Count(j.errOut.String(), "starting "+argAfter(args, "--program")); n != 1 {
				t.Errorf("%s's stderr says it is starting the program %d times, want once", line, n)
			}
			j.ctrlC(t)
			if !strings.Contains(j.errOut.String(), "left deployment/"+workload) {
				t.Errorf("%s: no word of leaving after Ctrl-C:\n%s", line, j.errOut.String())
			}
			assertRestored(t, line, slot, origTemplate, origService)

		case args[0] == "intercept" && containsArg(args, "--"):
			needSlot(line)
			j := startKloop(t, daemon, ws, line, args...)
			eventually(t, "the command's answer through the Service", func() bool {
				j.running(t)
				a, err := tryGetItem(slot, pf)
				return err == nil && a.Build == "laptop"
			})
			if a := getItem(t, slot, pf); a.Warehouse != "north" || !a.TokenSet {
				t.Errorf("%s: the command runs without the pod's env: %+v", line, a)
			}
			j.ctrlC(t)
			assertRestored(t, line, slot, origTemplate, origService)
			if st := statusOf(t, daemon, ws); len(st.Intercepts) != 0 {
				t.Errorf("after the command of %s ended, status still has %+v", line, st.Intercepts)
			}

		case args[0] == "intercept" && containsArg(args, "--header"):
			needSlot(line)
			name, value, _ := strings.Cut(argAfter(args, "--header"), "=")
			// Traffic goes to the local port: a server of the developer's.
			localServer(t, port, "personal")
			r := runKloop(t, daemon, ws, args...)
			mustSucceed(t, line, r)
			eventually(t, "the header's requests at the local server", func() bool {
				a, err := tryGetItem(slot, pf, name, value)
				return err == nil && a.Build == "personal"
			})
			if a := getItem(t, slot, pf); a.Build != "" {
				t.Errorf("after %s a request without %s reached %+v, want the cluster's app", line, name, a)
			}

		case args[0] == "env":
			needSlot(line)
			r := runKloop(t, daemon, ws, args...)
			mustSucceed(t, line, r)
			for _, want := range []string{"export WAREHOUSE='north'", "export INVENTORY_TOKEN='sample-inventory-token-not-a-real-secret'"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("%s lacks %s:\n%s", line, want, r.stdout)
				}
			}
			if st := statusOf(t, daemon, ws); len(st.Intercepts) > 0 {
				for _, want := range []string{"export KLOOP_ROOT=", "export HTTP_PROXY="} {
					if !strings.Contains(r.stdout, want) {
						t.Errorf("%s while intercepted lacks %s...:\n%s", line, want, r.stdout)
					}
				}
			}

		case args[0] == "leave":
			needSlot(line)
			r := runKloop(t, daemon, ws, args...)
			mustSucceed(t, line, r)
			assertRestored(t, line, slot, origTemplate, origService)
			if st := statusOf(t, daemon, ws); len(st.Intercepts) != 0 {
				t.Errorf("after %s status has %+v", line, st.Intercepts)
			}

		case args[0] == "release":
			needSlot(line)
			r := runKloop(t, daemon, ws, args...)
			mustSucceed(t, line, r)
			if st := statusOf(t, daemon, ws); st.Claim != nil {
				t.Errorf("after %s status has the claim %+v", line, st.Claim)
			}
			eventually(t, "inventory gone from the released namespace", func() bool {
				_, err := slot.Client.AppsV1().Deployments(slot.Namespace).Get(context.Background(), "inventory", metav1.GetOptions{})
				return apierrors.IsNotFound(err)
			})

		default:
			t.Fatalf("README.md's loop shows %q, which this test does not know how to check; add its case to TestREADMELoopRunsAsPrinted", line)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

var claimerRBAC sync.Once

// applyClaimerRBAC applies deploy/claimer-rbac.yaml, which `kloop pool`'s
// help asks the cluster admin to apply once.
func applyClaimerRBAC(t *testing.T, cfg *rest.Config) {
	t.Helper()
	var err error
	claimerRBAC.Do(func() {
		var data []byte
		if data, err = os.ReadFile("../../deploy/claimer-rbac.yaml"); err == nil {
			err = sandbox.Apply(context.Background(), cfg, claim.DefaultNamespace, data)
		}
	})
	if err != nil {
		t.Fatalf("apply deploy/claimer-rbac.yaml: %v", err)
	}
}

// slotEnv is the claimed namespace as a harness Env: the claim's
// kubeconfig names it.
func slotEnv(t *testing.T, c *cluster.Cluster, kubeconfig string) *cluster.Env {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatalf("the claim's kubeconfig: %v", err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil || ctx.Namespace == "" {
		t.Fatalf("the claim's kubeconfig %s names no namespace", kubeconfig)
	}
	return &cluster.Env{Namespace: ctx.Namespace, Kubeconfig: kubeconfig, Config: rest.CopyConfig(c.Config), Client: c.Client, Dynamic: c.Dynamic, Cluster: c}
}

// deployInventory deploys the sample into env's namespace with its port
// replaced by port, runs its pods' stand-ins and returns its spec.
func deployInventory(t *testing.T, env *cluster.Env, port int) (template, service any) {
	t.Helper()
	manifest, err := os.ReadFile(filepath.Join("..", "testdata", "inventory.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(manifest), "8080"); n != 2 {
		t.Fatalf("inventory.yaml names 8080 %d times, want 2 (containerPort and PORT); update the test", n)
	}
	manifest = []byte(strings.ReplaceAll(string(manifest), "8080", strconv.Itoa(port)))
	if err := env.ApplyYAML(context.Background(), manifest); err != nil {
		t.Fatalf("apply inventory.yaml into %s: %v", env.Namespace, err)
	}
	si := env.StartStandIns(t, cluster.DefaultImages())
	for _, pod := range env.WaitPodsRunning(t, "app=inventory", 2) {
		si.Wait(t, pod.Name, "inventory")
	}
	orders.WarmAgent(t, env, si)
	return inventorySpecs(t, env)
}

type kloopResult struct {
	stdout, stderr string
	err            error
}

// runKloop runs the CLI in dir; the timeout only guards against a hang.
func runKloop(t *testing.T, daemon *editor.Env, dir string, args ...string) kloopResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*cluster.WaitTimeout)
	defer cancel()
	cmd := daemon.Command(ctx, args...)
	cmd.Dir = dir
	var out, errOut safeBuffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return kloopResult{stdout: out.String(), stderr: errOut.String(), err: err}
}

func mustSucceed(t *testing.T, line string, r kloopResult) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", line, r.err, r.stdout, r.stderr)
	}
}

// job is a CLI command left running, as a foreground job of a shell.
type job struct {
	line        string
	cmd         *exec.Cmd
	out, errOut safeBuffer
	done        chan struct{}
	err         error // once done is closed
}

// startKloop starts the CLI in its own process group, as a shell starts a
// foreground job.
func startKloop(t *testing.T, daemon *editor.Env, dir, line string, args ...string) *job {
	t.Helper()
	j := &job{line: line, cmd: daemon.Command(context.Background(), args...), done: make(chan struct{})}
	j.cmd.Dir = dir
	j.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	j.cmd.Stdout, j.cmd.Stderr = &j.out, &j.errOut
	if err := j.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { j.err = j.cmd.Wait(); close(j.done) }()
	t.Cleanup(func() {
		syscall.Kill(-j.cmd.Process.Pid, syscall.SIGKILL)
		<-j.done
	})
	return j
}

// running fails t if the job ended.
func (j *job) running(t *testing.T) {
	t.Helper()
	select {
	case <-j.done:
		t.Fatalf("%s ended (%v):\nstdout: %s\nstderr: %s", j.line, j.err, j.out.String(), j.errOut.String())
	default:
	}
}

// ctrlC sends SIGINT to the job's process group, as a terminal does, and
// waits for the command to end successfully.
func (j *job) ctrlC(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(-j.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-j.done:
		if j.err != nil {
			t.Errorf("%s after Ctrl-C: %v\nstdout: %s\nstderr: %s", j.line, j.err, j.out.String(), j.errOut.String())
		}
	case <-time.After(cluster.WaitTimeout):
		t.Fatalf("%s still runs %s after Ctrl-C:\nstdout: %s\nstderr: %s", j.line, cluster.WaitTimeout, j.out.String(), j.errOut.String())
	}
}

func assertRestored(t *testing.T, line string, env *cluster.Env, template, service any) {
	t.Helper()
	var gotT, gotS any
	eventually(t, "inventory restored", func() bool {
		gotT, gotS = inventorySpecs(t, env)
		return reflect.DeepEqual(gotT, template) && reflect.DeepEqual(gotS, service)
	})
	if a := getItem(t, env, portforward.NewDialer(env.Config)); a.Build != "" {
		t.Errorf("after %s the Service answered %+v, want the cluster's app", line, a)
	}
}

// assertInOrder checks that text holds each of want, in that order.
func assertInOrder(t *testing.T, what, text string, want ...string) {
	t.Helper()
	rest := text
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			if strings.Contains(text, w) {
				t.Errorf("%s shows %q out of order (want %q):\n%s", what, w, want, text)
			} else {
				t.Errorf("%s does not show %q (want %q in order):\n%s", what, w, want, text)
			}
			return
		}
		rest = rest[i+len(w):]
	}
}

// localServer answers GET /items/kb-1 as inventory does, with build, on
// 127.0.0.1:port once the port is free again.
func localServer(t *testing.T, port int, build string) {
	t.Helper()
	var ln net.Listener
	eventually(t, fmt.Sprintf("port %d free for a local server", port), func() bool {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		return err == nil
	})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(inventoryAnswer{SKU: "kb-1", Build: build})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func containsArg(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

func argAfter(args []string, flag string) string {
	for i, x := range args {
		if x == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}
