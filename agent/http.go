package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"

	"github.com/kloop/kloop/agent/tunnel"
)

// maxUpgradeBody bounds the body of an HTTP/1.1 request that upgrades to
// h2c; it must be read whole before the connection switches protocols.
const maxUpgradeBody = 4 << 20

// httpHandler routes every request of an HTTP port on its own, so one
// keep-alive or HTTP/2 connection may carry requests for both the laptop and
// the app.
type httpHandler struct {
	p     *port
	proxy *httputil.ReverseProxy
	h2    *http2.Server
	srv   *http.Server
}

func newHTTPServer(p *port) *http.Server {
	target := p.fwd.Target
	errLog := slog.NewLogLogger(p.a.log.Handler(), slog.LevelDebug)
	h := &httpHandler{p: p, h2: &http2.Server{IdleTimeout: 5 * time.Minute}}
	h.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = target
			// The app must see the request as the client sent it: the agent
			// adds no forwarding headers of its own and keeps the client's,
			// which ReverseProxy strips before Rewrite.
			for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v, ok := pr.In.Header[h]; ok {
					pr.Out.Header[h] = v
				}
			}
		},
		Transport:  &router{p: p},
		BufferPool: copyBuffers,
		ErrorLog:   errLog,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() == nil {
				p.a.log.Info("request failed", "port", p.fwd.AppPort(), "path", r.URL.Path, "err", err)
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: time.Minute,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          errLog,
		BaseContext:       func(net.Listener) context.Context { return p.a.ctx },
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	h.srv = srv
	return srv
}

func (h *httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && isH2CUpgrade(r.Header) {
		h.upgradeH2C(w, r)
		return
	}
	h.proxy.ServeHTTP(w, r)
}

func isH2CUpgrade(h http.Header) bool {
	return httpguts.HeaderValuesContainsToken(h["Upgrade"], "h2c") &&
		httpguts.HeaderValuesContainsToken(h["Connection"], "HTTP2-Settings")
}

// upgradeH2C switches an HTTP/1.1 connection to HTTP/2 (RFC 7540 section
// 3.2). net/http serves h2c with prior knowledge itself but not this form,
// which curl --http2 uses for http:// URLs.
func (h *httpHandler) upgradeH2C(w http.ResponseWriter, r *http.Request) {
	settings, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(r.Header.Get("HTTP2-Settings"), "="))
	if err != nil {
		http.Error(w, "bad HTTP2-Settings header", http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxUpgradeBody+1))
	if err != nil {
		return
	}
	if len(body) > maxUpgradeBody {
		http.Error(w, "request body too large for an h2c upgrade", http.StatusRequestEntityTooLarge)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "h2c upgrade not possible on this connection", http.StatusInternalServerError)
		return
	}
	bc := &bufferedConn{Conn: conn, r: rw.Reader}
	if !h.p.a.track(bc) {
		conn.Close()
		return
	}
	defer h.p.a.untrack(bc)
	defer bc.Close()
	if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"); err != nil {
		return
	}
	// The request that asked for the upgrade is answered on stream 1 and
	// goes upstream as the plain HTTP/1.1 request it is.
	for _, name := range []string{"Upgrade", "Connection", "HTTP2-Settings"} {
		r.Header.Del(name)
	}
	h.h2.ServeConn(bc, &http2.ServeConnOpts{
		Context:        r.Context(),
		BaseConfig:     h.srv,
		Handler:        h.proxy,
		UpgradeRequest: r,
		Settings:       settings,
	})
}

// bufferedConn reads first what the HTTP/1.1 server had already buffered.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// CloseWrite passes a half-close on, which splicing relies on.
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// copyBuffers spares each proxied response a fresh 32 KiB copy buffer, the
// largest allocation on the request path.
var copyBuffers = &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte  { return *p.pool.Get().(*[]byte) }
func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }

// router decides, per request, whether the laptop or the app answers it.
type router struct{ p *port }

func (rt *router) RoundTrip(req *http.Request) (*http.Response, error) {
	p := rt.p
	table := p.a.table.Load()
	r := table.forRequest(p.fwd.AppPort(), req)
	if r != nil && (isProbe(req.Header) || r.heldAway(req.Context(), p)) {
		r = nil
	}
	if r == nil {
		p.toApp.Add(1)
		return p.appAnswers(table, req)
	}
	out := req.WithContext(req.Context())
	var body *trackedBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &trackedBody{rc: req.Body}
		out.Body = body
	}
	resp, err := r.laptop.pick(req).RoundTrip(out)
	if err == nil {
		r.sentToLaptop(p)
		return resp, nil
	}
	if req.Context().Err() != nil || body.touched() || !(isLaptopUnavailable(err) || idempotent(req)) {
		return nil, err
	}
	// Nothing of the request reached the laptop, or it is safe to repeat:
	// the app answers it rather than the client seeing an error.
	r.fellBack(p)
	p.a.log.Info("laptop did not answer; the app answers this request", "port", p.fwd.AppPort(), "method", req.Method, "path", req.URL.Path, "err", err)
	return p.appAnswers(table, req)
}

// appAnswers sends req to the app and, once its answer's head is in, a
// copy to every holder mirroring it.
func (p *port) appAnswers(table *routes, req *http.Request) (*http.Response, error) {
	mirrors := table.mirroring(p.fwd.AppPort(), req)
	if mirrors == nil {
		return p.app.pick(req).RoundTrip(req)
	}
	var mb *mirrorBody
	tooLarge := req.ContentLength > tunnel.MaxMirrorBody
	if req.Body != nil && req.Body != http.NoBody && !tooLarge {
		mb = &mirrorBody{rc: req.Body}
		req.Body = mb
	}
	resp, err := p.app.pick(req).RoundTrip(req)
	if err != nil {
		return nil, err
	}
	var body []byte
	if mb != nil {
		body, tooLarge = mb.result()
	}
	p.copyTo(mirrors, req, req.URL.RequestURI(), body, tooLarge, resp.StatusCode)
	return resp, nil
}

func isLaptopUnavailable(err error) bool {
	var lu *laptopUnavailable
	return errors.As(err, &lu)
}

func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return req.Header.Get("Idempotency-Key") != ""
}

// trackedBody records whether the laptop transport read any of the body, and
// leaves closing the body to the server so that it can still go to the app.
type trackedBody struct {
	rc   io.ReadCloser
	read atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.rc.Read(p)
}

func (b *trackedBody) Close() error { return nil }

func (b *trackedBody) touched() bool { return b != nil && b.read.Load() }
