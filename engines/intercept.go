package engines

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kloop/kloop/kube/env"
	"github.com/kloop/kloop/kube/intercept"
	"github.com/kloop/kloop/kube/intercept/proxy"
	"github.com/kloop/kloop/kube/kubeconfig"
	"github.com/kloop/kloop/kube/outbound"
	"github.com/kloop/kloop/kube/portforward"
	"github.com/kloop/kloop/kube/ports"
	"github.com/kloop/kloop/kube/workload"
	"github.com/kloop/kloop/session"
)

// InterceptsOptions configure the Intercepts.
type InterceptsOptions struct {
	// Holder names whose intercept it is (user@host); "" is
	// kubeconfig.DefaultHolder().
	Holder string
	// HolderID tells this kloop installation apart from others with the
	// same user@host (HolderID reads or creates it); "" is Holder.
	HolderID string
	// Image is $KLOOP_AGENT_IMAGE: it overrides every other setting of
	// the agent image (see intercept.ResolveImage); "" leaves the choice to
	// the workspace, the cluster and the default.
	Image  string
	Logger *slog.Logger
}

// Intercepts implements session.InterceptEngine.
type Intercepts struct {
	opts InterceptsOptions
	log  *slog.Logger
}

var (
	_ session.InterceptEngine = (*Intercepts)(nil)
	_ session.Pauser          = (*interception)(nil)
)

// NewIntercepts returns an Intercepts.
func NewIntercepts(opts InterceptsOptions) *Intercepts {
	if opts.Holder == "" {
		opts.Holder = kubeconfig.DefaultHolder()
	}
	if opts.HolderID == "" {
		opts.HolderID = opts.Holder
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Intercepts{opts: opts, log: opts.Logger}
}

// connect loads the target's kubeconfig with a rate limit fit for the
// bursts of an intercept (client-go's default 5 QPS would queue them).
func connect(t session.Target) (*rest.Config, kubernetes.Interface, string, error) {
	rc, ns, err := kubeconfig.LoadRESTConfig(t.Kubeconfig, t.Context)
	if err != nil {
		return nil, nil, "", err
	}
	if t.Namespace != "" {
		ns = t.Namespace
	}
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 50, 100
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, "", fmt.Errorf("client for %s: %w", rc.Host, err)
	}
	return rc, cs, ns, nil
}

