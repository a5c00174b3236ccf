package relaunch

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// maxReplay bounds what a connection remembers for a resend: requests are
// small, uploads are not worth holding.
const maxReplay = 1 << 20

// DialLocalReplaying is DialLocal for connections that must survive a
// relaunch that lands between the request and its answer: when the process
// that took the connection ends it before sending a single byte back (it
// was stopped for the swap, or crashed), the connection is redialed to the
// next process (held until it is ready) and what the client sent so far is
// sent again. Once any byte has come back, or more than 1 MiB has gone out,
// it behaves like a plain connection. A resend means the old process may
// have seen the request too (at-least-once): it never answered it, though.
func (l *Loop) DialLocalReplaying(ctx context.Context) (net.Conn, error) {
	c, err := l.DialLocal(ctx)
	if err != nil {
		return nil, err
	}
	return &replayConn{Conn: c, loop: l, pid: l.Status().Pid}, nil
}

type replayConn struct {
	net.Conn
	loop *Loop

	mu       sync.Mutex
	pid      int    // the process the connection reached
	sent     []byte // what went out while nothing came back
	wclosed  bool   // the client half-closed
	answered bool   // a byte came back: no more resends
	overflow bool   // too much went out to keep
	closed   bool
	rdl, wdl time.Time
}

func (c *replayConn) Read(b []byte) (int, error) {
	for {
		c.mu.Lock()
		conn := c.Conn
		c.mu.Unlock()
		n, err := conn.Read(b)
		if n > 0 {
			c.mu.Lock()
			c.answered, c.sent = true, nil
			c.mu.Unlock()
			return n, err
		}
		if err == nil {
			continue
		}
		if !c.redial(conn, err) {
			return n, err
		}
	}
}

func (c *replayConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if !c.answered && !c.overflow {
		if len(c.sent)+len(b) > maxReplay {
			c.overflow, c.sent = true, nil
		} else {
			c.sent = append(c.sent, b...)
		}
	}
	conn := c.Conn
	c.mu.Unlock()
	n, err := conn.Write(b)
	if err != nil && c.resendable() {
		// The process went away under the write; the next Read redials and
		// resends everything, this write included.
		return len(b), nil
	}
	return n, err
}

func (c *replayConn) resendable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.answered && !c.overflow && !c.closed
}

// redial replaces a connection that ended (failed) before answering with one
// to the next process and resends. It reports whether Read should go on.
func (c *replayConn) redial(old net.Conn, cause error) bool {
	if errors.Is(cause, context.DeadlineExceeded) || isTimeout(cause) {
		return false // a deadline the caller set, not a dead process
	}
	c.mu.Lock()
	if c.answered || c.overflow || c.closed || c.Conn != old {
		again := c.Conn != old && !c.closed
		c.mu.Unlock()
		return again
	}
	c.mu.Unlock()
	old.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.loop.cfg.HoldTimeout)
	defer cancel()
	next, err := c.loop.DialLocal(ctx)
	if err != nil {
		return false
	}
	pid := c.loop.Status().Pid
	c.mu.Lock()
	defer c.mu.Unlock()
	// Only a new process gets the resend: the same one closing without an
	// answer meant it.
	if c.closed || pid == c.pid {
		next.Close()
		return false
	}
	c.pid = pid
	if !c.rdl.IsZero() {
		next.SetReadDeadline(c.rdl)
	}
	if !c.wdl.IsZero() {
		next.SetWriteDeadline(c.wdl)
	}
	if _, err := next.Write(c.sent); err != nil {
		next.Close()
		return false
	}
	if c.wclosed {
		if cw, ok := next.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}
	c.Conn = next
	c.loop.log.Debug("resent a connection the replaced process never answered", "bytes", len(c.sent))
	return true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (c *replayConn) Close() error {
	c.mu.Lock()
	c.closed = true
	conn := c.Conn
	c.mu.Unlock()
	return conn.Close()
}

// CloseWrite half-closes the current connection, as the splice expects of
// a TCP connection.
func (c *replayConn) CloseWrite() error {
	c.mu.Lock()
	c.wclosed = true
	conn := c.Conn
	c.mu.Unlock()
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *replayConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.rdl, c.wdl = t, t
	conn := c.Conn
	c.mu.Unlock()
	return conn.SetDeadline(t)
}

func (c *replayConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.rdl = t
	conn := c.Conn
	c.mu.Unlock()
	return conn.SetReadDeadline(t)
}

func (c *replayConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wdl = t
	conn := c.Conn
	c.mu.Unlock()
	return conn.SetWriteDeadline(t)
}
