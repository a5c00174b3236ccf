// Package doctor checks what kloop needs of a cluster, the way `kloop
// doctor` reports it: the API server reachable and its version, every
// permission of kube/access in the namespace, the agent image kloop would
// inject and where that choice came from, and a Kubernetes port-forward to
// a pod of the namespace. Each Finding says what was found and, when
// something is wrong, what to do about it.
package doctor

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kloop/kloop/kube/access"
	"github.com/kloop/kloop/kube/intercept"
	"github.com/kloop/kloop/kube/portforward"
)

// Statuses of a Finding.
const (
	OK   = "ok"
	Warn = "warn" // works, but something a user would want to know or fix
	Fail = "fail" // kloop's work will fail until fixed
)

// Finding is one check's result.
type Finding struct {
	// Check names what was checked: cluster, permissions/intercept,
	// permissions/claim, agent-image, port-forward, daemon, editor.
	Check  string `json:"check"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	// Fix says what to do; empty when Status is ok.
	Fix string `json:"fix,omitempty"`
	// Missing lists permissions the user lacks, as `kubectl auth can-i`
	// spells them ("update deployments.apps").
	Missing []string `json:"missing,omitempty"`
	// Role is the deploy/ manifest that grants what is missing.
	Role string `json:"role,omitempty"`
}

// Options say what to check.
type Options struct {
	Rest      *rest.Config
	Client    kubernetes.Interface
	Namespace string
	// Image are the settings that choose the agent image.
	Image intercept.ImageOptions
	// Timeout bounds each network check; 0 means 10s.
	Timeout time.Duration
}

// Run checks the cluster. An unreachable API server ends the checks there:
// every other one would fail for the same reason.
func Run(ctx context.Context, opts Options) []Finding {
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	cluster := checkCluster(ctx, opts)
	out := []Finding{cluster}
	if cluster.Status == Fail {
		return out
	}
	out = append(out, checkAccess(ctx, opts, access.Intercept(), Fail))
	// Claims are optional: a user with a namespace of their own needs none.
	out = append(out, checkAccess(ctx, opts, access.Claim(), Warn))
	out = append(out, checkImage(ctx, opts))
	out = append(out, checkPortForward(ctx, opts))
	return out
}

func checkCluster(ctx context.Context, opts Options) Finding {
	f := Finding{Check: "cluster"}
	type answer struct {
		version string
		err     error
	}
	ch := make(chan answer, 1)
	// The discovery client takes no context: bound it here.
	go func() {
		v, err := opts.Client.Discovery().ServerVersion()
		if err != nil {
			ch <- answer{err: err}
			return
		}
		ch <- answer{version: v.GitVersion}
	}()
	select {
	case a := <-ch:
		if a.err != nil {
			f.Status, f.Detail = Fail, fmt.Sprintf("API server %s does not answer: %v", opts.Rest.Host, a.err)
			f.Fix = "check the kubeconfig kloop uses (kubeconfig: and context: in .kloop.yaml, else $KUBECONFIG or ~/.kube/config), your network or VPN, and that the credentials are not expired"
			return f
		}
		f.Status, f.Detail = OK, fmt.Sprintf("API server %s, Kubernetes %s, namespace %s", opts.Rest.Host, a.version, opts.Namespace)
	case <-time.After(opts.Timeout):
		f.Status, f.Detail = Fail, fmt.Sprintf("API server %s did not answer within %s", opts.Rest.Host, opts.Timeout)
		f.Fix = "check your network or VPN and the server address of the kubeconfig kloop uses"
	case <-ctx.Done():
		f.Status, f.Detail = Fail, "cancelled: "+ctx.Err().Error()
	}
	return f
}

func checkAccess(ctx context.Context, opts Options, feature access.Feature, severity string) Finding {
	f := Finding{Check: "permissions/" + feature.Name}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	res, err := access.Check(ctx, opts.Client, feature, opts.Namespace)
	if err != nil {
		f.Status, f.Detail = Fail, err.Error()
		f.Fix = "the API server must allow SelfSubjectAccessReview (every authenticated user may, by default)"
		return f
	}
	if res.OK() {
		f.Status = OK
		f.Detail = fmt.Sprintf("every permission %s needs in namespace %s: %s", feature.Name, res.Namespace, feature.Summary())
		return f
	}
	f.Status = severity
	for _, m := range res.Missing {
		f.Missing = append(f.Missing, m.Rule.String())
	}
	f.Role = feature.Role.File
	f.Detail = fmt.Sprintf("not allowed in namespace %s: %s", res.Namespace, res.MissingSummary())
	f.Fix = fmt.Sprintf("ask a cluster admin for Role %s from %s: %s", feature.Role.Name, feature.Role.File, feature.Role.Apply)
	if severity == Warn {
		f.Fix = "needed only for `kloop claim`; " + f.Fix
	}
	return f
}

func checkImage(ctx context.Context, opts Options) Finding {
	f := Finding{Check: "agent-image"}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	choice, err := intercept.ResolveImage(ctx, opts.Client, opts.Image)
	if err != nil {
		f.Status, f.Detail = Fail, err.Error()
		f.Fix = "fix the reference where it is set, e.g. `kloop pool agent-image REF` or agentImage: in .kloop.yaml"
		return f
	}
	f.Status = OK
	f.Detail = fmt.Sprintf("%s (from %s)", choice.Ref, choice.Source)
	if choice.Note != "" {
		f.Status = Warn
		f.Detail += "; " + choice.Note
		f.Fix = choice.Note
	}
	lookup := checkRegistry(ctx, choice.Ref)
	f.Detail += "; " + lookup.detail
	switch {
	case lookup.status == Fail:
		f.Status = Fail
		f.Fix = fmt.Sprintf("push the agent image there (`kloop agent-image push %s`), or set a reference the cluster can pull (`kloop pool agent-image REF`, agentImage: in .kloop.yaml)", choice.Ref)
	case lookup.status == Warn && f.Status == OK:
		f.Status = Warn
		f.Fix = "if the cluster's nodes cannot reach that registry either, push the agent image to one they can (`kloop agent-image push REF`) and set it once (`kloop pool agent-image REF`); an intercept reports a failed pull at once"
	}
	if choice.Source == intercept.SourceDefault {
		// Said in the detail, not as a fix: nothing is known to be wrong.
		f.Detail += fmt.Sprintf("; a cluster that cannot pull %s needs the agent image pushed to a registry it can reach (`kloop agent-image push REF`) and set once (`kloop pool agent-image REF`); the sandbox stands it in with the running kloop binary", choice.Ref)
	}
	return f
}

func checkPortForward(ctx context.Context, opts Options) Finding {
	f := Finding{Check: "port-forward"}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	pods, err := opts.Client.CoreV1().Pods(opts.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		f.Status, f.Detail = Warn, fmt.Sprintf("cannot list the pods of namespace %s to try one: %v", opts.Namespace, err)
		f.Fix = "see permissions/intercept"
		return f
	}
	pod, port, ok := pickPod(pods.Items)
	if !ok {
		f.Status = Warn
		f.Detail = fmt.Sprintf("no ready pod with a TCP port in namespace %s to try a port-forward to", opts.Namespace)
		f.Fix = "deploy a workload, then run `kloop doctor` again"
		return f
	}
	c, err := portforward.NewDialer(opts.Rest).Dial(ctx, opts.Namespace, pod, port)
	if err != nil {
		f.Status, f.Detail = Fail, fmt.Sprintf("port-forward to pod %s port %d: %v", pod, port, err)
		f.Fix = "kloop tunnels to its agent with Kubernetes port-forward: it needs get and create on pods/portforward (deploy/intercept-rbac.yaml), and an API server that can reach the kubelet"
		return f
	}
	c.Close()
	f.Status, f.Detail = OK, fmt.Sprintf("port-forward to pod %s port %d connected", pod, port)
	return f
}

// pickPod chooses a ready pod and a TCP container port of it to try,
// preferring pods without the kloop agent (whose control port is the
// agent's), in name order so runs are repeatable.
func pickPod(pods []corev1.Pod) (string, int, bool) {
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	for _, pass := range []bool{false, true} {
		for _, p := range pods {
			if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning || !podReady(&p) {
				continue
			}
			agent := false
			for _, c := range p.Spec.Containers {
				agent = agent || c.Name == intercept.AgentContainer
			}
			if agent != pass {
				continue
			}
			for _, c := range p.Spec.Containers {
				for _, cp := range c.Ports {
					if cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP {
						return p.Name, int(cp.ContainerPort), true
					}
				}
			}
		}
	}
	return "", 0, false
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Healthy reports whether no finding failed.
func Healthy(fs []Finding) bool {
	for _, f := range fs {
		if f.Status == Fail {
			return false
		}
	}
	return true
}
