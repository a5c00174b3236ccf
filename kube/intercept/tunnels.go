package intercept

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/kloop/kloop/agent/tunnel"
	"github.com/kloop/kloop/kube/portforward"
)

// PodDialFunc connects to port of pod (a Kubernetes port-forward).
type PodDialFunc func(ctx context.Context, pod string, port int) (net.Conn, error)

// TunnelsConfig configures Tunnels.
type TunnelsConfig struct {
	Client    kubernetes.Interface
	Namespace string
	// Selector selects the workload's pods; only those whose template
	// carries InterceptID (and so the agent with this token) get tunnels.
	Selector    labels.Selector
	InterceptID string
	ControlPort int
	Token       string
	// Holder is sent to the agents, which keep one tunnel and rule per
	// holder ID.
	Holder Holder
	// Dial reaches a pod's port; kube/portforward's Dialer.Dial.
	Dial PodDialFunc
	// Intercept is set on every agent as soon as its tunnel is up.
	Intercept tunnel.Intercept
	// Local connects to the local process for an app port; only the
	// ports of Intercept are ever dialed, whatever an agent asks for.
	Local  tunnel.LocalDialFunc
	Logger *slog.Logger
	// OnChange is called (without locks held) whenever a pod's tunnel
	// state changes.
	OnChange func()
}

// PodTunnel is the state of one pod's tunnel.
type PodTunnel struct {
	Pod       string
	Connected bool
	// Since is when the tunnel came up (Connected) or when the last
	// attempt failed.
	Since time.Time
	// Err is why the last attempt failed.
	Err string
	// Attempts counts connection attempts.
	Attempts int
}

// Tunnels keeps one authenticated tunnel with the intercept set to each
// ready pod that runs this intercept's agent, and follows pods as they come
// and go.
type Tunnels struct {
	cfg    TunnelsConfig
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	pods    map[string]*podTunnel
	changed chan struct{} // closed and replaced on every change
	closed  bool

	// pauseMu orders pause and resume messages, so that an agent never
	// ends up with an older state than the last one asked for; paused and
	// hold are what a tunnel that comes up later is told.
	pauseMu sync.Mutex
	paused  bool
	hold    time.Duration
}

type podTunnel struct {
	cancel  context.CancelFunc
	done    chan struct{}
	state   PodTunnel
	lastErr error
	client  *tunnel.Client
}

// StartTunnels starts following the pods; Close stops.
func StartTunnels(ctx context.Context, cfg TunnelsConfig) (*Tunnels, error) {
	if cfg.Dial == nil || cfg.Local == nil || cfg.Client == nil || cfg.Selector == nil {
		return nil, errors.New("tunnels: Client, Selector, Dial and Local are required")
	}
	t := &Tunnels{cfg: cfg, log: cfg.Logger, pods: map[string]*podTunnel{}, changed: make(chan struct{})}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.ctx, t.cancel = context.WithCancel(context.WithoutCancel(ctx))
	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	t.wg.Add(2)
	go func() {
		defer t.wg.Done()
		t.watch(poke)
	}()
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			t.reconcile()
			select {
			case <-t.ctx.Done():
				return
			case <-kick:
			case <-tick.C:
			}
		}
	}()
	return t, nil
}

