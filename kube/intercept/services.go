package intercept

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"

	"github.com/kloop/kloop/kube/workload"
)

// services is what servicesFor found.
type services struct {
	names   []string
	targets map[int]bool // container ports some Service targets
}

// servicesFor finds the Services that select the workload's pods and
// target the ports. A Service that also selects other workloads' pods is
// refused: those pods have no agent, so pointing the Service's targetPort
// at the agent port would make their share of its traffic fail.
func (in *Injector) servicesFor(ctx context.Context, obj *object, tmpl *corev1.PodTemplateSpec, ctr *corev1.Container, ports []PortRecord, anyPort bool) (*services, error) {
	w := obj.w
	list, err := in.Client.CoreV1().Services(in.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, apiErr(err, "list", "services", in.Namespace)
	}
	podLabels := labels.Set(tmpl.Labels)
	found := &services{targets: map[int]bool{}}
	var mismatched, selecting []corev1.Service
	for _, svc := range list.Items {
		targeted := false
		for _, sp := range svc.Spec.Ports {
			if p, ok := targetedPort(sp, ctr, ports); ok {
				targeted = true
				if len(svc.Spec.Selector) > 0 && labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
					found.targets[p] = true
				}
			}
		}
		if !targeted || len(svc.Spec.Selector) == 0 {
			continue
		}
		if labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
			found.names = append(found.names, svc.Name)
			selecting = append(selecting, svc)
		} else {
			mismatched = append(mismatched, svc)
		}
	}
	sort.Strings(found.names)
	missing := 0
	for _, p := range ports {
		if !found.targets[p.Port] {
			missing++
		}
	}
	var templates []namedTemplate
	if len(selecting) > 0 || len(mismatched) > 0 {
		templates = in.templateLabels(ctx)
	}
	if len(found.names) > 0 && (anyPort || missing == 0) {
		for _, svc := range selecting {
			if err := in.checkNotShared(ctx, obj, svc, templates); err != nil {
				return nil, err
			}
		}
		return found, nil
	}
	// A Service that names the workload or targets its ports but selects
	// none of its pods is the likely mistake; say so.
	slices.SortFunc(mismatched, func(a, b corev1.Service) int {
		if (a.Name == w.Name) != (b.Name == w.Name) {
			if a.Name == w.Name {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	// Services that select another workload's pods are theirs; one named
	// after this workload, or selecting no workload's pods at all, was
	// meant for this one.
	for _, svc := range mismatched {
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		other := false
		for _, t := range templates {
			other = other || sel.Matches(t.labels)
		}
		if svc.Name != w.Name && (other || len(found.names) > 0) {
			continue
		}
		n := 0
		if pods, err := in.Client.CoreV1().Pods(in.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()}); err == nil {
			n = len(pods.Items)
		}
		return nil, &SelectorError{Service: svc.Name, Selector: labels.SelectorFromSet(svc.Spec.Selector).String(),
			Workload: w, PodLabels: podLabels.String(), Pods: n}
	}
	var want []int
	for _, p := range ports {
		if !found.targets[p.Port] {
			want = append(want, p.Port)
		}
	}
	return nil, &NoServiceError{Workload: w, Namespace: in.Namespace, Ports: want}
}

// checkNotShared refuses a Service whose selector also matches the pod
// template of another workload, or running pods that are not obj's.
func (in *Injector) checkNotShared(ctx context.Context, obj *object, svc corev1.Service, templates []namedTemplate) error {
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	var others []string
	for _, t := range templates {
		if t.w != obj.w && sel.Matches(t.labels) {
			others = append(others, t.w.String())
		}
	}
	own, err := obj.labelSelector()
	if err != nil {
		return err
	}
	if pods, err := in.Client.CoreV1().Pods(in.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()}); err == nil {
		stray := 0
		for _, p := range pods.Items {
			if !own.Matches(labels.Set(p.Labels)) {
				stray++
			}
		}
		if stray > 0 && len(others) == 0 {
			others = append(others, fmt.Sprintf("%d pods that are not %s's", stray, obj.w))
		}
	}
	if len(others) == 0 {
		return nil
	}
	return &SharedServiceError{Service: svc.Name, Selector: sel.String(), Workload: obj.w, Others: others}
}

// namedTemplate is one workload's pod template labels.
type namedTemplate struct {
	w      workload.Workload
	labels labels.Set
}

// templateLabels returns the pod template labels of the namespace's
// Deployments and StatefulSets (what it can read).
func (in *Injector) templateLabels(ctx context.Context) []namedTemplate {
	var out []namedTemplate
	if l, err := in.Client.AppsV1().Deployments(in.Namespace).List(ctx, metav1.ListOptions{}); err == nil {
		for _, d := range l.Items {
			out = append(out, namedTemplate{workload.Workload{Kind: workload.Deployment, Name: d.Name}, labels.Set(d.Spec.Template.Labels)})
		}
	}
	if l, err := in.Client.AppsV1().StatefulSets(in.Namespace).List(ctx, metav1.ListOptions{}); err == nil {
		for _, s := range l.Items {
			out = append(out, namedTemplate{workload.Workload{Kind: workload.StatefulSet, Name: s.Name}, labels.Set(s.Spec.Template.Labels)})
		}
	}
	return out
}

// targetedPort reports the intercepted container port a Service port sends to.
func targetedPort(sp corev1.ServicePort, ctr *corev1.Container, ports []PortRecord) (int, bool) {
	if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
		return 0, false
	}
	tp := sp.TargetPort
	for _, p := range ports {
		switch {
		case tp.Type == intstr.String && tp.StrVal != "" && tp.StrVal == p.Name:
			return p.Port, true
		case tp.Type == intstr.Int && tp.IntVal == int32(p.Port):
			return p.Port, true
		case tp.Type == intstr.Int && tp.IntVal == 0 && sp.Port == int32(p.Port):
			return p.Port, true
		}
	}
	return 0, false
}

