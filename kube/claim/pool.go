package claim

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
)

// Names and labels shared with the manifests in deploy/.
const (
	// DefaultNamespace holds pool declarations, kubeconfig slot Secrets and
	// the claim Leases.
	DefaultNamespace = "kloop-system"
	// LabelPool marks every object that belongs to a pool, value = pool name.
	LabelPool = "kloop.dev/pool"
	// LabelSlot marks slot namespaces, slot Secrets and claim Leases.
	LabelSlot = "kloop.dev/slot"
	// LabelManaged marks objects `kloop pool create` made, which `pool delete`
	// may remove.
	LabelManaged = "kloop.dev/managed-by"
	// AnnotationUntil on a Lease: the end of the claim, RFC 3339, apiserver time.
	AnnotationUntil = "kloop.dev/until"
	// AnnotationDefault on a pool ConfigMap: "true" makes it the pool used when
	// none is named.
	AnnotationDefault = "kloop.dev/default"
	// AnnotationResidentAgents on a pool ConfigMap: "true" makes the
	// traffic agent an intercept injects in the pool's slots resident (it
	// stays, dormant, after the last leave, as kloop agent install does),
	// so intercepts after the first restart no pod. An annotation, not a
	// field of the pool's data, so kloops that predate it still read it.
	AnnotationResidentAgents = "kloop.dev/resident-agents"
	// PoolConfigMapPrefix + pool name is the pool's ConfigMap.
	PoolConfigMapPrefix = "kloop-pool-"
	// PoolDataKey is the ConfigMap key holding the pool's YAML.
	PoolDataKey = "pool.yaml"
	// KubeconfigSecretKey is the Secret key holding a kubeconfig slot.
	KubeconfigSecretKey = "kubeconfig"
	// ClaimersRoleBinding in the system namespace names who may claim; pool
	// create copies its subjects into each slot's RoleBinding.
	ClaimersRoleBinding = "kloop-claimers"
	// SlotClusterRole is what a claimer may do inside a slot namespace.
	SlotClusterRole = "kloop-claimer-slot"

	managedBy = "kloop"
	// maxPoolName leaves room for "-NNN" slot suffixes within a DNS label.
	maxPoolName = 40
)

// SlotKind says what a slot is. New kinds implement the target interface.
type SlotKind string

const (
	// KindNamespace: a namespace of the cluster the pool is declared in.
	KindNamespace SlotKind = "namespace"
	// KindKubeconfig: another cluster, reached with a kubeconfig stored in a
	// Secret of the system namespace.
	KindKubeconfig SlotKind = "kubeconfig"
)

// SlotSpec declares one slot. It is the schema of pool.yaml's slots list.
type SlotSpec struct {
	Name string   `yaml:"name" json:"name"`
	Kind SlotKind `yaml:"kind" json:"kind"`
	// Namespace is the slot namespace of a namespace slot.
	Namespace string `yaml:"namespace,omitempty" json:"namespace,omitempty"`
	// Secret names the Secret (system namespace, key "kubeconfig") of a
	// kubeconfig slot.
	Secret string `yaml:"secret,omitempty" json:"secret,omitempty"`
	// Server is the API server URL of a kubeconfig slot, for display only.
	Server string `yaml:"server,omitempty" json:"server,omitempty"`
}

// Pool is a declared pool.
type Pool struct {
	Name    string `json:"name"`
	Default bool   `json:"default,omitempty"`
	// ResidentAgents: intercepts in the pool's slots leave the agent
	// resident (AnnotationResidentAgents).
	ResidentAgents bool       `json:"residentAgents,omitempty"`
	Slots          []SlotSpec `json:"slots"`
}

type poolFile struct {
	Slots []SlotSpec `yaml:"slots"`
}

// ValidatePoolName says what is wrong with a pool name, or nil.
func ValidatePoolName(name string) error {
	if name == "" {
		return fmt.Errorf("pool name is empty")
	}
	if len(name) > maxPoolName {
		return fmt.Errorf("pool name %q is %d characters; at most %d are allowed", name, len(name), maxPoolName)
	}
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return fmt.Errorf("pool name %q is invalid: %s", name, strings.Join(errs, "; "))
	}
	return nil
}

