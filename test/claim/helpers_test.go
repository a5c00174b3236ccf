// Package claim_test drives claim pools end to end through the real kloop
// binary: the CLI and the LSP go through the per-user daemon, which claims
// from pools of the sandbox cluster.
package claim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/kloop/kloop/kube/claim"
	"github.com/kloop/kloop/sandbox"
	"github.com/kloop/kloop/session"
	"github.com/kloop/kloop/test/cluster"
	"github.com/kloop/kloop/test/editor"
)

func TestMain(m *testing.M) { cluster.Main(m) }

// kloop is built once per test binary.
var kloopBinary = editor.NewBinary("kloop-claim-test-bin")

func binary(t testing.TB) string { return kloopBinary.Path(t) }

var deployOnce sync.Once

// applyDeploy applies deploy/claimer-rbac.yaml once, as the cluster admin
// does before creating pools. The cluster is this test binary's own.
func applyDeploy(t testing.TB) {
	t.Helper()
	var err error
	deployOnce.Do(func() {
		var data []byte
		if data, err = os.ReadFile("../../deploy/claimer-rbac.yaml"); err == nil {
			err = sandbox.Apply(context.Background(), cluster.Shared(t).Config, claim.DefaultNamespace, data)
		}
	})
	if err != nil {
		t.Fatalf("apply deploy/claimer-rbac.yaml: %v", err)
	}
}

var poolSeq atomic.Int64

// newPool creates a namespace pool of n slots named after the test, deleted
// when the test ends.
func newPool(t testing.TB, n int) string {
	t.Helper()
	applyDeploy(t)
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	name := fmt.Sprintf("c%x-%d", h.Sum32(), poolSeq.Add(1))
	admin, err := claim.NewPoolAdmin(adminConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateNamespacePool(context.Background(), name, n, claim.CreateOptions{}); err != nil {
		t.Fatalf("create pool %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cluster.WaitTimeout)
		defer cancel()
		if err := admin.Delete(ctx, name, true, nil); err != nil {
			t.Errorf("delete pool %s: %v", name, err)
		}
	})
	return name
}

func adminConfig(t testing.TB) *rest.Config {
	return rest.CopyConfig(cluster.Shared(t).Config)
}

// daemonEnv is a private daemon environment whose kubeconfig is the
// sandbox cluster's, through $KUBECONFIG as a developer's shell has it.
func daemonEnv(t testing.TB, extra ...string) *editor.Env {
	t.Helper()
	env := editor.NewEnv(t, binary(t))
	env.Extra = append([]string{"KUBECONFIG=" + cluster.Shared(t).Kubeconfig}, extra...)
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(env.State, "daemon.log")); err == nil {
				t.Logf("daemon log:\n%s", log)
			}
		}
	})
	return env
}

// workspace is a fresh workspace folder with the given files.
func workspace(t testing.TB, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	files["go.mod"] = "module example.com/ws\n"
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// kloop runs the CLI in dir. The timeout only guards against a hang.
func kloop(t testing.TB, env *editor.Env, dir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cluster.WaitTimeout)
	defer cancel()
	cmd := env.Command(ctx, args...)
	cmd.Dir = dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String(), took: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run kloop %v: %v", args, err)
	}
	return r
}

// mustKloop runs the CLI and fails the test unless it succeeds.
func mustKloop(t testing.TB, env *editor.Env, dir string, args ...string) result {
	t.Helper()
	r := kloop(t, env, dir, args...)
	if r.code != 0 {
		t.Fatalf("kloop %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// failKloop runs the CLI, wants it to fail with every want in stderr, and
// returns stderr.
func failKloop(t testing.TB, env *editor.Env, dir string, wants []string, args ...string) string {
	t.Helper()
	r := kloop(t, env, dir, args...)
	if r.code == 0 {
		t.Fatalf("kloop %s succeeded, want an error containing %q\nstdout: %s", strings.Join(args, " "), wants, r.stdout)
	}
	t.Logf("kloop %s: %s", strings.Join(args, " "), strings.TrimSpace(r.stderr))
	for _, w := range wants {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("kloop %s: stderr lacks %q:\n%s", strings.Join(args, " "), w, r.stderr)
		}
	}
	return r.stderr
}

func status(t testing.TB, env *editor.Env, dir string) session.Status {
	t.Helper()
	r := mustKloop(t, env, dir, "status", "-o", "json")
	var st session.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, r.stdout)
	}
	return st
}

func lease(t testing.TB, pool, slot string) (*coordinationv1.Lease, bool) {
	t.Helper()
	l, err := cluster.Shared(t).Client.CoordinationV1().Leases(claim.DefaultNamespace).Get(context.Background(), pool+"."+slot, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("get lease of %s: %v", slot, err)
	}
	return l, true
}

// eventually polls cond until it holds; the harness's generous wait bound
// only turns a hang into a failure that says what was awaited.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(cluster.WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not the case after %s", what, cluster.WaitTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stateFile reads the daemon's state.json.
func stateFile(t testing.TB, env *editor.Env) (session.State, os.FileMode) {
	t.Helper()
	p := filepath.Join(env.State, "state.json")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatalf("state.json: %v", err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var st session.State
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("state.json: %v\n%s", err, data)
	}
	return st, fi.Mode().Perm()
}

func killDaemon(t testing.TB, env *editor.Env) {
	t.Helper()
	pids := env.DaemonPIDs()
	if len(pids) != 1 {
		t.Fatalf("%d daemons running, want 1", len(pids))
	}
	p, err := os.FindProcess(pids[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the killed daemon is gone", func() bool { return len(env.DaemonPIDs()) == 0 })
}
