package capture

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/kloop/kloop/agent/tunnel"
)

// teeChunks bounds what one direction of a connection may queue for its
// parser before the recording of that connection stops.
const teeChunks = 64

// Wrap returns conn, whose writes carry requests to the local process and
// whose reads carry its answers, recording each HTTP/1.x exchange in s
// under workload; pid names the process answering at the time.
func Wrap(conn net.Conn, s *Store, workload string, pid func() int) net.Conn {
	return wrap(conn, s, true, workload, pid)
}

// WrapOutbound returns conn, a connection the outbound proxy dialed into
// the cluster for the local process of workload (writes carry the
// process's requests, reads the answers), recording each HTTP/1.x exchange
// in s as an outbound call of workload. Which inbound request it served is
// found by time (Store.Outbound). TLS (HTTPS through CONNECT) is not
// HTTP/1.x on the wire and stays unrecorded.
func WrapOutbound(conn net.Conn, s *Store, workload string) net.Conn {
	return wrap(conn, s, false, workload, nil)
}

// wrap records conn's exchanges in s: as requests to the local process
// (inbound, whose stops at breakpoints are tracked) or as its outbound calls.
func wrap(conn net.Conn, s *Store, inbound bool, workload string, pid func() int) net.Conn {
	c := &recordingConn{Conn: conn, reqs: newTee(), resps: newTee()}
	go c.parse(s, inbound, workload, pid)
	if cw, ok := conn.(closeWriter); ok {
		return &halfCloser{recordingConn: c, cw: cw}
	}
	return c
}

type closeWriter interface{ CloseWrite() error }

// recordingConn is a connection whose exchanges are recorded.
type recordingConn struct {
	net.Conn
	reqs, resps *tee
}

func (c *recordingConn) Write(b []byte) (int, error) {
	// Stamped before the write: the peer may get the bytes, and act on
	// them (call out through the proxy), before Write returns here.
	at := time.Now()
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.reqs.feed(b[:n], at)
	}
	return n, err
}

func (c *recordingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.resps.feed(b[:n], time.Now())
	}
	if err != nil {
		c.resps.close()
	}
	return n, err
}

func (c *recordingConn) Close() error {
	c.reqs.close()
	c.resps.close()
	return c.Conn.Close()
}

// halfCloser keeps CloseWrite, which splicing uses to pass a half-close on.
type halfCloser struct {
	*recordingConn
	cw closeWriter
}

func (h *halfCloser) CloseWrite() error {
	h.reqs.close()
	return h.cw.CloseWrite()
}

// parse reads requests and answers from the tees in turn, in order, as
// HTTP/1.x does on one connection, and records each pair. It stops at the
// first thing that is not HTTP/1.x, an upgrade, or the end.
//
// Times are those at which the bytes crossed the connection (see tee), not
// when the parser got to them, so that an exchange's [Time, End] contains
// the outbound calls made while serving it even when the parser lags.
func (c *recordingConn) parse(s *Store, inbound bool, workload string, pid func() int) {
	add := s.addOutbound
	if inbound {
		add = s.add
	}
	defer c.reqs.close()
	defer c.resps.close()
	reqT, respT := &teeReader{ch: c.reqs.ch}, &teeReader{ch: c.resps.ch}
	reqR, respR := bufio.NewReader(reqT), bufio.NewReader(respT)
	for {
		if _, err := reqR.Peek(1); err != nil {
			return
		}
		// The chunk holding the request's first byte (or a later one,
		// for pipelined requests already buffered).
		start := reqT.last
		req, err := http.ReadRequest(reqR)
		if err != nil || req.ProtoMajor != 1 || req.Method == http.MethodConnect {
			return
		}
		// When the process got the request: the parser may run behind
		// the connection, and a stop in between still counts.
		sent := reqT.last
		mirrored, clusterStatus := mirrorMark(req.Header)
		body, truncated, err := readCapped(req.Body)
		if err != nil {
			return
		}
		resp, err := http.ReadResponse(respR, req)
		answered := respT.last
		if err != nil {
			answered = time.Now()
		}
		stopped := inbound && s.stoppedBetween(workload, sent, answered)
		if err != nil {
			if stopped {
				// The process stopped at a breakpoint in this request and
				// was replaced (a save) or ended before answering: it is
				// the request to send to the new build.
				ex := Exchange{
					Workload: workload, Time: start, Method: req.Method, Target: req.RequestURI, Host: req.Host,
					Header: req.Header, Body: string(body), BodyTruncated: truncated, Stopped: true,
					Mirrored: mirrored, ClusterStatus: clusterStatus,
				}
				if pid != nil {
					ex.Pid = pid()
				}
				add(ex)
			}
			return
		}
		took := respT.last.Sub(start)
		rbody, rtruncated, err := readCapped(resp.Body)
		ex := Exchange{
			Workload: workload, Time: start, End: respT.last, Duration: took,
			Method: req.Method, Target: req.RequestURI, Host: req.Host,
			Header: req.Header, Body: string(body), BodyTruncated: truncated,
			Response: &Response{Status: resp.StatusCode, Header: resp.Header, Body: string(rbody), BodyTruncated: rtruncated},
			Stopped:  stopped, Mirrored: mirrored, ClusterStatus: clusterStatus,
		}
		if pid != nil {
			ex.Pid = pid()
		}
		add(ex)
		if err != nil || resp.StatusCode == http.StatusSwitchingProtocols {
			return
		}
	}
}

// mirrorMark reads and removes the agent's mark on a mirrored copy, so
// that a replay or an exported test sends the request as the caller did.
func mirrorMark(h http.Header) (bool, int) {
	v, ok := h[http.CanonicalHeaderKey(tunnel.MirrorHeader)]
	if !ok {
		return false, 0
	}
	h.Del(tunnel.MirrorHeader)
	status := 0
	if len(v) > 0 {
		status, _ = strconv.Atoi(v[0])
	}
	return true, status
}

// readCapped reads a whole body, keeping the first MaxBody bytes.
func readCapped(r io.ReadCloser) ([]byte, bool, error) {
	defer r.Close()
	var buf bytes.Buffer
	_, err := io.CopyN(&buf, r, MaxBody)
	if err == io.EOF {
		return buf.Bytes(), false, nil
	}
	if err != nil {
		return buf.Bytes(), false, err
	}
	n, err := io.Copy(io.Discard, r)
	return buf.Bytes(), n > 0, err
}

// tee hands copies of one direction's bytes to the parser without ever
// making the connection wait: when the parser is behind by teeChunks
// chunks, the recording of this connection stops.
type tee struct {
	mu   sync.Mutex
	ch   chan chunk
	done bool
}

// chunk is bytes that crossed the connection, and when.
type chunk struct {
	b []byte
	t time.Time
}

func newTee() *tee { return &tee{ch: make(chan chunk, teeChunks)} }

// feed queues b, which crossed the connection at at.
func (t *tee) feed(b []byte, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return
	}
	select {
	case t.ch <- chunk{bytes.Clone(b), at}:
	default:
		t.done = true
		close(t.ch)
	}
}

func (t *tee) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.done {
		t.done = true
		close(t.ch)
	}
}

type teeReader struct {
	ch  <-chan chunk
	cur []byte
	// last is when the chunk read last crossed the connection.
	last time.Time
}

func (r *teeReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		c, ok := <-r.ch
		if !ok {
			return 0, io.EOF
		}
		r.cur, r.last = c.b, c.t
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}