func parsePool(cm *corev1.ConfigMap) (*Pool, error) {
	name := cm.Labels[LabelPool]
	var f poolFile
	dec := yaml.NewDecoder(strings.NewReader(cm.Data[PoolDataKey]))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("pool %q: ConfigMap %s key %s: %w", name, cm.Name, PoolDataKey, err)
	}
	seen := map[string]bool{}
	for i, s := range f.Slots {
		if errs := validation.IsDNS1123Label(s.Name); len(errs) > 0 {
			return nil, fmt.Errorf("pool %q: slot %d: name %q: %s", name, i+1, s.Name, strings.Join(errs, "; "))
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("pool %q: slot name %q appears twice", name, s.Name)
		}
		seen[s.Name] = true
		switch s.Kind {
		case KindNamespace:
			if s.Namespace == "" {
				return nil, fmt.Errorf("pool %q: slot %q: kind namespace needs a namespace", name, s.Name)
			}
		case KindKubeconfig:
			if s.Secret == "" {
				return nil, fmt.Errorf("pool %q: slot %q: kind kubeconfig needs a secret", name, s.Name)
			}
		default:
			return nil, fmt.Errorf("pool %q: slot %q: kind %q is unknown; use %q or %q", name, s.Name, s.Kind, KindNamespace, KindKubeconfig)
		}
	}
	if len(f.Slots) == 0 {
		return nil, fmt.Errorf("pool %q: ConfigMap %s declares no slots", name, cm.Name)
	}
	return &Pool{Name: name, Default: cm.Annotations[AnnotationDefault] == "true",
		ResidentAgents: cm.Annotations[AnnotationResidentAgents] == "true", Slots: f.Slots}, nil
}

func encodePool(p *Pool) (string, error) {
	out, err := yaml.Marshal(poolFile{Slots: p.Slots})
	if err != nil {
		return "", fmt.Errorf("encode pool %q: %w", p.Name, err)
	}
	return string(out), nil
}

// leaseName is the Lease of one slot. Dots cannot occur in pool or slot names
// (DNS labels), so the name is unambiguous.
func leaseName(pool, slot string) string { return pool + "." + slot }

// catalog reads pools and leases of one system namespace.
type catalog struct {
	cs        kubernetes.Interface
	namespace string
	host      string
}

func (c *catalog) err(err error, verb, resource, name string) error {
	return apiError(err, c.host, verb, resource, c.namespace, name)
}

func (c *catalog) listPools(ctx context.Context) ([]*Pool, error) {
	list, err := c.cs.CoreV1().ConfigMaps(c.namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelPool})
	if err != nil {
		return nil, c.err(err, "list", "configmaps", "")
	}
	var pools []*Pool
	for i := range list.Items {
		cm := &list.Items[i]
		if !strings.HasPrefix(cm.Name, PoolConfigMapPrefix) {
			continue
		}
		p, err := parsePool(cm)
		if err != nil {
			return nil, err
		}
		pools = append(pools, p)
	}
	sort.Slice(pools, func(i, j int) bool { return pools[i].Name < pools[j].Name })
	return pools, nil
}

