package claim

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func TestConcurrentClaimersGetOneSlotEach(t *testing.T) {
	cfg, cs := testCluster(t)
	pool := newPool(t, cfg, 5)

	const claimers = 50
	type result struct {
		holder string
		claim  *Claim
		err    error
	}
	results := make([]result, claimers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range claimers {
		holder := fmt.Sprintf("dev%d@host", i)
		c := newClaimer(t, cfg, holder)
		wg.Go(func() {
			<-start
			cl, err := c.Claim(t.Context(), pool, time.Hour, nil)
			results[i] = result{holder, cl, err}
		})
	}
	close(start)
	wg.Wait()

	slots := map[string]string{}
	for _, r := range results {
		switch {
		case r.err == nil:
			if prev, dup := slots[r.claim.Slot]; dup {
				t.Errorf("slot %s granted to both %s and %s", r.claim.Slot, prev, r.holder)
			}
			slots[r.claim.Slot] = r.holder
		case errors.Is(r.err, ErrPoolFull):
			var full *PoolFullError
			errors.As(r.err, &full)
			if len(full.Holders) != 5 {
				t.Errorf("%s: pool full error names %d holders, want 5: %v", r.holder, len(full.Holders), r.err)
			}
		default:
			t.Errorf("%s: unexpected error: %v", r.holder, r.err)
		}
	}
	if len(slots) != 5 {
		t.Fatalf("%d claimers succeeded, want exactly 5 (one per slot): %v", len(slots), slots)
	}
	// The cluster agrees: one lease per slot, naming the claimer that was told
	// it holds that slot.
	leases, err := cs.CoordinationV1().Leases(DefaultNamespace).List(t.Context(), metav1.ListOptions{LabelSelector: LabelPool + "=" + pool})
	if err != nil {
		t.Fatal(err)
	}
	if len(leases.Items) != 5 {
		t.Fatalf("%d leases, want 5", len(leases.Items))
	}
	for _, l := range leases.Items {
		if got, want := *l.Spec.HolderIdentity, slots[l.Labels[LabelSlot]]; got != want {
			t.Errorf("lease of slot %s names %s, but %s was granted it", l.Labels[LabelSlot], got, want)
		}
	}
}

func TestExpiredClaimIsTakenOverOnlyAfterExpiry(t *testing.T) {
	cfg, cs := testCluster(t)
	pool := newPool(t, cfg, 1)
	lease := 2 * time.Second
	// The clients' clocks disagree by six minutes; judging leases by the
	// apiserver's clock makes that irrelevant. With local clocks, bob (ahead)
	// would see alice's lease as long expired and steal it at once.
	alice := newClaimer(t, cfg, "alice@a", WithLeaseDuration(lease),
		WithClock(func() time.Time { return time.Now().Add(-3 * time.Minute) }))
	bob := newClaimer(t, cfg, "bob@b", WithLeaseDuration(lease),
		WithClock(func() time.Time { return time.Now().Add(3 * time.Minute) }))

	held, err := alice.Claim(t.Context(), pool, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	leftover := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "alice-state"}}
	if _, err := cs.CoreV1().ConfigMaps(held.Namespace).Create(t.Context(), leftover, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// While alice renews, bob is refused, however long he tries.
	renewals := 0
	for renewedFor := time.Now(); time.Since(renewedFor) < 3*lease; {
		if err := alice.Renew(t.Context(), held); err != nil {
			t.Fatalf("renew: %v", err)
		}
		renewals++
		_, err := bob.Claim(t.Context(), pool, time.Hour, nil)
		if !errors.Is(err, ErrPoolFull) || !strings.Contains(err.Error(), "alice@a") {
			t.Fatalf("bob's claim while alice renews: %v; want pool full naming alice", err)
		}
		time.Sleep(alice.RenewInterval() / 2)
	}

	// Alice's daemon dies: no more renewals. Bob gets the slot, but not
	// before the lease (in server time) has run out.
	var got *Claim
	eventually(t, "bob takes the slot over", func() (bool, error) {
		cl, err := bob.Claim(t.Context(), pool, time.Hour, nil)
		if errors.Is(err, ErrPoolFull) {
			return false, nil
		}
		got = cl
		return err == nil, err
	})
	if expiry := held.RenewedAt.Add(held.LeaseDuration); got.AcquiredAt.Before(expiry) {
		t.Errorf("taken over at %s (server time), before alice's lease expired at %s", got.AcquiredAt, expiry)
	}
	if got.PreviousHolder != "alice@a" || got.Slot != held.Slot {
		t.Errorf("takeover: %+v, want slot %s previously held by alice@a", got, held.Slot)
	}
	// What alice left behind was reset before bob got the slot.
	if _, err := cs.CoreV1().ConfigMaps(held.Namespace).Get(t.Context(), "alice-state", metav1.GetOptions{}); err == nil {
		t.Error("alice's configmap survived the takeover")
	}
	// Alice comes back: her claim is lost, and she cannot release bob's.
	if err := alice.Renew(t.Context(), held); !errors.Is(err, ErrClaimLost) {
		t.Errorf("alice renews a lost claim: %v, want ErrClaimLost", err)
	}
	if err := alice.Release(t.Context(), held, nil); !errors.Is(err, ErrHeldByOther) || !strings.Contains(err.Error(), "bob@b") {
		t.Errorf("alice releases bob's slot: %v, want held by bob@b", err)
	}
	if err := bob.Renew(t.Context(), got); err != nil {
		t.Errorf("bob still holds the slot after alice's attempts: %v", err)
	}
	t.Logf("alice renewed %d times; bob took over", renewals)
}

func TestReleaseLeavesSlotCleanAndFree(t *testing.T) {
	cfg, cs := testCluster(t)
	pool := newPool(t, cfg, 1)
	c := newClaimer(t, cfg, "carol@c")
	held, err := c.Claim(t.Context(), pool, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	ns := held.Namespace
	fillNamespace(t, cs, ns)

	var steps []string
	if err := c.Release(t.Context(), held, func(m string) { steps = append(steps, m) }); err != nil {
		t.Fatalf("release: %v", err)
	}
	if len(steps) == 0 {
		t.Error("release reported no progress")
	}
	assertClean(t, cs, ns)
	// The claimers' access to the slot survives the reset.
	if _, err := cs.RbacV1().RoleBindings(ns).Get(t.Context(), ClaimersRoleBinding, metav1.GetOptions{}); err != nil {
		t.Errorf("claimers' RoleBinding gone after reset: %v", err)
	}

	// Claimable at once, by anyone.
	other := newClaimer(t, cfg, "dave@d")
	again, err := other.Claim(t.Context(), pool, time.Hour, nil)
	if err != nil {
		t.Fatalf("claim right after release: %v", err)
	}
	if again.Slot != held.Slot || again.PreviousHolder != "" {
		t.Errorf("claim after release: %+v; want the freed slot, no takeover", again)
	}
	if err := c.Release(t.Context(), held, nil); !errors.Is(err, ErrHeldByOther) {
		t.Errorf("releasing the old claim again: %v, want held by other", err)
	}
}

// fillNamespace leaves what a developer's session leaves: workloads, a
// service, config, secrets, an intercept's agent token.
func fillNamespace(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	ctx := t.Context()
	labels := map[string]string{"app": "orders"}
	pod := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"kloop.dev/intercept": "x"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "orders", Image: "orders:dev"},
			{Name: "kloop-agent", Image: "ghcr.io/kloop/kloop:dev"},
		}},
	}
	one := int32(1)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "orders", Annotations: map[string]string{"kloop.dev/original": "{}"}},
		Spec:       appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: pod},
	}, metav1.CreateOptions{}))
	must(cs.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec:       appsv1.StatefulSetSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: pod},
	}, metav1.CreateOptions{}))
	must(cs.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "migrate"},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "m", Image: "m:dev"}},
		}}},
	}, metav1.CreateOptions{}))
	must(cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "debug"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "d", Image: "d:dev"}}},
	}, metav1.CreateOptions{}))
	must(cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "orders"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{}))
	must(cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "orders-config"}}, metav1.CreateOptions{}))
	must(cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "kloop-agent-token"},
		StringData: map[string]string{"token": "t"}}, metav1.CreateOptions{}))
	must(cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "orders"}}, metav1.CreateOptions{}))
	// The controllers are real: wait until the deployment has made pods, so
	// that release has something to race against.
	eventually(t, "deployment pods exist", func() (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=orders"})
		return err == nil && len(pods.Items) > 0, err
	})
}