// Intercept implements session.InterceptEngine.
func (e *Intercepts) Intercept(ctx context.Context, req session.InterceptRequest, p session.Progress) (session.Interception, error) {
	w, err := workload.Parse(req.Workload)
	if err != nil {
		return nil, err
	}
	spec := intercept.Spec{Workload: w, Holder: e.opts.Holder, HolderID: e.opts.HolderID, Resident: req.Target.ResidentAgents}
	if req.Port != 0 {
		spec.Ports = []string{strconv.Itoa(req.Port)}
		for _, p := range req.ExtraPorts {
			spec.Ports = append(spec.Ports, strconv.Itoa(p))
		}
	}
	spec.Filter = req.Filter
	spec.Mirror = req.Traffic == session.TrafficMirror
	rc, cs, ns, err := connect(req.Target)
	if err != nil {
		return nil, err
	}
	if !req.Traffic.Inbound() {
		return e.interceptNone(ctx, req, rc, cs, ns, p)
	}

	if spec.Image, err = e.agentImage(ctx, cs, req.AgentImage); err != nil {
		return nil, err
	}

	// The env first: a missing Secret fails before the cluster is changed.
	p.Report(fmt.Sprintf("resolving the env of %s", w), 5)
	resolved, err := env.Resolve(ctx, cs, ns, req.Workload, env.Options{Root: req.Root})
	if err != nil {
		return nil, err
	}
	for _, warn := range resolved.Warnings {
		e.log.Warn("env", "workload", req.Workload, "warning", warn)
	}
	if req.Port == 0 {
		// No port named: the only one, else the one a Service targets
		// (kube/ports), so the program knows where to listen. Without a
		// program (`-- CMD`, or traffic to a local port) every port a
		// Service targets is intercepted when no single one stands out.
		port, err := ports.Find(ctx, cs, ns, w)
		switch {
		case err == nil:
			req.Port = port
			spec.Ports = []string{strconv.Itoa(port)}
		case req.NeedPort:
			return nil, err
		}
	}

	ic, err := intercept.Start(ctx, intercept.Config{
		Rest: rc, Client: cs, Namespace: ns,
		Local: func(ctx context.Context, port int) (net.Conn, error) { return req.Dial(ctx, port) },
		Progress: func(pr intercept.Progress) {
			pct := map[string]int{"inject": 15, "rollout": 40, "service": 60, "tunnel": 75, "restore": 90}[pr.Stage]
			p.Report(pr.Message, pct)
		},
		Logger: e.log,
	}, spec)
	if err != nil {
		return nil, err
	}
	it := &interception{ic: ic, holder: e.opts.Holder, log: e.log}
	ports := ic.Record().AppPorts()
	if req.Port != 0 {
		it.port = req.Port
	} else if len(ports) > 0 {
		it.port = ports[0]
	}
	dial := proxy.DialFunc(ic.Tunnels().DialCluster)
	if req.Outbound != nil {
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := ic.Tunnels().DialCluster(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return req.Outbound(c), nil
		}
	}
	dial, noProxy, err := e.routeOutbound(ctx, cs, ns, req, dial)
	if err != nil {
		if lerr := ic.Leave(context.WithoutCancel(ctx)); lerr != nil {
			err = errors.Join(err, fmt.Errorf("restore %s: %w", w, lerr))
		}
		return nil, err
	}
	if err := it.startProxies(dial, noProxy); err != nil {
		if lerr := ic.Leave(context.WithoutCancel(ctx)); lerr != nil {
			err = errors.Join(err, fmt.Errorf("restore %s: %w", w, lerr))
		}
		return nil, err
	}
	it.env = append(resolved.Environ(), it.proxyEnv...)
	return it, nil
}

// interceptNone is traffic none: the pod's env and volumes and an
// outbound proxy that reaches Services through the API server, with only
// reads in the cluster, so there is nothing there to undo or to restore
// after a crash. No port is inferred: the program may listen on none (a
// queue worker), and a port given is the one its start waits for.
func (e *Intercepts) interceptNone(ctx context.Context, req session.InterceptRequest, rc *rest.Config, cs kubernetes.Interface, ns string, p session.Progress) (session.Interception, error) {
	p.Report(fmt.Sprintf("resolving the env of %s", req.Workload), 20)
	resolved, err := env.Resolve(ctx, cs, ns, req.Workload, env.Options{Root: req.Root})
	if err != nil {
		return nil, err
	}
	for _, warn := range resolved.Warnings {
		e.log.Warn("env", "workload", req.Workload, "warning", warn)
	}
	services := &portforward.ServiceDialer{Client: cs, Pods: portforward.NewDialer(rc), Namespace: ns}
	dial := proxy.DialFunc(services.DialContext)
	if req.Outbound != nil {
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := services.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return req.Outbound(c), nil
		}
	}
	// Every connection goes to a Service by name through the API server:
	// with no agent there is no pod to dial from, so outbound rules (which
	// session refuses with traffic none) have nothing to choose between.
	it := &interception{holder: e.opts.Holder, port: req.Port, log: e.log}
	if err := it.startProxies(dial, "localhost,127.0.0.1,::1"); err != nil {
		return nil, err
	}
	it.env = append(resolved.Environ(), it.proxyEnv...)
	return it, nil
}

