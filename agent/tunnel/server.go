package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// tokenRefusedPrefix starts the welcome error for a wrong token; the client
// maps it to ErrTokenRefused.
const tokenRefusedPrefix = "token refused"

// outboundDialTimeout bounds a dial made inside the pod for the laptop.
const outboundDialTimeout = 10 * time.Second

// Controller is the agent's routing state that a connected client changes.
type Controller interface {
	SetIntercept(Intercept) error
	ClearIntercept()
	Stats() Stats
	// SetPaused tells whether the holder's local process is stopped (at a
	// breakpoint), and for how long requests wait for it before the app
	// answers them instead (0: the agent's default).
	SetPaused(paused bool, hold time.Duration) error
}

// ServerConfig is the agent's side of the handshake.
type ServerConfig struct {
	// Token is the per-intercept secret a client must present.
	Token string
	// Agent is sent to the client at handshake.
	Agent AgentInfo
	// Dial makes the outbound connections clients ask for; nil uses a
	// net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives refusals and stream errors; never the token.
	Logger *slog.Logger
}

// ServerConn is the agent's end of one authenticated tunnel.
type ServerConn struct {
	sess     *yamux.Session
	remote   string
	holder   string
	holderID string
	log      *slog.Logger
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Accept runs the agent's side of the handshake on conn. A client with a
// wrong token or an unknown protocol version gets a clear error and the
// connection is closed.
func Accept(ctx context.Context, conn net.Conn, cfg ServerConfig) (*ServerConn, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	remote := conn.RemoteAddr().String()
	h, err := serverHandshake(ctx, conn, cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("tunnel client %s: %w", remote, err)
	}
	sess, err := yamux.Server(&coalescingConn{Conn: conn}, yamuxConfig(log))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("tunnel client %s: start multiplexer: %w", remote, err)
	}
	dial := cfg.Dial
	if dial == nil {
		d := &net.Dialer{}
		dial = d.DialContext
	}
	return &ServerConn{sess: sess, remote: remote, holder: h.Holder, holderID: h.HolderID, log: log, dial: dial}, nil
}

// serverHandshake proves the token to the client first, so that the client
// sends nothing that grants access to an impostor, then checks the client's
// proof.
func serverHandshake(ctx context.Context, conn net.Conn, cfg ServerConfig) (hello, error) {
	conn.SetDeadline(time.Now().Add(handshakeTimeout))
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var h hello
	var m [len(magic)]byte
	if _, err := io.ReadFull(conn, m[:]); err != nil {
		return h, fmt.Errorf("read hello: %w", err)
	}
	if string(m[:]) != magic {
		return h, errors.New("not a kloop tunnel client (bad magic)")
	}
	if err := readFrame(conn, &h); err != nil {
		return h, fmt.Errorf("read hello: %w", err)
	}
	version := highestCommon(h.Versions)
	if version == 0 {
		msg := fmt.Sprintf("protocol versions %v are not supported; this agent speaks %d to %d: use a kloop whose agent image matches, or run kloop leave and intercept again to update the agent", h.Versions, minVersion, Version)
		writeFrame(conn, challenge{Error: msg})
		return h, errors.New(msg)
	}
	if len(h.Nonce) != nonceSize {
		msg := fmt.Sprintf("hello carries a %d-byte nonce, not %d", len(h.Nonce), nonceSize)
		writeFrame(conn, challenge{Error: msg})
		return h, errors.New(msg)
	}
	nonce, err := newNonce()
	if err != nil {
		return h, err
	}
	if err := writeFrame(conn, challenge{Version: version, Nonce: nonce, Proof: prove(cfg.Token, roleAgent, h.Nonce, nonce)}); err != nil {
		return h, fmt.Errorf("send challenge: %w", err)
	}
	var p clientProof
	if err := readFrame(conn, &p); err != nil {
		// A client that found our proof wrong hangs up here.
		return h, fmt.Errorf("read proof: %w", err)
	}
	if !proofValid(cfg.Token, roleClient, h.Nonce, nonce, p.Proof) {
		writeFrame(conn, welcome{Error: tokenRefusedPrefix + ": the client does not hold this agent's intercept secret; it was probably replaced by a newer intercept, run kloop leave and intercept again"})
		return h, ErrTokenRefused
	}
	if err := writeFrame(conn, welcome{Version: version, Agent: cfg.Agent}); err != nil {
		return h, fmt.Errorf("send welcome: %w", err)
	}
	conn.SetDeadline(time.Time{})
	return h, nil
}

// Remote is the client's address as the agent sees it.
func (s *ServerConn) Remote() string { return s.remote }

// Holder is the developer (user@host) the client says it acts for.
func (s *ServerConn) Holder() string { return s.holder }

// HolderID names the client's kloop installation; the agent keeps one
// tunnel per HolderID and replaces an older one of the same ID.
func (s *ServerConn) HolderID() string { return s.holderID }

// Done is closed when the tunnel has ended.
func (s *ServerConn) Done() <-chan struct{} { return s.sess.CloseChan() }

// Close ends the tunnel and every stream on it.
func (s *ServerConn) Close() error { return s.sess.Close() }

