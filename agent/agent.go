package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kloop/kloop/agent/tunnel"
)

// laptopDialTimeout bounds how long a connection waits for the laptop to take
// it before the agent gives it to the app. It is long enough to cover the
// daemon holding connections while it relaunches the local process.
const laptopDialTimeout = 30 * time.Second

// appDialTimeout bounds a dial to the app container.
const appDialTimeout = 10 * time.Second

// acceptRetryDelay paces accepting again after a listener error such as
// running out of file descriptors.
const acceptRetryDelay = 100 * time.Millisecond

// Agent is a running traffic agent.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	control net.Listener
	ports   []*port

	// table routes traffic to the holders' laptops; nil or empty sends
	// everything to the app. Changed only under mu.
	table atomic.Pointer[routes]

	mu sync.Mutex
	// clients are the connected tunnels, one per holder: a daemon that
	// reconnects replaces its own old tunnel, never another holder's.
	clients map[string]*tunnel.ServerConn
	stats   map[string]*holderStats // per holder, for as long as the agent runs
	conns   map[net.Conn]struct{}
	closed  bool
}

// maxClients bounds the holders connected at once, so that a client
// holding the token cannot exhaust the agent with made-up holder IDs.
const maxClients = 64

// Start binds every listener and starts serving. Traffic goes to the app
// until a tunnel client sets an intercept.
func Start(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.Control == "" {
		cfg.Control = DefaultControlAddr
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{cfg: cfg, log: log, conns: map[net.Conn]struct{}{}, clients: map[string]*tunnel.ServerConn{}, stats: map[string]*holderStats{}}
	a.ctx, a.cancel = context.WithCancel(context.WithoutCancel(ctx))

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Control)
	if err != nil {
		a.cancel()
		return nil, fmt.Errorf("listen for tunnels on %s: %w", cfg.Control, err)
	}
	a.control = ln
	for _, f := range cfg.Forwards {
		addr := net.JoinHostPort(cfg.ListenHost, strconv.Itoa(f.ListenPort))
		pln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("listen on %s for app port %d: %w", addr, f.AppPort(), err)
		}
		a.ports = append(a.ports, newPort(a, len(a.ports), f, pln))
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.acceptTunnels()
	}()
	for _, p := range a.ports {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			p.serve()
		}()
	}
	log.Info("agent ready", "control", ln.Addr().String(), "ports", a.info().Ports)
	return a, nil
}

// Run starts an agent and serves until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	a, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return a.Close()
}

// ControlAddr is the address the tunnel listener is bound to.
func (a *Agent) ControlAddr() string { return a.control.Addr().String() }

// ListenAddr is the address the agent accepts traffic on for an app port.
func (a *Agent) ListenAddr(appPort int) (string, bool) {
	for _, p := range a.ports {
		if p.fwd.AppPort() == appPort {
			return p.ln.Addr().String(), true
		}
	}
	return "", false
}

// Close stops every listener, ends the tunnel and every connection, and
// waits for all of the agent's goroutines.
func (a *Agent) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	clients := make([]*tunnel.ServerConn, 0, len(a.clients))
	for _, c := range a.clients {
		clients = append(clients, c)
	}
	for c := range a.conns {
		c.Close()
	}
	a.mu.Unlock()
	a.cancel()
	if a.control != nil {
		a.control.Close()
	}
	for _, c := range clients {
		c.Close()
	}
	for _, p := range a.ports {
		p.close()
	}
	a.wg.Wait()
	for _, p := range a.ports {
		p.app.closeIdle()
	}
	return nil
}

func (a *Agent) info() tunnel.AgentInfo {
	info := tunnel.AgentInfo{Pod: a.cfg.Pod}
	for _, p := range a.ports {
		_, port, _ := net.SplitHostPort(p.ln.Addr().String())
		lp, _ := strconv.Atoi(port)
		info.Ports = append(info.Ports, tunnel.PortInfo{Port: p.fwd.AppPort(), ListenPort: lp, Protocol: p.fwd.Protocol})
	}
	return info
}

// track remembers a connection so Close can end it; it refuses once closed.
func (a *Agent) track(c net.Conn) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.conns[c] = struct{}{}
	return true
}

