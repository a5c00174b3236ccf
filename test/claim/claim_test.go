package claim_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kloop/kloop/kube/claim"
	"github.com/kloop/kloop/kube/kubeconfig"
	"github.com/kloop/kloop/session"
	"github.com/kloop/kloop/test/cluster"
	"github.com/kloop/kloop/test/editor"
)

func TestClaimAndReleaseFromTheCLI(t *testing.T) {
	pool := newPool(t, 2)
	env := daemonEnv(t)
	// The pool comes from .kloop.yaml; the CLI runs in a subdirectory.
	ws := workspace(t, map[string]string{".kloop.yaml": "claim:\n  pool: " + pool + "\n  for: 2h\n", "cmd/app/main.go": "package main\n\nfunc main() {}\n"})
	sub := filepath.Join(ws, "cmd", "app")

	before := time.Now()
	r := mustKloop(t, env, sub, "claim", "-o", "json")
	t.Logf("kloop claim (daemon auto-started) took %s", r.took)
	var got session.ClaimStatus
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("claim -o json: %v\n%s", err, r.stdout)
	}
	if got.Pool != pool || !strings.HasPrefix(got.Slot, pool+"-") || got.Namespace != got.Slot {
		t.Fatalf("claimed %+v, want a slot of pool %s", got, pool)
	}
	if got.Holder != kubeconfig.DefaultHolder() {
		t.Errorf("holder = %q, want %q", got.Holder, kubeconfig.DefaultHolder())
	}
	if lo, hi := before.Add(2*time.Hour-time.Minute), time.Now().Add(2*time.Hour+time.Minute); got.Until.Before(lo) || got.Until.After(hi) {
		t.Errorf("until = %s, want about 2h (claim.for of .kloop.yaml) from now", got.Until)
	}

	// Status, from another directory of the workspace, shows the claim.
	st := status(t, env, ws)
	if st.Claim == nil || *st.Claim != got {
		t.Fatalf("status claim = %+v, want %+v", st.Claim, got)
	}
	l, ok := lease(t, pool, got.Slot)
	if !ok || *l.Spec.HolderIdentity != got.Holder {
		t.Fatalf("lease of %s: %+v", got.Slot, l)
	}

	// state.json (0600) records it.
	state, mode := stateFile(t, env)
	if mode != 0o600 {
		t.Errorf("state.json mode %o, want 600", mode)
	}
	if ss := state.Sessions[ws]; ss == nil || ss.Claim == nil || ss.Claim.Slot != got.Slot || ss.ClaimPhase != "held" {
		t.Errorf("state.json session %s = %+v, want the held claim", ws, ss)
	}

	// The kubeconfig is private and targets the slot: a developer uses it.
	fi, err := os.Stat(got.Kubeconfig)
	if err != nil {
		t.Fatalf("claim kubeconfig: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode %o, want 600", fi.Mode().Perm())
	}
	if !strings.HasPrefix(got.Kubeconfig, env.State+string(filepath.Separator)) {
		t.Errorf("kubeconfig %s is not under the state directory %s", got.Kubeconfig, env.State)
	}
	kc, err := clientcmd.LoadFromFile(got.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if c := kc.Contexts[kc.CurrentContext]; c == nil || c.Namespace != got.Slot {
		t.Fatalf("kubeconfig current context %q = %+v, want namespace %s", kc.CurrentContext, c, got.Slot)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", got.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ns, _, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(&clientcmd.ClientConfigLoadingRules{ExplicitPath: got.Kubeconfig}, nil).Namespace()
	if err != nil || ns != got.Slot {
		t.Fatalf("namespace of the kubeconfig = %q, %v", ns, err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := context.Background()
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "mine"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("use the claim's kubeconfig: %v", err)
	}
	one := int32(1)
	labels := map[string]string{"app": "web"}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "example.com/web"}}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("deploy with the claim's kubeconfig: %v", err)
	}

	// A second claim while holding one is refused and changes nothing.
	failKloop(t, env, ws, []string{"already holds slot " + got.Slot, "kloop release"}, "claim")
	if st := status(t, env, ws); st.Claim == nil || st.Claim.Slot != got.Slot {
		t.Fatalf("after the refused claim, status = %+v", st.Claim)
	}
	// So is a claim in the same pool from another workspace of this user.
	other := workspace(t, map[string]string{})
	failKloop(t, env, other, []string{"workspace " + ws + " already holds slot " + got.Slot}, "claim", "--pool", pool)
	if st := status(t, env, other); st.Claim != nil {
		t.Fatalf("the refused claim left %+v", st.Claim)
	}

	r = mustKloop(t, env, ws, "release")
	if !strings.Contains(r.stdout, "released "+got.Slot) {
		t.Errorf("release said %q", r.stdout)
	}
	t.Logf("kloop release (reset + free) took %s", r.took)

	// The slot is free and clean, and kloop forgot it.
	if _, ok := lease(t, pool, got.Slot); ok {
		t.Errorf("lease of %s still exists after release", got.Slot)
	}
	if deps, _ := cluster.Shared(t).Client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{}); len(deps.Items) != 0 {
		t.Errorf("deployments left in %s: %d", ns, len(deps.Items))
	}
	cms, _ := cluster.Shared(t).Client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	for _, cm := range cms.Items {
		if cm.Name != "kube-root-ca.crt" {
			t.Errorf("configmap %s left in %s", cm.Name, ns)
		}
	}
	if _, err := os.Stat(got.Kubeconfig); !os.IsNotExist(err) {
		t.Errorf("kubeconfig %s still there after release (%v)", got.Kubeconfig, err)
	}
	if st := status(t, env, ws); st.Claim != nil {
		t.Errorf("status after release shows claim %+v", st.Claim)
	}
	if state, _ := stateFile(t, env); len(state.Sessions) != 0 {
		t.Errorf("state.json after release lists %+v", state.Sessions)
	}
	failKloop(t, env, ws, []string{"holds no claim"}, "release")

	// Both slots are claimable at once by others.
	for _, holder := range []string{"ann@elsewhere", "ben@elsewhere"} {
		other, err := claim.NewClaimer(adminConfig(t), holder)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := other.Claim(ctx, pool, time.Hour, nil)
		if err != nil {
			t.Fatalf("claim after release: %v", err)
		}
		t.Cleanup(func() { other.Release(context.Background(), cl, nil) })
	}
}