// routeOutbound wraps cluster, whichever dial reaches the cluster (the
// agents' tunnels, or the API server for traffic none), in the request's
// outbound rules: what they keep local is dialed from this machine. It
// returns the NO_PROXY value that matches.
func (e *Intercepts) routeOutbound(ctx context.Context, cs kubernetes.Interface, ns string, req session.InterceptRequest, cluster proxy.DialFunc) (proxy.DialFunc, string, error) {
	rules, err := outbound.New(req.OutboundRules.Include, req.OutboundRules.Exclude, outbound.Options{
		Namespaces:   []string{ns},
		ServiceCIDRs: e.serviceCIDRs(ctx, cs),
	})
	if err != nil {
		return nil, "", fmt.Errorf("outbound %w", err)
	}
	var direct net.Dialer
	return rules.Dial(cluster, direct.DialContext), rules.NoProxy(), nil
}

// serviceCIDRs are the cluster's Service IP ranges where the cluster
// publishes them (networking.k8s.io/v1 ServiceCIDR, Kubernetes 1.33 and
// later); without them, or without the right to list them, only names
// decide.
func (e *Intercepts) serviceCIDRs(ctx context.Context, cs kubernetes.Interface) []netip.Prefix {
	list, err := cs.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{})
	if err != nil {
		e.log.Debug("service CIDRs unknown; outbound rules route by name", "err", err)
		return nil
	}
	var out []netip.Prefix
	for _, sc := range list.Items {
		for _, c := range sc.Spec.CIDRs {
			if p, err := netip.ParsePrefix(c); err == nil {
				out = append(out, p.Masked())
			}
		}
	}
	return out
}

// agentImage is the agent image to inject: $KLOOP_AGENT_IMAGE, the
// workspace's, the cluster's or the default (intercept.ResolveImage).
func (e *Intercepts) agentImage(ctx context.Context, cs kubernetes.Interface, workspace string) (string, error) {
	image, err := intercept.ResolveImage(ctx, cs, intercept.ImageOptions{Env: e.opts.Image, Workspace: workspace})
	if err != nil {
		return "", err
	}
	if image.Note != "" {
		e.log.Warn("agent image", "image", image.Ref, "note", image.Note)
	}
	e.log.Info("agent image", "image", image.Ref, "source", image.Source)
	return image.Ref, nil
}

// Restore implements session.InterceptEngine.
func (e *Intercepts) Restore(ctx context.Context, t session.Target, ref string, p session.Progress) ([]string, error) {
	_, cs, ns, err := connect(t)
	if err != nil {
		return nil, err
	}
	progress := func(pr intercept.Progress) { p.Report(pr.Message, -1) }
	if ref == "" {
		ws, err := intercept.LeaveAll(ctx, cs, ns, e.holder(), progress)
		out := make([]string, 0, len(ws))
		for _, w := range ws {
			out = append(out, w.String())
		}
		return out, err
	}
	w, err := workload.Parse(ref)
	if err != nil {
		return nil, err
	}
	inj := &intercept.Injector{Client: cs, Namespace: ns, Progress: progress, Logger: e.log}
	if err := inj.Leave(ctx, w, e.holder(), 0); err != nil {
		if errors.Is(err, intercept.ErrNotIntercepted) {
			return nil, nil
		}
		return nil, err
	}
	return []string{w.String()}, nil
}

func (e *Intercepts) holder() intercept.Holder {
	return intercept.Holder{Name: e.opts.Holder, ID: e.opts.HolderID}
}

