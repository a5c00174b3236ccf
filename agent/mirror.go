package agent

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/kloop/kloop/agent/tunnel"
)

// A mirror route never answers a caller: the app answers every request,
// and once its answer's head is known the request goes into the holder's
// queue as a copy. A few workers per holder send the copies to the laptop
// and discard its answers. The queue is bounded and never waited on, so a
// slow or stopped laptop costs copies (counted in mirrorDropped), never a
// caller's time.
const (
	// mirrorQueue is how many copies wait per holder before new ones are
	// dropped.
	mirrorQueue = 64
	// mirrorWorkers send one holder's copies side by side, so that one
	// copy stopped at a breakpoint does not hold back the others.
	mirrorWorkers = 4
	// maxMirrorAnswer is how much of the laptop's answer is read (and
	// thrown away) before its connection is closed rather than reused.
	maxMirrorAnswer = 1 << 20
)

// mirrorCopy is one request to copy to a laptop.
type mirrorCopy struct {
	port   *port
	method string
	target string // request-target: path and query
	host   string
	header http.Header // not changed after the copy is made; shared by holders
	body   []byte
	status int // what the app answered the caller
}

// mirrorer is a mirror route's queue and workers.
type mirrorer struct {
	queue  chan *mirrorCopy
	cancel context.CancelFunc
}

func (r *route) startMirror(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	m := &mirrorer{queue: make(chan *mirrorCopy, mirrorQueue), cancel: cancel}
	r.mirror = m
	for range mirrorWorkers {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case c := <-m.queue:
					r.sendCopy(ctx, c)
				}
			}
		}()
	}
}

// stopMirror ends the workers; copies still queued are dropped. It does not
// wait: a worker may sit in a copy the laptop stopped at a breakpoint until
// the tunnel's end unblocks it.
func (r *route) stopMirror() {
	if r.mirror != nil {
		r.mirror.cancel()
	}
}

// offer queues c for the laptop without waiting; a full queue drops it.
func (r *route) offer(c *mirrorCopy) {
	select {
	case r.mirror.queue <- c:
	default:
		r.stats.mirrorDropped[c.port.idx].Add(1)
	}
}

func (r *route) sendCopy(ctx context.Context, c *mirrorCopy) {
	u, err := url.ParseRequestURI(c.target)
	if err != nil {
		r.stats.mirrorDropped[c.port.idx].Add(1)
		return
	}
	// The laptop transports read the app port from the address they dial.
	u.Scheme, u.Host = "http", net.JoinHostPort("laptop", strconv.Itoa(c.port.fwd.AppPort()))
	req, err := http.NewRequestWithContext(ctx, c.method, u.String(), bytes.NewReader(c.body))
	if err != nil {
		r.stats.mirrorDropped[c.port.idx].Add(1)
		return
	}
	req.Host = c.host
	req.Header = c.header.Clone()
	req.Header.Set(tunnel.MirrorHeader, strconv.Itoa(c.status))
	if len(c.body) == 0 {
		req.Body = http.NoBody
	}
	req.ContentLength = int64(len(c.body))
	// Copies always travel as HTTP/1.1, which the daemon's capture reads,
	// whatever the caller spoke to the agent.
	resp, err := r.laptop.h1.RoundTrip(req)
	if err != nil {
		if ctx.Err() == nil {
			r.stats.mirrorDropped[c.port.idx].Add(1)
			c.port.a.log.Debug("laptop did not take a mirrored request", "port", c.port.fwd.AppPort(), "path", u.Path, "err", err)
		}
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxMirrorAnswer))
	resp.Body.Close()
	r.stats.mirrored[c.port.idx].Add(1)
}

// mirroring returns the mirror routes that want a copy of req on port; nil
// when none does, which costs the request path nothing more.
func (rs *routes) mirroring(port int, req *http.Request) []*route {
	if rs == nil || len(rs.mirrors) == 0 || isProbe(req.Header) {
		return nil
	}
	var out []*route
	for _, r := range rs.mirrors {
		if f, ok := r.ports[port]; ok && (f == nil || f.MatchesRequest(req)) {
			out = append(out, r)
		}
	}
	return out
}

// copyTo queues a copy of the request that the app answered with status
// for each of mirrors. A nil body means the request had none; tooLarge
// means its body was over tunnel.MaxMirrorBody and no copy is made.
func (p *port) copyTo(mirrors []*route, req *http.Request, target string, body []byte, tooLarge bool, status int) {
	if tooLarge {
		for _, r := range mirrors {
			r.stats.mirrorDropped[p.idx].Add(1)
		}
		return
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	c := &mirrorCopy{port: p, method: req.Method, target: target, host: host, header: req.Header.Clone(), body: body, status: status}
	for _, r := range mirrors {
		r.offer(c)
	}
}

// mirrorBody records a request body as the app's transport reads it, up to
// tunnel.MaxMirrorBody; the copy is made only from a body read to its end.
type mirrorBody struct {
	rc io.ReadCloser

	mu   sync.Mutex
	buf  bytes.Buffer
	over bool
	done bool
}

func (b *mirrorBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.mu.Lock()
	if !b.over {
		if b.buf.Len()+n > tunnel.MaxMirrorBody {
			b.over = true
			b.buf = bytes.Buffer{}
		} else {
			b.buf.Write(p[:n])
		}
	}
	if err == io.EOF {
		b.done = true
	}
	b.mu.Unlock()
	return n, err
}

func (b *mirrorBody) Close() error { return b.rc.Close() }

// result is the body read so far, and whether no copy can be made from it:
// too large, or not read to its end when the app answered.
func (b *mirrorBody) result() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.over || !b.done {
		return nil, true
	}
	return bytes.Clone(b.buf.Bytes()), false
}
