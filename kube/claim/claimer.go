package claim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Defaults of the claimer's options.
const (
	// DefaultLeaseDuration is how long a slot stays held after its holder's
	// last renewal: a daemon that dies frees its slot within this (plus the
	// 2s clock margin). Renew every RenewInterval, a third of it, so that two
	// missed renewals in a row still keep the claim.
	DefaultLeaseDuration = 60 * time.Second
	// DefaultMaxClockSkew: beyond this difference between the local clock and
	// the apiserver's, Claim refuses with a ClockSkewError.
	DefaultMaxClockSkew = 5 * time.Minute
)

type options struct {
	namespace     string
	leaseDuration time.Duration
	clock         func() time.Time
	maxSkew       time.Duration
	logger        *slog.Logger
}

// Option configures a Claimer or PoolAdmin.
type Option func(*options)

// WithNamespace sets the system namespace holding pools and leases
// (default kloop-system).
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// WithLeaseDuration sets the lease duration of new claims, rounded up to a
// whole second (Lease stores seconds). Tests use a short one.
func WithLeaseDuration(d time.Duration) Option {
	return func(o *options) { o.leaseDuration = d }
}

// WithClock replaces the local clock (tests simulate a skewed machine).
func WithClock(now func() time.Time) Option { return func(o *options) { o.clock = now } }

