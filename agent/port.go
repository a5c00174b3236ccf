package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kloop/kloop/agent/tunnel"
)

// port serves one forward.
type port struct {
	a   *Agent
	idx int // in Agent.ports, and in each holder's stats
	fwd Forward
	ln  net.Listener
	app *transports // HTTP to the app container
	srv *http.Server

	// toApp counts what the app answered, for every holder; what went to
	// a laptop is counted per holder (holderStats).
	toApp atomic.Uint64
}

func newPort(a *Agent, idx int, f Forward, ln net.Listener) *port {
	p := &port{a: a, idx: idx, fwd: f, ln: ln}
	d := &net.Dialer{Timeout: appDialTimeout}
	p.app = newTransports(func(ctx context.Context, _ int, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", f.Target)
	})
	if f.Protocol == tunnel.ProtoHTTP {
		p.srv = newHTTPServer(p)
	}
	return p
}

func (p *port) serve() {
	var httpConns *connListener
	if p.srv != nil {
		httpConns = newConnListener(p.ln.Addr())
		p.a.wg.Add(1)
		go func() {
			defer p.a.wg.Done()
			if err := p.srv.Serve(httpConns); err != nil && !errors.Is(err, http.ErrServerClosed) {
				p.a.log.Error("http server failed", "port", p.fwd.AppPort(), "err", err)
			}
		}()
	}
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			if p.a.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: keep serving once
			// the pressure eases rather than leave the port dead.
			p.a.log.Error("forward listener failed; retrying", "port", p.fwd.AppPort(), "err", err)
			time.Sleep(acceptRetryDelay)
			continue
		}
		p.a.wg.Add(1)
		go func() {
			defer p.a.wg.Done()
			p.serveConn(conn, httpConns)
		}()
	}
}

func (p *port) close() {
	p.ln.Close()
	if p.srv != nil {
		p.srv.Close()
	}
}

// serveConn routes one accepted connection. Under a global intercept the
// whole connection goes to the laptop, spliced byte for byte, which costs far
// less than proxying each request. Otherwise an HTTP port's connection goes
// to the per-request router and a tcp port's to the app.
func (p *port) serveConn(conn net.Conn, httpConns *connListener) {
	if !p.a.track(conn) {
		conn.Close()
		return
	}
	ctx := p.a.ctx
	h1 := false // HTTP/1.x, which a pause can take back from the laptop
	if httpConns != nil && p.a.table.Load().forConn(p.fwd.AppPort()) != nil {
		// Wait for the client's first bytes before the laptop hears of
		// the connection: a kubelet probe (one request per connection) is
		// then answered by the app, and a TCP probe that connects and
		// hangs up never reaches the laptop at all.
		bc, probe, isH1, ok := p.peek(conn)
		if !ok {
			return
		}
		conn, h1 = bc, isH1
		if probe {
			p.serveHTTP1(conn, httpConns)
			return
		}
	}
	for {
		r := p.a.table.Load().forConn(p.fwd.AppPort())
		if r == nil {
			break
		}
		if r.pause.isPaused() {
			if httpConns != nil {
				// Routed request by request, so that each waits for the
				// paused process only briefly and then goes to the app;
				// the connection stays there after the pause, which
				// costs speed, not correctness.
				break
			}
			if r.heldAway(ctx, p) {
				p.toApp.Add(1)
				p.spliceToApp(ctx, conn)
				p.a.untrack(conn)
				return
			}
		}
		lctx, cancel := context.WithTimeout(ctx, laptopDialTimeout)
		up, err := r.conn.OpenInbound(lctx, p.fwd.AppPort(), tunnel.ProtoTCP, conn.RemoteAddr().String())
		cancel()
		if err != nil {
			if httpConns != nil {
				// The router tries the laptop again request by request
				// (and counts each), so this connection returns to the
				// laptop once it can.
				break
			}
			p.a.log.Info("laptop did not take the connection; sending it to the app", "port", p.fwd.AppPort(), "err", err)
			// Adopted, so a change of intercept closes it and the
			// client reconnects to wherever traffic goes then.
			if r.adopt(conn) {
				r.fellBack(p)
				p.spliceToApp(ctx, conn)
				r.release(conn)
				p.a.untrack(conn)
				return
			}
			continue
		}
		if r.adopt(conn) {
			r.sentToLaptop(p)
			if !h1 {
				tunnel.Splice(ctx, conn, up)
				r.release(conn)
				p.a.untrack(conn)
				return
			}
			hs := &hsplice{client: conn, up: up, tunnelDone: r.conn.Done()}
			r.watch(hs)
			detached, stash := hs.run(ctx)
			r.forget(hs)
			r.release(conn)
			p.a.untrack(conn)
			if !detached {
				return
			}
			// Taken back for a pause: what the client sent meanwhile is
			// read again by the router.
			bc := &bufferedConn{Conn: conn, r: bufio.NewReaderSize(io.MultiReader(bytes.NewReader(stash), conn), headBuffer)}
			if !p.a.track(bc) {
				conn.Close()
				return
			}
			p.serveHTTP1(bc, httpConns)
			return
		}
		// The intercept changed meanwhile: route the connection again.
		up.Close()
	}
	if httpConns != nil {
		p.serveHTTP1(conn, httpConns)
		return
	}
	p.toApp.Add(1)
	p.spliceToApp(ctx, conn)
	p.a.untrack(conn)
}

