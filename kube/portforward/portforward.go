// Package portforward dials a port of a pod through the Kubernetes API
// server, as `kubectl port-forward` does, and returns the connection as a
// net.Conn instead of exposing a local listener. kloop's daemon runs its
// tunnel to the traffic agent (package agent/tunnel) over such a
// connection: the agent's control port is bound to the pod's 127.0.0.1, so
// only callers allowed to create pods/portforward reach it.
//
// Dial speaks the port-forward protocol over WebSocket (the current
// protocol) and falls back to SPDY when the server does not upgrade, like
// kubectl. Each Dial makes one upgraded connection to the API server with
// one data stream on it; closing the net.Conn closes both.
package portforward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	//lint:ignore SA1019 client-go v0.37's spdy and portforward packages still take this package's types
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// ErrForbidden matches (errors.Is) a port-forward the API server refused for
// lack of RBAC (create on pods/portforward).
var ErrForbidden = errors.New("port-forward forbidden")

// Dialer dials pod ports through one API server.
type Dialer struct {
	cfg *rest.Config
	// NoWebsocket uses SPDY only.
	NoWebsocket bool
}

// NewDialer returns a Dialer for the cluster cfg points at.
func NewDialer(cfg *rest.Config) *Dialer { return &Dialer{cfg: rest.CopyConfig(cfg)} }

