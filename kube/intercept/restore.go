package intercept

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/kloop/kloop/kube/workload"
)

// Leave ends holder's intercept of w. Other holders keep theirs and
// nothing restarts; the last one out restores the workload: the Services'
// pointed ports and exactly what kloop added to the pod template are
// removed, everything edited meanwhile stays, the token Secret is deleted,
// and it waits for the rollout. The zero Holder ends everyone's. If w was
// deleted meanwhile, its Services and Secret are still cleaned up.
func (in *Injector) Leave(ctx context.Context, w workload.Workload, holder Holder, timeout time.Duration) error {
	obj, err := getObject(ctx, in.Client, in.Namespace, w)
	if errors.Is(err, ErrNoWorkload) {
		// Deleted meanwhile: put back its Services, drop its Secret.
		conflicts, err := in.restoreServices(ctx, &w, nil)
		if err != nil {
			return err
		}
		if err := in.deleteSecretsOf(ctx, w); err != nil {
			return err
		}
		return conflictErr(w, conflicts)
	}
	if err != nil {
		return err
	}
	rec, err := readRecord(obj.meta().Annotations)
	if err != nil {
		return fmt.Errorf("%s: %w", w, err)
	}
	if rec == nil {
		return fmt.Errorf("%w: %s carries no kloop intercept", ErrNotIntercepted, w)
	}
	if holder != (Holder{}) && rec.heldBy(holder) == nil {
		if len(rec.Holders) == 0 && rec.Resident {
			return fmt.Errorf("%w: %s carries a resident kloop agent that nobody intercepts through; `kloop agent uninstall %s` removes it", ErrNotIntercepted, w, w)
		}
		if len(rec.Holders) == 0 {
			return fmt.Errorf("%w: %s carries a kloop agent that nobody holds; `kloop leave --all` removes it", ErrNotIntercepted, w)
		}
		o := rec.Holders[0]
		return &InterceptedError{Workload: w, Holder: strings.Join(rec.HolderNames(), ", "), Since: o.Since, Header: o.Header}
	}
	if timeout == 0 {
		timeout = DefaultRolloutTimeout
	}
	_, err = in.leaveHolder(ctx, w, holder, timeout, true)
	return err
}

// leaveHolder removes holder's rule from w's record; when nobody is left it
// restores the workload (waiting for the rollout when wait), unless the
// agent is resident: that one stays, dormant. It reports whether it
// restored the workload.
func (in *Injector) leaveHolder(ctx context.Context, w workload.Workload, holder Holder, timeout time.Duration, wait bool) (bool, error) {
	last, resident := false, false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		last, resident = false, false
		obj, err := getObject(ctx, in.Client, in.Namespace, w)
		if err != nil {
			return err
		}
		rec, err := readRecord(obj.meta().Annotations)
		if err != nil || rec == nil {
			last = err == nil // an agent nobody records: restore it
			return err
		}
		others := rec.others(holder)
		if len(others) == 0 && !rec.Resident {
			last = true
			return nil
		}
		resident = len(others) == 0
		if len(others) == len(rec.Holders) {
			return nil
		}
		rec.Holders = others
		obj.meta().Annotations[AnnotationIntercept] = mustJSON(rec)
		return obj.update(ctx, in.Client)
	})
	if err != nil || !last {
		switch {
		case err != nil:
		case resident:
			in.Progress.report("restore", fmt.Sprintf("left %s; its resident agent stays, dormant (`kloop agent uninstall %s` removes it)", w, w), 0, 0)
		default:
			in.Progress.report("restore", fmt.Sprintf("left %s; others still intercept it, so the agent stays", w), 0, 0)
		}
		return false, err
	}
	return in.restore(ctx, w, holder, timeout, wait)
}

// restore undoes the injection when nobody but holder holds it: Services
// first (the agent still forwards to the app meanwhile), then the template.
// If another holder joined in between, it keeps the agent for them and
// points the Services back.
func (in *Injector) restore(ctx context.Context, w workload.Workload, holder Holder, timeout time.Duration, wait bool) (bool, error) {
	in.Progress.report("restore", fmt.Sprintf("restoring %s", w), 0, 0)
	conflicts, err := in.restoreServices(ctx, &w, nil)
	if err != nil {
		return false, err
	}
	var secret string
	var joined *Record
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		joined = nil
		obj, err := getObject(ctx, in.Client, in.Namespace, w)
		if err != nil {
			return err
		}
		m := obj.meta()
		rec, _ := readRecord(m.Annotations)
		if rec != nil {
			secret = rec.Secret
			// Someone joined, or installed the agent to stay, meanwhile.
			if others := rec.others(holder); len(others) > 0 || rec.Resident {
				rec.Holders = others
				m.Annotations[AnnotationIntercept] = mustJSON(rec)
				joined = rec
				return obj.update(ctx, in.Client)
			}
		}
		if rec == nil && !hasAgent(obj.template()) {
			return nil
		}
		if lost := stripAgent(obj.template()); lost != "" {
			conflicts = append(conflicts, lost)
		}
		delete(m.Annotations, AnnotationIntercept)
		delete(m.Annotations, AnnotationOriginalTemplate)
		if len(m.Annotations) == 0 {
			m.Annotations = nil
		}
		return obj.update(ctx, in.Client)
	})
	if err != nil {
		return false, err
	}
	if joined != nil {
		in.log().Info("someone joined the intercept or made its agent resident while it was being restored; keeping the agent", "workload", w.String(), "holders", joined.HolderNames())
		return false, in.pointServices(ctx, w, *joined)
	}
	if secret != "" {
		if err := in.deleteSecret(ctx, secret); err != nil {
			return true, err
		}
	}
	in.log().Info("workload restored", "workload", w.String(), "namespace", in.Namespace)
	if wait {
		if err := in.waitRollout(ctx, w, timeout); err != nil {
			return true, err
		}
	}
	return true, conflictErr(w, conflicts)
}

