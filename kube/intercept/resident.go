package intercept

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/retry"

	"github.com/kloop/kloop/kube/workload"
)

// ErrResidentInUse: the resident agent cannot be uninstalled while
// holders intercept through it.
var ErrResidentInUse = errors.New("resident agent in use")

// ResidentInUseError names who still intercepts through the agent that
// Uninstall was asked to remove.
type ResidentInUseError struct {
	Workload workload.Workload
	Holders  []string
}

func (e *ResidentInUseError) Error() string {
	return fmt.Sprintf("%s's resident agent is in use by %s; it can be uninstalled once they have left (`kloop leave %s` on their machines, or `kloop leave --all` in the namespace)",
		e.Workload, strings.Join(e.Holders, ", "), e.Workload)
}

func (e *ResidentInUseError) Is(target error) bool { return target == ErrResidentInUse }

// Installed is what Install did.
type Installed struct {
	Record Record
	// Existing: the workload already carried an agent (an intercept's),
	// which now stays; nothing restarted.
	Existing bool
}

// Install puts a resident agent into spec.Workload: the same sidecar and
// Service pointing an intercept makes, with no holder's rule, so the agent
// passes every request to the app until someone intercepts. Intercepts of
// the workload from then on join it with no rollout, and leaving does not
// restore the workload; Uninstall does. spec.Holder names who installed it
// (the token Secret records it); spec.Header is ignored. A workload already
// carrying an intercept's agent keeps that agent, now resident.
func (in *Injector) Install(ctx context.Context, spec Spec) (*Installed, error) {
	if spec.Holder == "" {
		return nil, errors.New("intercept: Spec.Holder (user@host) is required")
	}
	spec.HolderID, spec.Header = spec.Holder, nil
	if spec.Image == "" {
		spec.Image = DefaultImage()
	}
	if spec.ControlPort == 0 {
		spec.ControlPort = 7650
	}
	if spec.RolloutTimeout == 0 {
		spec.RolloutTimeout = DefaultRolloutTimeout
	}
	for attempt := 0; ; attempt++ {
		res, err := in.inject(ctx, spec, true)
		if errors.Is(err, errRaced) && attempt < 4 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return &Installed{Record: res.Record, Existing: res.Joined}, nil
	}
}

// makeResident marks the agent already in the workload resident: only the
// record changes, so nothing restarts.
func (in *Injector) makeResident(ctx context.Context, obj *object, rec *Record, spec Spec, sel labels.Selector) (*Result, error) {
	if len(spec.Ports) > 0 {
		_, want, err := choosePorts(spec, strippedTemplate(obj.template()))
		if err != nil {
			return nil, err
		}
		for _, p := range want {
			if _, ok := rec.port(p.Port); !ok {
				return nil, fmt.Errorf("%s already carries a kloop agent, for ports %s, not %d; install without --port to keep that one, or uninstall it first once nobody intercepts (held by %s)",
					spec.Workload, joinInts(rec.AppPorts()), p.Port, strings.Join(rec.HolderNames(), ", "))
			}
		}
	}
	if rec.Resident {
		in.Progress.report("inject", fmt.Sprintf("%s already carries a resident kloop agent", spec.Workload), 0, 0)
		return &Result{Record: *rec, Joined: true, Selector: sel}, nil
	}
	err := in.updateRecord(ctx, spec.Workload, rec, func(r *Record) error {
		r.Resident = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	in.Progress.report("inject", fmt.Sprintf("%s already carries the kloop agent (for %s); it now stays when they leave", spec.Workload, strings.Join(rec.HolderNames(), ", ")), 0, 0)
	return &Result{Record: *rec, Joined: true, Selector: sel}, nil
}

// Uninstall removes w's resident agent exactly, as the last holder's leave
// does for an intercept's (a minimal undo: edits made meanwhile survive),
// and waits for the rollout. It refuses, naming them, while anyone
// intercepts through the agent. An agent nobody holds that is not resident
// (left by a crash) is removed too.
func (in *Injector) Uninstall(ctx context.Context, w workload.Workload, timeout time.Duration) error {
	if timeout == 0 {
		timeout = DefaultRolloutTimeout
	}
	obj, err := getObject(ctx, in.Client, in.Namespace, w)
	if err != nil {
		return err
	}
	rec, err := readRecord(obj.meta().Annotations)
	if err != nil {
		return fmt.Errorf("%s: %w", w, err)
	}
	if rec == nil && !hasAgent(obj.template()) {
		return fmt.Errorf("%w: %s carries no kloop agent; `kloop agent install %s` installs one", ErrNotIntercepted, w, w)
	}
	_, err = in.uninstall(ctx, w, timeout, true)
	return err
}

// uninstall clears the record's resident mark, refusing while anyone
// holds the agent, and restores the workload.
func (in *Injector) uninstall(ctx context.Context, w workload.Workload, timeout time.Duration, wait bool) (bool, error) {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj, err := getObject(ctx, in.Client, in.Namespace, w)
		if err != nil {
			return err
		}
		rec, err := readRecord(obj.meta().Annotations)
		if err != nil || rec == nil {
			return err
		}
		if len(rec.Holders) > 0 {
			return &ResidentInUseError{Workload: w, Holders: rec.HolderNames()}
		}
		if !rec.Resident {
			return nil
		}
		rec.Resident = false
		obj.meta().Annotations[AnnotationIntercept] = mustJSON(rec)
		return obj.update(ctx, in.Client)
	})
	if err != nil {
		return false, err
	}
	return in.restore(ctx, w, nobody(), timeout, wait)
}

// nobody owns no holder's record: restoring on its behalf keeps the agent
// for any holder who joined meanwhile.
func nobody() Holder { return Holder{ID: "\x00kloop: nobody"} }
