package claim

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// MaxSlots bounds the slots of one pool.
const MaxSlots = 500

// PoolAdmin creates, lists and deletes pools. It needs a cluster admin's
// rights (it creates namespaces and RoleBindings).
type PoolAdmin struct {
	cs    kubernetes.Interface
	cat   *catalog
	clock *serverClock
	opts  options
	host  string
}

// NewPoolAdmin returns a PoolAdmin for the cluster of cfg.
func NewPoolAdmin(cfg *rest.Config, opts ...Option) (*PoolAdmin, error) {
	if cfg == nil {
		return nil, errors.New("new pool admin: no cluster configuration")
	}
	o := buildOptions(opts)
	clock := newServerClock(o.clock)
	wrapped := rest.CopyConfig(cfg)
	wrapped.Wrap(clock.wrap)
	cs, err := kubernetes.NewForConfig(wrapped)
	if err != nil {
		return nil, fmt.Errorf("new pool admin: client for %s: %w", cfg.Host, err)
	}
	return &PoolAdmin{cs: cs, cat: &catalog{cs: cs, namespace: o.namespace, host: cfg.Host}, clock: clock, opts: o, host: cfg.Host}, nil
}

func (a *PoolAdmin) err(err error, verb, resource, ns, name string) error {
	return apiError(err, a.host, verb, resource, ns, name)
}

// CreateOptions tune a new pool.
type CreateOptions struct {
	// Default makes the pool the one claims use when none is named.
	Default bool
	// ResidentAgents makes the agents intercepts inject in the pool's
	// slots resident (AnnotationResidentAgents).
	ResidentAgents bool
	// Progress receives a line per step (may be nil).
	Progress func(string)
}

// KubeconfigSlot is one cluster of a kubeconfig pool.
type KubeconfigSlot struct {
	// Path of a kubeconfig file; its current context is the slot.
	Path string
}

// List returns every pool and its slots' holders.
func (a *PoolAdmin) List(ctx context.Context) ([]PoolStatus, error) {
	return a.cat.status(ctx, a.clock.Now)
}

// CreateNamespacePool creates pool name with n new namespaces name-1..name-n
// as slots, each with a RoleBinding that lets the claimers (the subjects of
// RoleBinding kloop-claimers in the system namespace) work in it. Nothing is
// left behind if any step fails.
func (a *PoolAdmin) CreateNamespacePool(ctx context.Context, name string, n int, o CreateOptions) (*Pool, error) {
	if n < 1 || n > MaxSlots {
		return nil, fmt.Errorf("--namespaces %d: a pool has between 1 and %d slots", n, MaxSlots)
	}
	subjects, err := a.prepare(ctx, name)
	if err != nil {
		return nil, err
	}
	if _, err := a.cs.RbacV1().ClusterRoles().Get(ctx, SlotClusterRole, metav1.GetOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("ClusterRole %s does not exist: apply deploy/claimer-rbac.yaml first", SlotClusterRole)
		}
		return nil, a.err(err, "get", "clusterroles.rbac.authorization.k8s.io", "", SlotClusterRole)
	}
	progress := o.Progress
	if progress == nil {
		progress = noProgress
	}
	p := &Pool{Name: name, Default: o.Default, ResidentAgents: o.ResidentAgents}
	var undo undoList
	for i := 1; i <= n; i++ {
		slot := name + "-" + strconv.Itoa(i)
		labels := map[string]string{LabelPool: name, LabelSlot: slot, LabelManaged: managedBy}
		progress("creating namespace " + slot)
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: slot, Labels: labels}}
		if _, err := a.cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			undo.run(a, progress)
			if apierrors.IsAlreadyExists(err) {
				return nil, fmt.Errorf("namespace %s already exists: choose another pool name (slots are named POOL-N); nothing was created", slot)
			}
			return nil, a.err(err, "create", "namespaces", "", slot)
		}
		undo.add("namespace "+slot, func(ctx context.Context) error {
			return a.cs.CoreV1().Namespaces().Delete(ctx, slot, metav1.DeleteOptions{})
		})
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: ClaimersRoleBinding, Namespace: slot, Labels: labels},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: SlotClusterRole},
			Subjects:   subjects,
		}
		if _, err := a.cs.RbacV1().RoleBindings(slot).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			undo.run(a, progress)
			return nil, a.err(err, "create", "rolebindings.rbac.authorization.k8s.io", slot, rb.Name)
		}
		p.Slots = append(p.Slots, SlotSpec{Name: slot, Kind: KindNamespace, Namespace: slot})
	}
	if err := a.declare(ctx, p, progress); err != nil {
		undo.run(a, progress)
		return nil, err
	}
	return p, nil
}

