package intercept

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/kloop/kloop/kube/workload"
)

// ErrImagePull matches (errors.Is) an intercept whose pods cannot start a
// container because its image cannot be pulled or the container created.
var ErrImagePull = fmt.Errorf("container image cannot be pulled")

// startFailures are the waiting reasons of a container the kubelet will not
// start by waiting: retrying them only backs off, so an intercept that
// waited for its rollout timeout would learn nothing more.
var startFailures = map[string]bool{
	"ErrImagePull":               true,
	"ImagePullBackOff":           true,
	"InvalidImageName":           true,
	"ErrImageNeverPull":          true,
	"CreateContainerError":       true,
	"CreateContainerConfigError": true,
}

// ImagePullError: a container of the intercepted workload's new pods cannot
// start (the agent image, most often, not pushed or not reachable).
type ImagePullError struct {
	Workload  workload.Workload
	Pod       string
	Container string
	Image     string
	Reason    string // the kubelet's waiting reason, e.g. ErrImagePull
	// Message is the kubelet's Event message, else the container status'.
	Message string
	// RolledBack reports that the workload was restored afterwards.
	RolledBack bool
}

func (e *ImagePullError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: pod %s cannot start container %s: %s for image %s", e.Workload, e.Pod, e.Container, e.Reason, e.Image)
	if e.Message != "" {
		fmt.Fprintf(&b, " (%s)", e.Message)
	}
	if e.Container == AgentContainer {
		fmt.Fprintf(&b, "; push the agent image there (`kloop agent-image push %s`), or point kloop at an agent image the cluster can pull: `kloop pool agent-image REF` (cluster admin), agentImage: in .kloop.yaml, or KLOOP_AGENT_IMAGE; `kloop doctor` shows which one is used", e.Image)
	} else {
		b.WriteString("; the workload's own container does not start: fix its image or spec, then intercept again")
	}
	if e.RolledBack {
		b.WriteString("; the workload was restored to its original spec")
	}
	return b.String()
}

func (e *ImagePullError) Is(target error) bool { return target == ErrImagePull }

// startFailure finds a container of the pods carrying the agent that cannot
// start, with the kubelet's Event about it; nil when none. Pods of the old
// template are not looked at: their trouble is not the intercept's.
func (in *Injector) startFailure(ctx context.Context, o *object) *ImagePullError {
	sel, err := o.labelSelector()
	if err != nil {
		return nil
	}
	pods, err := in.Client.CoreV1().Pods(in.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		// The rollout wait reports what it can; this is only a shortcut.
		return nil
	}
	sort.Slice(pods.Items, func(i, j int) bool { return pods.Items[i].Name < pods.Items[j].Name })
	for i := range pods.Items {
		p := &pods.Items[i]
		if !hasAgent(&corev1.PodTemplateSpec{Spec: p.Spec}) {
			continue
		}
		cs, ok := failingContainer(p)
		if !ok {
			continue
		}
		e := &ImagePullError{Workload: o.w, Pod: p.Name, Container: cs.Name, Image: cs.Image, Reason: cs.State.Waiting.Reason, Message: cs.State.Waiting.Message}
		if e.Image == "" {
			e.Image = specImage(p, cs.Name)
		}
		evs, err := in.Client.CoreV1().Events(in.Namespace).List(ctx, metav1.ListOptions{
			FieldSelector: fields.Set{"involvedObject.kind": "Pod", "involvedObject.name": p.Name}.String(),
		})
		if err == nil {
			if msg := eventMessage(evs.Items, cs.Name); msg != "" {
				e.Message = msg
			}
		}
		return e
	}
	return nil
}

func specImage(p *corev1.Pod, container string) string {
	for _, c := range p.Spec.Containers {
		if c.Name == container {
			return c.Image
		}
	}
	return ""
}

// failingContainer returns the status of a container waiting for a reason
// that waiting will not cure, the agent's first.
func failingContainer(p *corev1.Pod) (corev1.ContainerStatus, bool) {
	var found *corev1.ContainerStatus
	for i := range p.Status.ContainerStatuses {
		cs := &p.Status.ContainerStatuses[i]
		if cs.State.Waiting == nil || !startFailures[cs.State.Waiting.Reason] {
			continue
		}
		if found == nil || cs.Name == AgentContainer {
			found = cs
		}
	}
	if found == nil {
		return corev1.ContainerStatus{}, false
	}
	return *found, true
}

// eventMessage picks the kubelet's most telling Event about container: the
// pull failure itself ("Failed to pull image ...") over the back-off that
// follows it, the newest of each.
func eventMessage(evs []corev1.Event, container string) string {
	sort.Slice(evs, func(i, j int) bool { return eventTime(evs[i]).After(eventTime(evs[j]).Time) })
	best, rank := "", 0
	for _, ev := range evs {
		if ev.Type != corev1.EventTypeWarning {
			continue
		}
		if fp := ev.InvolvedObject.FieldPath; fp != "" && fp != "spec.containers{"+container+"}" {
			continue
		}
		r := 1
		if ev.Reason == "Failed" || ev.Reason == "InspectFailed" || ev.Reason == "ErrImageNeverPull" {
			r = 2
			if strings.HasPrefix(ev.Message, "Error: ") {
				r = 1 // "Error: ErrImagePull" only repeats the reason
			}
		}
		if r > rank {
			best, rank = ev.Message, r
		}
	}
	return best
}

func eventTime(ev corev1.Event) metav1.Time {
	switch {
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp
	case !ev.EventTime.IsZero():
		return metav1.Time{Time: ev.EventTime.Time}
	}
	return ev.FirstTimestamp
}
