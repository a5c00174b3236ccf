package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// Splice copies bytes both ways between a and b until both directions have
// ended or ctx is done, then closes both. An EOF on one side is passed on as
// a half-close, so request/response protocols that shut down their write side
// keep working.
func Splice(ctx context.Context, a, b net.Conn) {
	var wg sync.WaitGroup
	var abortOnce sync.Once
	abort := func() {
		abortOnce.Do(func() {
			// Deadlines unblock reads and writes on any net.Conn, yamux
			// streams included, without waiting for the peer.
			past := time.Unix(1, 0)
			a.SetDeadline(past)
			b.SetDeadline(past)
		})
	}
	stop := context.AfterFunc(ctx, abort)
	copyHalf := func(dst, src net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if err != nil || tunnelEnded(src) {
			// A tunnel that died reads as a clean EOF on its streams; end
			// both sides rather than wait for a peer that may keep its
			// half of the connection open.
			abort()
			return
		}
		if err := closeWrite(dst); err != nil {
			abort()
		}
	}
	wg.Add(2)
	go copyHalf(a, b)
	go copyHalf(b, a)
	wg.Wait()
	stop()
	a.Close()
	b.Close()
}

// closeWrite half-closes c where the type allows it; a yamux stream's Close
// is already a half-close (it sends FIN and keeps reading).
func closeWrite(c net.Conn) error {
	switch c := c.(type) {
	case interface{ CloseWrite() error }:
		return c.CloseWrite()
	case *yamux.Stream:
		return c.Close()
	}
	return c.Close()
}

// isClosedErr reports errors that only mean "the other side went away".
func isClosedErr(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, yamux.ErrSessionShutdown) || errors.Is(err, ErrClosed) ||
		errors.Is(err, context.Canceled)
}

// tunnelEnded reports whether c is a stream of a tunnel that has closed.
func tunnelEnded(c net.Conn) bool {
	st, ok := c.(*yamux.Stream)
	return ok && st.Session().IsClosed()
}
