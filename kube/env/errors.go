package env

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kloop/kloop/kube/access"
	"github.com/kloop/kloop/kube/workload"
)

// Sentinel errors. Each typed error below matches its sentinel with
// errors.Is and carries the details for errors.As.
var (
	ErrBadWorkload       = errors.New("bad workload reference")
	ErrWorkloadNotFound  = errors.New("workload not found")
	ErrContainerNotFound = errors.New("container not found")
	ErrForbidden         = errors.New("forbidden")
	ErrMissingRef        = errors.New("missing referenced object or key")
)

// badWorkloadError: the workload reference does not parse. Its text is
// workload.Parse's, which says what to write; it matches ErrBadWorkload.
type badWorkloadError struct{ err error }

func (e *badWorkloadError) Error() string        { return e.err.Error() }
func (e *badWorkloadError) Unwrap() error        { return e.err }
func (e *badWorkloadError) Is(target error) bool { return target == ErrBadWorkload }

// WorkloadNotFoundError: no Deployment or StatefulSet of that name.
type WorkloadNotFoundError struct {
	Workload  workload.Workload
	Namespace string
}

func (e *WorkloadNotFoundError) Error() string {
	return fmt.Sprintf("%s not found in namespace %q: %s", e.Workload, e.Namespace, NotFoundHint)
}

// NotFoundHint is what to do when a workload is not where kloop looks: the
// usual cause on the README's loop is a fresh claim nothing is deployed to.
const NotFoundHint = "deploy it there first (the claim's KUBECONFIG points at that namespace), " +
	"or check the name (deployment/NAME or statefulset/NAME) and the cluster kloop uses: the claimed slot (`kloop status`), " +
	"else kubeconfig:/context: of .kloop.yaml, else $KUBECONFIG"

func (e *WorkloadNotFoundError) Is(target error) bool { return target == ErrWorkloadNotFound }

// ContainerNotFoundError: the workload has no such container (or only the
// kloop-agent sidecar when none was named).
type ContainerNotFoundError struct {
	Workload  workload.Workload
	Container string
	// Available lists the workload's containers.
	Available []string
}

func (e *ContainerNotFoundError) Error() string {
	if e.Container == "" {
		return fmt.Sprintf("%s has no container besides %s (containers: %s)", e.Workload, AgentContainer, strings.Join(e.Available, ", "))
	}
	return fmt.Sprintf("%s has no container %q (containers: %s)", e.Workload, e.Container, strings.Join(e.Available, ", "))
}

func (e *ContainerNotFoundError) Is(target error) bool { return target == ErrContainerNotFound }

// ForbiddenError: RBAC denied a request this package needs.
type ForbiddenError struct {
	Verb      string // get, list
	Resource  string // deployments.apps, secrets, ...
	Name      string // empty for list
	Namespace string
	// For says why the object was needed (e.g. "env API_TOKEN").
	For string
	Err error
}

func (e *ForbiddenError) Error() string {
	what := e.Resource
	if e.Name != "" {
		what += fmt.Sprintf(" %q", e.Name)
	}
	msg := fmt.Sprintf("forbidden: not allowed to %s %s in namespace %q", e.Verb, what, e.Namespace)
	if e.For != "" {
		msg += " (needed for " + e.For + ")"
	}
	f := access.Intercept()
	return msg + fmt.Sprintf(": ask a cluster admin for Role %s (%s), which grants what intercept and env need: %s; `kloop doctor` lists everything missing", f.Role.Name, f.Role.File, f.Summary())
}

func (e *ForbiddenError) Is(target error) bool { return target == ErrForbidden }
func (e *ForbiddenError) Unwrap() error        { return e.Err }

// MissingRefError: a required (non-optional) ConfigMap, Secret or key does
// not exist. The kubelet refuses to start the container in that case
// (CreateContainerConfigError), and so does Resolve.
type MissingRefError struct {
	Kind      string // ConfigMap or Secret
	Name      string
	Key       string // empty when the whole object is missing
	Namespace string
	// For says what referred to it (e.g. "env API_TOKEN", "envFrom[0]", "volume catalog").
	For string
}

func (e *MissingRefError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s: %s %q not found in namespace %q (the reference is not optional)", e.For, e.Kind, e.Name, e.Namespace)
	}
	return fmt.Sprintf("%s: %s %q in namespace %q has no key %q (the reference is not optional)", e.For, e.Kind, e.Name, e.Namespace, e.Key)
}

func (e *MissingRefError) Is(target error) bool { return target == ErrMissingRef }