// peek reads the first bytes of a tracked HTTP connection and reports
// whether they are a kubelet probe's request head; the returned connection
// (tracked instead of conn) reads those bytes again; h1 is false for h2c
// prior knowledge. ok is false when the
// client went away first; conn is closed then.
func (p *port) peek(conn net.Conn) (_ net.Conn, probe, h1, ok bool) {
	br := bufio.NewReaderSize(conn, headBuffer)
	conn.SetReadDeadline(time.Now().Add(idleTimeout))
	_, err := br.Peek(1)
	conn.SetReadDeadline(time.Time{})
	p.a.untrack(conn)
	bc := &bufferedConn{Conn: conn, r: br}
	if err != nil || !p.a.track(bc) {
		conn.Close()
		return nil, false, false, false
	}
	early, _ := br.Peek(br.Buffered())
	return bc, probeHead(early), !bytes.HasPrefix(early, h2Preface[:min(len(early), len(h2Preface))]), true
}

// probeHead reports whether buf starts with a whole request head that a
// kubelet probe sent. A head split over several packets is not looked at;
// kubelet writes its small heads at once.
func probeHead(buf []byte) bool {
	i := bytes.Index(buf, headEnd)
	if i < 0 {
		return false
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(buf[:i+len(headEnd)])))
	return err == nil && isProbe(req.Header)
}

func (p *port) spliceToApp(ctx context.Context, conn net.Conn) {
	d := net.Dialer{Timeout: appDialTimeout}
	up, err := d.DialContext(ctx, "tcp", p.fwd.Target)
	if err != nil {
		p.a.log.Warn("app did not accept a connection", "target", p.fwd.Target, "err", err)
		conn.Close()
		return
	}
	tunnel.Splice(ctx, conn, up)
}

// connListener hands connections the agent accepted to an http.Server.
type connListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// transports speak HTTP/1.1 and h2c (prior knowledge) to one upstream. Each
// inbound request goes upstream in the protocol it arrived in, so gRPC and
// other HTTP/2-only traffic keeps working.
type transports struct {
	h1, h2 *http.Transport
}

// dialUpstream connects for app port appPort; protocol tells the laptop side
// whether HTTP/1.1 or h2c will flow.
type dialUpstream func(ctx context.Context, appPort int, protocol string) (net.Conn, error)

func newTransports(dial dialUpstream) *transports {
	base := func(protocol string) *http.Transport {
		return &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				_, portStr, _ := net.SplitHostPort(addr)
				appPort, _ := strconv.Atoi(portStr)
				return dial(ctx, appPort, protocol)
			},
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			// The proxy must hand bodies through untouched.
			DisableCompression: true,
			ForceAttemptHTTP2:  false,
		}
	}
	h1 := base(tunnel.ProtoHTTP)
	h2 := base(tunnel.ProtoH2C)
	h2.Protocols = new(http.Protocols)
	h2.Protocols.SetUnencryptedHTTP2(true)
	return &transports{h1: h1, h2: h2}
}

func (t *transports) pick(req *http.Request) *http.Transport {
	if req.ProtoMajor == 2 {
		return t.h2
	}
	return t.h1
}

func (t *transports) closeIdle() {
	t.h1.CloseIdleConnections()
	t.h2.CloseIdleConnections()
}

// laptopUnavailable marks a failure to reach the laptop before any byte of the
// request was sent, so the request can safely go to the app instead.
type laptopUnavailable struct{ err error }

func (e *laptopUnavailable) Error() string { return "laptop unavailable: " + e.err.Error() }
func (e *laptopUnavailable) Unwrap() error { return e.err }

func newLaptopTransports(tc *tunnel.ServerConn) *transports {
	return newTransports(func(ctx context.Context, appPort int, protocol string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, laptopDialTimeout)
		defer cancel()
		conn, err := tc.OpenInbound(ctx, appPort, protocol, "")
		if err != nil {
			return nil, &laptopUnavailable{err}
		}
		return conn, nil
	})
}
