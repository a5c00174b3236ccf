// Package access lists the Kubernetes permissions each kloop feature needs,
// derived from the API calls kube/ makes, and checks them for the current
// user with SelfSubjectAccessReview. The Roles in deploy/ grant exactly
// these rules (a test holds them to it), and the Forbidden errors of
// kube/intercept quote them, so the three never disagree.
package access

import (
	"context"
	"fmt"
	"sort"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Rule is one RBAC rule: verbs on a resource (with its subresource, such as
// pods/portforward) of an API group ("" is the core group).
type Rule struct {
	Group    string
	Resource string
	Verbs    []string
	// Why names the kloop work that needs it, for the report.
	Why string
}

// String is the rule as `kubectl auth can-i` spells its arguments:
// "get,list,update deployments.apps".
func (r Rule) String() string {
	res := r.Resource
	if r.Group != "" {
		base, sub, hasSub := strings.Cut(res, "/")
		res = base + "." + r.Group
		if hasSub {
			res += "/" + sub
		}
	}
	return strings.Join(r.Verbs, ",") + " " + res
}

// Role names a Role of deploy/ that grants a feature's rules.
type Role struct {
	// Name is the Role's metadata.name.
	Name string
	// File is its manifest in the kloop repository (deploy/...).
	File string
	// Apply says how a cluster admin grants it.
	Apply string
}

// Feature is what a kloop command family needs in one namespace.
type Feature struct {
	Name  string // "intercept", "claim"
	Rules []Rule
	Role  Role
	// Namespace is where the rules apply; "" means the namespace kloop
	// works in (the claimed slot or the kubeconfig context's).
	Namespace string
}

// InterceptRole grants Intercept's rules.
var InterceptRole = Role{
	Name:  "kloop-intercept",
	File:  "deploy/intercept-rbac.yaml",
	Apply: "kubectl apply -n NAMESPACE -f deploy/intercept-rbac.yaml, then add the user to RoleBinding kloop-interceptors there",
}

// Intercept is what `kloop intercept`, `leave`, `env`, `requests` and
// `replay` need in the workload's namespace, one rule per call kube/ makes:
// kube/intercept reads, patches (update) and restores the workload and the
// Services that route to it, keeps the per-intercept token in a Secret,
// watches the pods to keep a tunnel to each, and port-forwards to the agent;
// kube/env reads the ConfigMaps and Secrets the container's env names;
// kube/intercept's rollout reads Events to report an image pull that fails.
func Intercept() Feature {
	return Feature{
		Name: "intercept",
		Rules: []Rule{
			{Group: "apps", Resource: "deployments", Verbs: []string{"get", "list", "update"}, Why: "inject the agent and restore the workload"},
			{Group: "apps", Resource: "statefulsets", Verbs: []string{"get", "list", "update"}, Why: "inject the agent and restore the workload"},
			{Resource: "services", Verbs: []string{"get", "list", "update"}, Why: "point the workload's Services at the agent and back"},
			{Resource: "pods", Verbs: []string{"list", "watch"}, Why: "find the workload's pods and follow the rollout"},
			{Resource: "pods/portforward", Verbs: []string{"get", "create"}, Why: "tunnel to the agent (Kubernetes port-forward)"},
			{Resource: "secrets", Verbs: []string{"get", "list", "create", "delete"}, Why: "the per-intercept token, and Secrets the env names"},
			{Resource: "configmaps", Verbs: []string{"get"}, Why: "ConfigMaps the env and volumes name"},
			{Resource: "events", Verbs: []string{"list"}, Why: "report why a pod does not start (image pull errors)"},
		},
		Role: InterceptRole,
	}
}

// ClaimNamespace is where pools and claims live (kube/claim's default).
const ClaimNamespace = "kloop-system"

// Claim is what `kloop claim` and `release` need in kloop-system: read the
// pool ConfigMaps, take and free slot Leases (kube/claim).
func Claim() Feature {
	return Feature{
		Name: "claim",
		Rules: []Rule{
			{Resource: "configmaps", Verbs: []string{"get", "list", "watch"}, Why: "read the pool declarations"},
			{Group: "coordination.k8s.io", Resource: "leases", Verbs: []string{"get", "list", "watch", "create", "update", "delete"}, Why: "take, renew and free slot leases"},
		},
		Role: Role{
			Name:  "kloop-claimer",
			File:  "deploy/claimer-rbac.yaml",
			Apply: "kubectl apply -f deploy/claimer-rbac.yaml, then add the user to RoleBinding kloop-claimers in kloop-system",
		},
		Namespace: ClaimNamespace,
	}
}

// Summary lists a feature's rules on one line, for error messages:
// "get,list,update deployments.apps; ...".
func (f Feature) Summary() string {
	parts := make([]string, len(f.Rules))
	for i, r := range f.Rules {
		parts[i] = r.String()
	}
	return strings.Join(parts, "; ")
}

// Missing is one verb on one resource the user may not use.
type Missing struct {
	Rule Rule // with the one verb
	// Reason is what the authorizer said, when it said anything.
	Reason string
}

// Result is the check of one feature in one namespace.
type Result struct {
	Feature   Feature
	Namespace string
	Missing   []Missing
}

// OK reports whether every rule is allowed.
func (r Result) OK() bool { return len(r.Missing) == 0 }

// MissingSummary lists what is missing grouped by resource:
// "update deployments.apps; create,get pods/portforward".
func (r Result) MissingSummary() string {
	var order []string
	byRes := map[string]Rule{}
	for _, m := range r.Missing {
		key := m.Rule.Group + "/" + m.Rule.Resource
		rule, seen := byRes[key]
		if !seen {
			order = append(order, key)
			rule = Rule{Group: m.Rule.Group, Resource: m.Rule.Resource}
		}
		rule.Verbs = append(rule.Verbs, m.Rule.Verbs...)
		byRes[key] = rule
	}
	parts := make([]string, len(order))
	for i, k := range order {
		parts[i] = byRes[k].String()
	}
	return strings.Join(parts, "; ")
}

// Check asks the API server, with one SelfSubjectAccessReview per verb,
// which of f's rules the current user lacks in namespace (f.Namespace when
// set).
func Check(ctx context.Context, cs kubernetes.Interface, f Feature, namespace string) (Result, error) {
	if f.Namespace != "" {
		namespace = f.Namespace
	}
	res := Result{Feature: f, Namespace: namespace}
	for _, r := range f.Rules {
		resource, sub, _ := strings.Cut(r.Resource, "/")
		for _, verb := range r.Verbs {
			review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace: namespace, Verb: verb, Group: r.Group, Resource: resource, Subresource: sub,
				},
			}}
			out, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
			if err != nil {
				return res, fmt.Errorf("check %s %s in namespace %s (SelfSubjectAccessReview): %w", verb, r.Resource, namespace, err)
			}
			if !out.Status.Allowed {
				one := r
				one.Verbs = []string{verb}
				res.Missing = append(res.Missing, Missing{Rule: one, Reason: out.Status.Reason})
			}
		}
	}
	return res, nil
}

// Verbs returns the verbs f needs on group/resource, sorted; nil when none.
func (f Feature) Verbs(group, resource string) []string {
	for _, r := range f.Rules {
		if r.Group == group && r.Resource == resource {
			v := append([]string(nil), r.Verbs...)
			sort.Strings(v)
			return v
		}
	}
	return nil
}
