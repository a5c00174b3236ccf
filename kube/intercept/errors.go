package intercept

import (
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/kloop/kloop/kube/access"
	"github.com/kloop/kloop/kube/workload"
)

// Sentinel errors. Each error this package returns for one of these
// conditions matches its sentinel with errors.Is and carries the details in
// a typed error (errors.As).
var (
	ErrNoWorkload       = errors.New("no such workload")
	ErrNoPort           = errors.New("no such port")
	ErrNoService        = errors.New("no service routes to the port")
	ErrSelectorNoPod    = errors.New("service selector matches no pod")
	ErrPodNotReady      = errors.New("pod never became ready")
	ErrForbidden        = errors.New("forbidden")
	ErrInterceptedOther = errors.New("intercepted by someone else")
	ErrNotIntercepted   = errors.New("not intercepted")
	ErrUnsupported      = errors.New("unsupported workload")
	ErrSharedService    = errors.New("service shared with another workload")
	ErrRestoreConflict  = errors.New("edited since the intercept")
)

// NoWorkloadError: the workload does not exist in the namespace.
type NoWorkloadError struct {
	Workload  workload.Workload
	Namespace string
	// Available lists the workloads of that kind in the namespace.
	Available []string
}

func (e *NoWorkloadError) Error() string {
	msg := fmt.Sprintf("%s not found in namespace %s", e.Workload, e.Namespace)
	if len(e.Available) == 0 {
		return msg + fmt.Sprintf("; the namespace has no %ss", e.Workload.Kind)
	}
	return msg + "; it has " + strings.Join(e.Available, ", ")
}

func (e *NoWorkloadError) Is(target error) bool { return target == ErrNoWorkload }

// NoPortError: the port asked for is not a port of the container.
type NoPortError struct {
	Workload  workload.Workload
	Container string
	Port      string
	// Available lists the container's ports as NAME PORT/PROTO.
	Available []string
	// Why is set when the port exists but cannot be intercepted.
	Why string
}

func (e *NoPortError) Error() string {
	if e.Why != "" {
		return fmt.Sprintf("%s container %s port %s: %s", e.Workload, e.Container, e.Port, e.Why)
	}
	if len(e.Available) == 0 {
		return fmt.Sprintf("%s container %s declares no ports; add containerPort entries to its spec", e.Workload, e.Container)
	}
	return fmt.Sprintf("%s container %s has no port %s; its ports are %s", e.Workload, e.Container, e.Port, strings.Join(e.Available, ", "))
}

func (e *NoPortError) Is(target error) bool { return target == ErrNoPort }

// NoServiceError: no Service sends traffic to the intercepted ports, so the
// intercept would receive nothing.
type NoServiceError struct {
	Workload  workload.Workload
	Namespace string
	Ports     []int
}

func (e *NoServiceError) Error() string {
	return fmt.Sprintf("no Service in namespace %s selects the pods of %s and targets port %s; create a Service for it first",
		e.Namespace, e.Workload, joinInts(e.Ports))
}

func (e *NoServiceError) Is(target error) bool { return target == ErrNoService }

// SelectorError: a Service that targets the intercepted ports selects no
// pod of the workload.
type SelectorError struct {
	Service   string
	Selector  string
	Workload  workload.Workload
	PodLabels string
	// Pods is how many pods of the namespace the selector matches.
	Pods int
}

func (e *SelectorError) Error() string {
	return fmt.Sprintf("Service %s has selector %s, which matches no pod of %s (its pods are labelled %s; %d pods of the namespace match); fix the Service's selector",
		e.Service, e.Selector, e.Workload, e.PodLabels, e.Pods)
}

func (e *SelectorError) Is(target error) bool { return target == ErrSelectorNoPod }

// PodNotReadyError: the rollout with (or without) the agent did not finish.
type PodNotReadyError struct {
	Workload workload.Workload
	Waited   time.Duration
	// Pods describes each pod that is not ready and why.
	Pods []string
	// RolledBack reports that the workload was restored afterwards.
	RolledBack bool
}

func (e *PodNotReadyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: pods did not become ready", e.Workload)
	if e.Waited >= time.Second {
		fmt.Fprintf(&b, " within %s", e.Waited.Round(time.Second))
	}
	if len(e.Pods) > 0 {
		b.WriteString(": " + strings.Join(e.Pods, "; "))
	}
	if e.RolledBack {
		b.WriteString("; the workload was restored to its original spec")
	}
	return b.String()
}