// CreateKubeconfigPool creates pool name whose slots are the clusters of
// the given kubeconfig files (their current contexts, with referenced files
// inlined), stored as Secrets in the system namespace that only the
// claimers may read.
func (a *PoolAdmin) CreateKubeconfigPool(ctx context.Context, name string, slots []KubeconfigSlot, o CreateOptions) (*Pool, error) {
	if len(slots) < 1 || len(slots) > MaxSlots {
		return nil, fmt.Errorf("%d kubeconfigs: a pool has between 1 and %d slots", len(slots), MaxSlots)
	}
	progress := o.Progress
	if progress == nil {
		progress = noProgress
	}
	// Read every file before touching the cluster.
	type loaded struct {
		data   []byte
		server string
	}
	files := make([]loaded, len(slots))
	for i, s := range slots {
		data, server, err := flattenKubeconfig(s.Path)
		if err != nil {
			return nil, err
		}
		files[i] = loaded{data, server}
	}
	subjects, err := a.prepare(ctx, name)
	if err != nil {
		return nil, err
	}
	ns := a.opts.namespace
	p := &Pool{Name: name, Default: o.Default, ResidentAgents: o.ResidentAgents}
	var undo undoList
	var secretNames []string
	for i, f := range files {
		slot := name + "-" + strconv.Itoa(i+1)
		secretName := PoolConfigMapPrefix + slot
		progress(fmt.Sprintf("storing kubeconfig of %s as secret %s", f.server, secretName))
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: secretName, Namespace: ns,
				Labels: map[string]string{LabelPool: name, LabelSlot: slot, LabelManaged: managedBy}},
			Data: map[string][]byte{KubeconfigSecretKey: f.data},
		}
		if _, err := a.cs.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			undo.run(a, progress)
			return nil, a.err(err, "create", "secrets", ns, secretName)
		}
		undo.add("secret "+secretName, func(ctx context.Context) error {
			return a.cs.CoreV1().Secrets(ns).Delete(ctx, secretName, metav1.DeleteOptions{})
		})
		secretNames = append(secretNames, secretName)
		p.Slots = append(p.Slots, SlotSpec{Name: slot, Kind: KindKubeconfig, Secret: secretName, Server: f.server})
	}
	// Claimers may read exactly these Secrets, nothing else in the namespace.
	labels := map[string]string{LabelPool: name, LabelManaged: managedBy}
	roleName := PoolConfigMapPrefix + name
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: roleName, Namespace: ns, Labels: labels},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: secretNames}},
	}
	if _, err := a.cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		undo.run(a, progress)
		return nil, a.err(err, "create", "roles.rbac.authorization.k8s.io", ns, roleName)
	}
	undo.add("role "+roleName, func(ctx context.Context) error {
		return a.cs.RbacV1().Roles(ns).Delete(ctx, roleName, metav1.DeleteOptions{})
	})
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: roleName, Namespace: ns, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: roleName},
		Subjects:   subjects,
	}
	if _, err := a.cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		undo.run(a, progress)
		return nil, a.err(err, "create", "rolebindings.rbac.authorization.k8s.io", ns, roleName)
	}
	undo.add("rolebinding "+roleName, func(ctx context.Context) error {
		return a.cs.RbacV1().RoleBindings(ns).Delete(ctx, roleName, metav1.DeleteOptions{})
	})
	if err := a.declare(ctx, p, progress); err != nil {
		undo.run(a, progress)
		return nil, err
	}
	return p, nil
}

// prepare checks what every pool needs and returns the claimer subjects.
func (a *PoolAdmin) prepare(ctx context.Context, name string) ([]rbacv1.Subject, error) {
	if err := ValidatePoolName(name); err != nil {
		return nil, err
	}
	ns := a.opts.namespace
	_, err := a.cs.CoreV1().ConfigMaps(ns).Get(ctx, PoolConfigMapPrefix+name, metav1.GetOptions{})
	if err == nil {
		return nil, fmt.Errorf("pool %q already exists; delete it first with `kloop pool delete %s`", name, name)
	}
	if !apierrors.IsNotFound(err) {
		return nil, a.err(err, "get", "configmaps", ns, PoolConfigMapPrefix+name)
	}
	rb, err := a.cs.RbacV1().RoleBindings(ns).Get(ctx, ClaimersRoleBinding, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("RoleBinding %s/%s, which names who may claim, does not exist: apply deploy/claimer-rbac.yaml first", ns, ClaimersRoleBinding)
	}
	if err != nil {
		return nil, a.err(err, "get", "rolebindings.rbac.authorization.k8s.io", ns, ClaimersRoleBinding)
	}
	if len(rb.Subjects) == 0 {
		return nil, fmt.Errorf("RoleBinding %s/%s has no subjects: add the users, groups or service accounts who may claim", ns, ClaimersRoleBinding)
	}
	return rb.Subjects, nil
}