// WithMaxClockSkew sets the largest tolerated local-vs-apiserver clock
// difference.
func WithMaxClockSkew(d time.Duration) Option { return func(o *options) { o.maxSkew = d } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

func buildOptions(opts []Option) options {
	o := options{
		namespace:     DefaultNamespace,
		leaseDuration: DefaultLeaseDuration,
		clock:         time.Now,
		maxSkew:       DefaultMaxClockSkew,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.leaseDuration < time.Second {
		o.leaseDuration = time.Second
	}
	if rem := o.leaseDuration % time.Second; rem != 0 {
		o.leaseDuration += time.Second - rem
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	return o
}

// Claimer claims, renews and releases slots of pools for one holder.
// It is safe for concurrent use, but a given *Claim must be used by one
// goroutine at a time (Renew and Release update it in place).
type Claimer struct {
	cfg    *rest.Config // as given: the basis of namespace-slot kubeconfigs
	cs     kubernetes.Interface
	cat    *catalog
	clock  *serverClock
	holder string
	opts   options
}

// NewClaimer returns a Claimer that talks to the cluster of cfg as holder
// (user@host; see kubeconfig.DefaultHolder). It makes no request yet.
func NewClaimer(cfg *rest.Config, holder string, opts ...Option) (*Claimer, error) {
	if cfg == nil {
		return nil, errors.New("new claimer: no cluster configuration")
	}
	if holder == "" {
		return nil, errors.New("new claimer: holder is empty; use user@host (kubeconfig.DefaultHolder())")
	}
	o := buildOptions(opts)
	clock := newServerClock(o.clock)
	wrapped := rest.CopyConfig(cfg)
	wrapped.Wrap(clock.wrap)
	// Claims come in bursts (a team's editors at 9am, 50 claimers in a
	// test); client-go's default of 5 QPS would queue them for seconds.
	wrapped.QPS, wrapped.Burst = 100, 200
	cs, err := kubernetes.NewForConfig(wrapped)
	if err != nil {
		return nil, fmt.Errorf("new claimer: client for %s: %w", cfg.Host, err)
	}
	return &Claimer{
		cfg:    cfg,
		cs:     cs,
		cat:    &catalog{cs: cs, namespace: o.namespace, host: cfg.Host},
		clock:  clock,
		holder: holder,
		opts:   o,
	}, nil
}

// Holder is the identity this claimer writes into leases.
func (c *Claimer) Holder() string { return c.holder }

// RenewInterval is how often the daemon should call Renew: a third of the
// lease duration.
func (c *Claimer) RenewInterval() time.Duration { return c.opts.leaseDuration / 3 }

// ServerNow is the apiserver's current time as estimated from the Date
// headers of responses so far (local time until the first response).
func (c *Claimer) ServerNow() time.Time { return c.clock.Now() }

// Claim is a held slot. The daemon persists it as JSON and may hand it back
// after a restart; unexported state is re-read from the cluster when missing.
type Claim struct {
	Pool string   `json:"pool"`
	Slot string   `json:"slot"`
	Kind SlotKind `json:"kind"`
	// Namespace is where the slot's workloads live: the slot namespace, or
	// the namespace of a kubeconfig slot's context.
	Namespace string `json:"namespace"`
	// Secret is the Secret of a kubeconfig slot in LeaseNamespace.
	Secret string `json:"secret,omitempty"`
	// Server is the API server URL of a kubeconfig slot.
	Server string `json:"server,omitempty"`
	Holder string `json:"holder"`
	// Until is the end of the claim; Renew refuses past it. Apiserver time.
	Until      time.Time `json:"until"`
	AcquiredAt time.Time `json:"acquiredAt"`
	RenewedAt  time.Time `json:"renewedAt"`
	// LeaseDuration: the slot frees itself this long after the last renewal.
	LeaseDuration  time.Duration `json:"leaseDuration"`
	LeaseNamespace string        `json:"leaseNamespace"`
	LeaseName      string        `json:"leaseName"`
	// PreviousHolder is set when the claim took over an expired lease (and
	// reset the slot the previous holder left).
	PreviousHolder string `json:"previousHolder,omitempty"`
	// ResidentAgents: the pool makes intercepts' agents resident.
	ResidentAgents bool `json:"residentAgents,omitempty"`

	lease *coordinationv1.Lease
}

func (c *Claimer) leases() leaseClient {
	return leaseClient{c.cs.CoordinationV1().Leases(c.opts.namespace), c}
}

type leaseClient struct {
	api interface {
		Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error)
		Create(ctx context.Context, l *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error)
		Update(ctx context.Context, l *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error)
		Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
	}
	c *Claimer
}

func (l leaseClient) err(err error, verb, name string) error {
	return apiError(err, l.c.cfg.Host, verb, "leases.coordination.k8s.io", l.c.opts.namespace, name)
}

func (c *Claimer) checkSkew() error {
	off, known := c.clock.Offset()
	if known && (off > c.opts.maxSkew || off < -c.opts.maxSkew) {
		return &ClockSkewError{Offset: off, Max: c.opts.maxSkew}
	}
	return nil
}

func noProgress(string) {}

// Claim claims a free slot of pool ("" = the default or only pool) for d,
// reporting long steps to progress (may be nil).
//
// A free slot is one without a Lease (created atomically; a concurrent
// claimer gets AlreadyExists and moves on) or with an expired one (taken over
// with a resourceVersion-checked update, then reset because its previous
// holder left it as it was). It fails with PoolNotFoundError, PoolFullError,
// AlreadyHoldingError, ForbiddenError, UnreachableError or ClockSkewError,
// and in every failure case holds nothing.
func (c *Claimer) Claim(ctx context.Context, pool string, d time.Duration, progress func(string)) (*Claim, error) {
	if progress == nil {
		progress = noProgress
	}
	if d <= 0 {
		return nil, fmt.Errorf("claim duration %s: must be positive (e.g. --for 8h)", d)
	}
	p, err := c.cat.pool(ctx, pool)
	if err != nil {
		return nil, err
	}
	if err := c.checkSkew(); err != nil {
		return nil, err
	}
	progress(fmt.Sprintf("looking for a free slot in pool %s", p.Name))
	// A slot can free up between listing and trying; a few rounds cover the
	// races of a busy pool without spinning forever on a full one.
	for round := 0; round < 3; round++ {
		leases, err := c.cat.leases(ctx, p.Name)
		if err != nil {
			return nil, err
		}
		now := c.clock.Now()
		bySlot := map[string]*coordinationv1.Lease{}
		for i := range leases {
			l := &leases[i]
			bySlot[l.Labels[LabelSlot]] = l
			if in := readLease(l); in.holder == c.holder && in.live(now) {
				if spec, ok := findSlot(p, l.Labels[LabelSlot]); ok {
					held, err := c.claimFromLease(ctx, p.Name, spec, l)
					if err != nil {
						return nil, err
					}
					return nil, &AlreadyHoldingError{Claim: held}
				}
			}
		}
		var free, expired []SlotSpec
		for _, s := range p.Slots {
			l := bySlot[s.Name]
			switch {
			case l == nil:
				free = append(free, s)
			case !readLease(l).live(now):
				expired = append(expired, s)
			}
		}
		// Spread concurrent claimers over the free slots instead of having
		// all of them race for the first one.
		rand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
		for _, s := range free {
			cl, err := c.create(ctx, p.Name, s, d)
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return nil, err
			}
			progress(fmt.Sprintf("claimed slot %s of pool %s", s.Name, p.Name))
			cl.ResidentAgents = p.ResidentAgents
			return cl, nil
		}
		for _, s := range expired {
			cl, err := c.takeOver(ctx, p.Name, s, bySlot[s.Name], d, progress)
			if errors.Is(err, errRaced) {
				continue
			}
			if err != nil {
				return nil, err
			}
			cl.ResidentAgents = p.ResidentAgents
			return cl, nil
		}
		if len(free)+len(expired) == 0 {
			return nil, c.fullError(p, leases, now)
		}
	}
	leases, err := c.cat.leases(ctx, p.Name)
	if err != nil {
		return nil, err
	}
	return nil, c.fullError(p, leases, c.clock.Now())
}

var errRaced = errors.New("another claimer got there first")

func findSlot(p *Pool, name string) (SlotSpec, bool) {
	for _, s := range p.Slots {
		if s.Name == name {
			return s, true
		}
	}
	return SlotSpec{}, false
}

func (c *Claimer) fullError(p *Pool, leases []coordinationv1.Lease, now time.Time) error {
	e := &PoolFullError{Pool: p.Name, Now: now}
	for i := range leases {
		in := readLease(&leases[i])
		if !in.live(now) {
			continue
		}
		e.Holders = append(e.Holders, SlotHolder{
			Slot: leases[i].Labels[LabelSlot], Holder: in.holder,
			Until: in.until, FreesAt: in.expiresAt(), Note: in.futureNote(now),
		})
	}
	sort.Slice(e.Holders, func(i, j int) bool { return e.Holders[i].Slot < e.Holders[j].Slot })
	return e
}

func (c *Claimer) newLeaseSpec(l *coordinationv1.Lease, now, until time.Time) {
	holder := c.holder
	secs := int32(c.opts.leaseDuration / time.Second)
	mt := metav1.NewMicroTime(now)
	l.Spec.HolderIdentity = &holder
	l.Spec.LeaseDurationSeconds = &secs
	l.Spec.AcquireTime = &mt
	l.Spec.RenewTime = &mt
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[AnnotationUntil] = until.UTC().Format(time.RFC3339Nano)
}

func (c *Claimer) create(ctx context.Context, pool string, s SlotSpec, d time.Duration) (*Claim, error) {
	now := c.clock.Now()
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
		Name:      leaseName(pool, s.Name),
		Namespace: c.opts.namespace,
		Labels:    map[string]string{LabelPool: pool, LabelSlot: s.Name},
	}}
	c.newLeaseSpec(l, now, now.Add(d))
	zero := int32(0)
	l.Spec.LeaseTransitions = &zero
	created, err := c.leases().api.Create(ctx, l, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	if err != nil {
		return nil, c.leases().err(err, "create", l.Name)
	}
	cl, err := c.claimFromLease(ctx, pool, s, created)
	if err != nil {
		// Holding a slot the caller cannot use helps nobody: give it back.
		c.deleteLease(context.WithoutCancel(ctx), created)
		return nil, err
	}
	c.opts.logger.Info("claimed slot", "pool", pool, "slot", s.Name, "holder", c.holder)
	return cl, nil
}

