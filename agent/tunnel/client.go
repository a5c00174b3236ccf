package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// LocalDialFunc connects to the laptop's process that serves an intercepted
// app port. The daemon passes one that retries for a bounded time, so
// connections that arrive while the process is being relaunched wait instead
// of failing.
type LocalDialFunc func(ctx context.Context, port int) (net.Conn, error)

// Client is the daemon's end of one tunnel to one agent (one pod).
type Client struct {
	sess     *yamux.Session
	agent    AgentInfo
	log      *slog.Logger
	holder   string
	holderID string
	version  int // the protocol version the agent chose

	mu      sync.Mutex
	streams map[net.Conn]struct{} // live inbound and dialed streams
	wg      sync.WaitGroup        // running ServeInbound calls
}

// DialOption adjusts Dial.
type DialOption func(*Client)

// WithLogger sets where the client logs; the default discards.
func WithLogger(log *slog.Logger) DialOption {
	return func(c *Client) { c.log = log }
}

// WithHolder names the developer (user@host) and their kloop installation
// (id). An agent keeps one tunnel and one routing rule per id, so several
// developers share a pod's agent, and a restarted daemon replaces its own
// old tunnel.
func WithHolder(name, id string) DialOption {
	return func(c *Client) { c.holder, c.holderID = name, id }
}

// Dial runs the handshake on conn (typically a Kubernetes port-forward to the
// agent's control port) and returns the multiplexed tunnel. The client owns
// conn from then on; Close closes it.
func Dial(ctx context.Context, conn net.Conn, token string, opts ...DialOption) (*Client, error) {
	c := &Client{log: slog.New(slog.DiscardHandler), streams: map[net.Conn]struct{}{}}
	for _, opt := range opts {
		opt(c)
	}
	w, err := c.handshake(ctx, conn, token)
	if err != nil {
		conn.Close()
		return nil, err
	}
	sess, err := yamux.Client(&coalescingConn{Conn: conn}, yamuxConfig(c.log))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("start tunnel multiplexer: %w", err)
	}
	c.sess = sess
	c.agent = w.Agent
	c.version = w.Version
	return c, nil
}

