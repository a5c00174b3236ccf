package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// hsplice splices an HTTP/1.x client connection of a global intercept to
// the laptop, byte for byte like tunnel.Splice, and can take it back from
// the laptop while it is idle: when the holder's process is paused, a
// kept-alive connection (an ingress controller's, a client pool's) would
// otherwise carry its next requests to a process that cannot answer.
//
// Idle means the laptop sent bytes after the client's last ones, which for
// HTTP/1.x is an answered request. A response the paused process had only
// half written looks idle too; such a connection is taken back and its
// client sees the response cut. Connections that switched protocols (a 101
// answer: WebSocket) stay with the laptop.
type hsplice struct {
	client, up net.Conn
	tunnelDone <-chan struct{} // the laptop's tunnel ended

	mu          sync.Mutex
	outstanding bool // the client sent bytes the laptop has not answered
	pinned      bool // switched protocols: not HTTP any more
	detached    bool
	stash       []byte // read from the client after the detach
}

var switching = [][]byte{[]byte("HTTP/1.1 101"), []byte("HTTP/1.0 101")}

// run splices until both directions end (it returns false, both
// connections closed) or the connection was taken back (true; the client
// connection stays open and stash holds what it sent since).
func (s *hsplice) run(ctx context.Context) (detached bool, stash []byte) {
	var abortOnce sync.Once
	abort := func() {
		abortOnce.Do(func() {
			past := time.Unix(1, 0)
			s.client.SetDeadline(past)
			s.up.SetDeadline(past)
		})
	}
	stop := context.AfterFunc(ctx, abort)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.copy(s.up, s.client, true, abort)
	}()
	go func() {
		defer wg.Done()
		s.copy(s.client, s.up, false, abort)
	}()
	wg.Wait()
	stop()
	s.up.Close()
	s.mu.Lock()
	detached, stash = s.detached, s.stash
	s.mu.Unlock()
	if detached && ctx.Err() == nil {
		s.client.SetDeadline(time.Time{})
		return true, stash
	}
	s.client.Close()
	return false, nil
}

// copy moves one direction; fromClient tells which.
func (s *hsplice) copy(dst, src net.Conn, fromClient bool, abort func()) {
	buf := copyBuffers.Get()
	defer copyBuffers.Put(buf)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			s.mu.Lock()
			if s.detached {
				if fromClient {
					s.stash = append(s.stash, buf[:n]...)
				}
				s.mu.Unlock()
				return
			}
			if fromClient {
				s.outstanding = true
			} else {
				s.outstanding = false
				for _, p := range switching {
					if bytes.HasPrefix(buf[:n], p) {
						s.pinned = true
					}
				}
			}
			s.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				abort()
				return
			}
		}
		if err != nil {
			s.mu.Lock()
			detached := s.detached
			s.mu.Unlock()
			switch {
			case detached && errors.Is(err, os.ErrDeadlineExceeded):
			case errors.Is(err, io.EOF):
				select {
				case <-s.tunnelDone:
					// A dead tunnel reads as a clean EOF; the client must
					// not wait on a half-open connection.
					abort()
					return
				default:
				}
				if closeWrite(dst) != nil {
					abort()
				}
			default:
				abort()
			}
			return
		}
	}
}

// closeWrite passes a half-close on; a tunnel stream's Close is one.
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// detachIfIdle takes the connection back from the laptop unless a request
// on it waits for an answer.
func (s *hsplice) detachIfIdle() {
	s.mu.Lock()
	if s.outstanding || s.pinned || s.detached {
		s.mu.Unlock()
		return
	}
	s.detached = true
	s.mu.Unlock()
	past := time.Unix(1, 0)
	s.client.SetReadDeadline(past)
	s.up.SetReadDeadline(past)
}
