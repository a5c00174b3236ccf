package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/kloop/kloop/agent/tunnel"
)

// The fast path routes plain HTTP/1.1 requests itself: it reads a request
// head, picks the laptop or the app, writes the head's bytes unchanged to a
// connection of its own to that side, copies the body, and relays the
// response. One goroutine per client connection and no request rewriting;
// the client connection keeps one upstream connection per side. Anything
// else (HTTP/2, upgrades, Expect, chunked request bodies, very large heads)
// is handed, with nothing consumed, to the net/http server and its reverse
// proxy for the rest of the connection's life.

const (
	// headBuffer is the largest request head the fast path takes.
	headBuffer = 16 << 10
	// idleTimeout ends client connections that send no request for this
	// long, like the HTTP server's IdleTimeout.
	idleTimeout = 5 * time.Minute
	// staleAfter is how long a TCP connection to the app may sit idle
	// before it is checked for a close by the app before reuse.
	staleAfter = time.Second
)

var (
	errNotFast  = errors.New("request needs the full HTTP server")
	headEnd     = []byte("\r\n\r\n")
	badGateway  = []byte("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	h2Preface   = []byte("PRI * HTTP/2.0")
	fastRequest = map[string]bool{
		http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
		http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
	}
)

// h1conn is one client connection on the fast path.
type h1conn struct {
	p      *port
	client net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	app    upstream
	laptop upstream
	route  *route // the route laptop's connection belongs to

	// headSrc and headBR parse request heads, reused across requests.
	headSrc bytes.Reader
	headBR  *bufio.Reader

	// mirrorBody, while set, records the body of the request going to the
	// app for the holders mirroring it.
	mirrorBody *bytes.Buffer
}

// upstream is the client connection's own connection to one side.
type upstream struct {
	a        *Agent // tracks conn so that Close ends requests in flight
	conn     net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	lastUsed time.Time
}

func (u *upstream) close() {
	if u.conn != nil {
		u.a.untrack(u.conn)
		u.conn.Close()
		u.conn = nil
	}
}

// serveHTTP1 serves a connection of an HTTP port that is not globally
// intercepted; it returns when the connection has ended or was handed to
// the HTTP server.
func (p *port) serveHTTP1(conn net.Conn, httpConns *connListener) {
	c := &h1conn{p: p, client: conn, br: bufio.NewReaderSize(conn, headBuffer), bw: bufio.NewWriterSize(conn, 8<<10)}
	c.app.a, c.laptop.a = p.a, p.a
	defer c.app.close()
	defer c.laptop.close()
	for {
		conn.SetReadDeadline(time.Now().Add(idleTimeout))
		head, req, err := c.readHead()
		if errors.Is(err, errNotFast) {
			conn.SetReadDeadline(time.Time{})
			p.a.untrack(conn)
			if !httpConns.push(&bufferedConn{Conn: conn, r: c.br}) {
				conn.Close()
			}
			return
		}
		if err != nil {
			p.a.untrack(conn)
			conn.Close()
			return
		}
		conn.SetReadDeadline(time.Time{})
		if !c.serve(head, req) {
			p.a.untrack(conn)
			conn.Close()
			return
		}
	}
}

// readHead waits for a whole request head in the buffer and parses it
// without consuming it, so that a request the fast path does not take can
// still go to the HTTP server untouched.
func (c *h1conn) readHead() ([]byte, *http.Request, error) {
	if _, err := c.br.Peek(1); err != nil {
		return nil, nil, err
	}
	for {
		n := c.br.Buffered()
		buf, _ := c.br.Peek(n)
		if bytes.HasPrefix(buf, h2Preface) {
			return nil, nil, errNotFast
		}
		if i := bytes.Index(buf, headEnd); i >= 0 {
			head := buf[:i+len(headEnd)]
			c.headSrc.Reset(head)
			if c.headBR == nil {
				c.headBR = bufio.NewReaderSize(&c.headSrc, 4<<10)
			} else {
				c.headBR.Reset(&c.headSrc)
			}
			req, err := http.ReadRequest(c.headBR)
			if err != nil || !fastPathTakes(req) {
				return nil, nil, errNotFast
			}
			return head, req, nil
		}
		if n >= c.br.Size() {
			return nil, nil, errNotFast
		}
		if _, err := c.br.Peek(n + 1); err != nil {
			return nil, nil, err
		}
	}
}

func fastPathTakes(req *http.Request) bool {
	return req.ProtoMajor == 1 &&
		fastRequest[req.Method] &&
		len(req.TransferEncoding) == 0 && req.ContentLength >= 0 &&
		req.Header.Get("Expect") == "" &&
		req.Header.Get("Upgrade") == "" &&
		!httpguts.HeaderValuesContainsToken(req.Header["Connection"], "upgrade")
}

// serve answers one request and reports whether the connection stays open.
func (c *h1conn) serve(head []byte, req *http.Request) bool {
	p := c.p
	// The parsed request only describes the head; its body is the client's.
	n := len(head)
	req.Body = http.NoBody
	table := p.a.table.Load()
	r := table.forRequest(p.fwd.AppPort(), req)
	if r != nil && (isProbe(req.Header) || r.heldAway(p.a.ctx, p)) {
		r = nil
	}
	var resp *http.Response
	var up *upstream
	var err error
	if r != nil {
		up, err = c.laptopFor(r)
		if err == nil {
			resp, err = c.roundTrip(up, req, n)
		}
		if err == nil {
			r.sentToLaptop(p)
		} else {
			var consumed *bodyConsumed
			if errors.As(err, &consumed) || !(isLaptopUnavailable(err) || idempotent(req)) {
				p.a.log.Info("laptop failed a request", "port", p.fwd.AppPort(), "method", req.Method, "path", req.URL.Path, "err", err)
				c.bw.Write(badGateway)
				c.bw.Flush()
				return false
			}
			r.stats.fallbacks[p.idx].Add(1)
			p.a.log.Info("laptop did not answer; the app answers this request", "port", p.fwd.AppPort(), "method", req.Method, "path", req.URL.Path, "err", err)
			resp = nil
		}
	}
	if resp == nil {
		p.toApp.Add(1)
		up = &c.app
		mirrors := table.mirroring(p.fwd.AppPort(), req)
		tooLarge := req.ContentLength > tunnel.MaxMirrorBody
		if mirrors != nil && !tooLarge && req.ContentLength > 0 {
			c.mirrorBody = bytes.NewBuffer(make([]byte, 0, req.ContentLength))
		}
		resp, err = c.roundTrip(up, req, n)
		if err == nil && mirrors != nil {
			var body []byte
			if c.mirrorBody != nil {
				body = c.mirrorBody.Bytes()
			}
			p.copyTo(mirrors, req, req.RequestURI, body, tooLarge, resp.StatusCode)
		}
		c.mirrorBody = nil
		if err != nil {
			p.a.log.Warn("app failed a request", "port", p.fwd.AppPort(), "target", p.fwd.Target, "err", err)
			c.bw.Write(badGateway)
			c.bw.Flush()
			return false
		}
	}
	return c.relay(up, req, resp)
}

func (c *h1conn) laptopFor(r *route) (*upstream, error) {
	if c.route != r {
		// The intercept changed, or this request is another holder's:
		// never send it on a connection of another tunnel.
		c.laptop.close()
		c.route = r
	}
	if c.laptop.conn == nil {
		ctx, cancel := context.WithTimeout(c.p.a.ctx, laptopDialTimeout)
		defer cancel()
		conn, err := r.conn.OpenInbound(ctx, c.p.fwd.AppPort(), tunnel.ProtoHTTP, c.client.RemoteAddr().String())
		if err != nil {
			return nil, &laptopUnavailable{err}
		}
		if err := c.laptop.set(conn); err != nil {
			return nil, err
		}
	}
	return &c.laptop, nil
}

func (c *h1conn) dialApp() error {
	d := net.Dialer{Timeout: appDialTimeout}
	conn, err := d.DialContext(c.p.a.ctx, "tcp", c.p.fwd.Target)
	if err != nil {
		return err
	}
	return c.app.set(conn)
}

func (u *upstream) set(conn net.Conn) error {
	if !u.a.track(conn) {
		conn.Close()
		return errors.New("the agent is shutting down")
	}
	u.conn = conn
	u.br = bufio.NewReaderSize(conn, 8<<10)
	u.bw = bufio.NewWriterSize(conn, 8<<10)
	u.lastUsed = time.Now()
	return nil
}

// bodyConsumed marks a failure after some of the client's request body was
// sent: the request cannot be sent anywhere else.
type bodyConsumed struct{ err error }

func (e *bodyConsumed) Error() string { return e.err.Error() }
func (e *bodyConsumed) Unwrap() error { return e.err }

// roundTrip sends the request (head bytes as received, then the body) on up
// and reads the response head. A reused connection that turns out to have
// been closed by its server is redialed once when the body allows it.
func (c *h1conn) roundTrip(up *upstream, req *http.Request, headLen int) (*http.Response, error) {
	// Checking a tunnel stream costs no syscall, so laptop connections are
	// checked every time: the daemon closes them whenever the local process
	// is replaced.
	if up.conn != nil && (up == &c.laptop || time.Since(up.lastUsed) > staleAfter) && closedByPeer(up) {
		up.close()
	}
	for attempt := 0; ; attempt++ {
		fresh := up.conn == nil
		if fresh {
			var err error
			if up == &c.app {
				err = c.dialApp()
			} else {
				err = c.redialLaptop()
			}
			if err != nil {
				return nil, err
			}
		}
		head, _ := c.br.Peek(headLen)
		_, err := up.bw.Write(head)
		if err == nil && req.ContentLength > 0 {
			// The body is the client's next bytes; once copied they are
			// gone, so no failure from here on can be retried elsewhere.
			c.br.Discard(headLen)
			var dst io.Writer = up.bw
			if c.mirrorBody != nil && up == &c.app {
				dst = io.MultiWriter(up.bw, c.mirrorBody)
			}
			if _, err = io.CopyN(dst, c.br, req.ContentLength); err == nil {
				err = up.bw.Flush()
			}
			var resp *http.Response
			if err == nil {
				resp, err = http.ReadResponse(up.br, req)
			}
			if err != nil {
				up.close()
				return nil, &bodyConsumed{err}
			}
			return resp, nil
		}
		if err == nil {
			err = up.bw.Flush()
		}
		var resp *http.Response
		if err == nil {
			resp, err = http.ReadResponse(up.br, req)
		}
		if err == nil {
			// Only now: until answered, the head stays in the client's
			// buffer for a retry or for the other side.
			c.br.Discard(headLen)
			return resp, nil
		}
		up.close()
		if fresh || attempt > 0 {
			return nil, err
		}
	}
}

func (c *h1conn) redialLaptop() error {
	if c.route == nil {
		return errors.New("no intercept")
	}
	ctx, cancel := context.WithTimeout(c.p.a.ctx, laptopDialTimeout)
	defer cancel()
	conn, err := c.route.conn.OpenInbound(ctx, c.p.fwd.AppPort(), tunnel.ProtoHTTP, c.client.RemoteAddr().String())
	if err != nil {
		return &laptopUnavailable{err}
	}
	return c.laptop.set(conn)
}

// closedByPeer reports whether an idle upstream connection was closed by
// its server, without waiting.
func closedByPeer(up *upstream) bool {
	if up.conn == nil {
		return false
	}
	if up.br.Buffered() > 0 {
		return true // an idle connection has nothing to say
	}
	up.conn.SetReadDeadline(time.Now())
	_, err := up.br.Peek(1)
	up.conn.SetReadDeadline(time.Time{})
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// relay writes the response to the client and reports whether both
// connections can carry another request.
func (c *h1conn) relay(up *upstream, req *http.Request, resp *http.Response) bool {
	for resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		// Informational answers (103 Early Hints) precede the real one.
		if err := resp.Write(c.bw); err != nil || c.bw.Flush() != nil {
			up.close()
			return false
		}
		var err error
		if resp, err = http.ReadResponse(up.br, req); err != nil {
			up.close()
			return false
		}
	}
	var err error
	if resp.ContentLength < 0 {
		// A stream of unknown length (server-sent events, progress):
		// every piece goes out as soon as it arrives.
		err = resp.Write(flushWriter{c.bw})
	} else {
		err = resp.Write(c.bw)
	}
	if err == nil {
		err = c.bw.Flush()
	}
	resp.Body.Close()
	up.lastUsed = time.Now()
	// After a 101 nobody knows what flows; upgrades are not sent this way,
	// so a server that switches anyway gets both connections closed.
	done := err != nil || resp.Close || resp.StatusCode == http.StatusSwitchingProtocols
	if done {
		up.close()
	}
	return !done && !req.Close
}

// flushWriter flushes after every write.
type flushWriter struct{ w *bufio.Writer }

func (f flushWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if err == nil {
		err = f.w.Flush()
	}
	return n, err
}
