package claim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Sentinel errors. Every error this package returns for one of the listed
// conditions matches its sentinel with errors.Is, and carries the details in a
// typed error reachable with errors.As.
var (
	ErrPoolNotFound   = errors.New("pool not found")
	ErrPoolFull       = errors.New("pool full")
	ErrForbidden      = errors.New("forbidden")
	ErrUnreachable    = errors.New("cluster unreachable")
	ErrAlreadyHolding = errors.New("already holding a claim")
	ErrHeldByOther    = errors.New("slot held by someone else")
	ErrNotHeld        = errors.New("claim not held")
	ErrClaimEnded     = errors.New("claim ended")
	ErrClaimLost      = errors.New("claim lost")
	ErrClockSkew      = errors.New("clock skew")
)

// PoolNotFoundError: the pool named is not declared in the system namespace.
// With no pool named it means no pool could be the default: none marked
// default among several, or (Defaults) more than one marked.
type PoolNotFoundError struct {
	Pool      string
	Namespace string
	Available []string
	// Defaults lists the pools marked default when more than one is.
	Defaults []string
}

func (e *PoolNotFoundError) Error() string {
	if len(e.Available) == 0 {
		what := "no pool to claim from"
		if e.Pool != "" {
			what = fmt.Sprintf("pool %q not found", e.Pool)
		}
		return what + ": no pools exist in namespace " + e.Namespace + "; a cluster admin creates one with `kloop pool create NAME --namespaces N --default`"
	}
	avail := "available pools: " + strings.Join(e.Available, ", ")
	switch {
	case e.Pool != "":
		return fmt.Sprintf("pool %q not found in namespace %s; %s (choose one with --pool)", e.Pool, e.Namespace, avail)
	case len(e.Defaults) > 1:
		return fmt.Sprintf("no --pool given and pools %s are all marked default; %s: choose one with --pool or claim.pool in .kloop.yaml (a cluster admin keeps one default: `kubectl -n %s annotate configmap %s%s %s-`)",
			strings.Join(e.Defaults, ", "), avail, e.Namespace, PoolConfigMapPrefix, e.Defaults[1], AnnotationDefault)
	default:
		return "no --pool given and no pool is marked default; " + avail + ": choose one with --pool or claim.pool in .kloop.yaml (a cluster admin marks one default: `kubectl -n " + e.Namespace + " annotate configmap " + PoolConfigMapPrefix + "NAME " + AnnotationDefault + "=true`)"
	}
}

func (e *PoolNotFoundError) Is(target error) bool { return target == ErrPoolNotFound }

// SlotHolder describes who holds a slot and when it frees.
type SlotHolder struct {
	Slot   string
	Holder string
	// Until is the end of the claim the holder asked for.
	Until time.Time
	// FreesAt is when the slot becomes claimable at the latest: the earlier of
	// Until and the lease expiry if the holder stops renewing now.
	FreesAt time.Time
	// Note explains anything unusual, such as a renew time in the future.
	Note string
}

// PoolFullError: every slot of the pool is held.
type PoolFullError struct {
	Pool    string
	Holders []SlotHolder
	// Now is the apiserver's time the holders were judged against.
	Now time.Time
}

func (e *PoolFullError) Error() string {
	hs := append([]SlotHolder(nil), e.Holders...)
	sort.Slice(hs, func(i, j int) bool { return hs[i].Until.Before(hs[j].Until) })
	var b strings.Builder
	fmt.Fprintf(&b, "pool %q is full (%d slots):", e.Pool, len(hs))
	for _, h := range hs {
		fmt.Fprintf(&b, " %s held by %s until %s (in %s)", h.Slot, h.Holder,
			h.Until.UTC().Format(time.RFC3339), roundDur(h.Until.Sub(e.Now)))
		if h.Note != "" {
			fmt.Fprintf(&b, " [%s]", h.Note)
		}
		b.WriteString(";")
	}
	b.WriteString(" try again later, or ask a holder to `kloop release`")
	return b.String()
}

func (e *PoolFullError) Is(target error) bool { return target == ErrPoolFull }