// interception is a live intercept with its outbound proxies.
type interception struct {
	// ic is the cluster's side; nil for traffic none, which has none.
	ic     *intercept.Intercept
	holder string
	port   int
	log    *slog.Logger

	env      []string
	proxyEnv []string

	mu        sync.Mutex
	requests  int64 // the highest count seen
	listeners []net.Listener
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

func (it *interception) Env() []string { return append([]string(nil), it.env...) }
func (it *interception) Port() int     { return it.port }

// Requests counts what the agents sent to this machine (taken or, for a
// mirror, copied), summed over pods.
// It asks the agents, so it is bounded to stay cheap for status updates.
// Pods whose tunnel is down cannot be asked, so the count never goes back:
// the highest seen stands.
func (it *interception) Requests() int64 {
	if it.ic == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	st, err := it.ic.Tunnels().Stats(ctx)
	var n int64
	if err == nil {
		for _, p := range st.Ports {
			n += int64(p.ToLaptop + p.Mirrored)
		}
	}
	it.mu.Lock()
	defer it.mu.Unlock()
	it.requests = max(it.requests, n)
	return it.requests
}

// SetPaused implements session.Pauser.
func (it *interception) SetPaused(ctx context.Context, paused bool, hold time.Duration) error {
	if it.ic == nil {
		return nil // no agent holds requests: none come
	}
	return it.ic.Tunnels().SetPaused(ctx, paused, hold)
}

// PausedToPods implements session.Pauser: the requests the pods answered
// for this holder since the current pause began, summed over pods.
func (it *interception) PausedToPods() int64 {
	if it.ic == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	st, _ := it.ic.Tunnels().Stats(ctx)
	var n int64
	for _, p := range st.Ports {
		n += int64(p.PausedToApp)
	}
	return n
}

func (it *interception) Tunnels() (connected, pods int) {
	if it.ic == nil {
		return 0, 0
	}
	for _, p := range it.ic.Tunnels().Pods() {
		pods++
		if p.Connected {
			connected++
		}
	}
	return connected, pods
}

func (it *interception) Leave(ctx context.Context, _ session.Progress) error {
	it.stopProxies()
	if it.ic == nil {
		return nil // traffic none: nothing in the cluster to undo
	}
	return it.ic.Leave(ctx)
}

// startProxies listens on loopback for the program's outbound traffic:
// HTTP_PROXY/HTTPS_PROXY (CONNECT) and ALL_PROXY (SOCKS5), both behind a
// random password so other users of the machine cannot use the tunnel.
func (it *interception) startProxies(dial proxy.DialFunc, noProxy string) error {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return fmt.Errorf("proxy credentials: %w", err)
	}
	pass := hex.EncodeToString(secret)
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the outbound HTTP proxy: %w", err)
	}
	socksLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		httpLn.Close()
		return fmt.Errorf("listen for the outbound SOCKS5 proxy: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	it.mu.Lock()
	it.listeners, it.cancel = []net.Listener{httpLn, socksLn}, cancel
	it.mu.Unlock()
	creds := proxy.WithCredentials("kloop", pass)
	it.wg.Add(2)
	go func() {
		defer it.wg.Done()
		if err := proxy.ServeHTTPProxy(ctx, httpLn, dial, creds); err != nil && ctx.Err() == nil {
			it.log.Warn("outbound HTTP proxy stopped", "err", err)
		}
	}()
	go func() {
		defer it.wg.Done()
		if err := proxy.ServeSOCKS5(ctx, socksLn, dial, creds); err != nil && ctx.Err() == nil {
			it.log.Warn("outbound SOCKS5 proxy stopped", "err", err)
		}
	}()
	user := url.UserPassword("kloop", pass)
	httpURL := (&url.URL{Scheme: "http", User: user, Host: httpLn.Addr().String()}).String()
	socksURL := (&url.URL{Scheme: "socks5h", User: user, Host: socksLn.Addr().String()}).String()
	it.proxyEnv = []string{
		"HTTP_PROXY=" + httpURL, "HTTPS_PROXY=" + httpURL, "ALL_PROXY=" + socksURL, "NO_PROXY=" + noProxy,
		"http_proxy=" + httpURL, "https_proxy=" + httpURL, "all_proxy=" + socksURL, "no_proxy=" + noProxy,
	}
	return nil
}

func (it *interception) stopProxies() {
	it.mu.Lock()
	cancel, lns := it.cancel, it.listeners
	it.cancel, it.listeners = nil, nil
	it.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	for _, ln := range lns {
		ln.Close()
	}
	it.wg.Wait()
}