// declare writes the pool ConfigMap, last: until it exists no claimer sees
// the pool, so a half-created pool is never claimed from.
func (a *PoolAdmin) declare(ctx context.Context, p *Pool, progress func(string)) error {
	data, err := encodePool(p)
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: PoolConfigMapPrefix + p.Name, Namespace: a.opts.namespace,
			Labels: map[string]string{LabelPool: p.Name, LabelManaged: managedBy}},
		Data: map[string]string{PoolDataKey: data},
	}
	cm.Annotations = map[string]string{}
	if p.Default {
		cm.Annotations[AnnotationDefault] = "true"
	}
	if p.ResidentAgents {
		cm.Annotations[AnnotationResidentAgents] = "true"
	}
	if len(cm.Annotations) == 0 {
		cm.Annotations = nil
	}
	progress("declaring pool " + p.Name)
	if _, err := a.cs.CoreV1().ConfigMaps(a.opts.namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("pool %q was created by someone else meanwhile; nothing of ours was kept", p.Name)
		}
		return a.err(err, "create", "configmaps", a.opts.namespace, cm.Name)
	}
	return nil
}

// Delete deletes pool name: its declaration, leases, the namespaces and
// Secrets pool create made, and their RBAC. It refuses while slots are held
// unless force is set.
func (a *PoolAdmin) Delete(ctx context.Context, name string, force bool, progress func(string)) error {
	if progress == nil {
		progress = noProgress
	}
	if err := ValidatePoolName(name); err != nil {
		return err
	}
	if _, err := a.cat.pool(ctx, name); err != nil {
		return err
	}
	ns := a.opts.namespace
	if !force {
		status, err := a.List(ctx)
		if err != nil {
			return err
		}
		var held []string
		for _, ps := range status {
			if ps.Name != name {
				continue
			}
			for _, s := range ps.Slots {
				if !s.Free {
					held = append(held, fmt.Sprintf("%s by %s until %s", s.Name, s.Holder, s.Until.UTC().Format(time.RFC3339)))
				}
			}
		}
		if len(held) > 0 {
			return fmt.Errorf("pool %q has held slots (%s); wait for their release or delete anyway with --force", name, strings.Join(held, "; "))
		}
	}
	progress("removing pool declaration " + name)
	if err := a.cs.CoreV1().ConfigMaps(ns).Delete(ctx, PoolConfigMapPrefix+name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return a.err(err, "delete", "configmaps", ns, PoolConfigMapPrefix+name)
	}
	poolSel := metav1.ListOptions{LabelSelector: LabelPool + "=" + name}
	managedSel := metav1.ListOptions{LabelSelector: LabelPool + "=" + name + "," + LabelManaged + "=" + managedBy}
	if err := a.cs.CoordinationV1().Leases(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, poolSel); err != nil {
		return a.err(err, "deletecollection", "leases.coordination.k8s.io", ns, "")
	}
	if err := a.cs.CoreV1().Secrets(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, managedSel); err != nil {
		return a.err(err, "deletecollection", "secrets", ns, "")
	}
	if err := a.cs.RbacV1().RoleBindings(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, managedSel); err != nil {
		return a.err(err, "deletecollection", "rolebindings.rbac.authorization.k8s.io", ns, "")
	}
	if err := a.cs.RbacV1().Roles(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, managedSel); err != nil {
		return a.err(err, "deletecollection", "roles.rbac.authorization.k8s.io", ns, "")
	}
	nss, err := a.cs.CoreV1().Namespaces().List(ctx, managedSel)
	if err != nil {
		return a.err(err, "list", "namespaces", "", "")
	}
	for _, n := range nss.Items {
		progress("deleting namespace " + n.Name)
		if err := a.cs.CoreV1().Namespaces().Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return a.err(err, "delete", "namespaces", "", n.Name)
		}
	}
	return nil
}

// undoList rolls back a half-done pool creation, newest first.
type undoList []struct {
	what string
	fn   func(context.Context) error
}

func (u *undoList) add(what string, fn func(context.Context) error) {
	*u = append(*u, struct {
		what string
		fn   func(context.Context) error
	}{what, fn})
}

func (u undoList) run(a *PoolAdmin, progress func(string)) {
	// Rollback must happen even when the caller's context was cancelled.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := len(u) - 1; i >= 0; i-- {
		progress("rolling back: deleting " + u[i].what)
		if err := u[i].fn(ctx); err != nil && !apierrors.IsNotFound(err) {
			a.opts.logger.Warn("rollback of pool creation failed", "object", u[i].what, "err", err)
		}
	}
}
