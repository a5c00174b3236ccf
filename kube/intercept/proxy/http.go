package proxy

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"

	"github.com/kloop/kloop/agent/tunnel"
)

// ServeHTTPProxy serves an HTTP proxy on ln until ctx is done: CONNECT
// tunnels (HTTPS_PROXY) and absolute-URI requests (HTTP_PROXY), both dialed
// with dial. It then closes ln and every connection and returns once they
// have ended.
func ServeHTTPProxy(ctx context.Context, ln net.Listener, dial DialFunc, opts ...Option) error {
	p := &httpProxy{dial: dial}
	for _, opt := range opts {
		opt(&p.opts)
	}
	p.transport = &http.Transport{
		DialContext:         dial,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	p.forward = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.Host = r.In.Host
		},
		Transport: p.transport,
		ErrorLog:  slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, fmt.Sprintf("kloop proxy: %s: %v", r.URL.Host, err), http.StatusBadGateway)
		},
	}
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug),
	}
	stop := context.AfterFunc(ctx, func() {
		srv.Close()
		p.tunnels.closeAll()
	})
	defer stop()
	err := srv.Serve(ln)
	p.tunnels.closeAll()
	srv.Close()
	p.tunnels.wg.Wait()
	p.transport.CloseIdleConnections()
	if ctx.Err() != nil || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("http proxy: %w", err)
}

type httpProxy struct {
	dial      DialFunc
	opts      options
	transport *http.Transport
	forward   *httputil.ReverseProxy
	tunnels   conns // hijacked CONNECT connections
}

func (p *httpProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.opts.authRequired() && !p.authorized(r) {
		w.Header().Set("Proxy-Authenticate", `Basic realm="kloop"`)
		http.Error(w, "kloop proxy: credentials required; use the proxy URL kloop gave you", http.StatusProxyAuthRequired)
		return
	}
	r.Header.Del("Proxy-Authorization")
	if r.Method == http.MethodConnect {
		p.connect(w, r)
		return
	}
	if r.URL.Host == "" || r.URL.Scheme != "http" {
		http.Error(w, "kloop proxy: this is a proxy; send absolute http:// URLs, or CONNECT for https", http.StatusBadRequest)
		return
	}
	p.forward.ServeHTTP(w, r)
}

func (p *httpProxy) authorized(r *http.Request) bool {
	auth, ok := strings.CutPrefix(r.Header.Get("Proxy-Authorization"), "Basic ")
	if !ok {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(auth))
	if err != nil {
		return false
	}
	user, pass, _ := strings.Cut(string(raw), ":")
	return p.opts.check(user, pass)
}

func (p *httpProxy) connect(w http.ResponseWriter, r *http.Request) {
	addr := r.Host
	if _, _, err := net.SplitHostPort(addr); err != nil {
		http.Error(w, fmt.Sprintf("kloop proxy: CONNECT %q: want HOST:PORT", addr), http.StatusBadRequest)
		return
	}
	up, err := p.dial(r.Context(), "tcp", addr)
	if err != nil {
		http.Error(w, fmt.Sprintf("kloop proxy: CONNECT %s: %v", addr, err), http.StatusBadGateway)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		http.Error(w, "kloop proxy: CONNECT not possible on this connection", http.StatusInternalServerError)
		return
	}
	if !p.tunnels.add(conn) {
		conn.Close()
		up.Close()
		return
	}
	p.tunnels.wg.Add(1)
	defer p.tunnels.wg.Done()
	defer p.tunnels.remove(conn)
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		conn.Close()
		up.Close()
		return
	}
	client := net.Conn(conn)
	if n := rw.Reader.Buffered(); n > 0 {
		// The client sent its first bytes (a TLS hello) without waiting.
		client = &prefixConn{Conn: conn, r: io.MultiReader(io.LimitReader(rw.Reader, int64(n)), conn)}
	}
	tunnel.Splice(context.WithoutCancel(r.Context()), client, up)
}

// prefixConn reads bytes already buffered before the connection itself.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(b []byte) (int, error) { return c.r.Read(b) }

func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