func (a *Agent) untrack(c net.Conn) {
	a.mu.Lock()
	delete(a.conns, c)
	a.mu.Unlock()
}

func (a *Agent) acceptTunnels() {
	for {
		conn, err := a.control.Accept()
		if err != nil {
			if a.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			a.log.Error("tunnel listener failed; retrying", "err", err)
			time.Sleep(acceptRetryDelay)
			continue
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.serveTunnel(conn)
		}()
	}
}

func (a *Agent) serveTunnel(conn net.Conn) {
	if !a.track(conn) {
		conn.Close()
		return
	}
	tc, err := tunnel.Accept(a.ctx, conn, tunnel.ServerConfig{
		Token:  a.cfg.Token,
		Agent:  a.info(),
		Logger: a.log,
		Dial:   a.cfg.Dial,
	})
	a.untrack(conn)
	if err != nil {
		// err names the client and the reason, never the token.
		a.log.Warn("refused tunnel client", "err", err)
		return
	}
	holder := tc.HolderID()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		tc.Close()
		return
	}
	old := a.clients[holder]
	if old == nil && len(a.clients) >= maxClients {
		a.mu.Unlock()
		a.log.Warn("refused tunnel client: too many holders connected", "client", tc.Remote(), "holders", maxClients)
		tc.Close()
		return
	}
	// One tunnel per holder: a daemon that restarted reconnects while its
	// old tunnel may not have timed out yet.
	a.clients[holder] = tc
	if a.stats[holder] == nil {
		a.stats[holder] = newHolderStats(len(a.ports))
	}
	a.mu.Unlock()
	if old != nil {
		a.log.Info("tunnel client replaced by a newer one of the same holder", "holder", tc.Holder(), "old", old.Remote(), "new", tc.Remote())
		old.Close()
	}
	a.log.Info("tunnel client connected", "client", tc.Remote(), "holder", tc.Holder())

	ctrl := &controller{a: a, conn: tc, pause: newPauseGate()}
	err = tc.Serve(a.ctx, ctrl)
	tc.Close()
	// Requests held for this tunnel's paused process go elsewhere now.
	ctrl.pause.set(false, 0)
	a.mu.Lock()
	if a.clients[holder] == tc {
		delete(a.clients, holder)
	}
	a.mu.Unlock()
	a.dropRoute(tc)
	a.log.Info("tunnel client gone; its traffic goes to the app", "client", tc.Remote(), "holder", tc.Holder(), "err", err)
}

// dropRoute sends tc's share of the traffic back to the app.
func (a *Agent) dropRoute(tc *tunnel.ServerConn) {
	a.mu.Lock()
	next, gone := a.table.Load().without(tc)
	if len(gone) > 0 {
		a.table.Store(next)
	}
	a.mu.Unlock()
	for _, r := range gone {
		r.end()
	}
}

func (a *Agent) portByApp(appPort int) *port {
	for _, p := range a.ports {
		if p.fwd.AppPort() == appPort {
			return p
		}
	}
	return nil
}

// controller applies one client's control requests.
type controller struct {
	a     *Agent
	conn  *tunnel.ServerConn
	pause *pauseGate
}

func (c *controller) current() bool {
	c.a.mu.Lock()
	defer c.a.mu.Unlock()
	return c.a.clients[c.conn.HolderID()] == c.conn
}

