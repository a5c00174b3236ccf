package intercept

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kloop/kloop/kube/workload"
)

// waitRollout waits until every replica of w runs the current template and
// is ready, reporting progress; after timeout it fails with the pods that
// are not ready and why.
func (in *Injector) waitRollout(ctx context.Context, w workload.Workload, timeout time.Duration) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	lastMsg := ""
	var lastPullCheck time.Time
	// A rollout that is already complete (a join, a resident agent) or
	// nearly so is seen at once; a long one is polled every 250 ms.
	poll := 10 * time.Millisecond
	for {
		obj, err := getObject(ctx, in.Client, in.Namespace, w)
		if err != nil {
			// client-go's rate limiter refuses a request that could not
			// start before the deadline, just ahead of the deadline itself:
			// either way the wait is over.
			if ctx.Err() != nil || strings.Contains(err.Error(), "would exceed context deadline") {
				break
			}
			return err
		}
		done, ready, want, failure := rolloutState(obj)
		if failure != "" {
			return in.notReady(context.WithoutCancel(ctx), obj, time.Since(start), failure)
		}
		// An image that cannot be pulled fails now, not at the timeout:
		// the kubelet only backs off from there. Looked for once a second.
		if !done && time.Since(lastPullCheck) >= time.Second {
			lastPullCheck = time.Now()
			if e := in.startFailure(ctx, obj); e != nil {
				return e
			}
		}
		msg := fmt.Sprintf("rolling out %s: %d of %d pods updated and ready", w, ready, want)
		if msg != lastMsg {
			in.Progress.report("rollout", msg, ready, want)
			lastMsg = msg
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(poll):
			poll = min(2*poll, 250*time.Millisecond)
			continue
		}
		break
	}
	obj, err := getObject(context.WithoutCancel(ctx), in.Client, in.Namespace, w)
	if err != nil {
		return err
	}
	return in.notReady(context.WithoutCancel(ctx), obj, time.Since(start), "")
}

// rolloutState reports whether the rollout of the current template is
// complete, how many updated pods are ready, how many are wanted, and a
// reason it will not complete.
func rolloutState(o *object) (done bool, ready, want int, failure string) {
	want = int(o.replicas())
	if d := o.deploy; d != nil {
		st := d.Status
		for _, c := range st.Conditions {
			if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" && st.ObservedGeneration >= d.Generation {
				failure = "progress deadline exceeded: " + c.Message
			}
			// Pods that cannot even be created (Pod Security admission,
			// quota) will not appear by waiting.
			if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue && st.ObservedGeneration >= d.Generation {
				failure = "pods cannot be created: " + c.Message
			}
		}
		if st.ObservedGeneration >= d.Generation {
			ready = int(min(st.UpdatedReplicas, st.AvailableReplicas))
		}
		done = st.ObservedGeneration >= d.Generation && int(st.UpdatedReplicas) == want &&
			int(st.Replicas) == want && int(st.AvailableReplicas) == want
		return done, ready, want, failure
	}
	s := o.sts
	st := s.Status
	if st.ObservedGeneration >= s.Generation {
		ready = int(min(st.UpdatedReplicas, st.ReadyReplicas))
	}
	done = st.ObservedGeneration >= s.Generation && int(st.UpdatedReplicas) == want &&
		int(st.ReadyReplicas) == want && int(st.Replicas) == want &&
		(st.UpdateRevision == "" || st.CurrentRevision == st.UpdateRevision)
	return done, ready, want, ""
}

// notReady builds the error naming the pods that are not ready.
func (in *Injector) notReady(ctx context.Context, o *object, waited time.Duration, failure string) error {
	e := &PodNotReadyError{Workload: o.w, Waited: waited}
	if failure != "" {
		e.Pods = append(e.Pods, failure)
	}
	sel, err := o.labelSelector()
	if err != nil {
		return err
	}
	pods, err := in.Client.CoreV1().Pods(in.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return apiErr(err, "list", "pods", in.Namespace)
	}
	sort.Slice(pods.Items, func(i, j int) bool { return pods.Items[i].Name < pods.Items[j].Name })
	// Pods that are stuck for the same reason are named together.
	var reasons []string
	byReason := map[string][]string{}
	for _, p := range pods.Items {
		if why := podNotReadyReason(&p); why != "" {
			if byReason[why] == nil {
				reasons = append(reasons, why)
			}
			byReason[why] = append(byReason[why], p.Name)
		}
	}
	for _, why := range reasons {
		names := byReason[why]
		what := "pod " + names[0]
		if len(names) > 1 {
			what = "pods " + strings.Join(names, ", ")
		}
		e.Pods = append(e.Pods, what+": "+why)
	}
	if len(e.Pods) == 0 {
		e.Pods = append(e.Pods, fmt.Sprintf("no pod of %s exists yet (check its ReplicaSet or the namespace's quota)", o.w))
	}
	return e
}

// podNotReadyReason says why a pod is not ready, or "" when it is.
func podNotReadyReason(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "terminating"
	}
	var why []string
	ready := false
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
		if c.Status != corev1.ConditionTrue && (c.Reason != "" || c.Message != "") && c.Type == corev1.PodScheduled {
			why = append(why, strings.TrimSpace(fmt.Sprintf("not scheduled: %s %s", c.Reason, c.Message)))
		}
	}
	if ready {
		return ""
	}
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			why = append(why, strings.TrimSpace(fmt.Sprintf("container %s waiting: %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)))
		case cs.State.Terminated != nil:
			why = append(why, fmt.Sprintf("container %s terminated: %s (exit %d)", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode))
		case !cs.Ready:
			why = append(why, fmt.Sprintf("container %s running but not ready", cs.Name))
		}
	}
	if len(why) == 0 {
		why = append(why, "phase "+string(p.Status.Phase))
	}
	return strings.Join(why, ", ")
}