func (c *Claimer) takeOver(ctx context.Context, pool string, s SlotSpec, old *coordinationv1.Lease, d time.Duration, progress func(string)) (*Claim, error) {
	prev := readLease(old)
	now := c.clock.Now()
	l := old.DeepCopy()
	c.newLeaseSpec(l, now, now.Add(d))
	transitions := prev.transits + 1
	l.Spec.LeaseTransitions = &transitions
	if l.Labels == nil {
		l.Labels = map[string]string{}
	}
	l.Labels[LabelPool], l.Labels[LabelSlot] = pool, s.Name
	// The update carries old's resourceVersion: if anyone renewed or took
	// over the lease since we read it, the apiserver refuses with Conflict.
	updated, err := c.leases().api.Update(ctx, l, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil, errRaced
	}
	if err != nil {
		return nil, c.leases().err(err, "update", l.Name)
	}
	cl, err := c.claimFromLease(ctx, pool, s, updated)
	if err == nil {
		cl.PreviousHolder = prev.holder
		progress(fmt.Sprintf("took over slot %s of pool %s from %s (lease expired); resetting it", s.Name, pool, prev.holder))
		err = c.reset(ctx, cl, progress)
	}
	if err != nil {
		// Leave the lease expired rather than deleted: a missing lease means
		// "clean and free", an expired one makes the next claimer reset.
		c.expire(context.WithoutCancel(ctx), cl, updated)
		return nil, fmt.Errorf("take over slot %s of pool %s: %w", s.Name, pool, err)
	}
	c.opts.logger.Info("took over expired slot", "pool", pool, "slot", s.Name, "holder", c.holder, "previous", prev.holder)
	return cl, nil
}

