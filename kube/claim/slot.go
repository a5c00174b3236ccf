package claim

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// target is what a slot of any kind resolves to: where its workloads live
// and the kubeconfig that reaches them. A new slot kind implements it and
// adds a case to (*Claimer).target.
type target interface {
	// restConfig reaches the slot's cluster as the claimer.
	restConfig(ctx context.Context) (*rest.Config, error)
	// namespace is where the slot's workloads live.
	namespace() string
	// kubeconfig is a kubeconfig whose current context targets the slot.
	kubeconfig(ctx context.Context) ([]byte, error)
}

// namespaceTarget is a namespace in the claimer's own cluster.
type namespaceTarget struct {
	cfg *rest.Config
	ns  string
	ctx string // context name for the written kubeconfig
}

func (t *namespaceTarget) restConfig(context.Context) (*rest.Config, error) { return t.cfg, nil }
func (t *namespaceTarget) namespace() string                                { return t.ns }
func (t *namespaceTarget) kubeconfig(context.Context) ([]byte, error) {
	return KubeconfigFromREST(t.cfg, t.ctx, t.ns)
}

// kubeconfigTarget is another cluster, reached with a stored kubeconfig.
type kubeconfigTarget struct {
	data []byte
	cfg  *clientcmdapi.Config
}

func newKubeconfigTarget(data []byte, source string) (*kubeconfigTarget, error) {
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("parse kubeconfig of %s: %w", source, err)
	}
	if cfg.CurrentContext == "" || cfg.Contexts[cfg.CurrentContext] == nil {
		return nil, fmt.Errorf("kubeconfig of %s has no current context", source)
	}
	return &kubeconfigTarget{data: data, cfg: cfg}, nil
}

func (t *kubeconfigTarget) restConfig(context.Context) (*rest.Config, error) {
	cfg, err := clientcmd.NewDefaultClientConfig(*t.cfg, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("client config from slot kubeconfig: %w", err)
	}
	return cfg, nil
}

func (t *kubeconfigTarget) namespace() string {
	if ns := t.cfg.Contexts[t.cfg.CurrentContext].Namespace; ns != "" {
		return ns
	}
	return "default"
}

func (t *kubeconfigTarget) kubeconfig(context.Context) ([]byte, error) { return t.data, nil }

// resetStep is one kind of object release removes from a slot namespace.
type resetStep struct {
	gvr      schema.GroupVersionResource
	resource string // for messages and RBAC errors: "deployments.apps"
	// keep is a field selector for objects that belong to the namespace
	// itself rather than to the developer.
	keep string
	pods bool
}

// resetSteps: controllers first so that they do not recreate what the later
// steps delete. Roles and RoleBindings are left alone: the claimers' own
// RoleBinding lives there and claimers cannot grant RBAC anyway.
var resetSteps = []resetStep{
	{gvr: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, resource: "deployments.apps"},
	{gvr: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}, resource: "statefulsets.apps"},
	{gvr: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}, resource: "daemonsets.apps"},
	{gvr: schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "cronjobs"}, resource: "cronjobs.batch"},
	{gvr: schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}, resource: "jobs.batch"},
	{gvr: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}, resource: "replicasets.apps"},
	{gvr: schema.GroupVersionResource{Version: "v1", Resource: "replicationcontrollers"}, resource: "replicationcontrollers"},
	{gvr: schema.GroupVersionResource{Version: "v1", Resource: "pods"}, resource: "pods", pods: true},
	{gvr: schema.GroupVersionResource{Version: "v1", Resource: "services"}, resource: "services"},
	{gvr: schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses"}, resource: "ingresses.networking.k8s.io"},
	{gvr: schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, resource: "configmaps", keep: "metadata.name!=kube-root-ca.crt"},
	{gvr: schema.GroupVersionResource{Version: "v1", Resource: "secrets"}, resource: "secrets", keep: "type!=kubernetes.io/service-account-token"},
	{gvr: schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}, resource: "serviceaccounts", keep: "metadata.name!=default"},
	{gvr: schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}, resource: "persistentvolumeclaims"},
}

// resetNamespace deletes everything a developer can leave in ns and waits
// until it is gone, so the next holder starts from a clean namespace.
func resetNamespace(ctx context.Context, cfg *rest.Config, ns string, progress func(string)) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	background := metav1.DeletePropagationBackground
	for _, st := range resetSteps {
		opts := metav1.DeleteOptions{PropagationPolicy: &background}
		if st.pods {
			// The slot is being handed over: nobody waits for a graceful
			// shutdown, and a grace period would hold the next claim up.
			zero := int64(0)
			opts.GracePeriodSeconds = &zero
		}
		ri := dyn.Resource(st.gvr).Namespace(ns)
		err := ri.DeleteCollection(ctx, opts, metav1.ListOptions{FieldSelector: st.keep})
		if apierrors.IsMethodNotSupported(err) {
			err = deleteEach(ctx, ri, opts, st.keep)
		}
		if apierrors.IsNotFound(err) {
			continue // the cluster does not serve this resource
		}
		if err != nil {
			return apiError(err, cfg.Host, "deletecollection", st.resource, ns, "")
		}
	}
	progress(fmt.Sprintf("waiting for namespace %s to empty", ns))
	backoff := 50 * time.Millisecond
	for {
		left, err := remaining(ctx, dyn, cfg.Host, ns)
		if err != nil {
			return err
		}
		if left == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("reset namespace %s: %s still present: %w", ns, left, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

func deleteEach(ctx context.Context, ri dynamic.ResourceInterface, opts metav1.DeleteOptions, sel string) error {
	list, err := ri.List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return err
	}
	for _, item := range list.Items {
		if err := ri.Delete(ctx, item.GetName(), opts); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// remaining names the first kind of object still in ns, or "".
func remaining(ctx context.Context, dyn dynamic.Interface, host, ns string) (string, error) {
	for _, st := range resetSteps {
		list, err := dyn.Resource(st.gvr).Namespace(ns).List(ctx, metav1.ListOptions{FieldSelector: st.keep, Limit: 1})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return "", apiError(err, host, "list", st.resource, ns, "")
		}
		if len(list.Items) > 0 {
			return st.resource + " " + list.Items[0].GetName(), nil
		}
	}
	return "", nil
}

// errNoTarget is returned for slot kinds this version does not know.
var errNoTarget = errors.New("unknown slot kind")