// Dial connects to port of pod in namespace from inside the pod's network
// namespace, so a port bound to the pod's 127.0.0.1 works. The returned
// conn supports read deadlines (a blocked Read returns when its deadline
// passes) and write deadlines set in the past; Close ends the forward.
func (d *Dialer) Dial(ctx context.Context, namespace, pod string, port int) (net.Conn, error) {
	what := fmt.Sprintf("port-forward to %s/%s:%d", namespace, pod, port)
	u, err := url.Parse(d.cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("%s: parse API server URL %q: %w", what, d.cfg.Host, err)
	}
	if u.Scheme == "" {
		u.Scheme = "https"
	}
	u.Path = strings.TrimRight(u.Path, "/") + fmt.Sprintf("/api/v1/namespaces/%s/pods/%s/portforward", namespace, pod)

	transport, upgrader, err := spdy.RoundTripperFor(d.cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var dialer httpstream.Dialer = spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	if !d.NoWebsocket {
		ws, err := portforward.NewSPDYOverWebsocketDialer(u, d.cfg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		dialer = portforward.NewFallbackDialer(ws, dialer, func(err error) bool {
			return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		})
	}

	type result struct {
		conn httpstream.Connection
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c, _, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
		done <- result{c, err}
	}()
	var sc httpstream.Connection
	select {
	case r := <-done:
		if r.err != nil {
			return nil, classify(what, r.err)
		}
		sc = r.conn
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, fmt.Errorf("%s: %w", what, ctx.Err())
	}

	headers := http.Header{}
	headers.Set(corev1.StreamType, corev1.StreamTypeError)
	headers.Set(corev1.PortHeader, strconv.Itoa(port))
	headers.Set(corev1.PortForwardRequestIDHeader, "0")
	errStream, err := sc.CreateStream(headers)
	if err != nil {
		sc.Close()
		return nil, fmt.Errorf("%s: create error stream: %w", what, err)
	}
	// Nothing is written to the error stream.
	errStream.Close()
	headers.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := sc.CreateStream(headers)
	if err != nil {
		sc.Close()
		return nil, fmt.Errorf("%s: create data stream: %w", what, err)
	}
	c := newConn(what, sc, data, port)
	go c.watchErrors(errStream)
	go c.readLoop()
	return c, nil
}

// classify wraps the dial error, marking RBAC refusals.
func classify(what string, err error) error {
	msg := err.Error()
	var status apierrors.APIStatus
	if apierrors.IsForbidden(err) || (errors.As(err, &status) && status.Status().Code == http.StatusForbidden) ||
		strings.Contains(msg, "403") || strings.Contains(strings.ToLower(msg), "forbidden") {
		return fmt.Errorf("%s: %w (the API server refused it: you need RBAC permission to get and create pods/portforward in this namespace): %v", what, ErrForbidden, err)
	}
	if apierrors.IsNotFound(err) || strings.Contains(msg, "404") {
		return fmt.Errorf("%s: the pod does not exist (any more): %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// conn is one forwarded connection. Reads go through a goroutine so a read
// deadline can interrupt them, which tunnel handshakes rely on.
type conn struct {
	what  string
	sc    httpstream.Connection
	data  httpstream.Stream
	local addr
	rem   addr

	chunks chan []byte
	buf    []byte

	mu       sync.Mutex
	rdl      time.Time
	rdlWake  chan struct{} // closed and replaced whenever the read deadline changes
	wdl      time.Time
	readErr  error // set before chunks is closed
	fwdErr   error // what the error stream said
	closed   chan struct{}
	closeOne sync.Once
	errDone  chan struct{} // closed when the error stream ended
}

type addr string

func (a addr) Network() string { return "portforward" }
func (a addr) String() string  { return string(a) }

func newConn(what string, sc httpstream.Connection, data httpstream.Stream, port int) *conn {
	return &conn{
		what: what, sc: sc, data: data,
		local: addr("local"), rem: addr(strings.TrimPrefix(what, "port-forward to ")),
		chunks: make(chan []byte, 4), rdlWake: make(chan struct{}), closed: make(chan struct{}), errDone: make(chan struct{}),
	}
}

func (c *conn) readLoop() {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.data.Read(buf)
		if n > 0 {
			select {
			case c.chunks <- append([]byte(nil), buf[:n]...):
			case <-c.closed:
				return
			}
		}
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			close(c.chunks)
			return
		}
	}
}

// watchErrors reads the error stream: the kubelet reports there when it
// cannot reach the pod's port, then the forward is over.
func (c *conn) watchErrors(s httpstream.Stream) {
	defer close(c.errDone)
	msg, _ := io.ReadAll(s)
	if len(msg) > 0 {
		c.mu.Lock()
		c.fwdErr = fmt.Errorf("%s: %s", c.what, strings.TrimSpace(string(msg)))
		c.mu.Unlock()
		c.Close()
	}
}

func (c *conn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	for {
		c.mu.Lock()
		dl, wake := c.rdl, c.rdlWake
		c.mu.Unlock()
		var timer *time.Timer
		var expired <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, timeoutError{}
			}
			timer = time.NewTimer(d)
			expired = timer.C
		}
		n, again, err := c.wait(p, expired, wake)
		if timer != nil {
			timer.Stop()
		}
		if !again {
			return n, err
		}
	}
}

// wait is one round of Read; again means the deadline changed.
func (c *conn) wait(p []byte, expired <-chan time.Time, wake <-chan struct{}) (n int, again bool, err error) {
	select {
	case b, ok := <-c.chunks:
		if !ok {
			return 0, false, c.endErr()
		}
		n := copy(p, b)
		c.buf = b[n:]
		return n, false, nil
	case <-expired:
		return 0, false, timeoutError{}
	case <-wake:
		return 0, true, nil
	case <-c.closed:
		return 0, false, c.endErr()
	}
}

// endErr is what Read returns once the forward is over. The reason, if
// any, comes on the error stream, which may end just after the data.
func (c *conn) endErr() error {
	select {
	case <-c.errDone:
	case <-c.closed:
	case <-time.After(2 * time.Second):
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fwdErr != nil {
		return c.fwdErr
	}
	select {
	case <-c.closed:
		return net.ErrClosed
	default:
	}
	if c.readErr == nil || errors.Is(c.readErr, io.EOF) {
		return io.EOF
	}
	return fmt.Errorf("%s: %w", c.what, c.readErr)
}

func (c *conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	dl, fwdErr := c.wdl, c.fwdErr
	c.mu.Unlock()
	if fwdErr != nil {
		return 0, fwdErr
	}
	if !dl.IsZero() && !time.Now().Before(dl) {
		return 0, timeoutError{}
	}
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	n, err := c.data.Write(p)
	if err != nil {
		return n, fmt.Errorf("%s: %w", c.what, err)
	}
	return n, nil
}

func (c *conn) Close() error {
	c.closeOne.Do(func() {
		close(c.closed)
		_ = c.data.Reset()
		c.sc.Close()
	})
	return nil
}

func (c *conn) LocalAddr() net.Addr  { return c.local }
func (c *conn) RemoteAddr() net.Addr { return c.rem }

func (c *conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.rdl = t
	close(c.rdlWake)
	c.rdlWake = make(chan struct{})
	c.mu.Unlock()
	return nil
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wdl = t
	c.mu.Unlock()
	return nil
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// Is makes errors.Is(err, os.ErrDeadlineExceeded) hold, as for net.Conn.
func (timeoutError) Is(target error) bool { return target == os.ErrDeadlineExceeded }

var _ net.Error = timeoutError{}
