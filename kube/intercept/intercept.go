package intercept

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kloop/kloop/agent/tunnel"
	"github.com/kloop/kloop/kube/portforward"
	"github.com/kloop/kloop/kube/workload"
)

// Config is where and how to intercept.
type Config struct {
	// Rest reaches the cluster; port-forwards go through it.
	Rest *rest.Config
	// Client is built from Rest when nil.
	Client    kubernetes.Interface
	Namespace string
	// Local connects to the local process for an intercepted app port.
	Local tunnel.LocalDialFunc
	// Progress receives the steps; nil ignores them.
	Progress ProgressFunc
	Logger   *slog.Logger
	// OnTunnelChange is called when a pod's tunnel comes or goes.
	OnTunnelChange func()
	// PortForward dials the agents; portforward.NewDialer(Rest) when nil.
	PortForward *portforward.Dialer
}

// Intercept is a running intercept: the agent in the workload's pods and a
// tunnel to each ready pod.
type Intercept struct {
	inj      *Injector
	spec     Spec
	holder   Holder
	res      *Result
	tunnels  *Tunnels
	closeOne sync.Once
}

// Start intercepts spec.Workload: it injects the agent (or adopts the
// holder's existing intercept), waits for the rollout, points the Services
// at the agent, and returns once every ready pod has a tunnel with the
// intercept set, so the next request is tunneled. When the tunnels do not
// come up within spec.RolloutTimeout, a new intercept is undone. ctx bounds
// Start only: the tunnels live until Close or Leave.
func Start(ctx context.Context, cfg Config, spec Spec) (*Intercept, error) {
	if cfg.Rest == nil || cfg.Local == nil || cfg.Namespace == "" {
		return nil, errors.New("intercept: Config needs Rest, Namespace and Local")
	}
	cs := cfg.Client
	if cs == nil {
		var err error
		if cs, err = kubernetes.NewForConfig(cfg.Rest); err != nil {
			return nil, fmt.Errorf("intercept: client: %w", err)
		}
	}
	if spec.RolloutTimeout == 0 {
		spec.RolloutTimeout = DefaultRolloutTimeout
	}
	inj := &Injector{Client: cs, Namespace: cfg.Namespace, Progress: cfg.Progress, Logger: cfg.Logger}
	res, err := inj.Inject(ctx, spec)
	if err != nil {
		return nil, err
	}
	holder := Holder{Name: spec.Holder, ID: spec.HolderID}
	if holder.ID == "" {
		holder.ID = holder.Name
	}
	undo := func(cause error) error {
		if res.Adopted {
			return cause
		}
		restored, rerr := inj.leaveHolder(context.WithoutCancel(ctx), spec.Workload, holder, spec.RolloutTimeout, false)
		switch {
		case rerr != nil:
			return fmt.Errorf("%w; restoring %s also failed: %v", cause, spec.Workload, rerr)
		case restored:
			return fmt.Errorf("%w; %s was restored", cause, spec.Workload)
		default:
			return fmt.Errorf("%w; your rule was removed from %s (others still intercept it)", cause, spec.Workload)
		}
	}
	// A personal intercept routes the HTTP ports; tcp ports stay on the
	// app. Since orders overlapping rules of holders alike on every pod.
	ic := tunnel.Intercept{Filter: spec.rule(), Ports: res.Holder.Ports, Since: res.Holder.Since, Mirror: spec.Mirror}
	dialer := cfg.PortForward
	if dialer == nil {
		dialer = portforward.NewDialer(cfg.Rest)
	}
	t, err := StartTunnels(ctx, TunnelsConfig{
		Client: cs, Namespace: cfg.Namespace, Selector: res.Selector, InterceptID: res.Record.ID,
		ControlPort: res.Record.ControlPort, Token: res.Token, Holder: holder,
		Dial: func(ctx context.Context, pod string, port int) (net.Conn, error) {
			return dialer.Dial(ctx, cfg.Namespace, pod, port)
		},
		Intercept: ic, Local: cfg.Local, Logger: cfg.Logger, OnChange: cfg.OnTunnelChange,
	})
	if err != nil {
		return nil, undo(err)
	}
	cfg.Progress.report("tunnel", "connecting to the agents through port-forward", 0, 0)
	wctx, cancel := context.WithTimeout(ctx, spec.RolloutTimeout)
	defer cancel()
	if err := t.WaitConnected(wctx, 1); err != nil {
		t.Close()
		return nil, undo(err)
	}
	n := len(t.Pods())
	cfg.Progress.report("tunnel", fmt.Sprintf("intercepting %s: %d pods tunneled", spec.Workload, n), n, n)
	return &Intercept{inj: inj, spec: spec, holder: holder, res: res, tunnels: t}, nil
}

// Record is what the cluster stores about this intercept.
func (i *Intercept) Record() Record { return i.res.Record }

// Workload is the intercepted workload.
func (i *Intercept) Workload() workload.Workload { return i.spec.Workload }

// Adopted reports that Start reused the holder's existing intercept.
func (i *Intercept) Adopted() bool { return i.res.Adopted }

// Joined reports that Start added the holder's rule to an agent other
// holders use.
func (i *Intercept) Joined() bool { return i.res.Joined }

// Tunnels are the tunnels to the pods (state, stats, outbound dialing).
func (i *Intercept) Tunnels() *Tunnels { return i.tunnels }

// Close ends the tunnels but leaves the agent in the cluster: the agents
// send traffic to the app, and Start by the same holder adopts it again.
func (i *Intercept) Close() { i.closeOne.Do(i.tunnels.Close) }

// Leave ends the tunnels and the holder's rule; the last holder out
// restores the workload and its Services (a minimal undo), waiting for the
// rollout.
func (i *Intercept) Leave(ctx context.Context) error {
	i.Close()
	timeout := i.spec.RolloutTimeout
	if timeout == 0 {
		timeout = DefaultRolloutTimeout
	}
	return i.inj.Leave(ctx, i.spec.Workload, i.holder, timeout)
}

// LeaveAll ends holder's intercepts in namespace from the cluster's
// annotations alone (everyone's for the zero Holder), for `kloop leave
// --all` and for releasing a claim.
func LeaveAll(ctx context.Context, cs kubernetes.Interface, namespace string, holder Holder, progress ProgressFunc) ([]workload.Workload, error) {
	inj := &Injector{Client: cs, Namespace: namespace, Progress: progress}
	return inj.LeaveAll(ctx, holder, DefaultRolloutTimeout)
}