func TestClaimErrorsThroughTheDaemon(t *testing.T) {
	pool := newPool(t, 1)
	env := daemonEnv(t)
	ctx := context.Background()

	// Pool full: the message names the holder and when the slot frees.
	alice, err := claim.NewClaimer(adminConfig(t), "alice@elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	held, err := alice.Claim(ctx, pool, 3*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alice.Release(context.Background(), held, nil) })
	ws := workspace(t, map[string]string{})
	failKloop(t, env, ws, []string{`pool "` + pool + `" is full`, held.Slot + " held by alice@elsewhere until " + held.Until.UTC().Format(time.RFC3339)}, "claim", "--pool", pool)
	if st := status(t, env, ws); st.Claim != nil {
		t.Errorf("a failed claim left %+v", st.Claim)
	}
	if state, _ := stateFile(t, env); len(state.Sessions) != 0 {
		t.Errorf("a failed claim left state %+v", state.Sessions)
	}

	// Pool missing; with nothing naming a pool, two pools and neither
	// marked default, the message lists them and how to choose.
	failKloop(t, env, ws, []string{`pool "no-such-pool" not found`, pool}, "claim", "--pool", "no-such-pool")
	other := newPool(t, 1)
	failKloop(t, env, ws, []string{"no --pool given and no pool is marked default", pool, other, "choose one with --pool"}, "claim")

	// Release with nothing held.
	failKloop(t, env, ws, []string{"holds no claim"}, "release")

	// RBAC: a user the admin did not make a claimer (kubeconfig from
	// .kloop.yaml, relative to it).
	sandboxEnv := cluster.New(t)
	saKubeconfig := serviceAccountKubeconfig(t, sandboxEnv, "stranger")
	forbidden := workspace(t, map[string]string{".kloop.yaml": "kubeconfig: stranger.kubeconfig\nclaim:\n  pool: " + pool + "\n"})
	if err := os.Rename(saKubeconfig, filepath.Join(forbidden, "stranger.kubeconfig")); err != nil {
		t.Fatal(err)
	}
	failKloop(t, env, forbidden, []string{"forbidden: cannot get configmaps", "kloop-system"}, "claim")

	// Cluster unreachable.
	down := workspace(t, map[string]string{".kloop.yaml": "kubeconfig: down.kubeconfig\n", "down.kubeconfig": unreachableKubeconfig(t)})
	failKloop(t, env, down, []string{"cannot reach the cluster at https://127.0.0.1:1"}, "claim")

	// A broken kubeconfig setting.
	missing := workspace(t, map[string]string{".kloop.yaml": "kubeconfig: nowhere.yaml\n"})
	failKloop(t, env, missing, []string{"nowhere.yaml"}, "claim")
}

func serviceAccountKubeconfig(t *testing.T, env *cluster.Env, name string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := env.Client.CoreV1().ServiceAccounts(env.Namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	secs := int64(3600)
	tok, err := env.Client.CoreV1().ServiceAccounts(env.Namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	anon := rest.AnonymousClientConfig(env.Config)
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: anon.Host, CertificateAuthorityData: anon.CAData, CertificateAuthority: anon.CAFile, InsecureSkipTLSVerify: anon.Insecure}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "c"
	path := filepath.Join(t.TempDir(), "sa.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func unreachableKubeconfig(t *testing.T) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["down"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1", InsecureSkipTLSVerify: true}
	cfg.AuthInfos["me"] = &clientcmdapi.AuthInfo{Token: "x"}
	cfg.Contexts["down"] = &clientcmdapi.Context{Cluster: "down", AuthInfo: "me"}
	cfg.CurrentContext = "down"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// statusNote decodes a kloop/status notification.
func statusNote(p json.RawMessage) session.Status {
	var st session.Status
	json.Unmarshal(p, &st)
	return st
}

func TestClaimFromTheEditor(t *testing.T) {
	for _, mode := range editor.Modes {
		t.Run(string(mode), func(t *testing.T) {
			pool := newPool(t, 1)
			env := daemonEnv(t)
			ws := workspace(t, map[string]string{})
			ed := editor.Start(t, env, mode)
			ed.Initialize(ws, true)
			ed.WaitNote("kloop/status", nil)

			var got session.ClaimStatus
			start := time.Now()
			if err := ed.Execute("kloop.claim", map[string]any{"pool": pool, "for": "90m"}, &got); err != nil {
				t.Fatalf("kloop.claim: %v\n%s", err, ed.Stderr())
			}
			t.Logf("kloop.claim took %s", time.Since(start))
			if got.Pool != pool || got.Slot != pool+"-1" || got.Kubeconfig == "" {
				t.Fatalf("kloop.claim = %+v", got)
			}
			// Progress: created, begun, reported the steps, ended well.
			if len(ed.ServerRequests("window/workDoneProgress/create")) == 0 {
				t.Error("no window/workDoneProgress/create")
			}
			ed.WaitNote("$/progress", func(p json.RawMessage) bool {
				return strings.Contains(string(p), `"begin"`) && strings.Contains(string(p), "Claiming")
			})
			ed.WaitNote("$/progress", func(p json.RawMessage) bool {
				return strings.Contains(string(p), `"report"`) && strings.Contains(string(p), "claimed slot "+got.Slot)
			})
			ed.WaitNote("$/progress", func(p json.RawMessage) bool {
				return strings.Contains(string(p), `"end"`) && strings.Contains(string(p), `"done"`)
			})
			// The status bar learns of it.
			note := ed.WaitNote("kloop/status", func(p json.RawMessage) bool {
				st := statusNote(p)
				return st.Claim != nil && *st.Claim == got
			})
			claimedAt := statusNote(note.Params).Updated

			// The editor now offers to release it.
			main := filepath.Join(ws, "main.go")
			ed.Open(main, "go", "package main\n\nfunc main() {}\n")
			if acts := ed.CodeActions(main, 2, "source.kloop.release"); len(acts) != 1 || acts[0].Title != "kloop: Release "+got.Slot || acts[0].Command.Command != "kloop.release" {
				t.Errorf("release code actions = %+v", acts)
			}

			// Claiming again is an error the editor shows.
			err := ed.Execute("kloop.claim", map[string]any{"pool": pool}, nil)
			if rpcErr, ok := err.(*editor.RPCError); !ok || !strings.Contains(rpcErr.Message, "already holds slot "+got.Slot) {
				t.Errorf("second kloop.claim: %v", err)
			}

			if mode == editor.Forwarded {
				// The terminal sees what the editor claimed: one daemon.
				if st := status(t, env, ws); st.Claim == nil || *st.Claim != got {
					t.Errorf("kloop status from the CLI = %+v, want %+v", st.Claim, got)
				}
			}

			var after session.Status
			start = time.Now()
			if err := ed.Execute("kloop.release", nil, &after); err != nil {
				t.Fatalf("kloop.release: %v", err)
			}
			t.Logf("kloop.release (reset + free, empty namespace) took %s", time.Since(start))
			if after.Claim != nil {
				t.Errorf("kloop.release returned status with claim %+v", after.Claim)
			}
			ed.WaitNote("kloop/status", func(p json.RawMessage) bool {
				st := statusNote(p)
				return st.Claim == nil && st.Updated.After(claimedAt)
			})
			if _, ok := lease(t, pool, got.Slot); ok {
				t.Errorf("lease of %s still exists after kloop.release", got.Slot)
			}
			err = ed.Execute("kloop.release", nil, nil)
			if rpcErr, ok := err.(*editor.RPCError); !ok || !strings.Contains(rpcErr.Message, "holds no claim") {
				t.Errorf("second kloop.release: %v", err)
			}
		})
	}
}

func TestDaemonRenewsAndRestartedDaemonReadoptsTheClaim(t *testing.T) {
	pool := newPool(t, 1)
	// Short leases so that renewals and expiry happen within the test; a
	// short idle timeout to show that a daemon holding a claim stays.
	env := daemonEnv(t, "KLOOP_CLAIM_LEASE=3s", "KLOOP_IDLE_TIMEOUT=1s")
	ws := workspace(t, map[string]string{})
	ctx := context.Background()

	r := mustKloop(t, env, ws, "claim", "--pool", pool, "-o", "json")
	var got session.ClaimStatus
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatal(err)
	}
	// No client is connected now; the daemon keeps renewing regardless.
	renewedAfter := func(at time.Time) func() bool {
		return func() bool {
			l, ok := lease(t, pool, got.Slot)
			return ok && *l.Spec.HolderIdentity == got.Holder && l.Spec.RenewTime.After(at)
		}
	}
	idleSince := time.Now()
	eventually(t, "the daemon renews the lease", renewedAfter(idleSince.Add(2*time.Second)))
	if len(env.DaemonPIDs()) != 1 {
		t.Fatal("the daemon exited on idle while holding a claim")
	}

	// The daemon dies; the next command starts another, which shows the
	// claim from state.json and takes over its renewal.
	killDaemon(t, env)
	killedAt := time.Now()
	if st := status(t, env, ws); st.Claim == nil || st.Claim.Slot != got.Slot || st.Claim.Until != got.Until {
		t.Fatalf("status after the daemon restart = %+v, want %+v", st.Claim, got)
	}
	eventually(t, "the new daemon renews the lease", renewedAfter(killedAt))
	if _, err := os.Stat(got.Kubeconfig); err != nil {
		t.Errorf("kubeconfig after re-adoption: %v", err)
	}
	failKloop(t, env, ws, []string{"already holds slot " + got.Slot}, "claim", "--pool", pool)
	r = mustKloop(t, env, ws, "release")
	if !strings.Contains(r.stdout, "released "+got.Slot) {
		t.Errorf("release after restart said %q", r.stdout)
	}
	if _, ok := lease(t, pool, got.Slot); ok {
		t.Fatal("lease still there after the re-adopted claim was released")
	}
	// Holding nothing, the daemon exits on idle.
	eventually(t, "the idle daemon holding nothing exits", func() bool { return len(env.DaemonPIDs()) == 0 })

	// A claim lost while no daemon ran is dropped cleanly on restart.
	mustKloop(t, env, ws, "claim", "--pool", pool)
	killDaemon(t, env)
	bob, err := claim.NewClaimer(adminConfig(t), "bob@elsewhere", claim.WithLeaseDuration(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var bobs *claim.Claim
	eventually(t, "bob takes the lapsed slot over", func() bool {
		bobs, err = bob.Claim(ctx, pool, time.Hour, nil)
		return err == nil
	})
	t.Cleanup(func() { bob.Release(context.Background(), bobs, nil) })
	eventually(t, "the restarted daemon drops the lost claim", func() bool { return status(t, env, ws).Claim == nil })
	if state, _ := stateFile(t, env); len(state.Sessions) != 0 {
		t.Errorf("state.json still lists %+v", state.Sessions)
	}
	if _, err := os.Stat(got.Kubeconfig); !os.IsNotExist(err) {
		t.Errorf("kubeconfig of the lost claim still there (%v)", err)
	}
	failKloop(t, env, ws, []string{"bob@elsewhere"}, "claim", "--pool", pool)
	if l, _ := lease(t, pool, bobs.Slot); l == nil || *l.Spec.HolderIdentity != "bob@elsewhere" {
		t.Errorf("bob's lease was disturbed: %+v", l)
	}
}

// TestClaimWithoutAPoolTakesThePoolMarkedDefault is README's admin step
// then the developer's, typed as they are: `kloop pool create dev
// --namespaces 5 --default`, then `kloop claim` with no --pool and no
// .kloop.yaml, with another pool in the cluster too.
func TestClaimWithoutAPoolTakesThePoolMarkedDefault(t *testing.T) {
	applyDeploy(t)
	other := newPool(t, 1)
	env := daemonEnv(t)
	ws := workspace(t, map[string]string{})

	r := mustKloop(t, env, ws, "pool", "create", "dev", "--namespaces", "5", "--default")
	t.Cleanup(func() { kloop(t, env, ws, "pool", "delete", "dev", "--force") })
	if !strings.Contains(r.stdout, "pool dev created with 5 slots") {
		t.Errorf("pool create printed %q", r.stdout)
	}
	list := mustKloop(t, env, ws, "pool", "list")
	if !strings.Contains(list.stdout, "dev (default)") || !strings.Contains(list.stdout, other) {
		t.Errorf("pool list does not mark dev as the default next to %s:\n%s", other, list.stdout)
	}

	r = mustKloop(t, env, ws, "claim", "-o", "json")
	var got session.ClaimStatus
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("claim -o json: %v\n%s", err, r.stdout)
	}
	if got.Pool != "dev" || !strings.HasPrefix(got.Slot, "dev-") {
		t.Fatalf("kloop claim took %+v, want a slot of the default pool dev", got)
	}
	if st := status(t, env, ws); st.Claim == nil || st.Claim.Pool != "dev" {
		t.Errorf("status after claim = %+v, want the claim in pool dev", st.Claim)
	}
	mustKloop(t, env, ws, "release")
	if st := status(t, env, ws); st.Claim != nil {
		t.Errorf("status after release = %+v, want no claim", st.Claim)
	}
}
