package claim

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kloop/kloop/internal/racecheck"
	"github.com/kloop/kloop/test/cluster"
)

// kloopCLI builds the real kloop binary (with -race under `go test -race`)
// and returns a runner for it whose default kubeconfig is the sandbox
// cluster's (through $KUBECONFIG, as an admin's shell would have it). A race
// report of any command it ran fails the test.
func kloopCLI(t *testing.T) func(args ...string) (stdout, stderr string, code int) {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "kloop")
	args := append([]string{"build", "-o", bin}, racecheck.BuildFlags()...)
	build := exec.CommandContext(t.Context(), "go", append(args, "github.com/kloop/kloop/cmd/kloop")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build kloop %v: %v\n%s", racecheck.BuildFlags(), err, out)
	}
	kubeconfig := cluster.Shared(t).Kubeconfig
	raceLog := filepath.Join(dir, "race")
	// Registered after t.TempDir, so it runs before the directory goes, and
	// after the cleanups that run the CLI (registered later, run first).
	t.Cleanup(func() {
		if err := racecheck.CheckLogs(raceLog); err != nil {
			t.Error(err)
		}
	})
	return func(args ...string) (string, string, int) {
		t.Helper()
		// Not t.Context(): cleanups run the CLI after it is cancelled.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "HOME="+dir, "XDG_RUNTIME_DIR="+dir, "XDG_STATE_HOME="+dir,
			racecheck.LogEnv(raceLog))
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("run kloop %v: %v", args, err)
		}
		return out.String(), errOut.String(), code
	}
}

func TestPoolCLI(t *testing.T) {
	cfg, cs := testCluster(t)
	applyDeploy(t, cfg)
	kloop := kloopCLI(t)
	name := testName(t)
	t.Cleanup(func() { kloop("pool", "delete", name, "--force") })

	out, errOut, code := kloop("pool", "create", name, "--namespaces", "2")
	if code != 0 || !strings.Contains(out, "pool "+name+" created with 2 slots") {
		t.Fatalf("pool create: exit %d\n%s%s", code, out, errOut)
	}
	for _, slot := range []string{name + "-1", name + "-2"} {
		if _, err := cs.RbacV1().RoleBindings(slot).Get(t.Context(), ClaimersRoleBinding, metav1.GetOptions{}); err != nil {
			t.Errorf("slot %s has no claimers binding: %v", slot, err)
		}
	}

	bad := []struct {
		args []string
		want string
	}{
		{[]string{"pool", "create", name, "--namespaces", "2"}, "already exists"},
		{[]string{"pool", "create", "other"}, "exactly one of --namespaces"},
		{[]string{"pool", "create", "other", "--namespaces", "1", "--kubeconfig", "x"}, "exactly one of --namespaces"},
		{[]string{"pool", "create", "Bad_Name", "--namespaces", "1"}, "invalid"},
		{[]string{"pool", "create", "other", "--namespaces", "0"}, "between 1 and"},
		{[]string{"pool", "create", "other", "--kubeconfig", "/nonexistent.yaml"}, "/nonexistent.yaml"},
		{[]string{"pool", "delete", "no-such-pool"}, `pool "no-such-pool" not found`},
		{[]string{"pool", "list", "-o", "xml"}, "use json or table"},
		{[]string{"pool", "list", "--admin-kubeconfig", "/nonexistent.yaml"}, "/nonexistent.yaml"},
	}
	for _, b := range bad {
		out, errOut, code := kloop(b.args...)
		if code == 0 || !strings.Contains(errOut, b.want) {
			t.Errorf("kloop %v: exit %d, stderr %q; want failure mentioning %q (stdout %q)", b.args, code, errOut, b.want, out)
		}
	}

	held, err := newClaimer(t, cfg, "ivy@i").Claim(t.Context(), name, 2*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}

	out, errOut, code = kloop("pool", "list", "-o", "json")
	if code != 0 {
		t.Fatalf("pool list: exit %d: %s", code, errOut)
	}
	var pools []PoolStatus
	if err := json.Unmarshal([]byte(out), &pools); err != nil {
		t.Fatalf("pool list -o json: %v\n%s", err, out)
	}
	var mine *PoolStatus
	for i := range pools {
		if pools[i].Name == name {
			mine = &pools[i]
		}
	}
	if mine == nil || len(mine.Slots) != 2 {
		t.Fatalf("pool list has no pool %s with 2 slots: %s", name, out)
	}
	for _, s := range mine.Slots {
		if s.Name == held.Slot {
			if s.Free || s.Holder != "ivy@i" || s.Until == nil || !s.Until.Equal(held.Until) {
				t.Errorf("held slot listed as %+v; want ivy@i until %s", s, held.Until)
			}
		} else if !s.Free || s.Kind != KindNamespace || s.Target != s.Name {
			t.Errorf("free slot listed as %+v", s)
		}
	}
	out, _, _ = kloop("pool", "list")
	if !strings.Contains(out, "HOLDER") || !strings.Contains(out, "ivy@i") {
		t.Errorf("pool list table lacks the holder:\n%s", out)
	}

	_, errOut, code = kloop("pool", "delete", name)
	if code == 0 || !strings.Contains(errOut, "ivy@i") || !strings.Contains(errOut, "--force") {
		t.Errorf("delete of a pool with a held slot: exit %d %q; want refusal naming ivy@i and --force", code, errOut)
	}
	out, errOut, code = kloop("pool", "delete", name, "--force")
	if code != 0 {
		t.Fatalf("pool delete --force: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := cs.CoreV1().ConfigMaps(DefaultNamespace).Get(t.Context(), PoolConfigMapPrefix+name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pool declaration still there: %v", err)
	}
	leases, _ := cs.CoordinationV1().Leases(DefaultNamespace).List(t.Context(), metav1.ListOptions{LabelSelector: LabelPool + "=" + name})
	if len(leases.Items) != 0 {
		t.Errorf("%d leases left", len(leases.Items))
	}
	ns, err := cs.CoreV1().Namespaces().Get(t.Context(), name+"-1", metav1.GetOptions{})
	if err == nil && ns.DeletionTimestamp == nil {
		t.Errorf("slot namespace %s not being deleted", ns.Name)
	}

	// Kubeconfig pools from the CLI too.
	kc := filepath.Join(t.TempDir(), "other.yaml")
	data, err := KubeconfigFromREST(cfg, "other", "default")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(kc, data, 0o600)
	kname := testName(t)
	t.Cleanup(func() { kloop("pool", "delete", kname, "--force") })
	out, errOut, code = kloop("pool", "create", kname, "--kubeconfig", kc)
	if code != 0 {
		t.Fatalf("pool create --kubeconfig: exit %d\n%s%s", code, out, errOut)
	}
	out, _, _ = kloop("pool", "list", "-o", "json")
	if !strings.Contains(out, `"kind": "kubeconfig"`) || !strings.Contains(out, cfg.Host) {
		t.Errorf("kubeconfig pool not listed with its server:\n%s", out)
	}
	if _, errOut, code := kloop("pool", "delete", kname); code != 0 {
		t.Errorf("delete kubeconfig pool: %s", errOut)
	}
	secrets, _ := cs.CoreV1().Secrets(DefaultNamespace).List(t.Context(), metav1.ListOptions{LabelSelector: LabelPool + "=" + kname})
	if len(secrets.Items) != 0 {
		t.Errorf("kubeconfig secrets left after delete: %d", len(secrets.Items))
	}
}