// pool returns the named pool. "" (no --pool, no claim.pool in .kloop.yaml)
// picks the pool marked default (`kloop pool create NAME --default`), else
// the only pool, else a pool named "default".
func (c *catalog) pool(ctx context.Context, name string) (*Pool, error) {
	if name != "" {
		if err := ValidatePoolName(name); err != nil {
			return nil, err
		}
		cm, err := c.cs.CoreV1().ConfigMaps(c.namespace).Get(ctx, PoolConfigMapPrefix+name, metav1.GetOptions{})
		if err == nil && cm.Labels[LabelPool] == name {
			return parsePool(cm)
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, c.err(err, "get", "configmaps", PoolConfigMapPrefix+name)
		}
	}
	pools, err := c.listPools(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	var defaults []*Pool
	for _, p := range pools {
		names = append(names, p.Name)
		if p.Default {
			defaults = append(defaults, p)
		}
	}
	var marked []string
	for _, p := range defaults {
		marked = append(marked, p.Name)
	}
	if name == "" {
		switch {
		case len(defaults) == 1:
			return defaults[0], nil
		case len(defaults) > 1:
			return nil, &PoolNotFoundError{Namespace: c.namespace, Available: names, Defaults: marked}
		case len(pools) == 1:
			return pools[0], nil
		}
		for _, p := range pools {
			if p.Name == "default" {
				return p, nil
			}
		}
	}
	return nil, &PoolNotFoundError{Pool: name, Namespace: c.namespace, Available: names}
}

func (c *catalog) leases(ctx context.Context, pool string) ([]coordinationv1.Lease, error) {
	sel := LabelPool
	if pool != "" {
		sel = LabelPool + "=" + pool
	}
	list, err := c.cs.CoordinationV1().Leases(c.namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, c.err(err, "list", "leases.coordination.k8s.io", "")
	}
	return list.Items, nil
}

// PoolStatus is a pool with the state of each slot, as `kloop pool list`
// shows it.
type PoolStatus struct {
	Name           string       `json:"name"`
	Default        bool         `json:"default,omitempty"`
	ResidentAgents bool         `json:"residentAgents,omitempty"`
	Slots          []SlotStatus `json:"slots"`
}

// SlotStatus is one slot and its holder, if any.
type SlotStatus struct {
	Name string   `json:"name"`
	Kind SlotKind `json:"kind"`
	// Target is the namespace, or the server URL of a kubeconfig slot.
	Target string `json:"target"`
	Free   bool   `json:"free"`
	Holder string `json:"holder,omitempty"`
	// Until is the end of the holder's claim.
	Until *time.Time `json:"until,omitempty"`
	// ExpiresAt is when the lease lapses if its holder stops renewing.
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// status judges leases at now(), called after the lists so that the server
// clock estimate has a fresh sample.
func (c *catalog) status(ctx context.Context, nowFn func() time.Time) ([]PoolStatus, error) {
	pools, err := c.listPools(ctx)
	if err != nil {
		return nil, err
	}
	leases, err := c.leases(ctx, "")
	if err != nil {
		return nil, err
	}
	now := nowFn()
	byName := map[string]*coordinationv1.Lease{}
	for i := range leases {
		byName[leases[i].Name] = &leases[i]
	}
	out := make([]PoolStatus, 0, len(pools))
	for _, p := range pools {
		ps := PoolStatus{Name: p.Name, Default: p.Default, ResidentAgents: p.ResidentAgents}
		for _, s := range p.Slots {
			st := SlotStatus{Name: s.Name, Kind: s.Kind, Target: s.Namespace, Free: true}
			if s.Kind == KindKubeconfig {
				st.Target = s.Server
			}
			if l := byName[leaseName(p.Name, s.Name)]; l != nil {
				info := readLease(l)
				if info.live(now) {
					until, exp := info.until, info.expiresAt()
					st.Free, st.Holder, st.Until, st.ExpiresAt = false, info.holder, &until, &exp
				}
			}
			ps.Slots = append(ps.Slots, st)
		}
		out = append(out, ps)
	}
	return out, nil
}

// leaseInfo is what this package reads from a Lease.
type leaseInfo struct {
	holder    string
	renewed   time.Time
	acquired  time.Time
	duration  time.Duration
	until     time.Time
	untilBad  bool
	transits  int32
	resVer    string
	timesSeen bool
}

func readLease(l *coordinationv1.Lease) leaseInfo {
	var in leaseInfo
	if l.Spec.HolderIdentity != nil {
		in.holder = *l.Spec.HolderIdentity
	}
	if l.Spec.RenewTime != nil {
		in.renewed = l.Spec.RenewTime.Time
		in.timesSeen = true
	} else if l.Spec.AcquireTime != nil {
		in.renewed = l.Spec.AcquireTime.Time
		in.timesSeen = true
	}
	if l.Spec.AcquireTime != nil {
		in.acquired = l.Spec.AcquireTime.Time
	}
	if l.Spec.LeaseDurationSeconds != nil {
		in.duration = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	if l.Spec.LeaseTransitions != nil {
		in.transits = *l.Spec.LeaseTransitions
	}
	if u, ok := l.Annotations[AnnotationUntil]; ok {
		t, err := time.Parse(time.RFC3339Nano, u)
		if err != nil {
			in.untilBad = true
		} else {
			in.until = t
		}
	}
	in.resVer = l.ResourceVersion
	return in
}

// expiresAt is when the lease lapses unless renewed, in apiserver time.
func (in leaseInfo) expiresAt() time.Time {
	exp := in.renewed.Add(in.duration)
	if !in.until.IsZero() && in.until.Before(exp) {
		exp = in.until
	}
	return exp
}

// live says whether the lease still holds its slot at server time now. A
// lease with no holder, or whose times cannot be read, holds nothing; a live
// holder never writes such a lease.
func (in leaseInfo) live(now time.Time) bool {
	if in.holder == "" || !in.timesSeen || in.duration <= 0 || in.untilBad {
		return false
	}
	return now.Before(in.expiresAt().Add(clockMargin))
}

// futureNote explains a renew time ahead of the apiserver's clock: its
// writer did not use the server's time basis (not kloop, or a broken clock),
// so the slot stays held until its time passes on the server's clock.
func (in leaseInfo) futureNote(now time.Time) string {
	if ahead := in.renewed.Sub(now); ahead > clockMargin {
		return fmt.Sprintf("renewed %s ahead of the apiserver's clock: the holder's clock is skewed", roundDur(ahead))
	}
	return ""
}