func conflictErr(w workload.Workload, conflicts []string) error {
	if len(conflicts) == 0 {
		return nil
	}
	return &RestoreConflictError{Workload: w, Conflicts: conflicts}
}

func hasAgent(t *corev1.PodTemplateSpec) bool {
	return slices.ContainsFunc(t.Spec.Containers, func(c corev1.Container) bool { return c.Name == AgentContainer })
}

// stripAgent removes exactly what injectAgent added: the agent container,
// its token volume and the intercept-ID annotation. Everything else in the
// template, edited since or not, stays. It describes anything of kloop's
// that someone else took a dependency on, which it then leaves.
func stripAgent(t *corev1.PodTemplateSpec) string {
	t.Spec.Containers = slices.DeleteFunc(t.Spec.Containers, func(c corev1.Container) bool { return c.Name == AgentContainer })
	var users []string
	for _, cs := range [][]corev1.Container{t.Spec.Containers, t.Spec.InitContainers} {
		for _, c := range cs {
			for _, m := range c.VolumeMounts {
				if m.Name == AgentVolume {
					users = append(users, c.Name)
				}
			}
		}
	}
	lost := ""
	if len(users) > 0 {
		lost = fmt.Sprintf("volume %s is now also mounted by %s; kept", AgentVolume, strings.Join(users, ", "))
	} else {
		t.Spec.Volumes = slices.DeleteFunc(t.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == AgentVolume })
		if len(t.Spec.Volumes) == 0 {
			t.Spec.Volumes = nil
		}
	}
	delete(t.Annotations, AnnotationInterceptID)
	if len(t.Annotations) == 0 {
		t.Annotations = nil
	}
	return lost
}

// strippedTemplate is a copy of t without the agent.
func strippedTemplate(t *corev1.PodTemplateSpec) *corev1.PodTemplateSpec {
	c := t.DeepCopy()
	stripAgent(c)
	return c
}

// LeaveAll ends holder's intercepts of the namespace's workloads (every
// intercept, and every Service pointed at an agent and leftover token
// Secret, for the zero Holder), from the cluster's annotations alone. It
// returns the workloads it left.
func (in *Injector) LeaveAll(ctx context.Context, holder Holder, timeout time.Duration) ([]workload.Workload, error) {
	recs, err := in.List(ctx)
	if err != nil {
		return nil, err
	}
	if timeout == 0 {
		timeout = DefaultRolloutTimeout
	}
	var done, restored []workload.Workload
	var errs []error
	// Resident agents stay, with their Services and Secrets: they are
	// installed, not intercepts, and only Uninstall removes them.
	keptServices, keptSecrets := map[string]bool{}, map[string]bool{}
	for _, r := range recs {
		if r.Record.Resident {
			keptServices[r.Workload.String()] = true
			keptSecrets[r.Record.Secret] = true
		}
		if holder != (Holder{}) && r.Record.heldBy(holder) == nil || len(r.Record.Holders) == 0 && r.Record.Resident {
			continue
		}
		ok, err := in.leaveHolder(ctx, r.Workload, holder, timeout, false)
		if err != nil && !errors.Is(err, ErrRestoreConflict) {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, err)
		done = append(done, r.Workload)
		if ok {
			restored = append(restored, r.Workload)
		}
	}
	if holder == (Holder{}) {
		// Services and Secrets whose workload is gone.
		if conflicts, err := in.restoreServices(ctx, nil, keptServices); err != nil {
			errs = append(errs, err)
		} else if len(conflicts) > 0 {
			errs = append(errs, fmt.Errorf("%w: %s", ErrRestoreConflict, strings.Join(conflicts, "; ")))
		}
		secs, err := in.Client.CoreV1().Secrets(in.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelIntercept})
		if err != nil {
			errs = append(errs, apiErr(err, "list", "secrets", in.Namespace))
		} else {
			for _, s := range secs.Items {
				if keptSecrets[s.Name] {
					continue
				}
				if err := in.deleteSecret(ctx, s.Name); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	for _, w := range restored {
		if err := in.waitRollout(ctx, w, timeout); err != nil {
			errs = append(errs, err)
		}
	}
	return done, errors.Join(errs...)
}