// handshake checks the agent's proof of the token before proving it in
// turn, so a process that took the control port first learns nothing it
// could use: not the token, and no proof it could replay.
func (c *Client) handshake(ctx context.Context, conn net.Conn, token string) (welcome, error) {
	deadline, ok := ctx.Deadline()
	if !ok || time.Until(deadline) > handshakeTimeout {
		deadline = time.Now().Add(handshakeTimeout)
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var w welcome
	fail := func(what string, err error) (welcome, error) {
		if ctx.Err() != nil {
			return w, fmt.Errorf("tunnel handshake: %w", ctx.Err())
		}
		return w, fmt.Errorf("tunnel handshake: %s: %w", what, err)
	}
	nonce, err := newNonce()
	if err != nil {
		return w, err
	}
	if _, err := conn.Write([]byte(magic)); err != nil {
		return fail("send hello", err)
	}
	if err := writeFrame(conn, hello{Versions: versions(), Nonce: nonce, Holder: c.holder, HolderID: c.holderID}); err != nil {
		return fail("send hello", err)
	}
	var ch challenge
	if err := readFrame(conn, &ch); err != nil {
		return fail("no answer from the agent (is this the agent's control port?)", err)
	}
	if ch.Error != "" {
		return w, fmt.Errorf("tunnel handshake: agent says: %s", ch.Error)
	}
	if !speaks(ch.Version) {
		return w, fmt.Errorf("tunnel handshake: agent chose protocol version %d, this kloop speaks %d to %d", ch.Version, minVersion, Version)
	}
	if !proofValid(token, roleAgent, nonce, ch.Nonce, ch.Proof) {
		return w, fmt.Errorf("%w: it is not this intercept's agent: another process holds the control port, or the intercept was replaced since (then run kloop leave and intercept again); nothing that grants access was sent to it", ErrAgentUnproven)
	}
	if err := writeFrame(conn, clientProof{Proof: prove(token, roleClient, nonce, ch.Nonce)}); err != nil {
		return fail("send proof", err)
	}
	if err := readFrame(conn, &w); err != nil {
		return fail("no welcome from the agent", err)
	}
	if w.Error == "" && w.Version != ch.Version {
		return w, fmt.Errorf("tunnel handshake: agent chose protocol version %d, then welcomed with %d", ch.Version, w.Version)
	}
	if w.Error != "" {
		if strings.HasPrefix(w.Error, tokenRefusedPrefix) {
			return w, fmt.Errorf("%w: %s", ErrTokenRefused, w.Error)
		}
		return w, fmt.Errorf("tunnel handshake: agent says: %s", w.Error)
	}
	conn.SetDeadline(time.Time{})
	return w, nil
}

// Agent describes the agent at the other end.
func (c *Client) Agent() AgentInfo { return c.agent }

// Done is closed when the tunnel has ended: Close was called, the agent went
// away, or keep-alives stopped being answered.
func (c *Client) Done() <-chan struct{} { return c.sess.CloseChan() }

// Close ends the tunnel and every stream on it, and waits for the goroutines
// serving inbound streams. The agent returns its traffic to the app.
func (c *Client) Close() error {
	err := c.sess.Close()
	c.mu.Lock()
	for s := range c.streams {
		s.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
	return err
}

// SetIntercept starts routing traffic to this client, or changes how. It
// replaces any earlier intercept of this tunnel.
func (c *Client) SetIntercept(ctx context.Context, ic Intercept) error {
	if rule := ic.Rule(); rule != nil {
		check := *rule
		if err := check.Compile(); err != nil {
			return fmt.Errorf("set intercept: %w", err)
		}
		if h := rule.SingleHeader(); h != nil {
			ic.Header, ic.Filter = h, nil
		} else if c.version < 4 {
			// An older agent would drop the unknown filter and take
			// every request: refuse rather than steal the workload.
			return fmt.Errorf("set intercept (%s): %w", rule, ErrFilterUnsupported)
		} else {
			ic.Header, ic.Filter = nil, rule
		}
	}
	if ic.Mirror && c.version < 5 {
		// An older agent would drop the unknown field and steal.
		return fmt.Errorf("set intercept: %w", ErrMirrorUnsupported)
	}
	if _, err := c.control(ctx, controlRequest{Op: "set", Intercept: &ic}); err != nil {
		return fmt.Errorf("set intercept: %w", err)
	}
	return nil
}

// ClearIntercept sends all traffic back to the app while keeping the tunnel
// (and outbound dialing) up.
func (c *Client) ClearIntercept(ctx context.Context) error {
	if _, err := c.control(ctx, controlRequest{Op: "clear"}); err != nil {
		return fmt.Errorf("clear intercept: %w", err)
	}
	return nil
}

// Stats returns how many requests the agent routed each way.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	resp, err := c.control(ctx, controlRequest{Op: "stats"})
	if err != nil {
		return Stats{}, fmt.Errorf("agent stats: %w", err)
	}
	if resp.Stats == nil {
		return Stats{}, errors.New("agent stats: the agent sent none")
	}
	return *resp.Stats, nil
}

// Version is the protocol version the agent chose.
func (c *Client) Version() int { return c.version }

// ErrPauseUnsupported: the agent predates protocol version 3 and cannot
// hold requests while the local process is paused.
var ErrPauseUnsupported = errors.New("the agent's protocol is older than version 3 and cannot send requests to the pods while your process is paused: run kloop leave and intercept again to update the agent")

// ErrFilterUnsupported: the agent predates protocol version 4 and routes
// by one header only.
var ErrFilterUnsupported = errors.New("the workload's agent speaks a protocol older than version 4 (it was injected by an older kloop) and routes by one header only, not by path, method or several headers: use a single --header rule, or, once every holder has left (kloop leave), intercept again to inject the current agent")

// ErrMirrorUnsupported: the agent predates protocol version 5 and cannot
// mirror; it would take the requests instead.
var ErrMirrorUnsupported = errors.New("the workload's agent speaks a protocol older than version 5 (it was injected by an older kloop) and cannot mirror traffic: intercept with --traffic steal, or, once every holder has left (kloop leave), intercept again to inject the current agent")

// SetPaused tells the agent that this holder's local process is stopped
// (paused true), for example at a breakpoint, or runs again. While it is,
// the agent holds new requests of a global intercept for up to hold (0:
// the agent's default, 2 s) and then lets the app answer them; requests
// already on the laptop keep waiting there.
func (c *Client) SetPaused(ctx context.Context, paused bool, hold time.Duration) error {
	if c.version < 3 {
		return ErrPauseUnsupported
	}
	op := "resume"
	if paused {
		op = "pause"
	}
	if _, err := c.control(ctx, controlRequest{Op: op, HoldMillis: hold.Milliseconds()}); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

func (c *Client) control(ctx context.Context, req controlRequest) (controlResponse, error) {
	var resp controlResponse
	s, err := c.open(ctx)
	if err != nil {
		return resp, err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := writeKindFrame(s, kindControl, req); err != nil {
		return resp, c.streamErr(ctx, err)
	}
	if err := readFrame(s, &resp); err != nil {
		return resp, c.streamErr(ctx, err)
	}
	if resp.Error != "" {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

// DialCluster connects to addr from inside the agent's pod, so cluster DNS
// names such as users:8080 resolve the way the app would see them.
func (c *Client) DialCluster(ctx context.Context, network, addr string) (net.Conn, error) {
	s, err := c.open(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial %s in the cluster: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { s.SetDeadline(time.Unix(1, 0)) })
	var r reply
	err = writeKindFrame(s, kindDial, dialHeader{Network: network, Addr: addr})
	if err == nil {
		err = readFrame(s, &r)
	}
	if !stop() {
		err = ctx.Err()
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("dial %s in the cluster: %w", addr, c.streamErr(ctx, err))
	}
	if r.Error != "" {
		s.Close()
		return nil, fmt.Errorf("dial %s in the cluster: %s", addr, r.Error)
	}
	return s, nil
}

// ServeInbound takes the connections and requests the agent routes to this
// laptop and pipes each to the connection dial returns. It blocks until ctx
// is done or the tunnel ends, and returns after every inbound stream it
// started has finished. When dial fails, the agent is told so and sends that
// traffic to the app instead.
func (c *Client) ServeInbound(ctx context.Context, dial LocalDialFunc) error {
	c.wg.Add(1)
	defer c.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		s, err := c.sess.AcceptStreamWithContext(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if isClosedErr(err) {
				return fmt.Errorf("serve inbound: %w", ErrClosed)
			}
			return fmt.Errorf("serve inbound: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.serveInbound(ctx, s, dial)
		}()
	}
}

func (c *Client) serveInbound(ctx context.Context, s *yamux.Stream, dial LocalDialFunc) {
	c.track(s, true)
	defer c.track(s, false)
	defer s.Close()
	var kind [1]byte
	var h inboundHeader
	s.SetReadDeadline(time.Now().Add(handshakeTimeout))
	if _, err := s.Read(kind[:]); err != nil || kind[0] != kindInbound {
		c.log.Warn("tunnel: unexpected stream from the agent", "kind", kind[0], "err", err)
		return
	}
	if err := readFrame(s, &h); err != nil {
		c.log.Warn("tunnel: bad inbound header", "err", err)
		return
	}
	s.SetReadDeadline(time.Time{})
	local, err := dial(ctx, h.Port)
	if err != nil {
		c.log.Info("tunnel: local app did not answer; the agent sends this to the cluster app", "port", h.Port, "err", err)
		writeFrame(s, reply{Error: fmt.Sprintf("laptop: dial local port for %d: %v", h.Port, err)})
		return
	}
	if err := writeFrame(s, reply{}); err != nil {
		local.Close()
		return
	}
	c.track(local, true)
	defer c.track(local, false)
	Splice(ctx, s, local)
}

func (c *Client) track(conn net.Conn, add bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if add {
		c.streams[conn] = struct{}{}
	} else {
		delete(c.streams, conn)
	}
}

func (c *Client) open(ctx context.Context) (*yamux.Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, err := c.sess.OpenStream()
	if err != nil {
		if c.sess.IsClosed() {
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("open stream: %w", err)
	}
	return s, nil
}

func (c *Client) streamErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if c.sess.IsClosed() {
		return ErrClosed
	}
	return err
}

// PortNumbers returns the app ports the agent forwards, sorted.
func (a AgentInfo) PortNumbers() []int {
	ports := make([]int, 0, len(a.Ports))
	for _, p := range a.Ports {
		ports = append(ports, p.Port)
	}
	slices.Sort(ports)
	return ports
}