// assertClean checks that ns holds only what the namespace itself owns.
func assertClean(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	ctx := t.Context()
	var left []string
	add := func(kind string, names ...string) {
		for _, n := range names {
			left = append(left, kind+"/"+n)
		}
	}
	deps, _ := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	for _, o := range deps.Items {
		add("deployment", o.Name)
	}
	sts, _ := cs.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
	for _, o := range sts.Items {
		add("statefulset", o.Name)
	}
	rss, _ := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	for _, o := range rss.Items {
		add("replicaset", o.Name)
	}
	jobs, _ := cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	for _, o := range jobs.Items {
		add("job", o.Name)
	}
	pods, _ := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	for _, o := range pods.Items {
		add("pod", o.Name)
	}
	svcs, _ := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	for _, o := range svcs.Items {
		add("service", o.Name)
	}
	cms, _ := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	for _, o := range cms.Items {
		if o.Name != "kube-root-ca.crt" {
			add("configmap", o.Name)
		}
	}
	secs, _ := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	for _, o := range secs.Items {
		if o.Type != corev1.SecretTypeServiceAccountToken {
			add("secret", o.Name)
		}
	}
	sas, _ := cs.CoreV1().ServiceAccounts(ns).List(ctx, metav1.ListOptions{})
	for _, o := range sas.Items {
		if o.Name != "default" {
			add("serviceaccount", o.Name)
		}
	}
	if len(left) > 0 {
		t.Errorf("namespace %s not clean after release: %v", ns, left)
	}
}