// wanted reports whether pod should have a tunnel.
func (t *Tunnels) wanted(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning || p.Annotations[AnnotationInterceptID] != t.cfg.InterceptID {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// watch pokes on every change of the workload's pods.
func (t *Tunnels) watch(poke func()) {
	for t.ctx.Err() == nil {
		w, err := t.cfg.Client.CoreV1().Pods(t.cfg.Namespace).Watch(t.ctx, metav1.ListOptions{LabelSelector: t.cfg.Selector.String()})
		if err != nil {
			select {
			case <-t.ctx.Done():
				return
			case <-time.After(time.Second):
				continue
			}
		}
		for range w.ResultChan() {
			poke()
		}
		w.Stop()
		select {
		case <-t.ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// reconcile starts tunnels to new ready pods and stops those of pods that
// went away or stopped being ready.
func (t *Tunnels) reconcile() {
	ctx, cancel := context.WithTimeout(t.ctx, 30*time.Second)
	defer cancel()
	list, err := t.cfg.Client.CoreV1().Pods(t.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: t.cfg.Selector.String()})
	if err != nil {
		if t.ctx.Err() == nil {
			t.log.Warn("list pods for tunnels", "err", err)
		}
		return
	}
	want := map[string]bool{}
	for i := range list.Items {
		if p := &list.Items[i]; t.wanted(p) {
			want[p.Name] = true
		}
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	var stopped []*podTunnel
	for name, pt := range t.pods {
		if !want[name] {
			pt.cancel()
			stopped = append(stopped, pt)
			delete(t.pods, name)
			t.log.Info("pod gone; tunnel closed", "pod", name)
		}
	}
	for name := range want {
		if _, ok := t.pods[name]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(t.ctx)
		pt := &podTunnel{cancel: cancel, done: make(chan struct{}), state: PodTunnel{Pod: name}}
		t.pods[name] = pt
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer close(pt.done)
			t.run(ctx, pt)
		}()
	}
	t.mu.Unlock()
	if len(stopped) > 0 {
		t.notify()
	}
}

// run keeps pod's tunnel up until ctx ends.
func (t *Tunnels) run(ctx context.Context, pt *podTunnel) {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := t.connect(ctx, pt)
		if ctx.Err() != nil {
			return
		}
		t.mu.Lock()
		pt.lastErr = err
		t.mu.Unlock()
		t.update(pt, func(s *PodTunnel) {
			s.Connected, s.Since = false, time.Now()
			if err != nil {
				s.Err = err.Error()
			}
		})
		if err == nil {
			backoff = 200 * time.Millisecond // it was up; reconnect quickly
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if errors.Is(err, tunnel.ErrTokenRefused) || errors.Is(err, tunnel.ErrAgentUnproven) || agentTooOld(err) {
			backoff = 5 * time.Second
		} else {
			backoff = min(backoff*2, 3*time.Second)
		}
	}
}

// connect dials, authenticates, sets the intercept and serves inbound
// traffic until the tunnel ends; nil means it was up and then ended.
func (t *Tunnels) connect(ctx context.Context, pt *podTunnel) error {
	pod := pt.state.Pod
	t.update(pt, func(s *PodTunnel) { s.Attempts++ })
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := t.cfg.Dial(dctx, pod, t.cfg.ControlPort)
	if err != nil {
		return err
	}
	c, err := tunnel.Dial(dctx, conn, t.cfg.Token, tunnel.WithLogger(t.log.With("pod", pod)), tunnel.WithHolder(t.cfg.Holder.Name, t.cfg.Holder.ID))
	if err != nil {
		return fmt.Errorf("pod %s: %w", pod, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	served := make(chan error, 1)
	go func() { served <- c.ServeInbound(ctx, t.localDial) }()
	if err := c.SetIntercept(dctx, t.cfg.Intercept); err != nil {
		return fmt.Errorf("pod %s: %w", pod, err)
	}
	t.pauseMu.Lock()
	t.mu.Lock()
	pt.client = c
	pt.state.Connected, pt.state.Since, pt.state.Err = true, time.Now(), ""
	t.mu.Unlock()
	if t.paused {
		// The process was paused before this pod's tunnel came up.
		t.sendPaused(dctx, c, true, t.hold)
	}
	t.pauseMu.Unlock()
	t.notify()
	t.log.Info("tunnel up, intercept set", "pod", pod)
	err = <-served
	t.mu.Lock()
	pt.client = nil
	t.mu.Unlock()
	t.log.Info("tunnel ended", "pod", pod, "err", err)
	return nil
}

// localDial connects an agent's inbound stream to the local process, for
// the intercept's ports only: an agent (or whatever holds its port) never
// reaches another port of this machine.
func (t *Tunnels) localDial(ctx context.Context, port int) (net.Conn, error) {
	if len(t.cfg.Intercept.Ports) > 0 && !slices.Contains(t.cfg.Intercept.Ports, port) {
		t.log.Warn("agent asked for a port this intercept does not route; refused", "port", port, "routed", t.cfg.Intercept.Ports)
		return nil, fmt.Errorf("port %d is not intercepted by this client; it routes %v", port, t.cfg.Intercept.Ports)
	}
	return t.cfg.Local(ctx, port)
}

func (t *Tunnels) update(pt *podTunnel, f func(*PodTunnel)) {
	t.mu.Lock()
	f(&pt.state)
	t.mu.Unlock()
	t.notify()
}

func (t *Tunnels) notify() {
	t.mu.Lock()
	close(t.changed)
	t.changed = make(chan struct{})
	t.mu.Unlock()
	if t.cfg.OnChange != nil {
		t.cfg.OnChange()
	}
}

// Pods returns each followed pod's tunnel state, by pod name.
func (t *Tunnels) Pods() []PodTunnel {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]PodTunnel, 0, len(t.pods))
	for _, pt := range t.pods {
		out = append(out, pt.state)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pod < out[j].Pod })
	return out
}

// WaitConnected waits until at least min pods are followed and every
// followed pod's tunnel is up with the intercept set. It fails when ctx
// ends, with each pod's last error.
func (t *Tunnels) WaitConnected(ctx context.Context, minPods int) error {
	minPods = max(minPods, 1)
	for {
		t.mu.Lock()
		ch := t.changed
		n, up := len(t.pods), 0
		var forbidden, old error
		for _, pt := range t.pods {
			if pt.state.Connected {
				up++
			} else if errors.Is(pt.lastErr, portforward.ErrForbidden) {
				forbidden = pt.lastErr
			} else if agentTooOld(pt.lastErr) {
				old = pt.lastErr
			}
		}
		t.mu.Unlock()
		if n >= minPods && up == n {
			return nil
		}
		if forbidden != nil {
			// Retrying will not help until someone changes RBAC.
			return &ForbiddenError{Verb: "create", Resource: "pods/portforward", Namespace: t.cfg.Namespace, Err: forbidden}
		}
		if old != nil {
			// The agent will not learn filters by retrying.
			return fmt.Errorf("tunnels to the agents: %w", old)
		}
		select {
		case <-ch:
		case <-time.After(time.Second):
		case <-ctx.Done():
			var why []string
			for _, p := range t.Pods() {
				if !p.Connected {
					why = append(why, fmt.Sprintf("pod %s: %s", p.Pod, p.Err))
				}
			}
			if n == 0 {
				why = append(why, "no ready pod runs this intercept's agent")
			}
			return fmt.Errorf("tunnels to the agents: %d of %d up: %v: %w", up, n, why, ctx.Err())
		}
	}
}

// clients returns the connected tunnel clients.
func (t *Tunnels) clients() []*tunnel.Client {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*tunnel.Client
	names := make([]string, 0, len(t.pods))
	for n := range t.pods {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if c := t.pods[n].client; c != nil {
			out = append(out, c)
		}
	}
	return out
}

// SetPaused tells every agent whether the local process is stopped (at a
// breakpoint) or runs again, and how long the agents hold a request of a
// global intercept for it before the app answers (0: the agent's default,
// 2 s). Tunnels that come up later are told too. An agent too old to
// hold requests is logged and skipped: its requests wait on the laptop.
func (t *Tunnels) SetPaused(ctx context.Context, paused bool, hold time.Duration) error {
	t.pauseMu.Lock()
	defer t.pauseMu.Unlock()
	t.paused, t.hold = paused, hold
	var errs []error
	for _, c := range t.clients() {
		if err := t.sendPaused(ctx, c, paused, hold); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (t *Tunnels) sendPaused(ctx context.Context, c *tunnel.Client, paused bool, hold time.Duration) error {
	err := c.SetPaused(ctx, paused, hold)
	if errors.Is(err, tunnel.ErrPauseUnsupported) {
		t.log.Warn("agent cannot send requests to the pods while the process is paused", "pod", c.Agent().Pod, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("pod %s: %w", c.Agent().Pod, err)
	}
	return nil
}

// DialCluster connects to addr from inside one of the pods (the first
// connected), for the outbound proxy (kube/intercept/proxy).
func (t *Tunnels) DialCluster(ctx context.Context, network, addr string) (net.Conn, error) {
	var last error = errors.New("no tunnel to any pod is up")
	for _, c := range t.clients() {
		conn, err := c.DialCluster(ctx, network, addr)
		if err == nil {
			return conn, nil
		}
		last = err
	}
	return nil, fmt.Errorf("dial %s through the agent: %w", addr, last)
}

// Stats adds up the agents' counters per app port.
func (t *Tunnels) Stats(ctx context.Context) (tunnel.Stats, error) {
	sum := map[int]*tunnel.PortStats{}
	var errs []error
	for _, c := range t.clients() {
		st, err := c.Stats(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, p := range st.Ports {
			s := sum[p.Port]
			if s == nil {
				s = &tunnel.PortStats{Port: p.Port}
				sum[p.Port] = s
			}
			s.ToLaptop += p.ToLaptop
			s.ToApp += p.ToApp
			s.Fallbacks += p.Fallbacks
			s.PausedToApp += p.PausedToApp
			s.Mirrored += p.Mirrored
			s.MirrorDropped += p.MirrorDropped
			s.Paused = s.Paused || p.Paused
		}
	}
	var out tunnel.Stats
	for _, s := range sum {
		out.Ports = append(out.Ports, *s)
	}
	sort.Slice(out.Ports, func(i, j int) bool { return out.Ports[i].Port < out.Ports[j].Port })
	return out, errors.Join(errs...)
}

// Close ends every tunnel (the agents send traffic to the app again) and
// stops following pods.
func (t *Tunnels) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	for _, pt := range t.pods {
		pt.cancel()
	}
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
}

// agentTooOld reports an agent that cannot apply the intercept as asked:
// retrying will not help until it is replaced.
func agentTooOld(err error) bool {
	return errors.Is(err, tunnel.ErrFilterUnsupported) || errors.Is(err, tunnel.ErrMirrorUnsupported)
}