// pointedPort is one Service port kloop pointed at the agent.
type pointedPort struct {
	Name string `json:"name,omitempty"`
	Port int32  `json:"port"`
	// TargetPort is what it was; AgentPort what kloop set.
	TargetPort intstr.IntOrString `json:"targetPort"`
	AgentPort  int32              `json:"agentPort"`
}

// pointServices sets the targetPort of every Service port that reaches an
// intercepted port to the agent's port and records, per port, what it was.
// Services already pointed for w are left as they are.
func (in *Injector) pointServices(ctx context.Context, w workload.Workload, rec Record) error {
	svcs := in.Client.CoreV1().Services(in.Namespace)
	for _, name := range rec.Services {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			svc, err := svcs.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return apiErr(err, "get", "services", in.Namespace)
			}
			if by, ok := svc.Annotations[AnnotationInterceptedBy]; ok {
				if by != w.String() {
					return fmt.Errorf("service %s is pointed at the agent of %s; it cannot serve %s's intercept too: `kloop leave %s` first", name, by, w, by)
				}
				return nil
			}
			var pointed []pointedPort
			for i, sp := range svc.Spec.Ports {
				// The Service's targetPort names the app container's port.
				if p, ok := targetedPort(sp, &corev1.Container{}, rec.Ports); ok {
					ap, _ := rec.AgentPort(p)
					pointed = append(pointed, pointedPort{Name: sp.Name, Port: sp.Port, TargetPort: sp.TargetPort, AgentPort: int32(ap)})
					svc.Spec.Ports[i].TargetPort = intstr.FromInt32(int32(ap))
				}
			}
			if len(pointed) == 0 {
				return nil
			}
			if svc.Annotations == nil {
				svc.Annotations = map[string]string{}
			}
			svc.Annotations[AnnotationPointedPorts] = mustJSON(pointed)
			svc.Annotations[AnnotationInterceptedBy] = w.String()
			_, err = svcs.Update(ctx, svc, metav1.UpdateOptions{})
			if err != nil && !apierrors.IsConflict(err) {
				return apiErr(err, "update", "services", in.Namespace)
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// restoreServices moves back every Service port kloop pointed at w's agent
// (every workload's but those in keep when w is nil), where it still points
// at the agent; the rest of each Service, edited meanwhile or not, stays as
// it is. It returns the pointed ports someone changed since, which it left
// alone.
func (in *Injector) restoreServices(ctx context.Context, w *workload.Workload, keep map[string]bool) ([]string, error) {
	svcs := in.Client.CoreV1().Services(in.Namespace)
	list, err := svcs.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, apiErr(err, "list", "services", in.Namespace)
	}
	var conflicts []string
	for _, s := range list.Items {
		_, pointed := s.Annotations[AnnotationPointedPorts]
		_, legacy := s.Annotations[AnnotationOriginalPorts]
		if !pointed && !legacy {
			continue
		}
		by := s.Annotations[AnnotationInterceptedBy]
		if w != nil && by != w.String() || w == nil && keep[by] {
			continue
		}
		var found []string
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			found = nil
			svc, err := svcs.Get(ctx, s.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return apiErr(err, "get", "services", in.Namespace)
			}
			if v, ok := svc.Annotations[AnnotationPointedPorts]; ok {
				var pp []pointedPort
				if err := unmarshal(v, &pp); err != nil {
					return fmt.Errorf("service %s: annotation %s: %w", svc.Name, AnnotationPointedPorts, err)
				}
				found = unpoint(svc, pp)
			} else if v, ok := svc.Annotations[AnnotationOriginalPorts]; ok {
				// Written by a kloop that kept the whole port list.
				var ports []corev1.ServicePort
				if err := unmarshal(v, &ports); err != nil {
					return fmt.Errorf("service %s: annotation %s: %w", svc.Name, AnnotationOriginalPorts, err)
				}
				svc.Spec.Ports = ports
			} else {
				return nil
			}
			delete(svc.Annotations, AnnotationPointedPorts)
			delete(svc.Annotations, AnnotationOriginalPorts)
			delete(svc.Annotations, AnnotationInterceptedBy)
			if len(svc.Annotations) == 0 {
				svc.Annotations = nil
			}
			_, err = svcs.Update(ctx, svc, metav1.UpdateOptions{})
			if err != nil && !apierrors.IsConflict(err) {
				return apiErr(err, "update", "services", in.Namespace)
			}
			return err
		})
		if err != nil {
			return conflicts, err
		}
		conflicts = append(conflicts, found...)
		in.log().Info("service restored", "service", s.Name, "namespace", in.Namespace, "conflicts", len(found))
	}
	return conflicts, nil
}

// unpoint moves svc's pointed ports back and describes those edited since.
func unpoint(svc *corev1.Service, pointed []pointedPort) []string {
	var conflicts []string
	for _, pp := range pointed {
		i := slices.IndexFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
			if pp.Name != "" {
				return sp.Name == pp.Name
			}
			return sp.Port == pp.Port
		})
		label := fmt.Sprintf("Service %s port %d", svc.Name, pp.Port)
		if pp.Name != "" {
			label = fmt.Sprintf("Service %s port %s", svc.Name, pp.Name)
		}
		switch {
		case i < 0:
			conflicts = append(conflicts, label+" was removed or renamed; nothing moved back")
		case svc.Spec.Ports[i].TargetPort != intstr.FromInt32(pp.AgentPort):
			conflicts = append(conflicts, fmt.Sprintf("%s now targets %s, not the agent's %d; kept (kloop would have set it back to %s)",
				label, svc.Spec.Ports[i].TargetPort.String(), pp.AgentPort, pp.TargetPort.String()))
		default:
			svc.Spec.Ports[i].TargetPort = pp.TargetPort
		}
	}
	return conflicts
}
