package env

import (
	"context"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kloop/kloop/kube/workload"
)

// AgentContainer is the name of kloop's traffic-agent sidecar, never the
// default container.
const AgentContainer = "kloop-agent"

// target is what resolution works on: the workload's pod template, and a
// pod of it when one runs.
type target struct {
	workload  workload.Workload
	namespace string
	template  corev1.PodTemplateSpec
	selector  *metav1.LabelSelector
}

func getWorkload(ctx context.Context, client kubernetes.Interface, ns string, w workload.Workload) (*target, error) {
	t := &target{workload: w, namespace: ns}
	var err error
	switch w.Kind {
	case workload.Deployment:
		var d *appsv1.Deployment
		d, err = client.AppsV1().Deployments(ns).Get(ctx, w.Name, metav1.GetOptions{})
		if err == nil {
			t.template, t.selector = d.Spec.Template, d.Spec.Selector
		}
	case workload.StatefulSet:
		var s *appsv1.StatefulSet
		s, err = client.AppsV1().StatefulSets(ns).Get(ctx, w.Name, metav1.GetOptions{})
		if err == nil {
			t.template, t.selector = s.Spec.Template, s.Spec.Selector
		}
	default:
		return nil, fmt.Errorf("%w: kind %q", ErrBadWorkload, w.Kind)
	}
	switch {
	case err == nil:
		return t, nil
	case apierrors.IsNotFound(err):
		return nil, &WorkloadNotFoundError{Workload: w, Namespace: ns}
	case apierrors.IsForbidden(err):
		return nil, &ForbiddenError{Verb: "get", Resource: w.Kind.Resource(), Name: w.Name, Namespace: ns, Err: err}
	default:
		return nil, fmt.Errorf("get %s in namespace %q: %w", w, ns, err)
	}
}

// chooseContainer returns the index of the named container, or of the
// first container that is not the agent.
func chooseContainer(t *target, name string) (int, error) {
	var names []string
	for _, c := range t.template.Spec.Containers {
		names = append(names, c.Name)
	}
	for i, c := range t.template.Spec.Containers {
		if (name == "" && c.Name != AgentContainer) || (name != "" && c.Name == name) {
			return i, nil
		}
	}
	return 0, &ContainerNotFoundError{Workload: t.workload, Container: name, Available: names}
}

// findPod returns a Running pod of the workload that has the container,
// preferring ready pods, then the newest; nil when there is none.
func findPod(ctx context.Context, client kubernetes.Interface, t *target, container string) (*corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(t.selector)
	if err != nil {
		return nil, fmt.Errorf("selector of %s: %w", t.workload, err)
	}
	list, err := client.CoreV1().Pods(t.namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		if apierrors.IsForbidden(err) {
			return nil, &ForbiddenError{Verb: "list", Resource: "pods", Namespace: t.namespace, For: "fieldRef values of a running pod", Err: err}
		}
		return nil, fmt.Errorf("list pods of %s: %w", t.workload, err)
	}
	return pickPod(list.Items, t.workload, container), nil
}

// pickPod chooses among pods: Running, not being deleted, controlled by
// the workload, with the container; ready before not ready, then newest,
// then by name. Nil when none qualifies.
func pickPod(items []corev1.Pod, w workload.Workload, container string) *corev1.Pod {
	var pods []*corev1.Pod
	for i := range items {
		p := &items[i]
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil || !ownedBy(p, w) || !hasContainer(p, container) {
			continue
		}
		pods = append(pods, p)
	}
	if len(pods) == 0 {
		return nil
	}
	sort.SliceStable(pods, func(i, j int) bool {
		ri, rj := podReady(pods[i]), podReady(pods[j])
		if ri != rj {
			return ri
		}
		if !pods[i].CreationTimestamp.Equal(&pods[j].CreationTimestamp) {
			return pods[j].CreationTimestamp.Before(&pods[i].CreationTimestamp)
		}
		return pods[i].Name < pods[j].Name
	})
	return pods[0]
}

func ownedBy(p *corev1.Pod, w workload.Workload) bool {
	ref := metav1.GetControllerOf(p)
	if ref == nil {
		return false
	}
	switch w.Kind {
	case workload.Deployment:
		// The Deployment's ReplicaSets are NAME-HASH, HASH the pod's pod-template-hash.
		hash := p.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
		return ref.Kind == "ReplicaSet" && hash != "" && ref.Name == w.Name+"-"+hash
	case workload.StatefulSet:
		return ref.Kind == workload.StatefulSet.Title() && ref.Name == w.Name
	}
	return false
}

func hasContainer(p *corev1.Pod, name string) bool {
	for _, c := range p.Spec.Containers {
		if c.Name == name {
			return true
		}
	}
	return false
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