// Serve answers the client's control and dial streams until ctx is done or
// the tunnel ends, and returns after every stream it started has finished.
func (s *ServerConn) Serve(ctx context.Context, ctrl Controller) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		st, err := s.sess.AcceptStreamWithContext(ctx)
		if err != nil {
			if ctx.Err() != nil || isClosedErr(err) {
				return nil
			}
			return fmt.Errorf("tunnel client %s: %w", s.remote, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveStream(ctx, st, ctrl)
		}()
	}
}

func (s *ServerConn) serveStream(ctx context.Context, st *yamux.Stream, ctrl Controller) {
	defer st.Close()
	st.SetReadDeadline(time.Now().Add(handshakeTimeout))
	var kind [1]byte
	if _, err := io.ReadFull(st, kind[:]); err != nil {
		return
	}
	switch kind[0] {
	case kindControl:
		var req controlRequest
		if err := readFrame(st, &req); err != nil {
			s.log.Warn("tunnel: bad control request", "client", s.remote, "err", err)
			return
		}
		writeFrame(st, s.control(req, ctrl))
	case kindDial:
		var h dialHeader
		if err := readFrame(st, &h); err != nil {
			s.log.Warn("tunnel: bad dial request", "client", s.remote, "err", err)
			return
		}
		st.SetReadDeadline(time.Time{})
		s.serveDial(ctx, st, h)
	default:
		s.log.Warn("tunnel: unknown stream kind; is the client newer than this agent?", "client", s.remote, "kind", kind[0])
	}
}

func (s *ServerConn) control(req controlRequest, ctrl Controller) controlResponse {
	switch req.Op {
	case "set":
		if req.Intercept == nil {
			return controlResponse{Error: "set intercept: no intercept given"}
		}
		if err := ctrl.SetIntercept(*req.Intercept); err != nil {
			return controlResponse{Error: err.Error()}
		}
		s.log.Info("intercept set", "client", s.remote, "ports", req.Intercept.Ports, "rule", ruleNames(req.Intercept.Rule()))
		return controlResponse{}
	case "clear":
		ctrl.ClearIntercept()
		s.log.Info("intercept cleared", "client", s.remote)
		return controlResponse{}
	case "stats":
		st := ctrl.Stats()
		return controlResponse{Stats: &st}
	case "pause", "resume":
		paused := req.Op == "pause"
		if err := ctrl.SetPaused(paused, time.Duration(req.HoldMillis)*time.Millisecond); err != nil {
			return controlResponse{Error: err.Error()}
		}
		s.log.Info("holder's process "+map[bool]string{true: "paused", false: "resumed"}[paused], "client", s.remote, "holder", s.holder)
		return controlResponse{}
	}
	return controlResponse{Error: fmt.Sprintf("unknown control operation %q; is the client newer than this agent?", req.Op)}
}

// ruleNames logs what a personal intercept matches on; header values are
// personal and stay out of the log.
func ruleNames(f *Filter) string {
	if f == nil {
		return "(global)"
	}
	var parts []string
	for _, h := range f.Headers {
		parts = append(parts, "header "+h.Name)
	}
	if f.PathPrefix != "" {
		parts = append(parts, "path "+f.PathPrefix)
	}
	if f.PathRegex != "" {
		parts = append(parts, "path ~ "+f.PathRegex)
	}
	if len(f.Methods) > 0 {
		parts = append(parts, "method "+strings.Join(f.Methods, ","))
	}
	if f.Any {
		return strings.Join(parts, " or ")
	}
	return strings.Join(parts, " and ")
}

func (s *ServerConn) serveDial(ctx context.Context, st *yamux.Stream, h dialHeader) {
	if h.Network != "tcp" && h.Network != "tcp4" && h.Network != "tcp6" {
		writeFrame(st, reply{Error: fmt.Sprintf("network %q is not supported; only tcp", h.Network)})
		return
	}
	dctx, cancel := context.WithTimeout(ctx, outboundDialTimeout)
	conn, err := s.dial(dctx, h.Network, h.Addr)
	cancel()
	if err != nil {
		writeFrame(st, reply{Error: fmt.Sprintf("from the pod: %v", err)})
		return
	}
	if err := writeFrame(st, reply{}); err != nil {
		conn.Close()
		return
	}
	Splice(ctx, st, conn)
}

// OpenInbound asks the client to take a connection for app port port. It
// returns once the laptop side has connected to its local process; an error
// means the caller should send the traffic to the app instead.
func (s *ServerConn) OpenInbound(ctx context.Context, port int, protocol, remote string) (net.Conn, error) {
	st, err := s.sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("open inbound stream: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Unix(1, 0)) })
	var r reply
	err = writeKindFrame(st, kindInbound, inboundHeader{Port: port, Protocol: protocol, Remote: remote})
	if err == nil {
		err = readFrame(st, &r)
	}
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err == nil && r.Error != "" {
		err = errors.New(r.Error)
	}
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("inbound for port %d: %w", port, err)
	}
	st.SetDeadline(time.Time{})
	return st, nil
}
