package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/kloop/kloop/agent/tunnel"
)

// DefaultControlAddr is where the agent accepts tunnels unless told otherwise.
// Loopback only: the pod network must not reach it, Kubernetes port-forward
// (which connects from inside the pod's network namespace) does.
const DefaultControlAddr = "127.0.0.1:7650"

// Config configures an Agent.
type Config struct {
	// Forwards are the intercepted container ports.
	Forwards []Forward
	// ListenHost is the address forward listeners bind; empty means every
	// interface, which is what a sidecar needs so the Service reaches it.
	ListenHost string
	// Control is the tunnel listener's address; it must be a loopback address.
	Control string
	// Token is the per-intercept secret a tunnel client must present.
	Token string
	// Pod names this pod in what the agent tells clients.
	Pod string
	// Logger receives the agent's log; nil discards.
	Logger *slog.Logger
	// Dial makes the outbound connections tunnel clients ask for; nil uses
	// a net.Dialer, so names resolve through the pod's cluster DNS.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Forward is one intercepted container port: the agent listens on ListenPort
// and forwards to Target, the app container's original port, unless an
// intercept routes the traffic to the laptop.
type Forward struct {
	ListenPort int
	Target     string // host:port of the app, normally 127.0.0.1:PORT
	Protocol   string // tunnel.ProtoHTTP or tunnel.ProtoTCP
}

// AppPort is the app container's original port, the number users and the
// tunnel use to name this forward.
func (f Forward) AppPort() int {
	_, port, _ := net.SplitHostPort(f.Target)
	n, _ := strconv.Atoi(port)
	return n
}

// ParseForward parses LISTEN=TARGET[/PROTO], e.g. "9080=127.0.0.1:8080",
// "9080=8080/tcp". TARGET may be a bare port on 127.0.0.1; PROTO is http
// (the default, routed per request) or tcp (routed per connection).
func ParseForward(s string) (Forward, error) {
	bad := func(why string) (Forward, error) {
		return Forward{}, fmt.Errorf("forward %q: %s; want LISTEN_PORT=APP_HOST:APP_PORT[/http|/tcp], e.g. 9080=127.0.0.1:8080", s, why)
	}
	listen, rest, ok := strings.Cut(s, "=")
	if !ok {
		return bad("missing '='")
	}
	f := Forward{Protocol: tunnel.ProtoHTTP}
	if target, proto, ok := strings.Cut(rest, "/"); ok {
		rest = target
		switch proto {
		case tunnel.ProtoHTTP, tunnel.ProtoTCP:
			f.Protocol = proto
		default:
			return bad(fmt.Sprintf("protocol %q is not http or tcp", proto))
		}
	}
	lp, err := parsePort(listen)
	if err != nil {
		return bad("listen port: " + err.Error())
	}
	f.ListenPort = lp
	if !strings.Contains(rest, ":") {
		rest = "127.0.0.1:" + rest
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil || host == "" {
		return bad("target is not HOST:PORT")
	}
	if _, err := parsePort(port); err != nil {
		return bad("target port: " + err.Error())
	}
	f.Target = net.JoinHostPort(host, port)
	return f, nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number 1-65535", s)
	}
	return n, nil
}

// validate reports configuration the agent cannot run with.
func (c Config) validate() error {
	if len(c.Forwards) == 0 {
		return errors.New("no ports to forward: give at least one --forward LISTEN_PORT=APP_HOST:APP_PORT")
	}
	if c.Token == "" {
		return errors.New("no tunnel token: set --token-file or KLOOP_AGENT_TOKEN (the intercept's Secret)")
	}
	seen := map[int]bool{}
	for _, f := range c.Forwards {
		if f.Protocol != tunnel.ProtoHTTP && f.Protocol != tunnel.ProtoTCP {
			return fmt.Errorf("forward to %s: protocol %q is not http or tcp", f.Target, f.Protocol)
		}
		if f.AppPort() == 0 {
			return fmt.Errorf("forward to %q: target is not HOST:PORT", f.Target)
		}
		if seen[f.AppPort()] {
			return fmt.Errorf("app port %d is forwarded twice; give each container port one --forward", f.AppPort())
		}
		seen[f.AppPort()] = true
	}
	host, _, err := net.SplitHostPort(c.Control)
	if err != nil {
		return fmt.Errorf("control address %q: %w", c.Control, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("control address %q is not loopback; the tunnel must only be reachable through Kubernetes port-forward, use 127.0.0.1:PORT", c.Control)
	}
	return nil
}