func (c *controller) SetIntercept(ic tunnel.Intercept) error {
	rule := ic.Rule()
	if rule != nil {
		compiled := *rule
		if err := compiled.Compile(); err != nil {
			return err
		}
		rule = &compiled
	}
	ports := map[int]*tunnel.Filter{}
	want := ic.Ports
	if len(want) == 0 {
		for _, p := range c.a.ports {
			if rule == nil && !ic.Mirror || p.fwd.Protocol == tunnel.ProtoHTTP {
				want = append(want, p.fwd.AppPort())
			}
		}
		if len(want) == 0 && ic.Mirror {
			return errors.New("mirroring copies HTTP requests, and every port of this agent is tcp; use --traffic steal")
		}
		if len(want) == 0 {
			return errors.New("a personal intercept (header, path or method) needs an HTTP port, and every port of this agent is tcp; use a global intercept")
		}
	}
	for _, n := range want {
		p := c.a.portByApp(n)
		if p == nil {
			return fmt.Errorf("port %d is not intercepted by this agent; it forwards %v", n, c.a.info().PortNumbers())
		}
		if ic.Mirror && p.fwd.Protocol != tunnel.ProtoHTTP {
			return fmt.Errorf("port %d is tcp, and mirroring copies HTTP requests; leave it out or use --traffic steal for it", n)
		}
		if rule != nil && p.fwd.Protocol != tunnel.ProtoHTTP {
			return fmt.Errorf("port %d is tcp, and a personal intercept (header, path or method) routes HTTP requests; use a global intercept for it", n)
		}
		ports[n] = rule
	}
	holder := c.conn.HolderID()
	a := c.a
	a.mu.Lock()
	if a.clients[holder] != c.conn {
		a.mu.Unlock()
		return errors.New("this tunnel was replaced by a newer one of the same holder")
	}
	cur := a.table.Load()
	if !ic.Mirror {
		if err := cur.conflict(holder, ports); err != nil {
			a.mu.Unlock()
			return err
		}
	}
	next, old := cur.without(c.conn)
	since := ic.Since
	if since.IsZero() {
		// A daemon before protocol 4 sends none: keep the place its rule
		// had on this agent, else it joins the end.
		since = time.Now()
		for _, r := range old {
			since = r.since
		}
	}
	nr := &route{conn: c.conn, holder: holder, ports: ports, since: since, laptop: newLaptopTransports(c.conn), stats: a.stats[holder], pause: c.pause}
	if ic.Mirror {
		nr.startMirror(a.ctx)
	}
	next.insert(nr)
	a.table.Store(next)
	a.mu.Unlock()
	for _, r := range old {
		r.end()
	}
	// The client may have gone while we built the route; never leave a
	// route pointing at a dead tunnel.
	select {
	case <-c.conn.Done():
		a.dropRoute(c.conn)
		return errors.New("tunnel closed")
	default:
	}
	return nil
}

func (c *controller) ClearIntercept() {
	if c.current() {
		c.a.dropRoute(c.conn)
	}
}

// SetPaused holds or releases this holder's global intercept while its
// process is stopped; a new pause starts its pausedToApp count at zero.
func (c *controller) SetPaused(paused bool, hold time.Duration) error {
	if !c.current() {
		return errors.New("this tunnel was replaced by a newer one of the same holder")
	}
	if hold < 0 {
		return fmt.Errorf("hold %s is negative; give 0 for the agent's default (%s) or a duration up to %s", hold, DefaultPauseHold, maxPauseHold)
	}
	if c.pause.set(paused, hold) {
		c.a.mu.Lock()
		hs := c.a.stats[c.conn.HolderID()]
		var mine []*route
		for _, r := range c.a.table.Load().list {
			if r.conn == c.conn {
				mine = append(mine, r)
			}
		}
		c.a.mu.Unlock()
		if hs != nil {
			for i := range hs.pausedToApp {
				hs.pausedToApp[i].Store(0)
			}
		}
		for _, r := range mine {
			r.takeBackIdle()
		}
	}
	return nil
}

// Stats counts, per port, what went to this holder's laptop, and what the
// app answered for everyone.
func (c *controller) Stats() tunnel.Stats {
	c.a.mu.Lock()
	hs := c.a.stats[c.conn.HolderID()]
	c.a.mu.Unlock()
	var st tunnel.Stats
	for i, p := range c.a.ports {
		ps := tunnel.PortStats{Port: p.fwd.AppPort(), ToApp: p.toApp.Load(), Paused: c.pause.isPaused()}
		if hs != nil {
			ps.ToLaptop, ps.Fallbacks, ps.PausedToApp = hs.toLaptop[i].Load(), hs.fallbacks[i].Load(), hs.pausedToApp[i].Load()
			ps.Mirrored, ps.MirrorDropped = hs.mirrored[i].Load(), hs.mirrorDropped[i].Load()
		}
		st.Ports = append(st.Ports, ps)
	}
	slices.SortFunc(st.Ports, func(x, y tunnel.PortStats) int { return x.Port - y.Port })
	return st
}