// expire marks a lease we hold as ended so that the next claimer takes it
// over (and resets the slot).
func (c *Claimer) expire(ctx context.Context, cl *Claim, l *coordinationv1.Lease) {
	if cl != nil && cl.lease != nil {
		l = cl.lease
	}
	l = l.DeepCopy()
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[AnnotationUntil] = c.clock.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano)
	if _, err := c.leases().api.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		c.opts.logger.Warn("could not mark lease expired; it lapses by itself", "lease", l.Name, "err", err)
	}
}

func (c *Claimer) deleteLease(ctx context.Context, l *coordinationv1.Lease) error {
	err := c.leases().api.Delete(ctx, l.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &l.UID, ResourceVersion: &l.ResourceVersion}})
	if err != nil && !apierrors.IsNotFound(err) {
		return c.leases().err(err, "delete", l.Name)
	}
	return nil
}

func (c *Claimer) claimFromLease(ctx context.Context, pool string, s SlotSpec, l *coordinationv1.Lease) (*Claim, error) {
	in := readLease(l)
	cl := &Claim{
		Pool: pool, Slot: s.Name, Kind: s.Kind, Namespace: s.Namespace, Secret: s.Secret, Server: s.Server,
		Holder: in.holder, Until: in.until, AcquiredAt: in.acquired, RenewedAt: in.renewed,
		LeaseDuration: in.duration, LeaseNamespace: l.Namespace, LeaseName: l.Name, lease: l,
	}
	if s.Kind == KindKubeconfig {
		t, err := c.target(ctx, cl)
		if err != nil {
			return nil, err
		}
		cl.Namespace = t.namespace()
	}
	return cl, nil
}

func (c *Claimer) target(ctx context.Context, cl *Claim) (target, error) {
	switch cl.Kind {
	case KindNamespace:
		return &namespaceTarget{cfg: c.cfg, ns: cl.Namespace, ctx: "kloop-" + cl.Pool + "-" + cl.Slot}, nil
	case KindKubeconfig:
		sec, err := c.cs.CoreV1().Secrets(c.opts.namespace).Get(ctx, cl.Secret, metav1.GetOptions{})
		if err != nil {
			return nil, apiError(err, c.cfg.Host, "get", "secrets", c.opts.namespace, cl.Secret)
		}
		return newKubeconfigTarget(sec.Data[KubeconfigSecretKey], "secret "+c.opts.namespace+"/"+cl.Secret)
	default:
		return nil, fmt.Errorf("slot %s of pool %s: %w %q (this kloop knows %q and %q)", cl.Slot, cl.Pool, errNoTarget, cl.Kind, KindNamespace, KindKubeconfig)
	}
}