// ForbiddenError: the apiserver refused a request because of RBAC.
type ForbiddenError struct {
	Verb      string
	Resource  string // e.g. "leases.coordination.k8s.io"
	Namespace string
	Name      string
	// Message is the apiserver's own message, which names the user.
	Message string
}

func (e *ForbiddenError) Error() string {
	where := ""
	if e.Namespace != "" {
		where = " in namespace " + e.Namespace
	}
	name := ""
	if e.Name != "" {
		name = " " + e.Name
	}
	return fmt.Sprintf("forbidden: cannot %s %s%s%s (%s); a cluster admin grants what claimers need with deploy/claimer-rbac.yaml and `kloop pool create`",
		e.Verb, e.Resource, name, where, e.Message)
}

func (e *ForbiddenError) Is(target error) bool { return target == ErrForbidden }

// UnreachableError: no answer from the apiserver.
type UnreachableError struct {
	Host string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the cluster at %s: %v; check the kubeconfig context and that the cluster is up", e.Host, e.Err)
}

func (e *UnreachableError) Is(target error) bool { return target == ErrUnreachable }
func (e *UnreachableError) Unwrap() error        { return e.Err }

// AlreadyHoldingError: the holder already holds a live claim in the pool.
type AlreadyHoldingError struct{ Claim *Claim }

func (e *AlreadyHoldingError) Error() string {
	return fmt.Sprintf("%s already holds slot %s of pool %q until %s; release it first with `kloop release`",
		e.Claim.Holder, e.Claim.Slot, e.Claim.Pool, e.Claim.Until.UTC().Format(time.RFC3339))
}

func (e *AlreadyHoldingError) Is(target error) bool { return target == ErrAlreadyHolding }

// HeldByOtherError: the slot's lease names a different holder.
type HeldByOtherError struct {
	Pool, Slot string
	Holder     string // the actual holder
	You        string
	Until      time.Time
}

func (e *HeldByOtherError) Error() string {
	return fmt.Sprintf("slot %s of pool %q is held by %s until %s, not by %s; nothing was changed",
		e.Slot, e.Pool, e.Holder, e.Until.UTC().Format(time.RFC3339), e.You)
}

func (e *HeldByOtherError) Is(target error) bool { return target == ErrHeldByOther }

// ClockSkewError: this machine's clock is too far from the apiserver's.
type ClockSkewError struct {
	// Offset is server time minus local time.
	Offset time.Duration
	Max    time.Duration
}

func (e *ClockSkewError) Error() string {
	dir := "behind"
	off := e.Offset
	if off < 0 {
		dir, off = "ahead of", -off
	}
	return fmt.Sprintf("this machine's clock is %s %s the apiserver's (more than the %s kloop tolerates); leases use the apiserver's clock, but tokens and certificates break with such skew: sync the clock (e.g. `timedatectl set-ntp true`)",
		roundDur(off), dir, e.Max)
}

func (e *ClockSkewError) Is(target error) bool { return target == ErrClockSkew }

func roundDur(d time.Duration) time.Duration {
	if d > time.Minute || d < -time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

// apiError turns a client-go error into one of this package's errors where it
// is one of the conditions users must be told about clearly, and otherwise
// wraps it with what was being done.
func apiError(err error, host, verb, resource, namespace, name string) error {
	if err == nil {
		return nil
	}
	if apierrors.IsForbidden(err) {
		fe := &ForbiddenError{Verb: verb, Resource: resource, Namespace: namespace, Name: name, Message: err.Error()}
		var status apierrors.APIStatus
		if errors.As(err, &status) {
			if d := status.Status().Details; d != nil && d.Kind != "" {
				fe.Resource = d.Kind
				if d.Group != "" {
					fe.Resource += "." + d.Group
				}
			}
			fe.Message = status.Status().Message
		}
		return fe
	}
	if isUnreachable(err) {
		return &UnreachableError{Host: host, Err: err}
	}
	target := resource
	if name != "" {
		target += " " + name
	}
	if namespace != "" {
		target += " in " + namespace
	}
	return fmt.Errorf("%s %s: %w", verb, target, err)
}

func isUnreachable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return false
	}
	var netErr net.Error
	var urlErr *url.Error
	return errors.As(err, &netErr) || errors.As(err, &urlErr)
}
