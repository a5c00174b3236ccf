package intercept

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/kloop/kloop/kube/workload"
)

// object is a Deployment or a StatefulSet, with what intercepting needs.
type object struct {
	w      workload.Workload
	deploy *appsv1.Deployment
	sts    *appsv1.StatefulSet
}

func (o *object) meta() *metav1.ObjectMeta {
	if o.deploy != nil {
		return &o.deploy.ObjectMeta
	}
	return &o.sts.ObjectMeta
}

func (o *object) template() *corev1.PodTemplateSpec {
	if o.deploy != nil {
		return &o.deploy.Spec.Template
	}
	return &o.sts.Spec.Template
}

func (o *object) replicas() int32 {
	var r *int32
	if o.deploy != nil {
		r = o.deploy.Spec.Replicas
	} else {
		r = o.sts.Spec.Replicas
	}
	if r == nil {
		return 1
	}
	return *r
}

func (o *object) labelSelector() (labels.Selector, error) {
	var ls *metav1.LabelSelector
	if o.deploy != nil {
		ls = o.deploy.Spec.Selector
	} else {
		ls = o.sts.Spec.Selector
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil, fmt.Errorf("%s: selector: %w", o.w, err)
	}
	return sel, nil
}

// getObject reads the workload.
func getObject(ctx context.Context, cs kubernetes.Interface, ns string, w workload.Workload) (*object, error) {
	o := &object{w: w}
	var err error
	switch w.Kind {
	case workload.Deployment:
		o.deploy, err = cs.AppsV1().Deployments(ns).Get(ctx, w.Name, metav1.GetOptions{})
	case workload.StatefulSet:
		o.sts, err = cs.AppsV1().StatefulSets(ns).Get(ctx, w.Name, metav1.GetOptions{})
	default:
		return nil, fmt.Errorf("%w: kind %q", ErrUnsupported, w.Kind)
	}
	if apierrors.IsNotFound(err) {
		e := &NoWorkloadError{Workload: w, Namespace: ns}
		e.Available, _ = listNames(ctx, cs, ns, w.Kind)
		return nil, e
	}
	if err != nil {
		return nil, apiErr(err, "get", w.Kind.Plural(), ns)
	}
	return o, nil
}

func listNames(ctx context.Context, cs kubernetes.Interface, ns string, kind workload.Kind) ([]string, error) {
	var names []string
	switch kind {
	case workload.Deployment:
		l, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, d := range l.Items {
			names = append(names, "deployment/"+d.Name)
		}
	case workload.StatefulSet:
		l, err := cs.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, d := range l.Items {
			names = append(names, "statefulset/"+d.Name)
		}
	}
	return names, nil
}

// update writes the workload back; it fails on a conflict, so callers
// re-read and retry.
func (o *object) update(ctx context.Context, cs kubernetes.Interface) error {
	var err error
	ns := o.meta().Namespace
	switch {
	case o.deploy != nil:
		o.deploy, err = cs.AppsV1().Deployments(ns).Update(ctx, o.deploy, metav1.UpdateOptions{})
	default:
		o.sts, err = cs.AppsV1().StatefulSets(ns).Update(ctx, o.sts, metav1.UpdateOptions{})
	}
	if err != nil {
		if apierrors.IsConflict(err) {
			return err
		}
		return apiErr(err, "update", o.w.Kind.Plural(), ns)
	}
	return nil
}