// Kubeconfig returns a kubeconfig whose current context targets the slot:
// for a namespace slot the claimer's cluster and credentials with the slot
// as the context's namespace, for a kubeconfig slot the stored kubeconfig.
// It holds credentials: write it with WriteKubeconfig (mode 0600).
func (c *Claimer) Kubeconfig(ctx context.Context, cl *Claim) ([]byte, error) {
	t, err := c.target(ctx, cl)
	if err != nil {
		return nil, err
	}
	return t.kubeconfig(ctx)
}

// Renew extends the lease of cl by a lease duration from now. The daemon
// calls it every RenewInterval while it runs. It returns an error matching
// ErrClaimEnded once cl.Until has passed (the daemon should then Release),
// and ErrClaimLost when the lease is gone or someone else holds it (the
// claim expired while nobody renewed it and was taken over).
func (c *Claimer) Renew(ctx context.Context, cl *Claim) error {
	if cl.lease == nil {
		if err := c.refresh(ctx, cl); err != nil {
			return err
		}
	}
	if now := c.clock.Now(); !now.Before(cl.Until) {
		return fmt.Errorf("%w: claim of slot %s in pool %s ended at %s; release it", ErrClaimEnded, cl.Slot, cl.Pool, cl.Until.UTC().Format(time.RFC3339))
	}
	return c.touch(ctx, cl)
}

// refresh re-reads cl's lease and checks that c still holds it.
func (c *Claimer) refresh(ctx context.Context, cl *Claim) error {
	l, err := c.leases().api.Get(ctx, cl.LeaseName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: slot %s of pool %s has no lease any more (released or pool deleted)", ErrClaimLost, cl.Slot, cl.Pool)
	}
	if err != nil {
		return c.leases().err(err, "get", cl.LeaseName)
	}
	in := readLease(l)
	if in.holder != c.holder {
		return fmt.Errorf("%w: %w", ErrClaimLost, &HeldByOtherError{Pool: cl.Pool, Slot: cl.Slot, Holder: in.holder, You: c.holder, Until: in.until})
	}
	cl.lease, cl.Until, cl.RenewedAt = l, in.until, in.renewed
	return nil
}

// touch sets the renew time of cl's lease to now, with the usual
// resourceVersion check; on a conflict it re-reads and retries while the
// lease is still ours.
func (c *Claimer) touch(ctx context.Context, cl *Claim) error {
	for attempt := 0; ; attempt++ {
		l := cl.lease.DeepCopy()
		now := metav1.NewMicroTime(c.clock.Now())
		l.Spec.RenewTime = &now
		updated, err := c.leases().api.Update(ctx, l, metav1.UpdateOptions{})
		if err == nil {
			cl.lease, cl.RenewedAt = updated, now.Time
			return nil
		}
		if (apierrors.IsConflict(err) || apierrors.IsNotFound(err)) && attempt < 3 {
			if err := c.refresh(ctx, cl); err != nil {
				return err
			}
			continue
		}
		if apierrors.IsNotFound(err) {
			return c.refresh(ctx, cl)
		}
		return c.leases().err(err, "update", l.Name)
	}
}