func (e *PodNotReadyError) Is(target error) bool { return target == ErrPodNotReady }

// InterceptedError: another holder's intercept of the workload takes the
// requests this one asks for.
type InterceptedError struct {
	Workload workload.Workload
	Holder   string
	Since    time.Time
	// Header is the other holder's rule ("" for global).
	Header string
	// Why says which rules collide; empty when the holder is simply not
	// the one asking (leave).
	Why string
}

func (e *InterceptedError) Error() string {
	msg := fmt.Sprintf("%s is intercepted by %s since %s", e.Workload, e.Holder, e.Since.UTC().Format(time.RFC3339))
	if e.Header != "" && !strings.Contains(e.Header, " ") {
		msg += " (header " + e.Header + ")"
	} else if e.Header != "" {
		msg += " (rule " + e.Header + ")"
	} else {
		msg += " (global)"
	}
	switch e.Why {
	case "":
		return msg + "; only they can end their intercept (`kloop leave` on their machine)"
	case whyTheyAreGlobal:
		return msg + ", which takes every request; ask them to run `kloop leave`, or use a workload of your own"
	case whyYouAreGlobal:
		return msg + "; a global intercept would take their requests too: intercept with --header NAME=VALUE (or --path, --method) to share the workload, or ask them to leave"
	case whySameHeader:
		return msg + "; the same header would send their requests to you: pick a --header value only your requests carry"
	case whySameRule:
		return msg + "; the same rule would send their requests to you: add a --header only your requests carry"
	}
	return msg + "; " + e.Why
}

const (
	whyTheyAreGlobal = "global"
	whyYouAreGlobal  = "you-global"
	whySameHeader    = "same-header"
	whySameRule      = "same-rule"
)

func (e *InterceptedError) Is(target error) bool { return target == ErrInterceptedOther }

// SharedServiceError: a Service of the workload also sends traffic to pods
// of other workloads, which have no agent; pointing it at the agent port
// would make their share of its traffic fail.
type SharedServiceError struct {
	Service  string
	Selector string
	Workload workload.Workload
	// Others are the other workloads ("deployment/orders-canary") or pods
	// the selector matches.
	Others []string
}

func (e *SharedServiceError) Error() string {
	return fmt.Sprintf("Service %s (selector %s) sends traffic to %s as well as to %s; those pods have no kloop agent and would refuse their share of it once the Service points at the agent. "+
		"Give %s a Service of its own (add a label only its pods carry to the selector), or intercept a workload whose Services select only its pods",
		e.Service, e.Selector, strings.Join(e.Others, ", "), e.Workload, e.Workload)
}

func (e *SharedServiceError) Is(target error) bool { return target == ErrSharedService }

// RestoreConflictError: leave undid what kloop added except what someone
// edited since; it names each such edit and leaves it as it is.
type RestoreConflictError struct {
	Workload  workload.Workload
	Conflicts []string
}

func (e *RestoreConflictError) Error() string {
	return fmt.Sprintf("%s was restored, except what was edited during the intercept, left as it is: %s; check these by hand",
		e.Workload, strings.Join(e.Conflicts, "; "))
}

func (e *RestoreConflictError) Is(target error) bool { return target == ErrRestoreConflict }

// ForbiddenError: RBAC refused an operation.
type ForbiddenError struct {
	Verb, Resource, Namespace string
	Err                       error
}

func (e *ForbiddenError) Error() string {
	f := access.Intercept()
	return fmt.Sprintf("not allowed to %s %s in namespace %s (RBAC): %v; intercepting needs %s: ask a cluster admin for Role %s (%s), and run `kloop doctor` to see everything that is missing",
		e.Verb, e.Resource, e.Namespace, e.Err, f.Summary(), f.Role.Name, f.Role.File)
}

func (e *ForbiddenError) Is(target error) bool { return target == ErrForbidden }
func (e *ForbiddenError) Unwrap() error        { return e.Err }

// apiErr wraps err from the API server, turning RBAC refusals into a
// ForbiddenError.
func apiErr(err error, verb, resource, namespace string) error {
	if err == nil {
		return nil
	}
	if apierrors.IsForbidden(err) {
		return &ForbiddenError{Verb: verb, Resource: resource, Namespace: namespace, Err: err}
	}
	return fmt.Errorf("%s %s in namespace %s: %w", verb, resource, namespace, err)
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}