func TestClaimFaults(t *testing.T) {
	cfg, _ := testCluster(t)
	pool := newPool(t, cfg, 2)
	erin := newClaimer(t, cfg, "erin@e")

	t.Run("pool missing", func(t *testing.T) {
		_, err := erin.Claim(t.Context(), "no-such-pool", time.Hour, nil)
		var nf *PoolNotFoundError
		if !errors.As(err, &nf) || !strings.Contains(err.Error(), pool) {
			t.Errorf("claim from a missing pool: %v; want pool not found listing %s", err, pool)
		}
	})
	t.Run("bad duration", func(t *testing.T) {
		if _, err := erin.Claim(t.Context(), pool, 0, nil); err == nil || !strings.Contains(err.Error(), "--for") {
			t.Errorf("zero duration: %v", err)
		}
	})
	held, err := erin.Claim(t.Context(), pool, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("already holding", func(t *testing.T) {
		_, err := erin.Claim(t.Context(), pool, time.Hour, nil)
		var ah *AlreadyHoldingError
		if !errors.As(err, &ah) || ah.Claim.Slot != held.Slot {
			t.Errorf("second claim: %v; want already holding %s", err, held.Slot)
		}
	})
	t.Run("daemon restart re-adopts", func(t *testing.T) {
		restarted := newClaimer(t, cfg, "erin@e")
		found, err := restarted.Find(t.Context(), pool)
		if err != nil {
			t.Fatal(err)
		}
		if found.Slot != held.Slot || found.Namespace != held.Namespace || !found.Until.Equal(held.Until) {
			t.Errorf("found %+v, want %+v", found, held)
		}
		if err := restarted.Renew(t.Context(), found); err != nil {
			t.Errorf("renew re-adopted claim: %v", err)
		}
		// The original handle, now stale, still renews (conflict re-read).
		if err := erin.Renew(t.Context(), held); err != nil {
			t.Errorf("renew with a stale handle: %v", err)
		}
		if _, err := newClaimer(t, cfg, "frank@f").Find(t.Context(), pool); !errors.Is(err, ErrNotHeld) {
			t.Errorf("find for a holder without claim: %v", err)
		}
	})
	t.Run("kubeconfig targets the slot", func(t *testing.T) {
		data, err := erin.Kubeconfig(t.Context(), held)
		if err != nil {
			t.Fatal(err)
		}
		kc, err := clientcmd.Load(data)
		if err != nil {
			t.Fatal(err)
		}
		if ns := kc.Contexts[kc.CurrentContext].Namespace; ns != held.Namespace {
			t.Errorf("kubeconfig context namespace %q, want %q", ns, held.Namespace)
		}
		restCfg, err := clientcmd.NewDefaultClientConfig(*kc, nil).ClientConfig()
		if err != nil {
			t.Fatal(err)
		}
		kcs := kubernetes.NewForConfigOrDie(restCfg)
		if _, err := kcs.CoreV1().Pods(held.Namespace).List(t.Context(), metav1.ListOptions{}); err != nil {
			t.Errorf("kubeconfig does not reach the slot: %v", err)
		}
	})
	t.Run("claim ends", func(t *testing.T) {
		short, err := newClaimer(t, cfg, "gina@g").Claim(t.Context(), pool, time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		g := newClaimer(t, cfg, "gina@g")
		eventually(t, "renew refuses past the end", func() (bool, error) {
			err := g.Renew(t.Context(), short)
			if errors.Is(err, ErrClaimEnded) {
				return true, nil
			}
			return false, err
		})
		if err := g.Release(t.Context(), short, nil); err != nil {
			t.Errorf("release an ended claim: %v", err)
		}
	})
	t.Run("skewed local clock", func(t *testing.T) {
		skewed := newClaimer(t, cfg, "hank@h", WithClock(func() time.Time { return time.Now().Add(-10 * time.Minute) }))
		_, err := skewed.Claim(t.Context(), pool, time.Hour, nil)
		if !errors.Is(err, ErrClockSkew) || !strings.Contains(err.Error(), "10m0s behind the apiserver's") {
			t.Errorf("claim with a clock 10m behind: %v", err)
		}
		if _, err := newClaimer(t, cfg, "hank@h").Find(t.Context(), pool); !errors.Is(err, ErrNotHeld) {
			t.Errorf("refused claim left a lease: %v", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		dead := *cfg
		dead.Host = "https://127.0.0.1:1"
		_, err := newClaimer(t, &dead, "erin@e").Claim(t.Context(), pool, time.Hour, nil)
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
			t.Errorf("claim on a dead cluster: %v", err)
		}
	})
	if err := erin.Release(t.Context(), held, nil); err != nil {
		t.Fatal(err)
	}
	if err := erin.Release(t.Context(), held, nil); !errors.Is(err, ErrNotHeld) {
		t.Errorf("second release: %v, want not held", err)
	}
}