// keepAlive renews cl in the background during long steps whatever the
// claim's end, so a short lease does not lapse mid-reset. stop waits for
// the renewer to finish, after which cl is safe to use again.
func (c *Claimer) keepAlive(ctx context.Context, cl *Claim) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(c.opts.leaseDuration / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := c.touch(ctx, cl); err != nil && ctx.Err() == nil {
					c.opts.logger.Warn("renew during reset failed", "slot", cl.Slot, "err", err)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (c *Claimer) reset(ctx context.Context, cl *Claim, progress func(string)) error {
	t, err := c.target(ctx, cl)
	if err != nil {
		return err
	}
	cfg, err := t.restConfig(ctx)
	if err != nil {
		return err
	}
	progress(fmt.Sprintf("resetting namespace %s", t.namespace()))
	stop := c.keepAlive(ctx, cl)
	err = resetNamespace(ctx, cfg, t.namespace(), progress)
	stop()
	return err
}

// Release resets the slot (every workload, service, configmap, secret and
// intercept left in its namespace is deleted and gone) and then deletes the
// lease, so the slot is claimable at once. It fails with HeldByOtherError
// (nothing changed) if someone else holds the slot, and ErrNotHeld if the
// lease is already gone. If the reset fails the claim stays held: retry.
func (c *Claimer) Release(ctx context.Context, cl *Claim, progress func(string)) error {
	if progress == nil {
		progress = noProgress
	}
	l, err := c.leases().api.Get(ctx, cl.LeaseName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: slot %s of pool %s has no lease; nothing to release", ErrNotHeld, cl.Slot, cl.Pool)
	}
	if err != nil {
		return c.leases().err(err, "get", cl.LeaseName)
	}
	if in := readLease(l); in.holder != c.holder {
		return &HeldByOtherError{Pool: cl.Pool, Slot: cl.Slot, Holder: in.holder, You: c.holder, Until: in.until}
	}
	cl.lease = l
	// A fresh renewal gives the reset a whole lease duration during which no
	// one can take the slot over.
	if err := c.touch(ctx, cl); err != nil {
		return fmt.Errorf("release slot %s of pool %s: %w", cl.Slot, cl.Pool, err)
	}
	if err := c.reset(ctx, cl, progress); err != nil {
		return fmt.Errorf("release slot %s of pool %s: %w; the slot is still yours, retry the release", cl.Slot, cl.Pool, err)
	}
	progress(fmt.Sprintf("freeing slot %s of pool %s", cl.Slot, cl.Pool))
	if err := c.deleteLease(ctx, cl.lease); err != nil {
		if apierrors.IsConflict(err) {
			// Renewed in between by ourselves: re-read and delete that.
			if rerr := c.refresh(ctx, cl); rerr != nil {
				return rerr
			}
			err = c.deleteLease(ctx, cl.lease)
		}
		if err != nil {
			return fmt.Errorf("release slot %s of pool %s: %w", cl.Slot, cl.Pool, err)
		}
	}
	c.opts.logger.Info("released slot", "pool", cl.Pool, "slot", cl.Slot, "holder", c.holder)
	return nil
}

// Find returns the claim c's holder has in pool ("" = any pool), for a
// daemon that restarts and re-adopts its claim. A claim whose lease lapsed
// while nobody renewed it but that no one took over is still returned:
// Renew revives it (or reports ErrClaimEnded past its end). It returns an
// error matching ErrNotHeld when the holder has no lease.
func (c *Claimer) Find(ctx context.Context, pool string) (*Claim, error) {
	leases, err := c.cat.leases(ctx, pool)
	if err != nil {
		return nil, err
	}
	now := c.clock.Now()
	var best *coordinationv1.Lease
	for i := range leases {
		l := &leases[i]
		in := readLease(l)
		if in.holder != c.holder {
			continue
		}
		if best == nil || (in.live(now) && !readLease(best).live(now)) {
			best = l
		}
	}
	if best == nil {
		where := "any pool"
		if pool != "" {
			where = "pool " + pool
		}
		return nil, fmt.Errorf("%w: %s holds no slot in %s", ErrNotHeld, c.holder, where)
	}
	p, err := c.cat.pool(ctx, best.Labels[LabelPool])
	if err != nil {
		return nil, err
	}
	spec, ok := findSlot(p, best.Labels[LabelSlot])
	if !ok {
		return nil, fmt.Errorf("%w: lease %s names slot %s, which pool %s no longer declares", ErrClaimLost, best.Name, best.Labels[LabelSlot], p.Name)
	}
	return c.claimFromLease(ctx, p.Name, spec, best)
}

// Pools lists the pools with each slot's holder, judged by the apiserver's
// clock.
func (c *Claimer) Pools(ctx context.Context) ([]PoolStatus, error) {
	return c.cat.status(ctx, c.clock.Now)
}
